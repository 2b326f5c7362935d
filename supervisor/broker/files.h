/* ctx.files: a worker's workspace directory on the host, reached only by
 * paths resolved beneath it by the kernel (openat2 RESOLVE_BENEATH, no
 * symbolic or magic links, no other mounts), whatever anyone planted in
 * it. Writes are atomic (a temporary file, fsync, rename, fsync of the
 * directory) and checked against the workspace's quota under a lock, so
 * concurrent jailruns sharing a workspace cannot overshoot it.
 *
 * The quota's usage is a running count, FILES_USAGE in the workspace,
 * read and changed under the same lock by every write and delete of
 * every jailrun sharing it: a call costs the supervisor its own path and
 * data, never the workspace's size. Each job counts the workspace afresh
 * (one walk) at its first write or delete, and again when the count is
 * caught out (a file larger than the whole, a count below zero: the
 * workspace was changed outside jailrun). */
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
#define FILES_RESERVED ".jailrun-"          /* names jailrun keeps for itself: no path holds one */
#define FILES_USAGE ".jailrun-usage"        /* the running count, in the workspace's top */
#define FILES_TMP ".jailrun-tmp-"           /* a write's temporary file, beside its target */

struct files_cfg {
        const char *root;        /* the workspace directory */
        uint64_t quota;          /* bytes of regular files in it */
        uint64_t max_read;       /* bytes one read() returns */
};

/* What the workspace holds, as FILES_USAGE records it. */
struct files_usage {
        int64_t bytes;           /* of regular files */
        int64_t entries;         /* files, directories and anything else */
        int over;                /* the last count passed FILES_MAX_INODES or FILES_MAX_DEPTH */
};

struct files {
        const struct files_cfg *cfg;
        int dirfd;               /* the workspace, opened on first use; -1 before */
        unsigned long seq;       /* names this jailrun's temporary files */
        int counted;             /* this job has counted the workspace: the record can be believed */
};

void files_init(struct files *f, const struct files_cfg *cfg);
void files_close(struct files *f);

/* Each ends as a ctx call does (broker.h): BROKER_DONE with *result (a
 * new reference: the call's dict, or {"error": reason} for anything that
 * went wrong), or -ENOMEM. read also hands over the file's bytes
 * (malloc'd) in *data, *len: they go to the jail as they are, after the
 * reply (broker_reply). */
int files_read(struct files *f, const char *path, json_t **result, void **data, size_t *len);
int files_write(struct files *f, const char *path, const void *data, size_t len, json_t **result);
int files_list(struct files *f, const char *path, json_t **result);
int files_delete(struct files *f, const char *path, json_t **result);
int files_exists(struct files *f, const char *path, json_t **result);
int files_size(struct files *f, const char *path, json_t **result);

#endif
