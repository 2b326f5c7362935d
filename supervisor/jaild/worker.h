/* jaild's workers inside: what workers.c (their lives) and workers_api.c
 * (the API's handlers) share. */
#ifndef JR_JAILD_WORKER_H
#define JR_JAILD_WORKER_H

#include <limits.h>

#include "supervisor/jaild/daemon.h"

enum after { AFTER_NOTHING, AFTER_PAUSE, AFTER_DELETE, AFTER_RESTART };

struct tickwait {
        struct tickwait *next;
        struct worker *w;
        struct api_call *call;
        unsigned id;
};

struct follower {
        struct follower *next;
        struct worker *w;
        struct api_call *call;
};

struct worker {
        struct jaild *d;
        struct worker *next;
        struct registry_worker row;
        char script[PATH_MAX];
        char wsdir[PATH_MAX];
        char job_id[REGISTRY_ID_LEN + 24];
        char *policy_json;
        struct job_opts o;
        struct job_result res;
        struct job *job;
        struct sink sink;
        char *lines[WORKER_LOG_LINES];
        size_t head, nlines;
        char *partial;                /* a line split across two flushes (on_output) */
        size_t plen;
        int pcut;
        struct follower *followers;
        struct tickwait *ticks;
        struct api_call *stop_call;   /* a pause or delete waiting for the job's end */
        enum after after;
        json_t *last_end;             /* the last job's result, as jailrun --json gives it */
        char error[512];              /* why it does not run, when it cannot */
        int script_stale;             /* its script could not be written: worker_start writes it first */
        unsigned runs;
};

void follower_cancel(void *data);
void worker_start(struct worker *w);
void worker_free(struct worker *w);
void unlink_worker(struct worker *w);
/* Ends the worker's job: gently (the tick in flight finishes) or at once;
 * c, if any, is answered when it has ended. */
void worker_stop(struct worker *w, enum after after, struct api_call *c, int now);
const char *worker_state(const struct worker *w);
json_t *worker_json(struct worker *w);
/* A worker object for a registry row (its script not written, not in the
 * daemon's list: link_worker): NULL with msg. */
struct worker *worker_new(struct jaild *d, const char *id, char *msg, size_t size);
void link_worker(struct worker *w);
/* The worker a path names (an id first, then a name), or NULL answered 404. */
struct worker *find_or_404(struct jaild *d, struct api_call *c, const char *id);
/* The policy and schedule a worker would run with; answered 400 if not. */
int check_spec(struct jaild *d, struct api_call *c, const char *profile, const json_t *policy, const json_t *schedule);
/* A name a worker may not take: shaped like a worker id, or job.*. */
int reserved_name(const char *name);
/* The script the engine reads, written whole and renamed over: 0, or
 * -errno with msg ("the disk is full (ENOSPC)" for a full disk). In two
 * steps around a registry change: script_prepare writes and syncs
 * SCRIPT.new, then script_install renames it over SCRIPT once the change
 * is durable, or script_discard removes it. */
int write_script(struct worker *w, char *msg, size_t size);
int script_prepare(struct worker *w, const char *src, size_t len, char *msg, size_t size);
int script_install(struct worker *w, char *msg, size_t size);
void script_discard(struct worker *w);

#endif
