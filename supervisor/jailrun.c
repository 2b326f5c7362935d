/* jailrun: run one Python script in a kernel jail. See jailrun(1). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/fdio.h"
#include "common/parse.h"
#include "supervisor/engine/backtest.h"
#include "supervisor/engine/job.h"
#include "supervisor/engine/log.h"
#include "supervisor/engine/loop.h"
#include "supervisor/broker/state.h"
#include "supervisor/engine/outq.h"
#include "supervisor/engine/warm.h"
#include "policy/policy.h"

#define UID_RANGE_DEFAULT_LO 100000
#define UID_RANGE_DEFAULT_HI 165535
/* Below this are the system's own users: a jail must never be one. */
#define UID_RANGE_MIN 1000

#define SCRATCH_MAX (2048UL << 20)
#define MAX_SECONDS 31536000  /* a year */

static const char usage_text[] =
        "Usage: jailrun [OPTIONS] SCRIPT.py [-- ARGS...]\n"
        "Run a Python script in a kernel jail.\n\n"
        "  --profile NAME         worker: call tick(ctx) (default); strategy: load an\n"
        "                         on_bar_strategy(sdk, params) strategy; exec: run the script\n"
        "  --policy FILE          a JSON policy over the profile's, key by key (jailrun-policy(5))\n"
        "  --print-policy         print the effective policy and exit\n"
        "  --unsafe-python-layer  accept a policy that drops part of the Python layer of\n"
        "                         worker/strategy (testing one layer alone; never for untrusted code)\n"
        "  --check                validate the script without running it (exit 0 clean, 1 not)\n"
        "  --ticks N              worker: call tick(ctx) N times (default 1; with --interval,\n"
        "                         until stopped)\n"
        "  --interval DURATION    worker: a tick every DURATION (5s, 1m); SIGTERM stops after\n"
        "                         the tick in flight, SIGHUP reloads the script\n"
        "  --tick-timeout DURATION  worker: TimeoutError inside a tick past it (default 60s)\n"
        "  --name NAME            worker: its namespace in ctx.state (default: the script's name)\n"
        "  --state PATH|URL       worker: the ctx.state store, a SQLite file or\n"
        "                         redis://HOST[:PORT][/DB] or unix:///SOCKET[?db=N]\n"
        "                         (default $XDG_DATA_HOME/jailrun/state.sqlite)\n"
        "  --http-proxy URL       worker: send every ctx.http request through this proxy\n"
        "                         (http://HOST:PORT; the policy's http.proxy)\n"
        "  --secrets FILE         worker: the adapters' credentials (JSON, root's alone)\n"
        "  --workspace DIR        worker: the ctx.files directory\n"
        "                         (default $XDG_DATA_HOME/jailrun/workspaces/NAME)\n"
        "  --timeout SECONDS      wall-clock limit for the whole job (default 300, 0 = none;\n"
        "                         none with --interval)\n"
        "  --bars FILE            strategy: run a backtest over these bars (CSV or JSON lines)\n"
        "  --params FILE          backtest: the strategy's params (a JSON object)\n"
        "  --bar-timeout DURATION backtest: time per bar (default 800ms)\n"
        "  --report FILE          backtest: write the report there ('-': stdout)\n"
        "  --report-format FMT    backtest: json (one document, default) or jsonl (a signal a line)\n"
        "  --report-max SIZE      backtest: most bytes of signals in the report (default 4G)\n"
        "  --scratch-size SIZE    exec: size of the writable scratch dir (default 64M)\n"
        "  --uid-range LO-HI      host uids for jails (default 100000-165535)\n"
        "  --memory SIZE          memory limit (worker, strategy 256M, max 1G; exec 512M, max 2G)\n"
        "  --cpus N               CPU cores, fractions allowed (default 1, max 4)\n"
        "  --pids N               processes and threads (default 64, strategy 32; max worker 256,\n"
        "                         strategy 64, exec 1024)\n"
        "  --cpu-time SECONDS     CPU-time limit for the whole job (default none)\n"
        "  --cgroup-parent PATH   where job cgroups go, below the hierarchy root (default jailrun)\n"
        "  --json                 print one JSON result object at the end; logs as JSON lines\n"
        "  --verbose              print statistics\n"
        "  --warm[=MODULES]       clone the jails from a warm zygote importing MODULES (jaild's way)\n"
        "  --help, --version\n\n"
        "Exit status: worker 0 ok, 1 user code raised; exec the script's own; 2 usage or policy;\n"
        "3 jail set-up failed; 124 timeout; 128+N killed by signal N. See jailrun(1).\n";

__attribute__((format(printf, 1, 2)))
static int usage_error(const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "jailrun: ");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\nTry 'jailrun --help'.\n");
        va_end(ap);
        return EXIT_USAGE;
}

/* $XDG_DATA_HOME/jailrun/WHAT, else ~/.local/share/jailrun/WHAT. */
static int data_path(char *out, size_t size, const char *what)
{
        const char *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
        if (xdg && xdg[0] == '/')
                return jr_snprintf(out, size, "%s/jailrun/%s", xdg, what);
        return jr_snprintf(out, size, "%s/.local/share/jailrun/%s", home && *home ? home : "/root", what);
}

static int parse_uid_range(const char *s, struct job_opts *o)
{
        unsigned long lo, hi;
        char buf[64];
        if (jr_snprintf(buf, sizeof buf, "%s", s) < 0)
                return -EINVAL;
        char *dash = strchr(buf, '-');
        if (!dash)
                return -EINVAL;
        *dash = '\0';
        if (jr_parse_uint(buf, 0xFFFFFFFEUL, &lo) < 0 || jr_parse_uint(dash + 1, 0xFFFFFFFEUL, &hi) < 0 ||
            lo < UID_RANGE_MIN || hi < lo)
                return -EINVAL;
        o->uid_lo = (uid_t)lo;
        o->uid_hi = (uid_t)hi;
        return 0;
}

enum { OPT_PROFILE = 256, OPT_NAME, OPT_STATE, OPT_WORKSPACE, OPT_HTTP_PROXY, OPT_SECRETS, OPT_POLICY, OPT_PRINT_POLICY, OPT_CHECK, OPT_TICKS, OPT_TIMEOUT, OPT_JSON, OPT_VERBOSE, OPT_UIDS, OPT_SCRATCH,
       OPT_HELP, OPT_VERSION, OPT_MEMORY, OPT_CPUS, OPT_PIDS, OPT_CPU_TIME, OPT_CGROUP_PARENT, OPT_BARS,
       OPT_PARAMS, OPT_BAR_TIMEOUT, OPT_REPORT, OPT_INTERVAL, OPT_TICK_TIMEOUT, OPT_REPORT_FORMAT, OPT_REPORT_MAX, OPT_WARM,
       OPT_UNSAFE_PYTHON_LAYER };

static const struct option longopts[] = {
        { "profile", required_argument, NULL, OPT_PROFILE },
        { "policy", required_argument, NULL, OPT_POLICY },
        { "name", required_argument, NULL, OPT_NAME },
        { "state", required_argument, NULL, OPT_STATE },
        { "workspace", required_argument, NULL, OPT_WORKSPACE },
        { "http-proxy", required_argument, NULL, OPT_HTTP_PROXY },
        { "secrets", required_argument, NULL, OPT_SECRETS },
        { "print-policy", no_argument, NULL, OPT_PRINT_POLICY },
        { "unsafe-python-layer", no_argument, NULL, OPT_UNSAFE_PYTHON_LAYER },
        { "check", no_argument, NULL, OPT_CHECK },
        { "ticks", required_argument, NULL, OPT_TICKS },
        { "timeout", required_argument, NULL, OPT_TIMEOUT },
        { "scratch-size", required_argument, NULL, OPT_SCRATCH },
        { "uid-range", required_argument, NULL, OPT_UIDS },
        { "memory", required_argument, NULL, OPT_MEMORY },
        { "cpus", required_argument, NULL, OPT_CPUS },
        { "pids", required_argument, NULL, OPT_PIDS },
        { "cpu-time", required_argument, NULL, OPT_CPU_TIME },
        { "cgroup-parent", required_argument, NULL, OPT_CGROUP_PARENT },
        { "interval", required_argument, NULL, OPT_INTERVAL },
        { "tick-timeout", required_argument, NULL, OPT_TICK_TIMEOUT },
        { "bars", required_argument, NULL, OPT_BARS },
        { "params", required_argument, NULL, OPT_PARAMS },
        { "bar-timeout", required_argument, NULL, OPT_BAR_TIMEOUT },
        { "report", required_argument, NULL, OPT_REPORT },
        { "report-format", required_argument, NULL, OPT_REPORT_FORMAT },
        { "report-max", required_argument, NULL, OPT_REPORT_MAX },
        { "json", no_argument, NULL, OPT_JSON },
        { "warm", optional_argument, NULL, OPT_WARM },
        { "verbose", no_argument, NULL, OPT_VERBOSE },
        { "help", no_argument, NULL, OPT_HELP },
        { "version", no_argument, NULL, OPT_VERSION },
        { NULL, 0, NULL, 0 },
};

/* What the command line asks of the policy. */
struct cli {
        const char *profile;   /* NULL: the policy file's, else worker */
        const char *policy;
        int print_policy;
        int unsafe_python_layer; /* accept a partial Python layer (testing) */
        int check;
        int ticks_given;
        const char *http_proxy;
        const char *params;      /* backtest: the params file */
        double bar_timeout;      /* backtest: seconds; < 0 = the policy's */
        const char *report;      /* backtest: where the report goes; "-" = stdout */
        int report_opts;         /* --report-format or --report-max given */
        double tick_timeout;     /* worker: seconds; < 0 = the policy's */
        const char *warm;        /* --warm: modules to preload, comma-separated; NULL: cold */
};

/* Returns -1 to go on, else the exit status. */
static int parse_opt(int c, const char *arg, struct job_opts *o, struct cli *cli)
{
        unsigned long v;
        switch (c) {
        case OPT_PROFILE:
                if (strcmp(arg, "worker") != 0 && strcmp(arg, "strategy") != 0 && strcmp(arg, "exec") != 0)
                        return usage_error("unknown profile '%s' (worker, strategy or exec)", arg);
                cli->profile = arg;
                return -1;
        case OPT_POLICY: cli->policy = arg; return -1;
        case OPT_NAME:
                if (!job_valid_name(arg))
                        return usage_error("--name wants 1 to 64 of [A-Za-z0-9._-], not '%s'", arg);
                o->broker.ns = arg;
                return -1;
        case OPT_STATE:
                if (!*arg || strlen(arg) >= PATH_MAX || !state_url_ok(arg))
                        return usage_error("--state wants a file path, redis://HOST[:PORT][/DB] or "
                                           "unix:///SOCKET[?db=N], not '%s'", arg);
                o->broker.state_url = arg;
                return -1;
        case OPT_SECRETS: {
                struct jr_err serr = { 0 };
                if (secrets_check(arg, &serr) < 0)
                        return usage_error("%s", serr.msg);
                o->broker.secrets = arg;
                return -1;
        }
        case OPT_HTTP_PROXY:
                cli->http_proxy = arg;
                return -1;
        case OPT_WORKSPACE:
                if (!*arg || strlen(arg) >= PATH_MAX - 64)
                        return usage_error("--workspace wants a directory path, not '%s'", arg);
                o->broker.files.root = arg;
                return -1;
        case OPT_PRINT_POLICY: cli->print_policy = 1; return -1;
        case OPT_UNSAFE_PYTHON_LAYER: cli->unsafe_python_layer = 1; return -1;
        case OPT_CHECK: cli->check = 1; return -1;
        case OPT_TICKS:
                if (jr_parse_uint(arg, 1000000000UL, &v) < 0 || v == 0)
                        return usage_error("--ticks wants a positive integer, not '%s'", arg);
                o->ticks = (unsigned)v;
                cli->ticks_given = 1;
                return -1;
        case OPT_TIMEOUT:
                if (jr_parse_real(arg, 0, MAX_SECONDS, &o->timeout_s) < 0)
                        return usage_error("--timeout wants seconds between 0 and %d, not '%s'", MAX_SECONDS, arg);
                return -1;
        case OPT_SCRATCH:
                if (jr_parse_size(arg, &v) < 0 || v < 4096 || v > SCRATCH_MAX)
                        return usage_error("--scratch-size wants a size from 4K to 2G, not '%s'", arg);
                o->scratch_bytes = v;
                return -1;
        case OPT_UIDS:
                if (parse_uid_range(arg, o) < 0)
                        return usage_error("--uid-range wants LO-HI with %d <= LO <= HI, not '%s'",
                                           UID_RANGE_MIN, arg);
                return -1;
        case OPT_MEMORY:
                if (jr_parse_size(arg, &v) < 0 || v == 0)
                        return usage_error("--memory wants a size such as 512M or 1G, not '%s'", arg);
                o->memory = v;
                return -1;
        case OPT_CPUS:
                if (jr_parse_real(arg, 0, 1e6, &o->cpus) < 0 || o->cpus == 0)
                        return usage_error("--cpus wants a positive number of cores, not '%s'", arg);
                return -1;
        case OPT_PIDS:
                if (jr_parse_uint(arg, 1000000UL, &v) < 0 || v == 0)
                        return usage_error("--pids wants a positive number of tasks, not '%s'", arg);
                o->pids = (unsigned)v;
                return -1;
        case OPT_CPU_TIME:
                if (jr_parse_real(arg, 0, MAX_SECONDS, &o->cpu_time_s) < 0)
                        return usage_error("--cpu-time wants seconds between 0 and %d, not '%s'", MAX_SECONDS, arg);
                return -1;
        case OPT_CGROUP_PARENT:
                if (!job_valid_cgroup_parent(arg))
                        return usage_error("--cgroup-parent wants a path of names ([A-Za-z0-9._-], none "
                                           "'.', '..' or job-N) below the hierarchy's root, not '%s'", arg);
                o->cgroup_parent = arg;
                return -1;
        case OPT_INTERVAL:
                if (jr_parse_duration(arg, 0.001, MAX_SECONDS, &o->interval_s) < 0)
                        return usage_error("--interval wants a duration from 1ms to a year (5s, 1m), not '%s'", arg);
                return -1;
        case OPT_TICK_TIMEOUT:
                if (jr_parse_duration(arg, 0.001, 86400, &cli->tick_timeout) < 0)
                        return usage_error("--tick-timeout wants a duration from 1ms to 1 day (60s, 500ms), not '%s'",
                                           arg);
                return -1;
        case OPT_BARS:
                if (!*arg)
                        return usage_error("%s", "--bars wants a CSV or JSON-lines file of bars");
                o->bars_path = arg;
                return -1;
        case OPT_PARAMS: cli->params = arg; return -1;
        case OPT_REPORT: cli->report = o->report_path = arg; return -1;
        case OPT_REPORT_FORMAT:
                if (strcmp(arg, "json") != 0 && strcmp(arg, "jsonl") != 0)
                        return usage_error("--report-format wants json or jsonl, not '%s'", arg);
                o->report_format = strcmp(arg, "jsonl") == 0 ? BTR_JSONL : BTR_JSON;
                cli->report_opts = 1;
                return -1;
        case OPT_REPORT_MAX:
                if (jr_parse_size(arg, &v) < 0 || v < 1024)
                        return usage_error("--report-max wants a size of at least 1K (500M, 4G), not '%s'", arg);
                o->report_max = v;
                cli->report_opts = 1;
                return -1;
        case OPT_BAR_TIMEOUT:
                if (jr_parse_duration(arg, 0.001, 3600, &cli->bar_timeout) < 0)
                        return usage_error("--bar-timeout wants a duration from 1ms to 1h (800ms, 2s), not '%s'", arg);
                return -1;
        case OPT_JSON: o->json = 1; return -1;
        case OPT_VERBOSE: o->verbose = 1; return -1;
        case OPT_WARM: cli->warm = arg ? arg : WARM_PRELOAD_DEFAULT; return -1;
        case OPT_HELP: fputs(usage_text, stdout); return 0;
        case OPT_VERSION: o->show_version = 1; return -1;
        default: return usage_error("%s", "invalid option");
        }
}

/* "jailrun: TYPE: message" on stderr: both may hold what the jail sent
 * (an exception's words, the keys of a malformed message), so escaped. */
static void print_error(const char *etype, const char *emsg)
{
        struct outq q;
        outq_init(&q, STDERR_FILENO, SIZE_MAX);
        outq_puts(&q, "jailrun: ");
        log_escaped(&q, etype);
        outq_puts(&q, ": ");
        log_escaped(&q, emsg);
        outq_put(&q, "\n", 1);
        outq_flush_all(&q);
        outq_free(&q);
}

static void print_backtest(const struct job_result *r)
{
        log_msg("backtest %s: %llu bars, %llu run, %llu failed, %llu signals, %llu orders; per bar p50 %u us, "
                "p99 %u us, max %u us",
                json_string_value(json_object_get(r->report, "outcome")), (unsigned long long)r->bars,
                (unsigned long long)r->bars_run, (unsigned long long)r->bars_failed,
                (unsigned long long)r->signals, (unsigned long long)r->orders, r->bar_us_p50, r->bar_us_p99,
                r->bar_us_max);
        /* The jail's words, escaped. */
        struct outq q;
        outq_init(&q, STDERR_FILENO, SIZE_MAX);
        json_t *errors = json_object_get(r->report, "errors"), *e;
        const char *cat;
        json_object_foreach(errors, cat, e) {
                json_t *f = json_object_get(e, "first"), *line = json_object_get(f, "line");
                outq_printf(&q, "jailrun:   %s x%lld, first at bar %lld", cat,
                            (long long)json_integer_value(json_object_get(e, "count")),
                            (long long)json_integer_value(json_object_get(f, "bar")));
                if (json_is_integer(line))
                        outq_printf(&q, " (line %lld)", (long long)json_integer_value(line));
                outq_puts(&q, ": ");
                log_escaped(&q, json_string_value(json_object_get(f, "message")));
                outq_put(&q, "\n", 1);
        }
        if (r->status == JOB_ERROR && strcmp(r->etype, "BacktestAborted") == 0) {
                outq_puts(&q, "jailrun: BacktestAborted: ");
                log_escaped(&q, r->emsg);
                outq_put(&q, "\n", 1);
        }
        outq_flush_all(&q);
        outq_free(&q);
}

static void print_result(const struct job_opts *o, const struct job_result *r)
{
        if (o->json) {
                json_t *j = job_result_json(o, r);
                char *line = j ? json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
                json_decref(j);
                if (line) {  /* through a queue: a stalled reader does not hold a stop signal off */
                        fflush(stdout);
                        struct outq q;
                        outq_init(&q, STDOUT_FILENO, SIZE_MAX);
                        if (r->stdout_mid_line)
                                outq_put(&q, "\n", 1);  /* the result is always a line of its own */
                        outq_puts(&q, line);
                        outq_put(&q, "\n", 1);
                        outq_flush_all(&q);
                        outq_free(&q);
                        free(line);
                } else {
                        if (r->stdout_mid_line)
                                fputc('\n', stdout);  /* out of memory: the verdict still ends stdout */
                        printf("{\"status\":\"%s\",\"error\":{\"type\":\"InternalError\",\"message\":"
                               "\"the result could not be encoded\",\"line\":null,\"traceback\":\"\"},"
                               "\"exit_code\":%d,\"stats\":{}}\n", job_status_word(r->status), r->exit_code);
                }
                return;
        }
        if (r->report)
                print_backtest(r);
        /* User-code errors were printed as they came, with their traceback. */
        if (r->status != JOB_OK && r->status != JOB_ERROR)
                print_error(r->etype, r->emsg);
        else if (r->status == JOB_ERROR && r->line && o->entry != JAIL_ENTRY_SCRIPT)
                log_msg("failed at line %ld", r->line);
        if (o->verbose && r->backend)
                log_msg("%s: set-up %ld us, teardown %ld us", r->backend, r->cg_setup_us, r->cg_teardown_us);
        if (o->verbose && r->cg.peak_memory_bytes >= 0)
                log_msg("peak memory %lld bytes, cpu user %lld us, system %lld us, peak tasks %lld",
                        (long long)r->cg.peak_memory_bytes, (long long)r->cg.cpu_user_us,
                        (long long)r->cg.cpu_system_us, (long long)r->cg.pids_peak);
        if (o->verbose && o->entry == JAIL_ENTRY_TICKS)
                log_msg("wall %ld ms, cpu %ld ms, jail set-up %.1f ms, %u ticks (%u failed), %u restarts", r->wall_ms,
                        r->cpu_ms, (double)r->setup_us / 1000, r->ticks_done, r->ticks_failed, r->restarts);
        else if (o->verbose)
                log_msg("wall %ld ms, cpu %ld ms, jail set-up %.1f ms", r->wall_ms, r->cpu_ms,
                        (double)r->setup_us / 1000);
}

/* Limits asked for on the command line, checked against the policy's
 * maxima (in *p, decoded from pol) and written into pol; then *p is
 * decoded again from pol, with every override in it, and the rest come
 * from it. */
static int apply_limits(struct job_opts *o, json_t *pol, struct policy *p)
{
        const char *prof = policy_profile_name(p->profile);
        char a[64], b[64];
        if (o->memory) {
                uint64_t max = p->limits.memory_max;
                format_size(o->memory, a, sizeof a);
                format_size(max, b, sizeof b);
                if (o->memory > max)
                        return usage_error("--memory %s is above the %s profile's maximum of %s", a, prof, b);
                if (o->memory < 32ULL << 20)
                        return usage_error("--memory %s is below the minimum of 32 MiB", a);
                policy_set(pol, "limits.memory", json_integer((json_int_t)o->memory));
        }
        if (o->cpus) {
                double max = p->limits.cpus_max;
                if (o->cpus > max)
                        return usage_error("--cpus %g is above the %s profile's maximum of %g", o->cpus, prof, max);
                if (o->cpus < 0.01)
                        return usage_error("--cpus %g is below the minimum of 0.01", o->cpus);
                policy_set(pol, "limits.cpus", json_real(o->cpus));
        }
        if (o->pids) {
                unsigned max = p->limits.pids_max;
                if (o->pids > max)
                        return usage_error("--pids %u is above the %s profile's maximum of %u", o->pids, prof, max);
                if (o->pids < 4)
                        return usage_error("--pids %u is below the minimum of 4", o->pids);
                policy_set(pol, "limits.pids", json_integer(o->pids));
        }
        if (o->timeout_s >= 0)
                policy_set(pol, "limits.timeout", json_real(o->timeout_s));
        if (o->cpu_time_s >= 0)
                policy_set(pol, "limits.cpu_time", json_real(o->cpu_time_s));
        struct jr_err err = { 0 };
        policy_release(p);
        if (policy_decode(pol, "policy", p, &err) < 0) {
                log_msg("%s", err.msg);
                return EXIT_USAGE;
        }
        job_use_policy(o, p);
        return -1;
}

/* --params: a JSON object of at most BT_PARAMS_MAX bytes and 32 levels,
 * read-only to the strategy. */
static int load_params(const char *path, json_t **out)
{
        struct stat st;
        /* O_NONBLOCK: a FIFO must not hang us before it is refused;
         * O_NOFOLLOW: as --bars (bt_bars_memfd). */
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
        if (fd < 0 && errno == ELOOP)
                return usage_error("--params %s: %s", path, BT_NO_LINK);
        if (fd < 0 || fstat(fd, &st) < 0)
                return usage_error("--params %s: %s", path, strerror(errno));
        if (!S_ISREG(st.st_mode) || st.st_size > BT_PARAMS_MAX)
                return usage_error("--params %s: not a regular file of at most 64 KiB", path);
        char text[BT_PARAMS_MAX];
        int r = jr_read_all(fd, text, (size_t)st.st_size);
        if (r < 0)
                return usage_error("--params %s: %s", path, r == -EIO ? "it shrank as it was read" : strerror(-r));
        char msg[256];
        r = bt_params_parse(text, (size_t)st.st_size, out, msg, sizeof msg);
        if (r < 0)
                return usage_error("--params %s%s%s", path, r == -EBADMSG ? ":" : ": ", msg);
        return -1;
}

/* --interval and --tick-timeout: a worker's ticks. */
static int setup_schedule(struct job_opts *o, const struct cli *cli, json_t *pol)
{
        struct jr_err perr = { 0 };
        if (o->entry != JAIL_ENTRY_TICKS)
                return usage_error("%s", "--interval and --tick-timeout are for running profile worker");
        if (cli->tick_timeout >= 0) {
                policy_set(pol, "limits.tick_timeout", json_real(cli->tick_timeout));
                if (policy_check(pol, 1, "--tick-timeout", &perr) < 0)
                        return usage_error("%s", perr.msg);
        }
        if (o->interval_s > 0) {
                o->forever = !cli->ticks_given;
                /* A schedule runs until stopped: no wall-clock limit unless asked. */
                if (o->timeout_s < 0)
                        o->timeout_s = 0;
        }
        return -1;
}

/* --bars and what goes with it: a backtest of profile strategy. */
static int setup_backtest(struct job_opts *o, const struct cli *cli, json_t *pol, int strategy)
{
        struct jr_err perr = { 0 };
        if (!strategy || cli->check)
                return usage_error("%s", "--bars, --params, --bar-timeout and --report run a backtest: "
                                         "profile strategy, without --check");
        if (!o->bars_path)
                return usage_error("%s", "--params, --bar-timeout and --report need --bars");
        if (cli->report_opts && !cli->report)
                return usage_error("%s", "--report-format and --report-max need --report");
        o->entry = JAIL_ENTRY_BACKTEST;
        o->ticks = 1;
        if (cli->bar_timeout >= 0) {
                policy_set(pol, "backtest.bar_timeout", json_real(cli->bar_timeout));
                if (policy_check(pol, 1, "--bar-timeout", &perr) < 0)
                        return usage_error("%s", perr.msg);
        }
        json_t *params = NULL;
        if (cli->params) {
                int r = load_params(cli->params, &params);
                if (r >= 0)
                        return r;
        }
        o->params = params ? params : json_object();
        o->progress = !o->json && isatty(STDERR_FILENO);
        return -1;
}

/* The profile, entry and policy text the job runs with. */
static int setup_policy(struct job_opts *o, const struct cli *cli, json_t **pol)
{
        struct jr_err err = { 0 };
        _cleanup_(policy_release) struct policy p = { 0 };
        if (policy_load(cli->profile, cli->policy, pol, &err) < 0 || policy_decode(*pol, "policy", &p, &err) < 0 ||
            (!cli->unsafe_python_layer &&
             policy_check_python_layer(*pol, cli->policy ? cli->policy : "built-in profile", &err) < 0) ||
            job_programs_check(*pol, cli->policy ? cli->policy : "built-in profile", &err) < 0) {
                log_msg("%s", err.msg);
                return EXIT_USAGE;
        }
        o->profile_name = policy_profile_name(p.profile);
        int exec = p.profile == POLICY_EXEC, strategy = p.profile == POLICY_STRATEGY;
        o->profile = exec ? JAIL_PROFILE_EXEC : JAIL_PROFILE_WORKER;
        o->entry = cli->check ? JAIL_ENTRY_CHECK : exec ? JAIL_ENTRY_SCRIPT : strategy ? JAIL_ENTRY_LOAD
                                                                                     : JAIL_ENTRY_TICKS;
        if (cli->ticks_given && (exec || strategy || cli->check))
                return usage_error("--ticks is for running profile worker");
        if (o->entry == JAIL_ENTRY_LOAD || o->entry == JAIL_ENTRY_CHECK)
                o->ticks = 0;
        if (o->interval_s > 0 || cli->tick_timeout >= 0) {
                int r = setup_schedule(o, cli, *pol);
                if (r >= 0)
                        return r;
        }
        if (o->bars_path || cli->params || cli->report || cli->report_opts || cli->bar_timeout >= 0) {
                int r = setup_backtest(o, cli, *pol, strategy);
                if (r >= 0)
                        return r;
        }
        if (cli->http_proxy) {  /* checked like the policy's own */
                struct jr_err perr = { 0 };
                policy_set(*pol, "http.proxy", json_string(cli->http_proxy));
                if (policy_check(*pol, 1, "--http-proxy", &perr) < 0)
                        return usage_error("%s", perr.msg);
        }
        int r = apply_limits(o, *pol, &p);
        if (r >= 0)
                return r;
        if (cli->print_policy) {
                json_dumpf(*pol, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                fputc('\n', stdout);
                return 0;
        }
        return -1;
}

/* --check: one line per violation, FILE:LINE:COL: TYPE: reason, or JSON. */
static void print_check(const struct job_opts *o, const struct job_result *r)
{
        size_t i;
        json_t *v;
        if (o->json) {
                /* s:o takes the reference: the result's, or a new array's */
                json_t *j = json_pack("{s:s, s:s, s:o, s:i}", "file", o->script_path, "status",
                                      r->status != JOB_OK ? "error" : json_array_size(r->violations) ? "violations"
                                                                                                   : "clean",
                                      "violations", r->violations ? json_incref(r->violations) : json_array(),
                                      "exit_code", r->exit_code);
                if (j && r->status != JOB_OK)
                        json_object_set_new(j, "error", json_pack("{s:o, s:o}", "type", jr_json_text(r->etype), "message",
                                                                    jr_json_text(r->emsg)));
                if (j) {
                        json_dumpf(j, stdout, JSON_COMPACT | JSON_ENSURE_ASCII);
                        fputc('\n', stdout);
                        json_decref(j);
                }
                return;
        }
        if (r->status != JOB_OK) {
                print_error(r->etype, r->emsg);
                return;
        }
        struct outq q;
        outq_init(&q, STDOUT_FILENO, SIZE_MAX);
        json_array_foreach(r->violations, i, v) {
                log_escaped(&q, o->script_path);
                outq_printf(&q, ":%lld:%lld: ", (long long)json_integer_value(json_object_get(v, "line")),
                            (long long)json_integer_value(json_object_get(v, "col")));
                log_escaped(&q, json_string_value(json_object_get(v, "type")));
                outq_puts(&q, ": ");
                log_escaped(&q, json_string_value(json_object_get(v, "reason")));
                outq_put(&q, "\n", 1);
        }
        outq_flush_all(&q);
        outq_free(&q);
}

static int show_version(const struct job_opts *o)
{
        printf("jailrun %s\n", PACKAGE_VERSION);
        if (!o->verbose)
                return 0;
        struct cg_host h;
        struct jr_err err = { 0 };
        if (cg_detect(&h, &err) < 0)
                printf("cgroup backend: unknown (%s)\n", err.msg);
        else if (h.backend == CG_V2)
                printf("cgroup backend: cgroup v2 at %s\n", h.v2);
        else if (h.backend == CG_V1)
                printf("cgroup backend: cgroup v1 (memory at %s, pids at %s, cpu at %s, cpuacct at %s, "
                       "freezer at %s)\n", h.v1[CG_MEMORY], h.v1[CG_PIDS], h.v1[CG_CPU], h.v1[CG_CPUACCT],
                       h.v1[CG_FREEZER][0] ? h.v1[CG_FREEZER] : "none");
        else
                printf("cgroup backend: none: %s\n", h.why);
        return 0;
}

/* 0, 1 and 2 must be open before any other fd is made, so no pipe or
 * socket of ours can land on them. */
static void ensure_stdio(void)
{
        for (int fd = 0; fd < 3; fd++)
                if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
                        _exit(EXIT_SETUP);
        /* SIGCHLD ignored by whoever ran us (kept across exec) would reap
         * the jails before we read how they ended. */
        struct sigaction sa = { .sa_handler = SIG_DFL };
        if (sigaction(SIGCHLD, &sa, NULL) < 0)
                _exit(EXIT_SETUP);
}

/* The job on our loop: its end, and the signals we pass on to it. */
struct front {
        struct job *job;
        int done;
        struct watch sig;
};

static void on_job_end(struct job *j, void *data)
{
        (void)j;
        ((struct front *)data)->done = 1;
}

static void on_signal(struct watch *w, uint32_t events)
{
        (void)events;
        struct front *f = w->data;
        struct signalfd_siginfo si;
        while (read(w->fd, &si, sizeof si) == (ssize_t)sizeof si)
                if (f->job)
                        job_signal(f->job, (int)si.ssi_signo);
}

/* The job's output waits for the reader at the end, however slowly,
 * unless a signal comes meanwhile (outq_flush_all); after a stop at once,
 * what it takes now. */
static void sink_close(struct sink *s, const struct job_result *res)
{
        if (res->status == JOB_SIGNAL && strcmp(res->etype, "Interrupted") == 0) {
                outq_flush_some(&s->out);
                outq_flush_some(&s->err);
        } else {
                outq_flush_all(&s->out);
                outq_flush_all(&s->err);
        }
        outq_free(&s->out);
        outq_free(&s->err);
}

/* --warm: a zygote preloading `modules` (comma-separated), waited for
 * (its imports take what a cold start would); 0 or -errno said on stderr. */
static int warm_up(struct warm *w, struct loop *l, const struct job_opts *o, const char *modules)
{
        _cleanup_(json_decrefp) json_t *names = json_array();
        _cleanup_free_ char *copy = strdup(modules);
        for (char *save = NULL, *m = copy ? strtok_r(copy, ",", &save) : NULL; m; m = strtok_r(NULL, ",", &save))
                if (json_array_append_new(names, json_string(m)) < 0)
                        return log_errno(-ENOMEM, "--warm: out of memory");
        _cleanup_free_ char *text = names && copy ? json_dumps(names, JSON_COMPACT) : NULL;
        struct jr_err err = { 0 };
        if (!text)
                return log_errno(-ENOMEM, "--warm: out of memory");
        int r = warm_init(w, l, o->profile, text, WARM_FORKS_DEFAULT, &err);
        if (r < 0) {
                log_msg("--warm: %s", err.msg);
                return r;
        }
        while (!w->cur.ready && !w->last_error[0] && (r = loop_run_once(l, -1)) == 0)
                ;
        if (!w->cur.ready) {
                log_msg("--warm: no zygote%s%s", w->last_error[0] ? ": " : "", w->last_error);
                return -EIO;
        }
        return 0;
}

/* Runs the job to its end on a loop of our own. Returns 0, or -errno for
 * a failure before the jail existed (res->exit_code says which kind). */
static int run_job(const struct job_opts *o, const char *warm, sigset_t *sigs, struct job_result *res)
{
        struct loop l;
        struct sink s;
        struct front f = { .sig = WATCH_INIT };
        struct warm w = { 0 };
        struct job_opts wo = *o;
        _cleanup_close_ int sigfd = signalfd(-1, sigs, SFD_CLOEXEC | SFD_NONBLOCK);
        int r = sigfd < 0 ? -errno : loop_init(&l);
        if (r == 0 && (r = loop_watch(&l, &f.sig, sigfd, EPOLLIN, 1, on_signal, &f)) < 0)
                loop_close(&l);
        if (r < 0) {
                *res = (struct job_result){ .status = JOB_SETUP, .exit_code = EXIT_SETUP };
                return log_errno(r, "the event loop: %m");
        }
        if (warm && (r = warm_up(&w, &l, o, warm)) < 0) {
                warm_free(&w);
                loop_unwatch(&f.sig);
                loop_close(&l);
                *res = (struct job_result){ .status = JOB_SETUP, .exit_code = EXIT_SETUP };
                return r;
        }
        if (warm)
                wo.warm = &w;
        outq_init(&s.out, STDOUT_FILENO, SINK_LIMIT);
        outq_init(&s.err, STDERR_FILENO, SINK_LIMIT);
        r = job_start(&l, &wo, &s, res, on_job_end, &f, &f.job);
        while (r == 0 && !f.done) {
                int e = loop_run_once(&l, -1);
                if (e < 0) {  /* cannot wait: stop the job rather than spin */
                        log_errno(e, "epoll_wait: %m");
                        job_signal(f.job, SIGQUIT);
                }
        }
        if (r == 0)
                job_free(f.job);
        warm_free(&w);
        sink_close(&s, res);
        loop_unwatch(&f.sig);
        loop_close(&l);
        return r;
}

/* The params object setup_backtest made (o->params), freed on every way
 * out of main: the job only reads it. */
static void params_free(struct job_opts *o)
{
        json_decref((json_t *)o->params);
}

int main(int argc, char *argv[])
{
        ensure_stdio();
        _cleanup_(params_free) struct job_opts o = { .profile = JAIL_PROFILE_WORKER, .ticks = 1, .timeout_s = -1, .cpu_time_s = -1,
                              .uid_lo = UID_RANGE_DEFAULT_LO, .uid_hi = UID_RANGE_DEFAULT_HI,
                              .scratch_bytes = JOB_SCRATCH_DEFAULT, .cgroup_parent = CGROUP_PARENT_DEFAULT,
                              .report_max = BTR_MAX_DEFAULT };
        struct cli cli = { .bar_timeout = -1, .tick_timeout = -1 };
        int c;
        while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
                int r = parse_opt(c, optarg, &o, &cli);
                if (r >= 0)
                        return r;
        }
        if (o.show_version)
                return show_version(&o);
        _cleanup_(json_decrefp) json_t *pol = NULL;
        int pr = setup_policy(&o, &cli, &pol);
        if (pr >= 0)
                return pr;
        _cleanup_free_ char *policy_json = json_dumps(pol, JSON_COMPACT);
        if (!policy_json) {
                log_msg("out of memory");
                return EXIT_SETUP;
        }
        o.policy_json = policy_json;
        if (optind >= argc)
                return usage_error("%s", "no script given");
        o.script_path = argv[optind++];
        char name[72], state[PATH_MAX], ws[PATH_MAX], what[96];
        if (!o.broker.ns) {
                job_default_name(o.script_path, name, sizeof name);
                o.broker.ns = name;
        }
        if (!o.broker.state_url) {
                if (data_path(state, sizeof state, "state.sqlite") < 0)
                        return usage_error("%s", "no default for --state: $HOME is too long");
        } else if (state_url_resolve(o.broker.state_url, state, sizeof state) < 0) {
                return usage_error("%s", "--state: too long once its host is resolved");
        }
        o.broker.state_url = state;
        if (!o.broker.files.root) {
                snprintf(what, sizeof what, "workspaces/%s", o.broker.ns);
                if (data_path(ws, sizeof ws, what) < 0)
                        return usage_error("%s", "no default for --workspace: $HOME is too long");
                o.broker.files.root = ws;
        }
        if (optind < argc && strcmp(argv[optind], "--") == 0)
                optind++;
        o.argc = argc - optind;
        o.argv = argv + optind;
        if (o.argc && o.entry != JAIL_ENTRY_SCRIPT)
                return usage_error("%s", "script arguments are for profile exec only");
        if (geteuid() != 0) {
                log_msg("must run as root (it creates namespaces, id maps and uid locks)");
                return EXIT_SETUP;
        }
        /* Signals become events on the loop's signalfd; blocked before the
         * clone so none can end us half-way through set-up. */
        sigset_t set;
        loop_block_signals(&set);

        struct job_result res;
        o.sweep_stale = 1;
        if (run_job(&o, cli.warm, &set, &res) < 0 && res.exit_code == EXIT_USAGE)
                return EXIT_USAGE;
        /* Stopped at once by a signal the job's loop took: pending again
         * (blocked), so what is printed now is not held by a stalled reader
         * (outq_flush_all gives up once one is pending). */
        int sig = res.exit_code - 128;
        if (res.status == JOB_SIGNAL && strcmp(res.etype, "Interrupted") == 0 &&
            (sig == SIGINT || sig == SIGTERM || sig == SIGQUIT))
                raise(sig);
        if (res.report_failed && res.exit_code == 0)
                res.exit_code = EXIT_USER_ERROR;
        if (o.entry == JAIL_ENTRY_CHECK)
                print_check(&o, &res);
        else
                print_result(&o, &res);
        json_decref(res.violations);
        json_decref(res.report);
        fflush(stdout);
        return res.exit_code;
}
