/* jaild's workers: a registry row and, while it runs, an engine job that
 * ticks on its schedule (or when asked), restarts its jails, reloads its
 * source, and keeps its log in a ring that GET .../logs reads. */
#include "config.h"

#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "supervisor/jaild/worker.h"

static const struct api_field schedule_fields[] = {
        { "interval", API_NUMBER },
        { "tick_timeout", API_NUMBER },
        { NULL, 0 },
};

/* --- the log ring ------------------------------------------------------- */

void follower_cancel(void *data)
{
        struct follower *f = data;
        f->w->d->followers--;
        for (struct follower **p = &f->w->followers; *p; p = &(*p)->next)
                if (*p == f) {
                        *p = f->next;
                        break;
                }
        free(f);
}

/* One line of the job's output (a JSON object: a log entry, a note, raw
 * output), kept and sent to those following. */
static void add_line(struct worker *w, const char *line, size_t len)
{
        char *copy = strndup(line, len);
        if (!copy)
                return;  /* a log line, not state: dropped */
        size_t at = (w->head + w->nlines) % WORKER_LOG_LINES;
        if (w->nlines == WORKER_LOG_LINES) {
                free(w->lines[w->head]);
                w->head = (w->head + 1) % WORKER_LOG_LINES;
        } else {
                w->nlines++;
        }
        w->lines[at] = copy;
        json_t *v = json_loadb(line, len, 0, NULL);
        if (v)
                jlog(&w->d->log, LOG_INFO, w->row.name, w->job_id, "%s",
                     json_string_value(json_object_get(v, "message")) ?: copy);
        for (struct follower *f = w->followers, *next; f; f = next) {
                next = f->next;
                if (v && api_stream_line(f->call, json_incref(v)) == -ENOBUFS) {
                        api_stream_end(f->call);  /* it lags a whole buffer behind: it can ask again */
                        follower_cancel(f);
                }
        }
        json_decref(v);
}

/* The sink's bytes are whole JSON lines (log.c writes each entry whole);
 * one split across two flushes is gathered; one past WORKER_LOG_LINE_MAX
 * (which a log entry of LOG_MAX_CHARS never reaches) is dropped whole,
 * never kept cut (it would not parse). */
static void on_output(void *data, const char *buf, size_t len)
{
        struct worker *w = data;
        while (len) {
                const char *nl = memchr(buf, '\n', len);
                size_t n = nl ? (size_t)(nl - buf) : len;
                char *p = w->pcut || w->plen + n > WORKER_LOG_LINE_MAX ? NULL
                          : n ? realloc(w->partial, w->plen + n) : w->partial;
                if (n && !p) {
                        w->pcut = 1;
                } else if (n) {
                        w->partial = p;
                        memcpy(p + w->plen, buf, n);
                        w->plen += n;
                }
                if (!nl)
                        return;
                if (!w->pcut)
                        add_line(w, w->partial ? w->partial : "", w->plen);
                w->plen = 0;
                w->pcut = 0;
                buf = nl + 1;
                len -= n + 1;
        }
}

/* --- start and end ----------------------------------------------------- */

static void answer_ticks(struct worker *w, unsigned id, int ok, const char *etype, const char *emsg, double s)
{
        for (struct tickwait **p = &w->ticks; *p;) {
                struct tickwait *t = *p;
                if (id && t->id != id) {
                        p = &t->next;
                        continue;
                }
                *p = t->next;
                if (!id)
                        api_reply_error(t->call, 409, "WorkerStopped", "the worker stopped before the tick returned");
                else
                        api_reply(t->call, 200, json_pack("{s:I, s:b, s:o, s:f}", "tick", (json_int_t)id, "ok", ok,
                                                          "error", ok ? json_null()
                                                                      : json_pack("{s:o, s:o}", "type", jr_json_text(etype),
                                                                                  "message", jr_json_text(emsg)),
                                                          "seconds", s));
                free(t);
        }
}

static void on_tick(void *data, unsigned id, int ok, const char *etype, const char *emsg, double seconds)
{
        struct worker *w = data;
        struct jaild *d = w->d;
        if (ok) {
                d->ticks_ok++;
        } else {
                d->ticks_failed++;
                count_error(d, etype);
        }
        hist_add(&d->tick_s, seconds);
        answer_ticks(w, id, ok, etype, emsg, seconds);
}

static void on_jailed(void *data, long setup_us)
{
        struct worker *w = data;
        hist_add(&w->d->spawn_s, (double)setup_us / 1e6);
}

static void free_opts(struct worker *w)
{
        json_decref((json_t *)w->o.broker.adapters);
        w->o.broker.adapters = NULL;
        free(w->policy_json);
        w->policy_json = NULL;
}

/* The job's options from the row: its profile and policy, its schedule. */
static int worker_opts(struct worker *w, char *msg, size_t size)
{
        struct jaild *d = w->d;
        _cleanup_(json_decrefp) json_t *pol = json_loads(w->row.policy, 0, NULL);
        _cleanup_(json_decrefp) json_t *sched = json_loads(w->row.schedule, 0, NULL);
        free_opts(w);
        w->o = (struct job_opts){ 0 };
        int r = build_opts(d, &w->o, w->row.profile, pol, &w->policy_json, msg, size);
        if (r < 0)
                return r;
        if (w->o.entry != JAIL_ENTRY_TICKS) {
                snprintf(msg, size, "profile: workers run profile worker (tick(ctx)); %s is for POST /v1/jobs",
                         w->o.profile_name);
                return -EINVAL;
        }
        double interval = json_number_value(json_object_get(sched, "interval"));
        double tick_timeout = json_number_value(json_object_get(sched, "tick_timeout"));
        w->o.policy_json = w->policy_json;
        w->o.script_path = w->script;
        w->o.forever = 1;
        w->o.manual = interval <= 0;
        w->o.interval_s = interval > 0 ? interval : 1e9;  /* manual: ticks when asked */
        if (tick_timeout > 0)
                w->o.tick_timeout_s = tick_timeout;
        w->o.timeout_s = 0;  /* a worker lives until stopped */
        w->o.broker.ns = w->row.name;
        w->o.broker.files.root = w->wsdir;
        w->o.on_tick = on_tick;
        w->o.on_jailed = on_jailed;
        w->o.tick_data = w;
        w->o.job_id = w->job_id;
        return 0;
}

static void worker_ended(struct job *j, void *data);

void worker_start(struct worker *w)
{
        char msg[400];
        w->error[0] = '\0';
        if (w->script_stale && write_script(w, msg, sizeof msg) < 0) {
                snprintf(w->error, sizeof w->error, "its script cannot be written: %s", msg);
                jlog_msg(w->d, LOG_ERR, w->row.name, "cannot start: %s", w->error);
                return;
        }
        w->script_stale = 0;
        if (worker_opts(w, w->error, sizeof w->error) < 0) {
                jlog_msg(w->d, LOG_ERR, w->row.name, "cannot start: %s", w->error);
                return;
        }
        snprintf(w->job_id, sizeof w->job_id, "%s-%u", w->row.id, ++w->runs);
        if (job_start(&w->d->loop, &w->o, &w->sink, &w->res, worker_ended, w, &w->job) < 0) {
                w->job = NULL;
                snprintf(w->error, sizeof w->error, "%.500s", w->res.emsg[0] ? w->res.emsg : "the job did not start");
                jlog_msg(w->d, LOG_ERR, w->row.name, "cannot start: %s", w->error);
        }
}

static void close_followers(struct worker *w)
{
        while (w->followers) {
                struct follower *f = w->followers;
                api_stream_end(f->call);
                follower_cancel(f);
        }
}

void worker_free(struct worker *w)
{
        answer_ticks(w, 0, 0, NULL, NULL, 0);
        close_followers(w);
        for (size_t i = 0; i < w->nlines; i++)
                free(w->lines[(w->head + i) % WORKER_LOG_LINES]);
        outq_free(&w->sink.out);
        outq_free(&w->sink.err);
        free(w->partial);
        free_opts(w);
        json_decref(w->last_end);
        registry_worker_clear(&w->row);
        struct jaild *d = w->d;
        free(w);
        /* Its log lines were freed one by one among the other workers'
         * allocations: the pages they leave empty go back to the kernel
         * rather than stay in jaild's heap (bench/soak.py's second round).
         * Not while the daemon stops: it frees every worker then. */
        if (!d->draining)
                malloc_trim(0);
}

void unlink_worker(struct worker *w)
{
        for (struct worker **p = &w->d->workers; *p; p = &(*p)->next)
                if (*p == w) {
                        *p = w->next;
                        break;
                }
}

json_t *worker_json(struct worker *w);

static void worker_ended(struct job *j, void *data)
{
        struct worker *w = data;
        struct jaild *d = w->d;
        outq_flush_some(&w->sink.out);
        outq_flush_some(&w->sink.err);
        json_decref(w->last_end);
        w->last_end = job_result_json(&w->o, &w->res);
        job_free(j);
        w->job = NULL;
        answer_ticks(w, 0, 0, NULL, NULL, 0);
        enum after after = w->after;
        w->after = AFTER_NOTHING;
        struct api_call *c = w->stop_call;
        w->stop_call = NULL;
        if (after == AFTER_DELETE) {  /* out of the registry already (api_worker_delete) */
                if (c)
                        api_reply(c, 200, json_pack("{s:s, s:s}", "id", w->row.id, "state", "deleted"));
                unlink(w->script);
                unlink_worker(w);
                worker_free(w);
                return maybe_done(d);
        }
        if (after == AFTER_RESTART && !d->draining)
                worker_start(w);
        else if (after != AFTER_PAUSE && !d->draining)
                jlog_msg(d, LOG_WARNING, w->row.name, "stopped: %s: %s", w->res.etype, w->res.emsg);
        if (c)
                api_reply(c, 200, worker_json(w));
        maybe_done(d);
}

static void stop_call_cancel(void *data)
{
        struct worker *w = data;
        w->stop_call = NULL;  /* the client went away; the stop goes on */
}

/* Ends the worker's job: gently (the tick in flight finishes) or at once;
 * c, if any, is answered when it has ended. */
void worker_stop(struct worker *w, enum after after, struct api_call *c, int now)
{
        w->after = after;
        w->stop_call = c;
        if (c)
                api_call_on_cancel(c, stop_call_cancel, w);
        job_signal(w->job, now ? SIGQUIT : SIGTERM);
}

/* --- the API ----------------------------------------------------------- */

const char *worker_state(const struct worker *w)
{
        if (!w->job)
                return w->row.paused ? "paused" : "stopped";
        if (w->after != AFTER_NOTHING)
                return "stopping";
        static const char *const words[] = { [JOB_STARTING] = "starting", [JOB_IDLE] = "idle", [JOB_BUSY] = "busy",
                                             [JOB_WAITING] = "restarting", [JOB_ENDED] = "stopping" };
        return words[job_phase(w->job)];
}

json_t *worker_json(struct worker *w)
{
        struct cg_stats u = { -1, -1, -1, -1, -1, -1, -1 };
        if (w->job)
                job_usage(w->job, &u);
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:b, s:I, s:o, s:o, s:I, s:I}", "id", w->row.id, "name", w->row.name,
                              "profile", w->row.profile, "state", worker_state(w), "paused", w->row.paused,
                              "generation", (json_int_t)w->row.generation, "schedule",
                              json_loads(w->row.schedule, 0, NULL), "policy", json_loads(w->row.policy, 0, NULL),
                              "created_ms", (json_int_t)w->row.created_ms, "updated_ms", (json_int_t)w->row.updated_ms);
        if (!o)
                return NULL;
        json_object_set_new(o, "stats", json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "ticks", (json_int_t)w->res.ticks_done,
                                                  "ticks_failed", (json_int_t)w->res.ticks_failed, "restarts",
                                                  (json_int_t)w->res.restarts, "reloads", (json_int_t)w->res.reloads,
                                                  "reloads_failed", (json_int_t)w->res.reloads_failed,
                                                  "slots_skipped", (json_int_t)w->res.slots_skipped));
        json_t *usage = json_object();
        if (u.peak_memory_bytes >= 0)
                json_object_set_new(usage, "peak_memory_bytes", json_integer(u.peak_memory_bytes));
        if (u.cpu_us >= 0)  /* exact; the user/system split is tick-sampled on v1 */
                json_object_set_new(usage, "cpu_us", json_integer(u.cpu_us));
        json_object_set_new(o, "usage", usage);
        if (w->error[0])
                json_object_set_new(o, "error", jr_json_text(w->error));
        if (w->last_end)
                json_object_set(o, "last_end", w->last_end);
        return o;
}

/* A name a worker may not take: one shaped like a worker id (paths name a
 * worker by either), or in the jobs' namespace. */
int reserved_name(const char *name)
{
        size_t n = strlen(name);
        if (strncmp(name, "job.", 4) == 0)
                return 1;
        return n == REGISTRY_ID_LEN && strncmp(name, "w-", 2) == 0 && strspn(name + 2, "0123456789abcdef") == n - 2;
}

static struct worker *find(struct jaild *d, const char *id)
{
        for (struct worker *w = d->workers; w; w = w->next)  /* an id first: names never look like one */
                if (strcmp(w->row.id, id) == 0)
                        return w;
        for (struct worker *w = d->workers; w; w = w->next)
                if (strcmp(w->row.name, id) == 0)
                        return w;
        return NULL;
}

struct worker *find_or_404(struct jaild *d, struct api_call *c, const char *id)
{
        struct worker *w = find(d, id);
        if (!w)
                api_reply_error(c, 404, "NotFoundError", "no worker %s", id);
        return w;
}

/* "the disk is full (ENOSPC)" for a full disk, strerror's words else. */
static const char *write_words(int e)
{
        return e == ENOSPC ? "the disk is full (ENOSPC)"
               : e == EDQUOT ? "the disk quota is used up (EDQUOT)" : strerror(e);
}

/* The script the engine reads is written whole to NAME.new (script_prepare)
 * then renamed over (script_install): a reader sees the old script or the
 * new one. A change stores the new source in the registry between the
 * two: a full disk refuses it before anything is changed. */
int script_prepare(struct worker *w, const char *src, size_t len, char *msg, size_t size)
{
        char tmp[PATH_MAX + 8];
        snprintf(tmp, sizeof tmp, "%s.new", w->script);
        _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        int r = fd < 0 ? -errno : jr_write_all(fd, src, len);
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (r < 0) {
                unlink(tmp);
                snprintf(msg, size, "write %.300s: %s", tmp, write_words(-r));
        }
        return r;
}

int script_install(struct worker *w, char *msg, size_t size)
{
        char tmp[PATH_MAX + 8];
        snprintf(tmp, sizeof tmp, "%s.new", w->script);
        if (rename(tmp, w->script) == 0)
                return 0;
        int r = -errno;
        snprintf(msg, size, "rename %.300s: %s", tmp, write_words(-r));
        unlink(tmp);
        return r;
}

void script_discard(struct worker *w)
{
        char tmp[PATH_MAX + 8];
        snprintf(tmp, sizeof tmp, "%s.new", w->script);
        unlink(tmp);
}

int write_script(struct worker *w, char *msg, size_t size)
{
        int r = script_prepare(w, w->row.source, w->row.source_len, msg, size);
        return r < 0 ? r : script_install(w, msg, size);
}

/* Whether the script file holds the row's source already (a jaild that
 * stopped left it so): a start on a full disk need not write it again. */
static int script_current(struct worker *w)
{
        _cleanup_close_ int fd = open(w->script, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size != w->row.source_len)
                return 0;
        _cleanup_free_ char *buf = malloc(w->row.source_len + 1);
        return buf && jr_read_all(fd, buf, w->row.source_len) == 0 &&
               memcmp(buf, w->row.source, w->row.source_len) == 0;
}

void link_worker(struct worker *w)
{
        w->next = w->d->workers;
        w->d->workers = w;
}

struct worker *worker_new(struct jaild *d, const char *id, char *msg, size_t size)
{
        struct jr_err err = { 0 };
        struct worker *w = calloc(1, sizeof *w);
        if (!w) {
                snprintf(msg, size, "out of memory");
                return NULL;
        }
        w->d = d;
        outq_init_fn(&w->sink.out, on_output, w);  /* one sink for all the worker's jobs */
        outq_init_fn(&w->sink.err, on_output, w);
        if (registry_get(d->reg, id, &w->row, &err) < 0) {
                snprintf(msg, size, "%s", err.msg);
                free(w);
                return NULL;
        }
        if (jr_snprintf(w->script, sizeof w->script, "%s/%s.py", d->scripts, w->row.id) < 0 ||
            jr_snprintf(w->wsdir, sizeof w->wsdir, "%s/%s", d->cfg->workspace_root, w->row.name) < 0) {
                snprintf(msg, size, "the worker's paths are too long");
                worker_free(w);
                return NULL;
        }
        return w;
}

/* A registry's worker at start, its script written again unless it holds
 * the source already; one that cannot be written (a full disk) leaves the
 * worker listed but not started, its error saying why, until it is
 * resumed. */
static struct worker *worker_load(struct jaild *d, const char *id, char *msg, size_t size)
{
        struct worker *w = worker_new(d, id, msg, size);
        if (!w)
                return NULL;
        if (!script_current(w) && write_script(w, msg, size) < 0) {
                w->script_stale = 1;
                snprintf(w->error, sizeof w->error, "its script cannot be written: %.400s", msg);
                jlog_msg(d, LOG_ERR, w->row.name, "not started: %s", w->error);
        }
        link_worker(w);
        return w;
}

/* The policy and schedule a worker would run with, checked before it is stored. */
int check_spec(struct jaild *d, struct api_call *c, const char *profile, const json_t *policy,
                      const json_t *schedule)
{
        char msg[1024];
        if (schedule && api_call_check(c, schedule, schedule_fields, "schedule") < 0)
                return -EINVAL;
        const char *keys[] = { "interval", "tick_timeout" };
        for (size_t i = 0; schedule && i < ELEMENTSOF(keys); i++) {
                json_t *v = json_object_get(schedule, keys[i]);
                if (v && !(json_number_value(v) > 0 && json_number_value(v) <= 86400)) {
                        api_reply_error(c, 400, "ValueError", "schedule.%s: seconds from above 0 to 86400", keys[i]);
                        return -EINVAL;
                }
        }
        struct job_opts o = { 0 };
        char *text = NULL;
        int r = build_opts(d, &o, profile, policy, &text, msg, sizeof msg);
        json_decref((json_t *)o.broker.adapters);
        free(text);
        if (r == 0 && o.entry != JAIL_ENTRY_TICKS) {
                snprintf(msg, sizeof msg, "profile: workers run profile worker; %s is for POST /v1/jobs", o.profile_name);
                r = -EINVAL;
        }
        if (r < 0)
                api_reply_error(c, 400, "ValueError", "%s", msg);
        return r;
}


/* --- the daemon's side -------------------------------------------------- */

/* The ids of the registry's workers, gathered first: the list's callback
 * may not call the registry (registry.h), and worker_new reads each row. */
struct ids {
        char (*id)[REGISTRY_ID_LEN + 1];
        size_t n, cap;
};

static int gather(const struct registry_worker *row, void *ctx)
{
        struct ids *ids = ctx;
        if (ids->n == ids->cap) {
                size_t cap = ids->cap ? 2 * ids->cap : 64;
                void *p = realloc(ids->id, cap * sizeof *ids->id);
                if (!p)
                        return -ENOMEM;
                ids->id = p;
                ids->cap = cap;
        }
        memcpy(ids->id[ids->n++], row->id, sizeof *ids->id);
        return 0;
}

int workers_load(struct jaild *d)
{
        struct jr_err err = { 0 };
        struct ids ids = { 0 };
        int r = registry_list(d->reg, gather, &ids, &err);
        if (r < 0)
                jlog_msg(d, LOG_ERR, NULL, "the registry: %s", err.msg[0] ? err.msg : strerror(-r));
        for (size_t i = 0; r >= 0 && i < ids.n; i++) {
                char msg[512];
                struct worker *w = worker_load(d, ids.id[i], msg, sizeof msg);
                if (!w)
                        jlog_msg(d, LOG_ERR, ids.id[i], "not loaded: %s", msg);
                else if (!w->row.paused && !w->script_stale)
                        worker_start(w);
        }
        free(ids.id);
        return r < 0 ? r : 0;
}

void workers_drain(struct jaild *d)
{
        for (struct worker *w = d->workers; w; w = w->next)
                if (w->job)
                        job_signal(w->job, d->draining > 1 ? SIGQUIT : SIGTERM);
}

void workers_free(struct jaild *d)
{
        while (d->workers) {
                struct worker *w = d->workers;
                d->workers = w->next;
                if (w->job) {
                        job_free(w->job);  /* ends what runs: nothing outlives the daemon */
                        w->job = NULL;
                }
                worker_free(w);
        }
}

size_t workers_count(const struct jaild *d)
{
        size_t n = 0;
        for (const struct worker *w = d->workers; w; w = w->next)
                n++;
        return n;
}

size_t workers_running(const struct jaild *d)
{
        size_t n = 0;
        for (const struct worker *w = d->workers; w; w = w->next)
                n += w->job != NULL;
        return n;
}

void workers_metrics(struct jaild *d, FILE *f)
{
        static const char *const states[] = { "starting", "idle", "busy", "restarting", "stopping", "paused", "stopped" };
        size_t count[ELEMENTSOF(states)] = { 0 };
        for (struct worker *w = d->workers; w; w = w->next)
                for (size_t i = 0; i < ELEMENTSOF(states); i++)
                        if (strcmp(worker_state(w), states[i]) == 0)
                                count[i]++;
        fputs("# HELP jaild_workers Workers by state.\n# TYPE jaild_workers gauge\n", f);
        for (size_t i = 0; i < ELEMENTSOF(states); i++)
                fprintf(f, "jaild_workers{state=\"%s\"} %zu\n", states[i], count[i]);
        fputs("# HELP jaild_worker_memory_peak_bytes A running worker's peak memory (its cgroup).\n"
              "# TYPE jaild_worker_memory_peak_bytes gauge\n", f);
        struct cg_stats u[1];
        for (struct worker *w = d->workers; w; w = w->next)
                if (w->job && (job_usage(w->job, u), u->peak_memory_bytes >= 0))
                        fprintf(f, "jaild_worker_memory_peak_bytes{worker=\"%s\"} %lld\n", w->row.name,
                                (long long)u->peak_memory_bytes);
        fputs("# HELP jaild_worker_cpu_seconds_total A running worker's CPU (its cgroup).\n"
              "# TYPE jaild_worker_cpu_seconds_total counter\n", f);
        for (struct worker *w = d->workers; w; w = w->next)
                if (w->job && (job_usage(w->job, u), u->cpu_us >= 0))
                        fprintf(f, "jaild_worker_cpu_seconds_total{worker=\"%s\"} %.6f\n", w->row.name,
                                (double)u->cpu_us / 1e6);
}
