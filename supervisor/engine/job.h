/* One job: read the script, take a uid, clone the jail, serve its channel
 * and pipes on the front-end's loop, and report how it ended. A job has no
 * process-global state and handles no signal of its own: the front-end
 * owns the loop, the output (a sink) and the signals, and passes these on
 * with job_signal(). */
#ifndef JR_JOB_H
#define JR_JOB_H

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/proto.h"
#include "jail/jail.h"
#include "supervisor/broker/broker.h"
#include "supervisor/engine/cgpool.h"
#include "supervisor/engine/cgroup.h"
#include "supervisor/engine/loop.h"
#include "supervisor/engine/outq.h"

/* Where job cgroups go unless --cgroup-parent says otherwise. */
#define CGROUP_PARENT_DEFAULT "jailrun"

/* "256 MiB", "2 GiB", "1000 bytes": sizes in the user's terms. */
void format_size(uint64_t bytes, char *out, size_t size);

/* Profile exec's writable scratch directory, unless told otherwise. */
#define JOB_SCRATCH_DEFAULT (64UL << 20)

/* Scripts larger than this are refused before anything is cloned. */
#define JOB_MAX_SCRIPT (16 * 1024 * 1024)

struct spawn;

struct warm;

/* How a session's cell ended (entry JAIL_ENTRY_SESSION, job_execute). */
struct job_exec_result {
        unsigned id;
        int ok;
        const char *etype, *emsg, *traceback;  /* "" when ok */
        const char *value;           /* repr of its final expression, or NULL */
        long line;                   /* 0 when unknown */
        double seconds;
        int jail_gone;               /* the session's jail died with it (the job ends) */
};

struct job_opts {
        enum jail_profile profile;   /* kernel side */
        enum jail_entry entry;       /* what the runtime does */
        const char *profile_name;    /* worker, strategy, exec */
        const char *policy_json;     /* the effective policy, for the jail */
        const char *script_path;
        unsigned ticks;              /* worker: tick(ctx) calls; 0 for a load */
        int forever;                 /* worker with --interval and no --ticks: until stopped */
        double interval_s;           /* worker: a tick every this long; 0 = one after another */
        double tick_timeout_s;       /* worker: TimeoutError inside the tick past this ... */
        double tick_grace_s;         /* ... and the jail replaced this much later */
        double timeout_s;            /* wall clock for the whole job; 0 = none */
        int json;
        int verbose;
        int argc;                    /* exec: script arguments */
        char *const *argv;
        uid_t uid_lo, uid_hi;
        unsigned long scratch_bytes;
        int inet;                    /* exec: TCP sockets allowed in the jail (its network holds only lo) */
        int cold;                    /* never from a warm zygote (exec.programs: a zygote's root is fixed) */
        uint64_t memory;             /* bytes */
        double cpus;                 /* cores */
        unsigned pids;               /* tasks */
        double cpu_time_s;           /* 0 = none */
        const char *cgroup_parent;
        struct cg_pool *cgpool;      /* groups made ahead (jaild), or NULL: one made per job */
        const char *job_id;          /* names its cgroup ("job-ID") and seeds its uid pick */
        int sweep_stale;             /* first remove groups of jobs of dead jailruns */
        uint64_t log_max_bytes;      /* message text per job; 0 = no limit */
        struct broker_cfg broker;    /* ctx services: namespace, state store, limits */
        /* Backtest (entry JAIL_ENTRY_BACKTEST). */
        const char *bars_path;
        const json_t *params;        /* an object */
        double bar_timeout_s;        /* the jail's soft budget per bar */
        double bar_grace_s;          /* past budget + grace without news, the jail is killed */
        double abort_percent;        /* the 5 % rule */
        unsigned abort_min;
        int progress;                /* a progress line on stderr */
        const char *report_path;     /* --report: the file, "-" for stdout; NULL for none */
        int report_format;           /* enum btr_format */
        uint64_t report_max;         /* --report-max: bytes */
        int show_version;
        /* Worker (jaild): ticks only when asked (job_tick), and whose
         * results it hears of; the name of the front-end in its messages. */
        int manual;
        void (*on_tick)(void *data, unsigned id, int ok, const char *etype, const char *emsg, double seconds);
        void *tick_data;             /* for on_tick and on_jailed */
        void (*on_jailed)(void *data, long setup_us);  /* each jail passed its checks */
        /* Session: each cell's end, after everything it printed reached
         * the sink. */
        void (*on_exec)(void *data, const struct job_exec_result *r);
        void (*on_ready)(void *data);  /* the jail's runtime is ready for its first tick or cell */
        const char *who;             /* "jailrun" when NULL */
        /* Clones a jail; NULL for the real thing (spawn_jail, and for a
         * worker's later jails its zygote). The engine's own tests put a
         * fake jail here: a process that speaks the channel, no jail. */
        int (*spawn)(void *ctx, const struct jail_cfg *cfg, int sync_wr, struct cg_job *cg, struct spawn *out,
                     struct jr_err *err);
        /* A worker's later jails are cloned from the front-end itself, not
         * from a zygote of its own (jaild: no process per worker). Safe as
         * the jail program is exec'd before any user code: the copy of the
         * front-end's memory a clone starts with is gone by then; only the
         * job's own configuration crosses (jail/jail.c). */
        int no_zygote;
        /* A warm zygote of the job's profile (engine/warm.h), owned by the
         * front-end: jails it can run are cloned from it, the others (and
         * any while it is not ready) start cold. NULL: all cold. */
        struct warm *warm;
        /* The script itself (copied at the start), instead of reading
         * script_path, which then only names it. */
        const char *script_text;
        size_t script_len;
        void *spawn_ctx;
};

struct job_result {
        unsigned warm_starts;        /* jails cloned from a warm zygote */
        enum job_status status;
        int exit_code;
        char etype[128];
        char emsg[4096];
        long line;                   /* 0 when unknown */
        char traceback[16384];       /* user frames of the first error, may be "" */
        int stdout_mid_line;         /* the jail's last stdout byte was not a newline */
        struct cg_stats cg;          /* kernel accounting; -1 where unavailable */
        const char *backend;         /* cgroup backend used */
        unsigned ticks_done;
        unsigned ticks_failed;       /* worker: ticks that raised, timed out or died */
        unsigned restarts;           /* worker: jails started after the first */
        unsigned reloads;            /* worker: SIGHUP's scripts that loaded */
        unsigned reloads_failed;     /* ... and that did not (the one before ran on) */
        uint64_t slots_skipped;      /* worker --interval: slots no tick ran in */
        long wall_ms;
        long setup_us;               /* clone to the jail's "jailed" message, supervisor clock */
        long cg_setup_us;            /* creating the job's cgroup and applying its limits */
        long cg_teardown_us;         /* killing what is left in it and removing it */
        long cpu_ms;
        int64_t supervisor_cpu_us;   /* jailrun's own CPU (RUSAGE_SELF) at the job's end */
        int64_t ctx_cpu_us;          /* of it, what the job's messages and transfers used (the budget's count) */
        int64_t ctx_refused;         /* calls refused for that budget */
        json_t *violations;          /* --check: what the validator found (owned) */
        uint64_t log_dropped;        /* messages dropped past log_max_bytes */
        /* Backtest. */
        json_t *report;              /* the report's summary, owned; NULL if the run never started */
        int report_failed;           /* --report could not be written (said on stderr) */
        long peak_rss_kib;           /* jailrun's own peak resident memory (not its jails') */
        uint64_t bars, bars_run, bars_failed, signals, orders;
        uint32_t bar_us_p50, bar_us_p99, bar_us_max;
        long run_us;                 /* from the run message to the run's result */
};

/* Most bytes of a bars file. */
#define JOB_MAX_BARS_FILE (1024UL << 20)

/* Where a job's output goes: its notes and the jail's log on err, the
 * jail's stdout (profile exec) and the front-end's results on out. The
 * front-end owns the queues (jailrun's write to fds 1 and 2, jaild's keep
 * what a worker printed); the job stops reading its jail while one is full. */
struct sink {
        struct outq out, err;
};

/* Queued output beyond which a jail is no longer read. */
#define SINK_LIMIT (256 * 1024)

struct job;
typedef void (*job_end_fn)(struct job *j, void *data);

/* Starts a job on the loop; *res is filled as it goes and is final when
 * on_end runs (after the loop's batch, never inside job_start). Returns 0
 * with *out set, or -errno for a failure before any jail existed (said on
 * stderr; usage errors set res->exit_code = EXIT_USAGE). o, s and res must
 * outlive the job. */
int job_start(struct loop *l, const struct job_opts *o, struct sink *s, struct job_result *res,
              job_end_fn on_end, void *data, struct job **out);

/* A signal for the job: SIGTERM stops gently (a worker with an interval
 * finishes its tick), SIGHUP reloads a worker's script, SIGINT, SIGQUIT
 * and a second SIGTERM stop at once. */
void job_signal(struct job *j, int sig);

struct policy;
/* The options a decoded policy gives: limits, time budgets, the broker's
 * and http's settings. The front-end's own overrides come after. */
void job_use_policy(struct job_opts *o, const struct policy *p);
/* The policy's exec.programs, each a regular, executable file owned by
 * root and writable by no one else (what the jail will run, bound
 * read-only where it is). 0, or -errno with err naming the path. */
int job_programs_check(const json_t *policy, const char *what, struct jr_err *err);
/* A parent for job groups: one or more plain names below the root (never
 * the root itself), none of them a job-N or pool-N name (those the sweeps
 * remove). 1 if valid. */
int job_valid_cgroup_parent(const char *p);
/* A worker name: 1 to 64 of [A-Za-z0-9._-], not starting with '.'. */
int job_valid_name(const char *s);
/* A worker's default name from its script's file name (see opts.c). */
void job_default_name(const char *script, char *out, size_t size);

/* The result as one JSON object {status, error, exit_code, stats[,
 * backtest]} (jailrun --json, jaild's POST /v1/jobs); NULL without memory. */
json_t *job_result_json(const struct job_opts *o, const struct job_result *r);
/* "ok", "error", "timeout", ... */
const char *job_status_word(enum job_status s);
/* A JSON string of s, cleaned to UTF-8 first if it is not; NULL without memory. */
json_t *jr_json_text(const char *s);

/* A tick now, out of schedule: its id, or -EBUSY while the worker is not
 * idle (loading, a tick in flight, restarting, stopping), -ESRCH once the
 * job has ended. Its result reaches o->on_tick. */
int job_tick(struct job *j);

/* A session (entry JAIL_ENTRY_SESSION, o->manual, o->forever): runs code
 * in the jail's interpreter, in the namespace earlier cells left, with a
 * TimeoutError raised in it past timeout_s; o->tick_grace_s later the jail
 * is killed and the job ends. Returns the cell's id, -EBUSY while the
 * session is not idle, -ESRCH once the job has ended, -EMSGSIZE when the
 * code does not fit one message (JOB_MAX_CELL), -ENOMEM. Its end reaches
 * o->on_exec, also when the jail dies with it in flight. */
int job_execute(struct job *j, const char *code, size_t len, double timeout_s);
/* Bytes of a cell's code (it and its JSON frame fit one message). */
#define JOB_MAX_CELL (CHAN_MAX_MSG / 2)

/* Where a job is, for a front-end's listing. */
enum job_phase { JOB_STARTING, JOB_IDLE, JOB_BUSY, JOB_WAITING, JOB_ENDED };
enum job_phase job_phase(const struct job *j);
/* Its cgroup's figures now (-1 where unknown). */
void job_usage(const struct job *j, struct cg_stats *out);

/* The jail's init (pid and pidfd), or -1 while none runs. */
pid_t job_pid(const struct job *j, int *pidfd);
/* Starts the group's memory peak again from its usage now: 1, or 0 where
 * the kernel cannot (v2 before 6.12), or -errno. */
int job_reset_peak(struct job *j);

/* Frees a job that ended (after on_end; on_end may call it). */
void job_free(struct job *j);

#endif
