/* The worker registry: every long-lived worker jaild hosts, in one SQLite
 * file (config "registry"), so that the daemon restarts with the same
 * workers. A worker acknowledged as created, changed or deleted is on disk
 * when the call returns: it survives the daemon being killed (SIGKILL)
 * and the machine losing power (WAL, synchronous=FULL: see registry.c).
 * One connection, used from the event loop's thread only. */
#ifndef JR_JAILD_REGISTRY_H
#define JR_JAILD_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define REGISTRY_ID_LEN 18               /* "w-" and 16 hex digits */
#define REGISTRY_MAX_NAME 64             /* [A-Za-z0-9._-], not starting with '.' */
#define REGISTRY_MAX_PROFILE 32          /* [a-z0-9_-] */
#define REGISTRY_MAX_SOURCE (1024 * 1024)  /* bytes of a worker's source */
#define REGISTRY_MAX_JSON (64 * 1024)    /* bytes of its policy or schedule */
#define REGISTRY_SCHEMA 2                /* PRAGMA user_version this code writes */

struct registry;

/* One worker as stored. Strings are NUL-terminated; the source may hold
 * any bytes but NUL, its length is source_len. */
struct registry_worker {
        char id[REGISTRY_ID_LEN + 1];
        char name[REGISTRY_MAX_NAME + 1];
        char profile[REGISTRY_MAX_PROFILE + 1];
        char *source;
        size_t source_len;
        char *policy;          /* the worker's policy overrides: a JSON object's text, "{}" for none */
        char *schedule;        /* its schedule (interval, tick timeout, ...): a JSON object's text */
        int paused;            /* 0 or 1 */
        int64_t created_ms;    /* CLOCK_REALTIME, milliseconds since the epoch */
        int64_t updated_ms;    /* the last change of any field */
        int64_t generation;    /* 1 at creation, + 1 at each source change */
};

/* Frees the worker's strings (not the struct) and clears them. */
void registry_worker_clear(struct registry_worker *w);

/* What registry_add stores. policy and schedule: a JSON object's text, or
 * NULL for "{}"; they are stored compact, keys sorted. The registry checks
 * only their form (a JSON object, no duplicate keys, at most
 * REGISTRY_MAX_JSON bytes): what they mean is the API's to check. */
struct registry_new {
        const char *name;
        const char *profile;
        const char *source;
        size_t source_len;     /* at most REGISTRY_MAX_SOURCE, no NUL byte */
        const char *policy;
        const char *schedule;
        int paused;
};

/* Opens (creating when missing, with its directory, mode 0700; the file
 * 0600: it holds every worker's code) or upgrades the registry at `path`.
 * -EPROTO when it was written by a newer schema than REGISTRY_SCHEMA.
 * 0 or -errno with err; 1 when its disk is too full for SQLite's shared
 * index (-shm) and it was opened in exclusive locking mode instead (read
 * and written by this process alone: readers elsewhere are refused while
 * it is open), err saying so. */
int registry_open(struct registry **out, const char *path, struct jr_err *err);
void registry_close(struct registry *r);

/* Stores a new worker under a fresh id (getrandom). *out (when not NULL)
 * gets the stored worker (registry_worker_clear). -EEXIST when another
 * worker has the name; -EINVAL with the field when a field is malformed;
 * -errno with err. Durable when it returns 0; when only reading it back
 * into *out fails, it is stored nonetheless. */
int registry_add(struct registry *r, const struct registry_new *w, struct registry_worker *out,
                 struct jr_err *err);

/* The worker with this id, or name. -ENOENT when there is none. */
int registry_get(struct registry *r, const char *id, struct registry_worker *out, struct jr_err *err);
int registry_get_by_name(struct registry *r, const char *name, struct registry_worker *out, struct jr_err *err);

/* Calls fn for each worker in name order; w is valid during the call only.
 * fn returning non-zero stops the walk and is returned. Returns 0 or
 * -errno with err (fn must not call the registry). */
int registry_list(struct registry *r, int (*fn)(const struct registry_worker *w, void *ctx), void *ctx,
                  struct jr_err *err);

/* Changes one field of the worker `id` (and its updated_ms); -ENOENT when
 * there is none, -EINVAL when the value is malformed. A new source bumps
 * the generation (*generation, when not NULL, gets the new one). Each is
 * durable when it returns 0. */
int registry_set_source(struct registry *r, const char *id, const char *source, size_t len, int64_t *generation,
                        struct jr_err *err);
int registry_set_policy(struct registry *r, const char *id, const char *policy, struct jr_err *err);
int registry_set_schedule(struct registry *r, const char *id, const char *schedule, struct jr_err *err);
int registry_set_paused(struct registry *r, const char *id, int paused, struct jr_err *err);

/* Sessions (jaild's exec sessions live only as long as the jaild that
 * made them): their ids are kept while they run, so that a later jaild
 * can tell one lost when its jaild stopped from one that never was. */
int registry_session_add(struct registry *r, const char *id, struct jr_err *err);
int registry_session_delete(struct registry *r, const char *id, struct jr_err *err);
/* At start: every session still listed was lost with the jaild before;
 * those lost more than REGISTRY_SESSION_KEEP_MS ago are forgotten. */
#define REGISTRY_SESSION_KEEP_MS (7LL * 24 * 3600 * 1000)
int registry_sessions_lost(struct registry *r, struct jr_err *err);
/* 1 if session `id` was lost with an earlier jaild, 0 if not, or -errno. */
int registry_session_lost(struct registry *r, const char *id, struct jr_err *err);

/* Removes the worker; -ENOENT when there is none. */
int registry_delete(struct registry *r, const char *id, struct jr_err *err);

/* Several changes made as one, with what goes with them outside the
 * registry (a worker's script): registry_begin, the changes (each then
 * durable only with the commit), then registry_commit or, on an error,
 * registry_rollback (none of them is made). A commit that fails (a full
 * disk: -ENOSPC) rolls back: nothing of it is kept. Changes refused for
 * want of space return -ENOSPC (or -EDQUOT) with err saying so. */
int registry_begin(struct registry *r, struct jr_err *err);
int registry_commit(struct registry *r, struct jr_err *err);
void registry_rollback(struct registry *r);

#endif
