/* A session's files, moved in and out by jaild (GET|PUT|DELETE
 * /v1/sessions/{id}/files/{path}, docs/api.md "Session files").
 *
 * Everything works from one directory fd, the session's /scratch as
 * jaild reaches it (/proc/<jail pid>/root/scratch). The jail owns that
 * directory and is hostile: whatever it planted there (symbolic links,
 * hard links, FIFOs, sockets, device nodes, a file growing as it is read,
 * a directory of a million entries, names that are not UTF-8), nothing
 * here follows a link, leaves the directory, blocks, or reads more than
 * its cap. Every path is resolved by the kernel beneath the directory
 * (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
 * RESOLVE_NO_XDEV); a file is read only after fstat on what was opened
 * (O_PATH) says it is a regular one; a write goes to a fresh temporary
 * name and is renamed over its target. Files jaild creates belong to the
 * directory's owner (the jail's uid), so the session can use them. */
#ifndef JR_SFILES_H
#define JR_SFILES_H

#include <jansson.h>
#include <stddef.h>

#include "common/err.h"

struct api_call;

#define SFILES_MAX_ENTRIES 10000       /* entries a listing shows (more: "truncated") */
#define SFILES_TMP ".jaild-upload-"     /* a PUT's temporary name, beside its target */

/* What GET found: a file's bytes, or a directory's listing. */
struct sfiles_out {
        char *data;      /* the file's bytes, malloc'd (NULL for a directory or an empty file) */
        size_t len;
        int fd;          /* sfiles_open: the file opened for reading, len bytes of it served; else -1 */
        json_t *listing; /* a directory: {path, entries: [{name, type, size}], truncated} */
};

void sfiles_out_free(struct sfiles_out *o);

/* GET: path "" is the directory itself. A regular file of at most max
 * bytes is read whole (one growing meanwhile is cut at the size fstat
 * saw); a directory is listed (at most SFILES_MAX_ENTRIES entries, sorted
 * by name, names not UTF-8 made so with '?' for each bad byte; type is
 * "file", "dir" or "other", size a file's bytes). Returns 0 with *out
 * filled (the caller frees it), or -errno with err's message naming path:
 * -ENOENT, -ELOOP (a symbolic link), -EXDEV (another mount), -ENOTDIR,
 * -EINVAL (a bad path; a FIFO, socket or device node), -EFBIG (over max). */
int sfiles_get(int dirfd, const char *path, size_t max, struct sfiles_out *out, struct jr_err *err);
/* The same, but a regular file is opened (out->fd, out->len its size then)
 * rather than read: served from the descriptor, a download holds no copy
 * of the file in jaild's memory. */
int sfiles_open(int dirfd, const char *path, size_t max, struct sfiles_out *out, struct jr_err *err);

/* PUT: writes len bytes of buf as path (mode 0644, owned by dirfd's
 * owner), atomically: readers see the old file or the new one. The
 * parent directory must exist. Replacing a name replaces it only (never
 * writes through a hard link or follows a symbolic one); a directory
 * there is not replaced (-EISDIR). Returns 0 or -errno with err's
 * message: -ENOENT (the parent is missing), -ENOSPC or -EDQUOT (full:
 * nothing is left behind), -ELOOP, -EXDEV, -ENOTDIR, -EISDIR, -EINVAL. */
int sfiles_put(int dirfd, const char *path, const char *buf, size_t len, struct jr_err *err);

/* DELETE: removes the name path (a file, a symbolic link itself, an empty
 * directory). Returns 0 or -errno with err's message: -ENOENT, -ENOTEMPTY,
 * -ELOOP, -EXDEV, -ENOTDIR, -EINVAL. */
int sfiles_delete(int dirfd, const char *path, struct jr_err *err);

/* The API error for a failure r of the functions above: its HTTP status
 * and type (404 NotFoundError, 400 ValueError, 409 ConflictError, 413
 * PayloadTooLargeError, 507 InsufficientStorageError, 500 InternalError). */
unsigned sfiles_status(int r, const char **type);

/* The three endpoints for the backend: each does its operation on dirfd
 * (the session's directory; the caller keeps it) and finishes the call:
 * GET with the bytes (application/octet-stream) or the listing (JSON),
 * PUT 201 {path, size}, DELETE 200 {path, deleted: true}, or the error
 * (sfiles_status, with err's message). max is the largest file GET reads
 * (sessions.file_max). */
void sfiles_reply_get(struct api_call *c, int dirfd, const char *path, size_t max);
void sfiles_reply_put(struct api_call *c, int dirfd, const char *path, const char *buf, size_t len);
void sfiles_reply_delete(struct api_call *c, int dirfd, const char *path);

#endif
