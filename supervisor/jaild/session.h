/* jaild's exec sessions inside: what sessions.c (their lives and the
 * API's handlers), cells.c (the code they run, its output and answers)
 * and sfiles (their files) share. */
#ifndef JR_JAILD_SESSION_H
#define JR_JAILD_SESSION_H

#include <stdint.h>
#include <time.h>

#include "supervisor/jaild/daemon.h"

/* The exec profile's session limits (seed 004): defaults come from the
 * profile (512 MiB, 1 core), these are the maxima. */
#define SESSION_MEMORY_MAX (2ULL << 30)
#define SESSION_MEMORY_MIN (32ULL << 20)
#define SESSION_CPUS_MAX 4.0
#define SESSION_TIMEOUT_DEFAULT 300.0
#define SESSION_TIMEOUT_MAX 86400
/* A cell past its time limit gets a TimeoutError; this much later, if it
 * has not stopped, the session is killed. */
#define SESSION_GRACE_S 5.0
/* Its working directory inside the jail. */
#define SESSION_WORKDIR "/scratch"
/* Packages: the operator's wheel directory is bound here while pip runs,
 * and pip installs into the session's own site directory. */
#define SESSION_WHEELS SESSION_WORKDIR "/.wheels"
#define SESSION_SITE SESSION_WORKDIR "/.packages"
#define SESSION_MAX_PACKAGES 64
/* Bytes of a cell's stdout, and of its stderr, kept for its answer. */
#define CELL_OUTPUT_MAX (1024 * 1024)
/* Cells waiting on one session. */
#define SESSION_MAX_QUEUED 64
#define SESSION_NO_PACKAGES                                                                              \
        "no package source is configured: set sessions.packages.wheel_dir or sessions.packages.index_url " \
        "in jaild's configuration (jaild(8))"

struct session;

/* One execute request, queued until the session runs it. */
struct cell {
        struct cell *next;
        struct session *s;
        struct api_call *call;  /* NULL once the client went away */
        char *code;
        size_t len;
        double timeout;
        int stream;             /* ?stream=1: output lines as it runs */
        int streaming;          /* the stream has begun */
        int sent;               /* running in the jail */
        struct timespec t0;
        int64_t cpu0_us;        /* the group's CPU when it began */
        int peak_reset;         /* the memory peak was started again for it */
        json_t *install;        /* a package install: the names (the wheel directory is bound meanwhile) */
        int for_create;         /* the packages the session was created with: its creation's answer waits */
        int bound;
        size_t carry[2];        /* bytes of an unfinished UTF-8 character held back from the stream */
        char held[2][4];
};

struct out_ctx {
        struct session *s;
        int fd;                 /* 1 or 2 */
};

struct session {
        struct jaild *d;
        struct session *next;
        char id[24];
        char name[72];
        char ns[40];                 /* "session.<id>": its namespace */
        char *policy_json;
        struct job_opts o;
        struct job_result res;
        struct job *job;             /* NULL once its jail has ended */
        struct sink sink;
        struct out_ctx out_ctx[2];
        struct api_call *create;     /* answered when the interpreter is ready (and its packages are in) */
        json_t *packages;            /* to install before that answer */
        struct relay *relay;         /* an install's way to the package index */
        struct api_call *delete_call;
        struct cell *cells, **tail;  /* the first runs when it is sent */
        unsigned queued;
        struct outbuf out, err;      /* the running cell's output */
        struct outbuf idle_out[2];   /* printed between cells (a thread): the next cell's */
        struct timer idle;
        int dirfd;                   /* its directory, seen from the host */
        uint64_t memory, mem_max;
        double cpus, cpus_max, timeout;
        double idle_s;               /* ended after this long without a request */
        char mem_text[32];
        unsigned executions;
        time_t created, last_used;
        int ready, dead, deleting, forget;
        int stopped;                 /* ended by jaild stopping: the next run says so (410) */
        char dead_type[64], dead_msg[1024];
};

/* sessions.c */
const char *session_state(const struct session *s);
json_t *session_json(const struct session *s);
struct session *session_find(struct jaild *d, const char *id);
struct session *session_live_or_answer(struct jaild *d, struct api_call *c, const char *id);
void session_touch(struct session *s);
/* Ends it (c, if any, answered once its jail is gone); a dead one is
 * forgotten at once. */
void session_end(struct session *s, struct api_call *c);
/* The install of its creation's packages ended (resp: that cell's answer,
 * or NULL): the creation is answered, and a failed install ends it. */
void session_created(struct session *s, json_t *resp, const struct job_exec_result *r);

/* cells.c */
struct cell *cell_queue(struct session *s, struct api_call *c, const char *code, size_t len, double timeout,
                        int stream);
void cells_next(struct session *s);
void cell_done(void *data, const struct job_exec_result *r);
void cell_output(void *data, const char *buf, size_t len);
void cells_fail(struct session *s, const char *type, const char *msg);
void cells_free(struct session *s);

/* packages.c */
void api_session_packages(void *data, struct api_call *c, const char *id, json_t *body);
/* The names checked (answered 400 if not: -EINVAL); an install cell queued
 * for them (c may be NULL: the session's creation waits for it). */
int packages_check(struct api_call *c, const json_t *names);
struct cell *packages_queue(struct session *s, struct api_call *c, json_t *names);
/* Before and after an install cell: the wheel directory bound, unbound. */
int packages_bind(struct session *s, struct cell *cl);
void packages_unbind(struct session *s, struct cell *cl);

/* sgone.c: the ids of sessions a jaild run had (its registry), so that
 * one lost with a stopped jaild is told apart from one never made. */
int sessions_remember(struct jaild *d, const char *id);
void sessions_forget(struct jaild *d, const char *id);
int sessions_gone(struct jaild *d, const char *id);
/* Opens its directory as the host sees it (/proc/PID/root/scratch):
 * s->dirfd, 0 or -1 with errno. */
int session_open_dir(struct session *s);

#endif
