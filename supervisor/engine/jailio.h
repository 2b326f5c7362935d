/* What a job needs before its jail exists: the script's text and the
 * descriptors the jail and the supervisor share. */
#ifndef JR_JAILIO_H
#define JR_JAILIO_H

#include <stddef.h>

#include "common/err.h"

/* Reads the script whole (a regular file of at most JOB_MAX_SCRIPT bytes)
 * into a malloc'd NUL-terminated buffer. Returns 0 or -errno. */
int read_script(const char *path, char **out, size_t *len, struct jr_err *err);

/* The channel (SOCK_SEQPACKET pair), the jail's stdout and stderr pipes,
 * the go-ahead pipe and /dev/null for its stdin; every one close-on-exec,
 * our ends non-blocking. [0] is ours, [1] the jail's (sync: [0] the jail's
 * read end, [1] our write end). */
struct fds {
        int chan[2], out[2], err[2], sync[2], devnull;
};

int fds_open(struct fds *f, struct jr_err *err);
void fds_close(struct fds *f);

#endif
