/* ctx.files: a worker's workspace directory on the host, reached only by
 * paths resolved beneath it by the kernel (openat2 RESOLVE_BENEATH, no
 * symbolic or magic links, no other mounts), whatever anyone planted in
 * it. Writes are atomic (a temporary file, fsync, rename, fsync of the
 * directory) and checked against the workspace's quota under a lock, so
 * concurrent jailruns sharing a workspace cannot overshoot it. */
#ifndef JR_FILES_H
#define JR_FILES_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define FILES_MAX_PATH 1024      /* bytes of a path the worker gives */
#define FILES_MAX_ENTRIES 10000  /* entries one list() returns */
#define FILES_MAX_DEPTH 32       /* directory levels walked for the quota */
#define FILES_MAX_INODES 100000  /* files and directories in a workspace */
#define FILES_LOCK_TRIES 20      /* 10 ms apart: the longest a write waits for the lock */

struct files_cfg {
        const char *root;        /* the workspace directory */
        uint64_t quota;          /* bytes of regular files in it */
        uint64_t max_read;       /* bytes one read() returns */
};

struct files {
        const struct files_cfg *cfg;
        int dirfd;               /* the workspace, opened on first use; -1 before */
        unsigned long seq;       /* names this jailrun's temporary files */
};

void files_init(struct files *f, const struct files_cfg *cfg);
void files_close(struct files *f);

/* Each returns the call's result dict (a new reference), {"error": reason}
 * for anything that went wrong, or NULL only when out of memory. read
 * also hands over the file's bytes (malloc'd) in *data, *len: they go to
 * the jail as they are, after the reply (broker_reply). */
json_t *files_read(struct files *f, const char *path, void **data, size_t *len);
json_t *files_write(struct files *f, const char *path, const void *data, size_t len);
json_t *files_list(struct files *f, const char *path);
json_t *files_delete(struct files *f, const char *path);
json_t *files_exists(struct files *f, const char *path);
json_t *files_size(struct files *f, const char *path);

#endif
