/* jaild: the root-run daemon that hosts many jailed workers and one-shot
 * jobs on one event loop, driven over an HTTP API on a unix socket
 * (jaild(8), docs/api.md). */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/proto.h"
#include "supervisor/engine/cgroup.h"
#include "supervisor/engine/log.h"
#include "supervisor/engine/uidlock.h"
#include "supervisor/jaild/daemon.h"
#include "supervisor/jaild/notify.h"

static const char usage_text[] =
        "Usage: jaild [--config FILE] [--check]\n"
        "The daemon that hosts jailed workers and jobs behind an HTTP API on a unix socket.\n"
        "  --config FILE  the configuration (JSON, jaild(8)); without it, every default\n"
        "  --check        read and check the configuration, then exit (0: valid)\n"
        "  --help         this text\n"
        "  --version      the version\n";

void jlog_msg(struct jaild *d, int priority, const char *worker, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        jlogv(&d->log, priority, worker, NULL, fmt, ap);
        va_end(ap);
}

static void api_log(void *data, int priority, const char *line)
{
        jlog_msg(data, priority, NULL, "%s", line);
}

void count_error(struct jaild *d, const char *type)
{
        json_t *n = json_object_get(d->errors, type);
        json_object_set_new(d->errors, type, json_integer(json_integer_value(n) + 1));
}

/* --- the pool of live one-shot jobs ------------------------------------ */

static void waiter_expired(struct timer *t)
{
        struct waiter *w = t->data;
        struct jaild *d = w->d;
        pool_cancel(d, w);
        d->refused_pool++;
        w->fail(w);
}

void pool_take(struct jaild *d, struct waiter *w)
{
        w->d = d;
        w->deadline = (struct timer)TIMER_INIT;
        if (d->live < d->cfg->max_live_jobs && !d->waiting) {
                d->live++;
                return w->go(w);
        }
        if (timer_init(&d->loop, &w->deadline, 1, waiter_expired, w) < 0 ||
            timer_arm(&w->deadline, d->cfg->queue_wait > 0 ? d->cfg->queue_wait : 1e-3, 0) < 0) {
                timer_close(&w->deadline);
                d->refused_pool++;
                return w->fail(w);
        }
        struct waiter **p = &d->waiting;
        while (*p)
                p = &(*p)->next;
        w->next = NULL;
        *p = w;
        d->queued++;
}

void pool_cancel(struct jaild *d, struct waiter *w)
{
        for (struct waiter **p = &d->waiting; *p; p = &(*p)->next)
                if (*p == w) {
                        *p = w->next;
                        d->queued--;
                        break;
                }
        timer_close(&w->deadline);
}

void pool_give(struct jaild *d)
{
        d->live--;
        pool_kick(d);
}

/* Waiters take the slots there are. */
void pool_kick(struct jaild *d)
{
        while (d->waiting && d->live < d->cfg->max_live_jobs) {
                struct waiter *w = d->waiting;
                pool_cancel(d, w);
                d->live++;
                w->go(w);
        }
        maybe_done(d);
}

/* Draining ends once nothing runs. */
void maybe_done(struct jaild *d)
{
        if (d->draining && d->live == 0 && !d->waiting && workers_running(d) == 0 && sessions_running(d) == 0)
                d->done = 1;
}

/* --- options ---------------------------------------------------------- */

/* Keys an API client may not override: the ceilings the operator's
 * profiles set, and what reaches beyond the jail on the daemon's behalf
 * (adapters use the daemon's secrets; loopback and a proxy are the host's;
 * exec.programs binds host files into the jail). */
static const char *const operator_only[][2] = {
        { "limits", "memory_max" }, { "limits", "cpus_max" }, { "limits", "pids_max" },
        { "adapters", NULL },       { "http", "allow_addresses" }, { "http", "proxy" },
        { "exec", "programs" },
};

static int refused_key(const json_t *over, char *msg, size_t size)
{
        for (size_t i = 0; over && i < ELEMENTSOF(operator_only); i++) {
                json_t *v = json_object_get(over, operator_only[i][0]);
                if (v && operator_only[i][1])
                        v = json_is_object(v) ? json_object_get(v, operator_only[i][1]) : NULL;
                if (v) {
                        snprintf(msg, size, "policy.%s%s%s: set by the operator (jaild's profiles), not through the API",
                                 operator_only[i][0], operator_only[i][1] ? "." : "",
                                 operator_only[i][1] ? operator_only[i][1] : "");
                        return -EPERM;
                }
        }
        return 0;
}

/* The overrides of a job's policy: the operator's for its profile (the
 * configuration's "policy"), the API client's laid over them; NULL when
 * out of memory. */
static json_t *layered(const struct jaild *d, const char *profile, const json_t *overrides)
{
        _cleanup_(json_decrefp) json_t *op = d->cfg->policy ? json_loads(d->cfg->policy, 0, NULL) : json_object();
        const char *name = profile ?: json_string_value(json_object_get(overrides, "profile")) ?: "worker";
        json_t *mine = json_object_get(op, name);
        _cleanup_(json_decrefp) json_t *over = mine ? json_deep_copy(mine) : json_object();
        _cleanup_(json_decrefp) json_t *api = overrides ? json_deep_copy(overrides) : json_object();
        if (!op || !over || !api || json_object_update_recursive(over, api) < 0)
                return NULL;
        return TAKE_PTR(over);
}

int build_opts(struct jaild *d, struct job_opts *o, const char *profile, const json_t *overrides,
               char **policy_json, char *msg, size_t size)
{
        struct jr_err err = { 0 };
        if (refused_key(overrides, msg, size) < 0)
                return -EINVAL;
        _cleanup_(json_decrefp) json_t *over = layered(d, profile, overrides);
        _cleanup_(json_decrefp) json_t *pol = NULL;
        _cleanup_(policy_release) struct policy p = { 0 };
        if (!over || policy_apply(profile, over, "policy", &pol, &err) < 0 ||
            policy_decode(pol, "policy", &p, &err) < 0 || policy_check_python_layer(pol, "policy", &err) < 0 ||
            job_programs_check(pol, "policy", &err) < 0) {
                snprintf(msg, size, "%s", over ? err.msg : "out of memory");
                return -EINVAL;
        }
        o->profile_name = policy_profile_name(p.profile);
        o->profile = p.profile == POLICY_EXEC ? JAIL_PROFILE_EXEC : JAIL_PROFILE_WORKER;
        o->entry = p.profile == POLICY_EXEC ? JAIL_ENTRY_SCRIPT : p.profile == POLICY_STRATEGY ? JAIL_ENTRY_LOAD
                                                                                            : JAIL_ENTRY_TICKS;
        job_use_policy(o, &p);
        o->broker.adapters = json_incref(p.adapters);  /* the caller's, as long as o */
        o->scratch_bytes = JOB_SCRATCH_DEFAULT;
        o->uid_lo = d->cfg->uid_lo;
        o->uid_hi = d->cfg->uid_hi;
        o->cgroup_parent = d->cfg->cgroup_parent;
        o->cgpool = d->cgpool;
        o->broker.state_url = d->state_url;
        o->broker.secrets = d->cfg->secrets;
        o->json = 1;
        o->who = "jaild";
        o->no_zygote = 1;  /* jails exec a fresh program: no process per worker (engine/job.h) */
        o->warm = d->warm_on ? &d->warm[o->profile] : NULL;
        *policy_json = json_dumps(pol, JSON_COMPACT);
        if (!*policy_json) {
                snprintf(msg, size, "out of memory");
                return -ENOMEM;
        }
        return 0;
}

/* --- health and metrics ------------------------------------------------ */

static const char *const warm_names[] = { [JAIL_PROFILE_WORKER] = "worker", [JAIL_PROFILE_EXEC] = "exec" };

/* {"worker": {...}, "exec": {...}}: each warm zygote's state, or null
 * when zygotes are off. */
static json_t *zygotes_json(const struct jaild *d)
{
        if (!d->warm_on)
                return json_null();
        json_t *o = json_object();
        for (size_t i = 0; o && i < ELEMENTSOF(warm_names); i++) {
                const struct warm *w = &d->warm[i];
                json_t *z = json_pack("{s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s}", "ready", w->cur.ready, "pid",
                                      (json_int_t)w->cur.pid, "generation", (json_int_t)w->cur.gen, "forks",
                                      (json_int_t)w->cur.forks, "max_forks", (json_int_t)w->max_forks, "spawned",
                                      (json_int_t)w->spawned, "fallbacks", (json_int_t)w->fallbacks, "ended",
                                      (json_int_t)w->crashes, "lost", (json_int_t)w->lost, "last_error", w->last_error);
                if (!z || json_object_set_new(o, warm_names[i], z) < 0) {
                        json_decref(o);
                        return NULL;
                }
        }
        return o;
}

static void api_health(void *data, struct api_call *c)
{
        struct jaild *d = data;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        api_reply(c, 200, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:o}", "status", d->draining ? "draining" : "ok",
                                    "version", PACKAGE_VERSION, "workers", (json_int_t)workers_count(d), "jobs_running",
                                    (json_int_t)jobs_running(d), "jobs_queued", (json_int_t)d->queued, "max_live_jobs",
                                    (json_int_t)d->cfg->max_live_jobs, "uptime_s",
                                    (json_int_t)(now.tv_sec - d->started.tv_sec), "zygotes", zygotes_json(d)));
}

static void zygote_metrics(const struct jaild *d, FILE *f)
{
        if (!d->warm_on)
                return;
        static const char *const m[][2] = {
                { "jaild_zygote_ready", "gauge" },
                { "jaild_zygote_spawns_total", "counter" },
                { "jaild_zygote_fallbacks_total", "counter" },
                { "jaild_zygote_ended_total", "counter" },
                { "jaild_zygote_generation", "gauge" },
        };
        static const char *const help[] = {
                "1 when the profile's warm zygote is ready.",
                "Jails cloned from a warm zygote.",
                "Jails that started cold because the warm zygote could not clone them.",
                "Warm zygotes that died (they are made again after a back-off).",
                "Warm zygotes made so far (each replaced after zygote.max_forks jails).",
        };
        for (size_t k = 0; k < ELEMENTSOF(m); k++) {
                fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", m[k][0], help[k], m[k][0], m[k][1]);
                for (size_t i = 0; i < ELEMENTSOF(warm_names); i++) {
                        const struct warm *w = &d->warm[i];
                        unsigned long long v = k == 0 ? (unsigned long long)w->cur.ready
                                               : k == 1 ? w->spawned : k == 2 ? w->fallbacks : k == 3 ? w->crashes : w->gen;
                        fprintf(f, "%s{profile=\"%s\"} %llu\n", m[k][0], warm_names[i], v);
                }
        }
}

static const double bucket_s[HIST_BUCKETS] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                               0.1,   0.25,   0.5,   1,    2.5,   10 };

void hist_add(struct hist *h, double s)
{
        size_t i = 0;
        while (i < HIST_BUCKETS && s > bucket_s[i])
                i++;
        h->count[i]++;
        h->n++;
        h->sum += s;
}

void hist_print(FILE *f, const char *name, const char *help, const struct hist *h)
{
        fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
        uint64_t cum = 0;
        for (size_t i = 0; i < HIST_BUCKETS; i++) {
                cum += h->count[i];
                fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, bucket_s[i], (unsigned long long)cum);
        }
        fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, (unsigned long long)h->n, name,
                h->sum, name, (unsigned long long)h->n);
}

static void api_metrics(void *data, struct api_call *c)
{
        struct jaild *d = data;
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        if (!f)
                return api_reply_error(c, 500, "InternalError", "out of memory");
        workers_metrics(d, f);
        fprintf(f, "# HELP jaild_ticks_total Ticks that returned, by outcome.\n# TYPE jaild_ticks_total counter\n"
                "jaild_ticks_total{result=\"ok\"} %llu\njaild_ticks_total{result=\"error\"} %llu\n",
                (unsigned long long)d->ticks_ok, (unsigned long long)d->ticks_failed);
        fprintf(f, "# HELP jaild_errors_total Failed ticks and jobs, by error category.\n"
                "# TYPE jaild_errors_total counter\n");
        const char *type;
        json_t *n;
        json_object_foreach(d->errors, type, n) {
                fputs("jaild_errors_total{type=\"", f);
                for (const char *p = type; *p; p++)  /* a label value: only plain name characters */
                        fputc(strchr("\"\\\n", *p) || (unsigned char)*p < 0x20 ? '_' : *p, f);
                fprintf(f, "\"} %lld\n", (long long)json_integer_value(n));
        }
        fprintf(f, "# HELP jaild_jobs_total One-shot jobs that ended, by outcome.\n# TYPE jaild_jobs_total counter\n"
                "jaild_jobs_total{result=\"ok\"} %llu\njaild_jobs_total{result=\"error\"} %llu\n"
                "# HELP jaild_jobs_running One-shot jobs running.\n# TYPE jaild_jobs_running gauge\n"
                "jaild_jobs_running %zu\n# HELP jaild_queue_depth Jobs waiting for a live slot.\n"
                "# TYPE jaild_queue_depth gauge\njaild_queue_depth %u\n"
                "# HELP jaild_pool_timeouts_total Jobs refused with WorkerPoolTimeout.\n"
                "# TYPE jaild_pool_timeouts_total counter\njaild_pool_timeouts_total %llu\n",
                (unsigned long long)d->jobs_done, (unsigned long long)d->jobs_failed, jobs_running(d), d->queued,
                (unsigned long long)d->refused_pool);
        hist_print(f, "jaild_tick_seconds", "Ticks from sent to returned.", &d->tick_s);
        hist_print(f, "jaild_spawn_seconds", "Jails from clone to jailed (set-up checks passed).", &d->spawn_s);
        hist_print(f, "jaild_job_seconds", "One-shot jobs from start to end.", &d->job_s);
        zygote_metrics(d, f);
        jcgpool_metrics(d, f);
        sessions_metrics(d, f);
        if (fclose(f) != 0) {
                free(text);
                return api_reply_error(c, 500, "InternalError", "out of memory");
        }
        api_reply_text(c, 200, "text/plain; version=0.0.4", text, len);
        free(text);
}

static const struct api_ops ops = {
        .worker_create = api_worker_create, .worker_list = api_worker_list, .worker_get = api_worker_get,
        .worker_update = api_worker_update, .worker_delete = api_worker_delete, .worker_tick = api_worker_tick,
        .worker_pause = api_worker_pause,   .worker_resume = api_worker_resume, .worker_logs = api_worker_logs,
        .job_submit = api_job_submit,       .health = api_health,               .metrics = api_metrics,
        .session_create = api_session_create, .session_list = api_session_list, .session_get = api_session_get,
        .session_delete = api_session_delete, .session_execute = api_session_execute,
        .session_packages = api_session_packages, .session_file_get = api_session_file_get,
        .session_file_put = api_session_file_put, .session_file_delete = api_session_file_delete,
};

/* --- start, signals, stop ---------------------------------------------- */

/* SIGHUP: what can change without a restart does; the rest is said. */
static void reload_config(struct jaild *d)
{
        struct jaild_config *c = NULL;
        struct jr_err err = { 0 };
        notify_reloading("reloading the configuration");
        if (jaild_config_load(d->cfg_path, &c, &err) < 0) {
                jlog_msg(d, LOG_ERR, NULL, "SIGHUP: %s; the configuration in use stays", err.msg);
                notify_ready("the configuration in use stays (the new one is invalid)");
                return;
        }
        d->cfg->log_level = c->log_level;
        jlog_set_level(&d->log, (int)c->log_level);
        d->cfg->max_live_jobs = c->max_live_jobs;
        d->cfg->queue_wait = c->queue_wait;
        char *policy = d->cfg->policy;  /* for jails started from now on */
        d->cfg->policy = c->policy;
        c->policy = policy;
        int same = strcmp(c->socket_path, d->cfg->socket_path) == 0 && c->socket_mode == d->cfg->socket_mode &&
                   c->uid_lo == d->cfg->uid_lo && c->uid_hi == d->cfg->uid_hi &&
                   strcmp(c->cgroup_parent, d->cfg->cgroup_parent) == 0 && strcmp(c->registry, d->cfg->registry) == 0 &&
                   c->cgroup_pool_size == d->cfg->cgroup_pool_size && c->cgroup_pool_max == d->cfg->cgroup_pool_max &&
                   c->n_allow_uids == d->cfg->n_allow_uids && c->n_allow_gids == d->cfg->n_allow_gids;
        jaild_config_free(c);
        jlog_msg(d, LOG_NOTICE, NULL, "SIGHUP: configuration reloaded (log level, max_live_jobs, queue_wait, policy)%s",
                 same ? "" : "; changes to the socket, allow lists, uid range, cgroup parent or pool, or registry take a restart");
        pool_kick(d);  /* a larger pool takes waiters now */
        notify_ready("configuration reloaded");
}

/* Draining ran out of time: what still runs is stopped now. */
static void drain_over(struct timer *t)
{
        struct jaild *d = t->data;
        if (d->done || d->draining > 1)
                return;
        jlog_msg(d, LOG_WARNING, NULL, "drain: %zu jobs and %zu workers still running after %d s; stopped now",
                 jobs_running(d), workers_running(d), JAILD_DRAIN_S);
        d->draining = 2;
        workers_drain(d);
        jobs_drain(d);
        sessions_drain(d);
        maybe_done(d);
}

static void on_signal(struct watch *w, uint32_t events)
{
        (void)events;
        struct jaild *d = w->data;
        struct signalfd_siginfo si;
        while (read(w->fd, &si, sizeof si) == (ssize_t)sizeof si) {
                int sig = (int)si.ssi_signo;
                if (sig == SIGHUP) {
                        reload_config(d);
                } else if (sig == SIGTERM && !d->draining) {
                        d->draining = 1;
                        jlog_msg(d, LOG_NOTICE, NULL, "SIGTERM: draining (ticks and jobs in flight finish)");
                        notify_stopping("draining: ticks and jobs in flight finish");
                        if (timer_init(&d->loop, &d->drain, 1, drain_over, d) < 0 ||
                            timer_arm(&d->drain, JAILD_DRAIN_S, 0) < 0)
                                jlog_msg(d, LOG_WARNING, NULL, "drain: no timer; it waits for every job");
                        workers_drain(d);
                        jobs_drain(d);
                        sessions_drain(d);
                        maybe_done(d);
                } else {
                        jlog_msg(d, LOG_NOTICE, NULL, "signal %d: stopping now", sig);
                        notify_stopping("stopping now");
                        d->draining = 2;
                        workers_drain(d);
                        jobs_drain(d);
                        sessions_drain(d);
                        maybe_done(d);
                }
        }
}

/* An exclusive lock on path, held (the fd, close-on-exec) until we exit;
 * taken already: "TAKEN WHAT". */
static int hold_lock(const char *path, const char *taken, const char *what, struct jr_err *err)
{
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return jr_fail(err, errno, "open %s", path);
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                int e = errno;
                close(fd);
                return e == EWOULDBLOCK ? jr_fail(err, e, "%s %s", taken, what) : jr_fail(err, e, "lock %s", path);
        }
        return fd;
}

/* One jaild per cgroup parent (it removes every job group under it at
 * start): a lock in /run/jailrun named after it, held while we live. */
static int lock_cgroup_parent(const char *parent, struct jr_err *err)
{
        char path[PATH_MAX] = "/run/jailrun/jaild-cgroup-";
        size_t n = strlen(path);
        for (const char *p = parent; *p && n + 1 < sizeof path; p++)
                path[n++] = *p == '/' ? '%' : *p;
        path[n] = '\0';
        if (mkdir("/run/jailrun", 0700) < 0 && errno != EEXIST)
                return jr_fail(err, errno, "mkdir /run/jailrun");
        return hold_lock(path, "another jaild uses the cgroup parent", parent, err);
}

static int mkdir_p(const char *path, mode_t mode)
{
        char buf[PATH_MAX];
        if (jr_snprintf(buf, sizeof buf, "%s", path) < 0)
                return -ENAMETOOLONG;
        for (char *p = buf + 1; *p; p++)
                if (*p == '/') {
                        *p = '\0';
                        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                                return -errno;
                        *p = '/';
                }
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/* One jaild per socket: a lock beside it, held while we live (the
 * socket's directory made first: nothing but jaild may have made it). */
static int lock_instance(const char *socket_path, struct jr_err *err)
{
        char path[PATH_MAX], *slash;
        if (jr_snprintf(path, sizeof path, "%s", socket_path) < 0 || !(slash = strrchr(path, '/')))
                return jr_fail(err, EINVAL, "socket path %s", socket_path);
        *slash = '\0';
        int r = mkdir_p(path[0] ? path : "/", 0755);
        if (r < 0)
                return jr_fail(err, -r, "create the socket's directory %s", path);
        if (jr_snprintf(path, sizeof path, "%s.lock", socket_path) < 0)
                return jr_fail(err, ENAMETOOLONG, "the lock beside %s", socket_path);
        return hold_lock(path, "another jaild serves", socket_path, err);
}

/* What a jaild killed before us left behind in the scripts' directory:
 * one-shot jobs' scripts, and a worker's script it was writing (NAME.new;
 * the worker's own is written again from the registry). */
static void sweep_job_scripts(struct jaild *d)
{
        _cleanup_close_ int dfd = open(d->scripts, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        DIR *dir = dfd < 0 ? NULL : fdopendir(fcntl(dfd, F_DUPFD_CLOEXEC, 0));
        if (!dir)
                return;
        for (struct dirent *de; (de = readdir(dir));) {
                size_t n = strlen(de->d_name);
                int stale = (strncmp(de->d_name, "j-", 2) == 0 && strstr(de->d_name, ".py")) ||
                            (n > 4 && strcmp(de->d_name + n - 4, ".new") == 0);
                if (stale && unlinkat(dfd, de->d_name, 0) < 0)
                        jlog_msg(d, LOG_WARNING, NULL, "remove %s/%s: %s", d->scripts, de->d_name, strerror(errno));
        }
        closedir(dir);
}

/* Directories, the stale cgroups of a jaild killed before us, the registry. */
static int prepare(struct jaild *d, struct jr_err *err)
{
        char dir[PATH_MAX], *slash;
        int r = 0;  /* (the socket's directory is lock_instance's) */
        if (jr_snprintf(dir, sizeof dir, "%s", d->cfg->registry) == 0 && (slash = strrchr(dir, '/'))) {
                *slash = '\0';
                r = jr_snprintf(d->scripts, sizeof d->scripts, "%s/scripts", dir);
                if (r == 0)
                        r = mkdir_p(d->scripts, 0700);
        }
        if (r == 0)
                r = mkdir_p(d->cfg->workspace_root, 0700);
        if (r < 0)
                return jr_fail(err, -r, "create jaild's directories");
        sweep_job_scripts(d);
        char url[PATH_MAX];
        r = jaild_config_state_url(d->cfg, url, sizeof url);
        if (r == 0)  /* a host name resolved now, not by each connection on the loop */
                r = state_url_resolve(url, d->state_url, sizeof d->state_url);
        if (r < 0)
                return jr_fail(err, ENAMETOOLONG, "the state store's address");
        if ((d->cglock = lock_cgroup_parent(d->cfg->cgroup_parent, err)) < 0)
                return d->cglock;
        struct cg_host h;
        if (cg_detect(&h, err) < 0)
                return -EIO;
        if (h.backend == CG_NONE)
                return jr_fail(err, ENOTSUP, "cannot limit jobs: %s", h.why);
        cg_sweep(&h, d->cfg->cgroup_parent, 1);
        uidlock_sweep();  /* the uid locks a jaild killed before us left */
        if ((r = registry_open(&d->reg, d->cfg->registry, err)) < 0)
                return r;
        if (r > 0)  /* a full disk: the workers start; changes are refused until there is room */
                jlog_msg(d, LOG_WARNING, NULL, "%s", err->msg);
        /* The sessions of a jaild before this one, marked lost. A full disk
         * does not keep the workers from starting: those sessions answer
         * 404 rather than 410 until a jaild with room marks them. */
        struct jr_err e = { 0 };
        if ((r = registry_sessions_lost(d->reg, &e)) == -ENOSPC || r == -EDQUOT)
                jlog_msg(d, LOG_WARNING, NULL, "%s (the sessions of the jaild before are not marked lost)", e.msg);
        else if (r < 0)
                return jr_fail(err, 0, "%s", e.msg);
        return 0;
}

/* The manager's view: READY at start, then a STATUS line now and then
 * (and the watchdog's ping, from the loop itself, when it wants one). */
static void on_status(struct timer *t)
{
        struct jaild *d = t->data;
        notify_status("%zu workers, %zu jobs running, %u queued", workers_count(d), jobs_running(d), d->queued);
        if (d->watchdog)
                notify_watchdog();
}

static int status_timer(struct jaild *d)
{
        uint64_t usec = 0;
        double every = 5;
        if (notify_watchdog_interval(&usec) > 0 && usec > 0) {
                d->watchdog = 1;
                every = (double)usec / 1e6 < every ? (double)usec / 1e6 : every;
        }
        int r = timer_init(&d->loop, &d->status, 1, on_status, d);
        return r < 0 ? r : timer_arm(&d->status, every, every);
}

static void warm_note(void *data, const char *msg)
{
        jlog_msg(data, LOG_WARNING, NULL, "%s", msg);
}

/* Both profiles' zygotes, waited for (at most ZYGOTE_WAIT_S) so the
 * registered workers start warm; one that fails leaves its jails cold. */
#define ZYGOTE_WAIT_S 60
static int start_zygotes(struct jaild *d, struct jr_err *err)
{
        if (!d->cfg->zygote_enabled)
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(d->warm); i++) {
                int r = warm_init(&d->warm[i], &d->loop, (enum jail_profile)i, d->cfg->zygote_preload,
                                  d->cfg->zygote_max_forks, err);
                d->warm[i].note = warm_note;
                d->warm[i].note_data = d;
                if (r < 0) {
                        while (i-- > 0)
                                warm_free(&d->warm[i]);
                        return r;
                }
        }
        d->warm_on = 1;
        struct timespec t0, now;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (;;) {
                int waiting = 0;
                for (size_t i = 0; i < ELEMENTSOF(d->warm); i++)
                        waiting += !d->warm[i].cur.ready && !d->warm[i].last_error[0];
                clock_gettime(CLOCK_MONOTONIC, &now);
                if (!waiting || now.tv_sec - t0.tv_sec >= ZYGOTE_WAIT_S || d->done)
                        break;
                int r = loop_run_once(&d->loop, 1000);
                if (r < 0)
                        return jr_fail(err, -r, "epoll_wait");
        }
        jlog_msg(d, LOG_INFO, NULL, "warm zygotes: worker %s, exec %s (%.3f s)",
                 d->warm[0].cur.ready ? "ready" : "not ready", d->warm[1].cur.ready ? "ready" : "not ready",
                 (double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9);
        return 0;
}

static int serve(struct jaild *d, const sigset_t *sigs, struct jr_err *err)
{
        int r = loop_init(&d->loop);
        if (r < 0)
                return jr_fail(err, -r, "epoll_create1");
        if ((d->sigfd = signalfd(-1, sigs, SFD_CLOEXEC | SFD_NONBLOCK)) < 0)
                return jr_fail(err, errno, "signalfd");
        if ((r = loop_watch(&d->loop, &d->sig, d->sigfd, EPOLLIN, 1, on_signal, d)) < 0)
                return jr_fail(err, -r, "epoll_ctl");
        if ((r = jcgpool_open(d, err)) < 0)
                return r;
        if ((r = start_zygotes(d, err)) < 0)
                return r;
        struct api_config ac = {
                .socket_path = d->cfg->socket_path, .socket_mode = d->cfg->socket_mode, .socket_gid = (gid_t)-1,
                .allow_uids = d->cfg->allow_uids,   .n_allow_uids = d->cfg->n_allow_uids,
                .allow_gids = d->cfg->allow_gids,   .n_allow_gids = d->cfg->n_allow_gids,
                .ops = &ops, .ops_data = d, .log = api_log, .log_data = d,
                .max_raw_body = (size_t)d->cfg->sessions.file_max,
                .max_raw_held = (size_t)(d->cfg->sessions.file_max > (64u << 20) ? d->cfg->sessions.file_max : 64u << 20),
        };
        if ((r = api_open(&d->api, &d->loop, &ac, err)) < 0)
                return r;
        if ((r = workers_load(d)) < 0)
                return jr_fail(err, -r, "start the registered workers");
        if ((r = status_timer(d)) < 0)
                return jr_fail(err, -r, "the status timer");
        jlog_msg(d, LOG_NOTICE, NULL, "serving %s (%zu workers)", d->cfg->socket_path, workers_count(d));
        char status[128];
        snprintf(status, sizeof status, "serving %zu workers", workers_count(d));
        notify_ready(status);
        while (!d->done) {
                r = loop_run_once(&d->loop, -1);
                if (r < 0)
                        return jr_fail(err, -r, "epoll_wait");
        }
        jlog_msg(d, LOG_NOTICE, NULL, "stopped");
        return 0;
}

/* Every worker holds a dozen descriptors (its jail's pidfd, channel and
 * pipes, its timers, its cgroup): the soft limit on open files goes up
 * to the hard one, as the unit's LimitNOFILE= would set it. */
static void raise_nofile(struct jaild *d)
{
        struct rlimit r;
        if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
                r.rlim_cur = r.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &r) < 0)
                        jlog_msg(d, LOG_WARNING, NULL, "raise the open-file limit: %s", strerror(errno));
        }
}

static int parse_args(int argc, char **argv, const char **config, int *check)
{
        static const struct option longopts[] = {
                { "config", required_argument, NULL, 'c' },
                { "check", no_argument, NULL, 'k' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { 0 },
        };
        int c;
        while ((c = getopt_long(argc, argv, "c:hV", longopts, NULL)) != -1) {
                if (c == 'c') {
                        *config = optarg;
                } else if (c == 'k') {
                        *check = 1;
                } else if (c == 'h') {
                        fputs(usage_text, stdout);
                        return 0;
                } else if (c == 'V') {
                        printf("jaild %s\n", PACKAGE_VERSION);
                        return 0;
                } else {
                        fputs(usage_text, stderr);
                        return EXIT_USAGE;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "jaild: unexpected argument %s\n%s", argv[optind], usage_text);
                return EXIT_USAGE;
        }
        return -1;
}

int main(int argc, char **argv)
{
        struct jaild d = { .sigfd = -1, .cglock = -1, .sig = WATCH_INIT, .status = TIMER_INIT, .drain = TIMER_INIT };
        int check = 0;
        /* SIGCHLD ignored by whoever ran us (kept across exec) would reap
         * the jails before we read how they ended. */
        struct sigaction sa = { .sa_handler = SIG_DFL };
        if (sigaction(SIGCHLD, &sa, NULL) < 0) {
                fprintf(stderr, "jaild: sigaction SIGCHLD: %s\n", strerror(errno));
                return EXIT_SETUP;
        }
        int r = parse_args(argc, argv, &d.cfg_path, &check);
        if (r >= 0)
                return r;
        struct jr_err err = { 0 };
        if (jaild_config_load(d.cfg_path, &d.cfg, &err) < 0) {
                fprintf(stderr, "jaild: %s\n", err.msg);
                return EXIT_USAGE;
        }
        if (check) {  /* the same checks as a start, and nothing else */
                printf("jaild: %s: valid\n", d.cfg_path ? d.cfg_path : "defaults");
                jaild_config_free(d.cfg);
                return 0;
        }
        if (geteuid() != 0) {
                fprintf(stderr, "jaild: must run as root (it creates namespaces, id maps and cgroups)\n");
                jaild_config_free(d.cfg);
                return EXIT_SETUP;
        }
        sigset_t set;
        loop_block_signals(&set);
        jlog_init(&d.log, &(struct jlog_cfg){ .target = JLOG_AUTO, .level = (int)d.cfg->log_level, .fd = STDERR_FILENO });
        clock_gettime(CLOCK_MONOTONIC, &d.started);
        raise_nofile(&d);
        d.errors = json_object();
        _cleanup_close_ int lock = lock_instance(d.cfg->socket_path, &err);
        r = lock < 0 ? lock : prepare(&d, &err);
        if (r >= 0)
                r = serve(&d, &set, &err);
        if (r < 0)
                jlog_msg(&d, LOG_ERR, NULL, "%s", err.msg);
        api_close(d.api);
        timer_close(&d.status);
        timer_close(&d.drain);
        workers_free(&d);
        sessions_free(&d);
        for (size_t i = 0; d.warm_on && i < ELEMENTSOF(d.warm); i++)
                warm_free(&d.warm[i]);
        cg_pool_free(d.cgpool);  /* after every job: their groups are back */
        registry_close(d.reg);
        loop_unwatch(&d.sig);
        closep(&d.sigfd);
        closep(&d.cglock);
        if (d.loop.epfd > 0)
                loop_close(&d.loop);
        json_decref(d.errors);
        jlog_free(&d.log, 1000);
        jaild_config_free(d.cfg);
        return r < 0 ? EXIT_SETUP : 0;
}
