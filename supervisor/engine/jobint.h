/* The engine's inside: a job (what lives as long as the job) and its run
 * (what lives as long as one jail), shared by the engine's files and by
 * nothing else. */
#ifndef JR_JOBINT_H
#define JR_JOBINT_H

#include <jansson.h>
#include <stdint.h>
#include <time.h>

#include "supervisor/broker/broker.h"
#include "supervisor/engine/backtest.h"
#include "supervisor/engine/job.h"
#include "supervisor/engine/log.h"
#include "supervisor/engine/loop.h"
#include "supervisor/engine/msg.h"
#include "supervisor/engine/spawn.h"
#include "supervisor/engine/uidlock.h"
#include "supervisor/engine/warm.h"
#include "supervisor/engine/zygote.h"

/* Raw output of a worker (native writes to fd 1/2; print() goes to the
 * log) is relayed up to this many bytes per job. */
#define WORKER_RAW_OUTPUT_MAX (1024 * 1024)
/* Bytes the supervisor reads from one jail per second (channel and pipes
 * together), and the burst it allows. Decoding and relaying them is work
 * done on the job's behalf outside the job's cgroup: this bounds it. */
#define READ_RATE (4.0 * 1024 * 1024)
#define READ_BURST (8.0 * 1024 * 1024)
/* A backtest's batches are its report, parsed, checked and encoded again
 * at ~65 ns a byte (bench/RESULTS.md): at this rate up to about one core
 * of the supervisor's, ~290 000 small signals a second (jailrun-backtest(7)). */
#define BT_READ_RATE (16.0 * 1024 * 1024)

/* What a log message or a line of raw output costs on top of its text,
 * against the log and output budgets: about its printed frame, so empty
 * lines cannot print without end. */
#define LOG_ENTRY_COST 48

/* A backtest's jail reports at least this often while bars run. */
#define BAR_REPORT_S 0.25

/* Datagrams or pipe reads handled per wake-up: a flooding jail must not
 * keep the loop from its timers and signals. */
#define BATCH 64

/* A worker's script text, shared by the next jail, the current one and
 * the last that loaded. */
struct script {
        char *text;
        size_t len;
        unsigned refs;
        int reload;  /* read again on SIGHUP */
};

struct script *script_new(char *text, size_t len, int reload);
struct script *script_ref(struct script *sc);
void script_unref(struct script **sc);

/* How far one jail got. */
enum phase {
        PH_CLONED,   /* cloned; only a set-up report may come */
        PH_FATAL,    /* it reported a set-up failure */
        PH_JAILED,   /* its C code reported every check passed; user code runs */
        PH_READY,    /* worker or backtest: the module loaded */
};

/* One jail's life: replaced whole when a worker's jail is replaced. */
struct run {
        struct spawn sp;
        struct watch chan, out, err, pid;
        struct watch http, http_timer;  /* the broker's transfers (this jail's) */
        struct watch state, state_timer;  /* the broker's Redis store, while this jail runs */
        enum phase phase;
        int exited;               /* its init is gone */
        int ended;                /* a terminal status is set; the jail is being killed */
        int restarting;           /* we killed it: it is being replaced (or the job stops) */
        int shutdown_sent;        /* we asked it to stop ... */
        int shutdown_killed;      /* ... and killed it when it did not, limits.tick_grace later */
        int inflight;             /* a tick (id job->sent) or on_error awaits its result */
        int on_error_inflight;
        int final_result;         /* a load error (worker) or the script's error (exec) came */
        int paused;               /* our output backed up, or throttled: the jail is not read */
        int throttled;            /* out of budget: the jail is not read until the timer */
        int cpu_waiting;          /* the throttle is the CPU budget's (not the read budget's) */
        int jail_oom;             /* its processes were killed at the memory limit */
        int grace_armed;          /* its channel closed: it has CHAN_CLOSE_GRACE_MS to exit */
        double tokens;            /* read budget, in bytes (READ_RATE, READ_BURST) */
        struct timespec refilled;
        struct timespec cloned;
        double tick_waited;       /* seconds the tick's hard limit waited for our reader */
        int tick_held;            /* our output held the jail back during this tick */
        char reload_error[256];   /* why a reloaded script did not load */
        struct line_buf raw[2];   /* worker fd 1, 2 */
};

struct job {
        const struct job_opts *o;
        struct job_result *res;
        struct loop *loop;
        struct sink *sink;
        job_end_fn on_end;
        void *end_data;
        struct run *run;          /* the jail now; NULL between two */
        struct jail_cfg cfg;      /* what each jail is cloned with */
        char program[4096];
        char *buf;                /* one datagram */
        struct cg_host cgh;
        struct cg_job cg;
        struct uidlock lock;
        int bars_fd;
        struct timer deadline, cpu, grace, throttle, bar, next_slot, tick, backoff;
        struct watch oom;         /* v1: the memory controller's OOM eventfd */
        struct hook flush;
        struct defer gone, done;
        struct timespec started;  /* the job's start, for --timeout across jails */
        int have_error;
        int finished;             /* on_end is due or ran */
        int dropped_noted;        /* the worker-output cap was reported */
        size_t raw_bytes;
        uint64_t log_bytes;       /* message text logged so far */
        uint64_t log_dropped;     /* messages dropped past the log cap */
        unsigned cpu_noted;       /* said that its supervisor CPU budget is spent */
        unsigned sent;            /* id of the last tick sent */
        struct broker broker;     /* ctx calls */
        struct backtest bt;
        struct timespec progress_at;
        int progress_shown;
        struct timespec run_sent; /* when the tick or the backtest's run began */
        double cell_timeout;      /* session: the cell in flight's soft limit */
        /* Worker lifecycle (across jails). */
        struct zygote zyg;        /* clones every jail after the first */
        struct script *next;      /* what the next jail runs (SIGHUP: the text read again) */
        struct script *cur;       /* what this jail runs; next != cur: a reload waits */
        struct script *good;      /* the last that loaded (reached ready) */
        int scheduled;            /* the first tick ran: sched0 and slot hold */
        struct timespec sched0;   /* slot k starts at sched0 + k * interval */
        uint64_t slot;            /* the slot of the last tick sent */
        int stopping;             /* SIGTERM: stop after the tick in flight */
        int restart_now;          /* the next jail for a reload: no back-off */
        int on_error_pending;     /* a restarted jail's first task: on_error */
        json_t *pending_error;    /* {type, message, line, tick} for it */
        unsigned fails;           /* failed jails in a row, for the back-off */
        int in_backoff;           /* between two jails, waiting */
        struct first_error {      /* the first failure, kept while an end of ours overwrites it */
                char etype[sizeof ((struct job_result *)0)->etype];
                char emsg[sizeof ((struct job_result *)0)->emsg];
                char traceback[sizeof ((struct job_result *)0)->traceback];
                long line;
        } *first;
        int64_t oom_seen;         /* the group's OOM kills before this jail */
};

/* job.c: the lifecycle. */
long us_since(const struct timespec *t0);
long ms_since(const struct timespec *t0);
double secs_since(const struct timespec *t0);
void kill_jail(struct job *j);
void end_job(struct job *j, enum job_status st, const char *etype, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
void end_memory(struct job *j);
void arm_or_end(struct job *j, struct timer *t, double first, double every, const char *what);
void keep_first_error(struct job *j);
int start_jail(struct job *j, struct jr_err *err);
void next_jail(struct job *j);
void setup_failed(struct job *j, const struct jr_err *err);
void job_finish(struct job *j);
void job_note(struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* result.c: the status and exit code a jail's end (wait status) gives. */
void finish_status(struct job *j, int wstatus);

/* chan.c: the jail's channel and pipes. */
int send_json(struct job *j, json_t *m);
void sent_or_end(struct job *j, int r);
void drain_chan(struct job *j, uint32_t events, int max);
void drain_pipe(struct job *j, struct watch *w, int which, int max);
void drain_pipes_now(struct job *j);
void set_paused(struct job *j, int pause);
int chan_unread(int fd);
void on_chan(struct watch *w, uint32_t events);
void on_out(struct watch *w, uint32_t events);
void on_err(struct watch *w, uint32_t events);
void on_throttle(struct timer *t);
void on_http(struct watch *w, uint32_t events);
void on_state(struct watch *w, uint32_t events);
int flush_sink(struct hook *h);
int log_charge(struct job *j, uint64_t cost);
void on_log(struct job *j, const struct msg *m);
void on_error_result(struct job *j, const struct msg *m);

/* worker.c: ticks, their limits, restarts, reloads, signals. */
int reload_waiting(const struct job *j);
void send_run_timer(struct job *j);
void next_tick_or_stop(struct job *j);
void on_result(struct job *j, const struct msg *m);
void fail_in_flight(struct job *j, const char *type, const char *msg);
void on_slot(struct timer *t);
void on_tick_timer(struct timer *t);
int gentle_signal(struct job *j, int sig);
int wants_restart(struct job *j, int ws);
void between_jails(struct job *j);
void on_backoff(struct timer *t);
void backoff_signal(struct job *j, int sig);
void end_waiting(struct job *j, int sig);
void end_between(struct job *j, int sig);
void crash_reason(struct job *j, int ws, char *type, size_t tsize, char *msg, size_t msize);

/* btdrive.c: driving a backtest. */
void arm_bar_watch(struct job *j);
void on_bars(struct job *j, const struct msg *m);
int backtest_result(struct job *j, const struct msg *m);
void on_bar_timer(struct timer *t);
void backtest_outcome(struct job *j);

#endif
