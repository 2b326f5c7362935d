/* jaild's inside: the daemon (its loop, registry, API and pool of live
 * jails), its workers and its one-shot jobs. Each is a thin front-end over
 * the engine (supervisor/engine/job.h), as jailrun is. */
#ifndef JR_JAILD_DAEMON_H
#define JR_JAILD_DAEMON_H

#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <time.h>

#include "policy/policy.h"
#include "supervisor/engine/job.h"
#include "supervisor/engine/loop.h"
#include "supervisor/engine/warm.h"
#include "supervisor/jaild/api.h"
#include "supervisor/jaild/jaildconf.h"
#include "supervisor/jaild/jlog.h"
#include "supervisor/jaild/registry.h"

/* Lines of a worker's log kept for GET .../logs. */
#define WORKER_LOG_LINES 1000
/* Bytes of one kept line: a log entry of LOG_MAX_CHARS characters, each
 * escaped as \uXXXX or a surrogate pair, with its frame, fits. */
#define WORKER_LOG_LINE_MAX (64 * 1024)
/* Log streams followed at once (GET .../logs?follow=1), and the bytes of
 * kept lines one request replays. */
#define JAILD_MAX_FOLLOWERS 64
#define LOGS_REPLAY_MAX (128 * 1024)
/* Bytes of a one-shot job's stdout and stderr kept for its answer. */
#define JOB_OUTPUT_MAX (1024 * 1024)

/* Seconds a drain (SIGTERM) waits for ticks and jobs in flight before it
 * stops them: less than the unit's TimeoutStopSec (30 s), so jaild ends
 * its jobs itself rather than be killed with them. */
#define JAILD_DRAIN_S 25

/* Output kept for an answer, up to a cap (jobs' and sessions' cells). */
struct outbuf {
        char *p;        /* NUL-terminated, or NULL while empty */
        size_t len;
        int cut;        /* more came than the cap */
};

/* Appends len bytes of buf, at most up to max in all (the rest cut). */
void outbuf_add(struct outbuf *b, const char *buf, size_t len, size_t max);
void outbuf_reset(struct outbuf *b);

/* Buckets of the latency histograms (seconds). */
#define HIST_BUCKETS 12

struct hist {
        uint64_t count[HIST_BUCKETS + 1];  /* the last: +Inf */
        uint64_t n;
        double sum;
};

void hist_add(struct hist *h, double seconds);
void hist_print(FILE *f, const char *name, const char *help, const struct hist *h);

/* A request waiting for a live jail (the pool is full). */
struct waiter {
        struct jaild *d;
        struct waiter *next;
        struct timer deadline;
        void (*go)(struct waiter *w);  /* a slot is ours */
        void (*fail)(struct waiter *w);  /* the wait ran out */
        void *data;
};

struct jaild {
        struct jaild_config *cfg;
        const char *cfg_path;
        struct loop loop;
        struct registry *reg;
        struct api *api;
        struct watch sig;
        int sigfd;
        int cglock;                  /* our hold on cgroup_parent */
        struct cg_pool *cgpool;      /* job groups made ahead; NULL: one made per job */
        char state_url[PATH_MAX];
        char scripts[PATH_MAX];      /* the scripts jobs read: <registry dir>/scripts */
        struct worker *workers;
        struct ojob *jobs;
        struct session *sessions;
        unsigned n_sessions;
        uint64_t cells_run;
        struct waiter *waiting;      /* oldest first */
        unsigned live;               /* jails of workers and jobs running */
        unsigned queued;
        unsigned followers;          /* log streams followed */
        int draining;                /* SIGTERM: no new work; ends when nothing runs */
        int done;
        struct timespec started;
        struct jlog log;
        struct timer status;         /* STATUS for the service manager, and its watchdog */
        struct timer drain;          /* SIGTERM: how long ticks and jobs in flight may take */
        int watchdog;
        /* Figures for /metrics. */
        uint64_t ticks_ok, ticks_failed, jobs_done, jobs_failed, refused_pool;
        json_t *errors;              /* {type: count} */
        struct hist tick_s, spawn_s, job_s;
        /* Warm zygotes by enum jail_profile (zygote.enabled). */
        struct warm warm[2];
        int warm_on;
};

/* jaild.c */
void jlog_msg(struct jaild *d, int priority, const char *worker, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
void count_error(struct jaild *d, const char *type);
/* A live jail for the caller: w->go now, or once one frees (w->fail when
 * queue_wait passes first). */
void pool_take(struct jaild *d, struct waiter *w);
void pool_cancel(struct jaild *d, struct waiter *w);
void pool_give(struct jaild *d);
void pool_kick(struct jaild *d);
void maybe_done(struct jaild *d);
/* Opts common to workers and jobs from a profile and policy overrides:
 * the effective policy's text in *policy_json (malloc'd) and a reference
 * to its adapters in o->broker.adapters (the caller's to drop). 0, or
 * -EINVAL with the reason in msg. */
int build_opts(struct jaild *d, struct job_opts *o, const char *profile, const json_t *overrides,
               char **policy_json, char *msg, size_t size);

/* jcgpool.c: the pool of job groups (none with cgroup_pool.size 0), on
 * d->loop; its figures for /metrics. */
int jcgpool_open(struct jaild *d, struct jr_err *err);
void jcgpool_metrics(struct jaild *d, FILE *f);

/* workers.c */
int workers_load(struct jaild *d);
void workers_drain(struct jaild *d);
void workers_free(struct jaild *d);
void workers_metrics(struct jaild *d, FILE *f);
size_t workers_count(const struct jaild *d);
size_t workers_running(const struct jaild *d);
void api_worker_create(void *data, struct api_call *c, json_t *spec);
void api_worker_list(void *data, struct api_call *c);
void api_worker_get(void *data, struct api_call *c, const char *id);
void api_worker_update(void *data, struct api_call *c, const char *id, json_t *changes);
void api_worker_delete(void *data, struct api_call *c, const char *id);
void api_worker_tick(void *data, struct api_call *c, const char *id);
void api_worker_pause(void *data, struct api_call *c, const char *id);
void api_worker_resume(void *data, struct api_call *c, const char *id);
void api_worker_logs(void *data, struct api_call *c, const char *id, int follow);

/* sessions.c */
void api_session_create(void *data, struct api_call *c, json_t *spec);
void api_session_list(void *data, struct api_call *c);
void api_session_get(void *data, struct api_call *c, const char *id);
void api_session_delete(void *data, struct api_call *c, const char *id);
void api_session_execute(void *data, struct api_call *c, const char *id, json_t *body, int stream);
void api_session_packages(void *data, struct api_call *c, const char *id, json_t *body);
void api_session_file_get(void *data, struct api_call *c, const char *id, const char *path);
void api_session_file_put(void *data, struct api_call *c, const char *id, const char *path, const char *body,
                          size_t len);
void api_session_file_delete(void *data, struct api_call *c, const char *id, const char *path);
void sessions_drain(struct jaild *d);
size_t sessions_running(const struct jaild *d);
void sessions_free(struct jaild *d);
void sessions_metrics(struct jaild *d, FILE *f);

/* jobs.c */
void api_job_submit(void *data, struct api_call *c, json_t *spec);
void jobs_drain(struct jaild *d);
size_t jobs_running(const struct jaild *d);

#endif
