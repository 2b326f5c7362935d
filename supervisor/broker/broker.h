/* The broker: what the supervisor does on the jail's behalf when its code
 * calls ctx.state (and, later, ctx.files and ctx.http). Every call comes
 * from the jail and is hostile: its arguments are checked here, and what
 * the user got wrong (a key too long, a value too large) is an error dict
 * for the user, while what only a broken or hostile runtime sends (an
 * unknown operation, arguments of the wrong shape) is a protocol error. */
#ifndef JR_BROKER_H
#define JR_BROKER_H

#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <time.h>

#include "common/err.h"

/* How every ctx call ends (broker_call, and each service's entry point
 * below it: state, files, http, adapters): an int,
 *   BROKER_DONE     its answer is ready, in the out-parameter `result` (a
 *                   new reference: the operation's dict, or {"error": why}
 *                   for what the user got wrong or the world refused);
 *   BROKER_PENDING  its answer comes later (an http transfer under way:
 *                   broker_http_done hands it over);
 *   -EPROTO         the call breaks the protocol (err says how): only a
 *                   broken or hostile runtime sends it;
 *   another -errno  the supervisor's own failure (-ENOMEM), with err: the
 *                   call cannot be answered.
 * Never a NULL to be read one way or another. */
#define BROKER_DONE 0
#define BROKER_PENDING 1
/* Inside the broker, a check before a call's work: the call goes on (any
 * other value is how it ends). */
#define BROKER_NEXT 2

/* `r`, an answer or NULL when it could not be made (out of memory), as a
 * call's end: BROKER_DONE with *result = r, or -ENOMEM. */
static inline int broker_done(json_t **result, json_t *r)
{
        *result = r;
        return r ? BROKER_DONE : -ENOMEM;
}

#include "supervisor/broker/adapters.h"
#include "supervisor/broker/files.h"
#include "supervisor/broker/http.h"
#include "supervisor/broker/state.h"
#include "supervisor/broker/state_redis.h"

struct broker_cfg {
        const char *ns;            /* the worker's namespace (--name) */
        const char *state_url;     /* where ctx.state lives (--state) */
        uint64_t state_max_value;  /* bytes of a value's JSON text */
        uint64_t state_max_total;  /* bytes of all of a worker's values; 0 = no limit */
        struct files_cfg files;    /* the workspace (--workspace) and its limits */
        struct http_cfg http;      /* ctx.http's limits and egress policy */
        const json_t *adapters;    /* the policy's adapter declarations */
        const char *secrets;       /* --secrets: read on the first adapter call */
};

/* The supervisor's CPU a job may use, measured on the loop thread's CPU
 * clock: around each message the jail sends (its decoding, a log's
 * printing, a call with its reply, a backtest batch with its report), and
 * around the loop's work on the job's transfers (libcurl driving them:
 * sending, receiving, decompressing; and each finished one's charset
 * decoding, secret scrubbing, encoding and reply to the jail; see
 * broker_cpu_charge). Past the budget a call is refused and the jail's
 * channel is read no further until the budget allows (the jail waits on
 * its own writes). It may add up to as much as
 * the job has used itself (its cgroup's count), plus BROKER_CPU_TRICKLE of
 * a core for every second it has run, plus BROKER_CPU_RESERVE. Past it a
 * call gets an error dict saying so, at once, until the job has run more
 * or time has passed; transfers already under way finish (at most
 * max_in_flight of them, each at most max_response bytes). A call costs
 * the supervisor what it asks (never the size of the job's store), and the
 * job cannot make the supervisor work for it much more than it works
 * itself. Real workers do not come near it: a durable write or a set costs
 * well under a millisecond, a small http response about as much. */
#define BROKER_CPU_RESERVE 1.0    /* seconds */
#define BROKER_CPU_TRICKLE 0.05   /* seconds a second */
#define BROKER_CPU_REREAD 0.05    /* seconds between readings of the job's own CPU */

struct broker_cpu {
        double (*job_cpu)(void *ctx);  /* the job's CPU so far, in seconds; < 0 when unknown */
        void *ctx;
        double job_seen;               /* its last reading */
        struct timespec started, read_at;  /* CLOCK_MONOTONIC */
        uint64_t used_ns;              /* the supervisor's CPU the calls used */
        uint64_t refused;              /* calls refused */
};

struct broker {
        const struct broker_cfg *cfg;
        struct broker_cpu cpu;
        void *payload;              /* bytes for the jail after the current reply */
        size_t payload_len;
        struct state_store *state;  /* SQLite: opened by the first state call, after the clone */
        struct redis_store *redis;  /* Redis: made by the first state call; its fds are for the job's loop */
        struct files files;         /* the workspace, opened by the first files call */
        struct http *http;          /* made by the first http call */
        struct adapters adapters;
};

/* job_cpu(ctx) tells the CPU budget what the job has used itself. */
void broker_init(struct broker *b, const struct broker_cfg *cfg, double (*job_cpu)(void *), void *ctx);
void broker_close(struct broker *b);

/* What is left of the CPU budget, in seconds; below 0 it is spent by that
 * much (it refills at BROKER_CPU_TRICKLE a second, and as fast as the job
 * works itself). */
double broker_cpu_left(struct broker *b);

/* Performs call `id` (or refuses it, over the CPU budget; the caller
 * charges it with the message that carried it): state.*, files.*,
 * http.request, adapter.send, adapter.request. Ends as above: an http or
 * adapter request under way is BROKER_PENDING (b->http exists then: its
 * fds are for the job's loop), its answer comes from broker_http_done; a
 * state call on Redis likewise (b->redis), from broker_state_done. */
int broker_call(struct broker *b, const char *op, int64_t id, json_t *args, json_t **result, struct jr_err *err);

/* A finished http or adapter request's answer: BROKER_DONE with its id,
 * *result and its body in b->payload (sent after the reply, then freed
 * with broker_payload_done); BROKER_PENDING when none is finished (or
 * there is no http client); -ENOMEM with *id when one finished but its
 * answer could not be made (nothing left to free). */
int broker_http_done(struct broker *b, int64_t *id, json_t **result);

/* A finished state call's answer (Redis: state calls are BROKER_PENDING
 * there): BROKER_DONE with its id and *result; BROKER_PENDING when none is
 * finished; -ENOMEM with *id when its answer could not be made. */
int broker_state_done(struct broker *b, int64_t *id, json_t **result);

/* The jail whose calls are under way has ended: their answers are
 * dropped (http's go with its client, which the caller frees). */
void broker_state_orphan(struct broker *b);

/* The loop's work for this job outside the calls (its http client's
 * sockets and timer, the finished transfers' replies): marked before,
 * charged to the budget after. Each job has an http client of its own (a
 * libcurl multi handle driving only its transfers), so whatever that
 * work costs is this job's, whichever of its transfers it was for, and
 * however many jobs share the loop. */
void broker_cpu_mark(struct timespec *t0);
void broker_cpu_charge(struct broker *b, const struct timespec *t0);

/* The reply message to call `id` with `result` (which it consumes), as
 * JSON text (malloc'd) in *text: 0, or -ENOMEM. A reply longer than one
 * message (CHAN_MAX_MSG) is the call's error instead, its payload
 * dropped. When the call left bytes in b->payload, the reply says how
 * many ("payload": N) and they follow it as raw datagrams of at most
 * CHAN_MAX_MSG bytes, no JSON escaping either side; the caller sends
 * them, then frees them with broker_payload_done. */
int broker_reply(struct broker *b, int64_t id, json_t *result, char **text);
void broker_payload_done(struct broker *b);

#endif
