/* A backtest's report, written as the run goes (jailrun-backtest(7)): the
 * signals go out through one buffer in a few large writes and are never
 * held whole; the summary, known only at the end, comes last. A file is
 * written under a temporary name and renamed into place once complete;
 * "-" (stdout) is spooled to an unnamed temporary file and copied out at
 * the end, so what the jail prints meanwhile cannot split it. */
#ifndef JR_BTREPORT_H
#define JR_BTREPORT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

enum btr_format {
        BTR_JSON,   /* one JSON document, one signal a line */
        BTR_JSONL,  /* one signal a line, then a summary line */
};

/* Default of --report-max, bytes. */
#define BTR_MAX_DEFAULT (4ULL << 30)
/* Bytes gathered before a write. */
#define BTR_BUF (256 * 1024)

struct btr {
        int fd;                 /* the temporary file (or spool); -1 when closed */
        int to_stdout;
        char *path;             /* the report's name (NULL for stdout) */
        char *tmp;              /* its temporary name while written */
        enum btr_format format;
        uint64_t max;           /* bytes the signals may take */
        uint64_t bytes;         /* written or buffered so far */
        uint64_t signals;
        char *buf;
        size_t len;
};

/* Creates the report's temporary file (or spool) for `path` ("-": stdout);
 * 0, or -errno with the reason in err. */
int btr_open(struct btr *r, const char *path, enum btr_format format, uint64_t max, struct jr_err *err);
/* The document's head, once the bar count is known. */
int btr_begin(struct btr *r, uint64_t bars, struct jr_err *err);
/* Whether n more signals, whose lines (each ending in a newline) take
 * lines_len bytes, stay within max, as btr_signal will write them. */
int btr_fits(const struct btr *r, size_t lines_len, uint64_t n);
/* Appends one encoded signal (compact JSON, no newline); 0 or -errno. */
int btr_signal(struct btr *r, const char *text, size_t len, struct jr_err *err);
/* The summary (an object, borrowed) last, then the file renamed into
 * place or the spool copied to stdout; 0 or -errno with the reason. */
int btr_finish(struct btr *r, json_t *summary, uint64_t bars, struct jr_err *err);
/* Drops an unfinished report (its temporary file removed). */
void btr_close(struct btr *r);

#endif
