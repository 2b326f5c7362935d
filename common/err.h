/* Error reports that carry errno plus context, crun-style: fallible
 * functions take `struct jr_err *err` last and return -errno. */
#ifndef JR_ERR_H
#define JR_ERR_H

#include <stddef.h>

struct jr_err {
        int errnum;        /* positive errno, 0 when none applies */
        char msg[512];     /* "what failed: why" */
};

/* Formats msg (with ": strerror(errnum)" appended when errnum != 0) into err
 * (which may be NULL) and returns -errnum, or -EINVAL when errnum is 0. */
int jr_fail(struct jr_err *err, int errnum, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* snprintf that reports truncation: 0, or -ENAMETOOLONG. */
int jr_snprintf(char *buf, size_t size, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Makes s valid UTF-8 in place: every byte that does not belong to a
 * complete, well-formed sequence (as left by cutting text at a byte
 * count) becomes '?'. Returns s. */
char *jr_utf8_clean(char *s);

/* Copies src into dst (size bytes), cut to fit, and makes the copy valid
 * UTF-8 (jr_utf8_clean): a cut never leaves half a character. */
void jr_utf8_copy(char *dst, size_t size, const char *src);

#endif
