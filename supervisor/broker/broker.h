/* The broker: what the supervisor does on the jail's behalf when its code
 * calls ctx.state (and, later, ctx.files and ctx.http). Every call comes
 * from the jail and is hostile: its arguments are checked here, and what
 * the user got wrong (a key too long, a value too large) is an error dict
 * for the user, while what only a broken or hostile runtime sends (an
 * unknown operation, arguments of the wrong shape) is a protocol error. */
#ifndef JR_BROKER_H
#define JR_BROKER_H

#include <jansson.h>
#include <stdint.h>
#include <time.h>

#include "common/err.h"
#include "supervisor/broker/adapters.h"
#include "supervisor/broker/files.h"
#include "supervisor/broker/http.h"
#include "supervisor/broker/state.h"

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
        struct state_store *state;  /* opened by the first state call, after the clone */
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

/* Performs one call (or refuses it, over the CPU budget; the caller
 * charges it with the message that carried it).
 * Returns its result (a new reference: the operation's dict, or
 * {"error": reason}), or NULL with err when the call breaks the protocol. */
json_t *broker_call(struct broker *b, const char *op, json_t *args, struct jr_err *err);

/* The loop's work for this job outside the calls (its http client's
 * sockets and timer, the finished transfers' replies): marked before,
 * charged to the budget after. Each job has an http client of its own (a
 * libcurl multi handle driving only its transfers), so whatever that
 * work costs is this job's, whichever of its transfers it was for, and
 * however many jobs share the loop. */
void broker_cpu_mark(struct timespec *t0);
void broker_cpu_charge(struct broker *b, const struct timespec *t0);

/* Starts an http.request call (or refuses it, over the CPU budget): NULL
 * when it is under way (its reply comes from http_done, see broker.http),
 * else an immediate result, or NULL with err->errnum EPROTO. */
json_t *broker_http(struct broker *b, int64_t id, json_t *args, struct jr_err *err);
/* The same for adapter.send and adapter.request. */
json_t *broker_adapter(struct broker *b, const char *op, int64_t id, json_t *args, struct jr_err *err);

/* The reply message to call `id` with `result` (which it consumes), as
 * JSON text (malloc'd), or NULL when out of memory. When the call left
 * bytes in b->payload, the reply says how many ("payload": N) and they
 * follow it as raw datagrams of at most CHAN_MAX_MSG bytes, no JSON
 * escaping either side; the caller sends them, then frees them with
 * broker_payload_done. */
char *broker_reply(struct broker *b, json_int_t id, json_t *result);
void broker_payload_done(struct broker *b);

#endif
