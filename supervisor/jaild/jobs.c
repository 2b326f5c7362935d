/* jaild's one-shot jobs (POST /v1/jobs): a script run once in its jail,
 * answered when it ends with the result jailrun --json gives and what it
 * printed. At most max_live_jobs run at once; the rest wait queue_wait,
 * then get WorkerPoolTimeout. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <syslog.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "supervisor/jaild/daemon.h"

#define JOB_MAX_ARGS 256

struct ojob {
        struct jaild *d;
        struct ojob *next;
        struct api_call *call;      /* NULL once the client went away */
        struct waiter wait;
        char id[32];
        char name[REGISTRY_MAX_NAME + 8];  /* its namespace: "job." and the name */
        char script[PATH_MAX];
        char wsdir[PATH_MAX];
        char *policy_json;
        char *source;               /* the script, handed to the engine in memory */
        size_t source_len;
        char **argv;
        struct job_opts o;
        struct job_result res;
        struct job *job;
        struct sink sink;
        struct outbuf out, err;
        struct timespec t0;
};

static const struct api_field job_fields[] = {
        { "source", API_STRING | API_REQUIRED }, { "profile", API_STRING }, { "policy", API_OBJECT },
        { "args", API_ARRAY },                   { "name", API_STRING },    { NULL, 0 },
};

static void keep(void *data, const char *buf, size_t len)
{
        outbuf_add(data, buf, len, JOB_OUTPUT_MAX);
}

void outbuf_add(struct outbuf *b, const char *buf, size_t len, size_t max)
{
        size_t room = max - b->len;
        if (len > room) {
                b->cut = 1;
                len = room;
        }
        if (!len)
                return;
        char *p = realloc(b->p, b->len + len + 1);
        if (!p) {
                b->cut = 1;
                return;
        }
        memcpy(p + b->len, buf, len);
        b->len += len;
        p[b->len] = '\0';
        b->p = p;
}

void outbuf_reset(struct outbuf *b)
{
        free(b->p);
        *b = (struct outbuf){ 0 };
}

static void ojob_free(struct ojob *j)
{
        struct jaild *d = j->d;
        for (struct ojob **p = &d->jobs; *p; p = &(*p)->next)
                if (*p == j) {
                        *p = j->next;
                        break;
                }
        outq_free(&j->sink.out);
        outq_free(&j->sink.err);
        free(j->out.p);
        free(j->err.p);
        for (char **a = j->argv; a && *a; a++)
                free(*a);
        free(j->argv);
        json_decref((json_t *)j->o.broker.adapters);
        free(j->policy_json);
        free(j->source);
        free(j);
}

static json_t *output_json(const struct outbuf *b)
{
        return jr_json_text(b->p ? b->p : "");
}

static void job_jailed(void *data, long setup_us)
{
        struct ojob *j = data;
        hist_add(&j->d->spawn_s, (double)setup_us / 1e6);
}

static void ojob_ended(struct job *job, void *data)
{
        struct ojob *j = data;
        struct jaild *d = j->d;
        outq_flush_some(&j->sink.out);
        outq_flush_some(&j->sink.err);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        hist_add(&d->job_s, (double)(now.tv_sec - j->t0.tv_sec) + (now.tv_nsec - j->t0.tv_nsec) / 1e9);
        if (j->res.status == JOB_OK) {
                d->jobs_done++;
        } else {
                d->jobs_failed++;
                count_error(d, j->res.etype[0] ? j->res.etype : "RuntimeError");
        }
        json_t *r = job_result_json(&j->o, &j->res);
        job_free(job);
        if (j->call && r) {
                json_object_set_new(r, "id", json_string(j->id));
                json_object_set_new(r, "stdout", output_json(&j->out));
                json_object_set_new(r, "stderr", output_json(&j->err));
                json_object_set_new(r, "output_truncated", json_boolean(j->out.cut || j->err.cut));
                api_reply(j->call, 200, r);
        } else if (j->call) {
                api_reply_error(j->call, 500, "InternalError", "the result could not be encoded");
        }
        if (!j->call)
                json_decref(r);
        jlog(&d->log, LOG_INFO, NULL, j->id, "job %s ended: %s", j->name, job_status_word(j->res.status));
        ojob_free(j);
        pool_give(d);
}

static void ojob_cancel(void *data)
{
        struct ojob *j = data;
        j->call = NULL;
        if (j->job) {  /* nobody waits for it: it stops now */
                job_signal(j->job, SIGQUIT);
                return;
        }
        pool_cancel(j->d, &j->wait);
        ojob_free(j);
}

static void ojob_go(struct waiter *w)
{
        struct ojob *j = w->data;
        struct jaild *d = j->d;
        outq_init_fn(&j->sink.out, keep, &j->out);
        outq_init_fn(&j->sink.err, keep, &j->err);
        clock_gettime(CLOCK_MONOTONIC, &j->t0);
        if (job_start(&j->d->loop, &j->o, &j->sink, &j->res, ojob_ended, j, &j->job) < 0) {
                if (j->call)
                        api_reply_error(j->call, j->res.exit_code == EXIT_USAGE ? 400 : 500,
                                        j->res.exit_code == EXIT_USAGE ? "ValueError" : "SetupError", "%s",
                                        j->res.emsg[0] ? j->res.emsg : "the job did not start");
                ojob_free(j);
                pool_give(d);
        }
}

static void ojob_refused(struct waiter *w)
{
        struct ojob *j = w->data;
        if (j->call)
                api_reply_error(j->call, 503, "WorkerPoolTimeout",
                                "no jail became free within %g s (max_live_jobs %u, all busy)", j->d->cfg->queue_wait,
                                j->d->cfg->max_live_jobs);
        ojob_free(j);
}

/* args: strings for the script's sys.argv[1:] (profile exec). */
static int take_args(struct ojob *j, struct api_call *c, const json_t *args)
{
        size_t n = json_array_size(args);
        if (n > JOB_MAX_ARGS) {
                api_reply_error(c, 400, "ValueError", "args: at most %d", JOB_MAX_ARGS);
                return -EINVAL;
        }
        if (n && j->o.entry != JAIL_ENTRY_SCRIPT) {
                api_reply_error(c, 400, "ValueError", "args: for profile exec only");
                return -EINVAL;
        }
        if (!(j->argv = calloc(n + 1, sizeof *j->argv)))
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_t *a = json_array_get(args, i);
                if (!json_is_string(a) || strlen(json_string_value(a)) != json_string_length(a)) {
                        api_reply_error(c, 400, "ValueError", "args[%zu]: a string without NUL bytes", i);
                        return -EINVAL;
                }
                if (!(j->argv[i] = strdup(json_string_value(a))))
                        return -ENOMEM;
        }
        j->o.argc = (int)n;
        j->o.argv = j->argv;
        return 0;
}

/* The script, kept for the engine (job_opts.script_text): it is not
 * written to a file and read back. */
static int keep_source(struct ojob *j, const json_t *src)
{
        j->source_len = json_string_length(src);
        if (!(j->source = malloc(j->source_len + 1)))
                return -ENOMEM;
        memcpy(j->source, json_string_value(src), j->source_len + 1);
        j->o.script_text = j->source;
        j->o.script_len = j->source_len;
        return 0;
}

/* The job's options, its arguments and its script; answered on failure. */
static int ojob_prepare(struct ojob *j, struct api_call *c, json_t *spec)
{
        struct jaild *d = j->d;
        char msg[1024];
        const char *profile = json_string_value(json_object_get(spec, "profile")) ?: "exec";
        const char *name = json_string_value(json_object_get(spec, "name"));
        if (name && !job_valid_name(name)) {
                api_reply_error(c, 400, "ValueError", "name: 1 to 64 of A-Z a-z 0-9 . _ -, not starting with .");
                return -EINVAL;
        }
        /* Jobs' namespaces (ctx.state, workspace) are theirs alone: a
         * worker's name never starts with "job." (workers.c). */
        snprintf(j->name, sizeof j->name, "job.%s", name ? name : j->id);
        if (build_opts(d, &j->o, profile, json_object_get(spec, "policy"), &j->policy_json, msg, sizeof msg) < 0) {
                api_reply_error(c, 400, "ValueError", "%s", msg);
                return -EINVAL;
        }
        int r = take_args(j, c, json_object_get(spec, "args"));
        if (r < 0)
                return r;
        if (jr_snprintf(j->script, sizeof j->script, "%s/%s.py", d->scripts, j->id) < 0 ||
            jr_snprintf(j->wsdir, sizeof j->wsdir, "%s/%s", d->cfg->workspace_root, j->name) < 0) {
                api_reply_error(c, 500, "InternalError", "the job's paths are too long");
                return -ENAMETOOLONG;
        }
        j->o.policy_json = j->policy_json;
        j->o.script_path = j->script;
        j->o.job_id = j->id;
        j->o.on_jailed = job_jailed;
        j->o.tick_data = j;
        j->o.broker.ns = j->name;
        j->o.broker.files.root = j->wsdir;
        if (j->o.entry == JAIL_ENTRY_TICKS)
                j->o.ticks = 1;  /* as jailrun runs a worker script */
        r = keep_source(j, json_object_get(spec, "source"));
        if (r < 0)
                api_reply_error(c, 500, "InternalError", "the job's script: %s", strerror(-r));
        return r;
}

void api_job_submit(void *data, struct api_call *c, json_t *spec)
{
        struct jaild *d = data;
        if (d->draining)
                return api_reply_error(c, 503, "UnavailableError", "jaild is stopping");
        if (api_call_check(c, spec, job_fields, NULL) < 0)
                return;
        struct ojob *j = calloc(1, sizeof *j);
        if (!j)
                return api_reply_error(c, 500, "InternalError", "out of memory");
        j->d = d;
        j->call = c;
        uint64_t rnd;
        if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {  /* ids are not reused across restarts */
                free(j);
                return api_reply_error(c, 500, "InternalError", "getrandom: %s", strerror(errno));
        }
        snprintf(j->id, sizeof j->id, "j-%016llx", (unsigned long long)rnd);
        j->next = d->jobs;
        d->jobs = j;
        int r = ojob_prepare(j, c, spec);
        if (r < 0) {
                if (r == -ENOMEM)
                        api_reply_error(c, 500, "InternalError", "out of memory");
                return ojob_free(j);
        }
        api_call_on_cancel(c, ojob_cancel, j);
        j->wait = (struct waiter){ .go = ojob_go, .fail = ojob_refused, .data = j };
        pool_take(d, &j->wait);
}

void jobs_drain(struct jaild *d)
{
        if (d->draining < 2)
                return;  /* a gentle stop lets them finish, within their own limits */
        while (d->waiting) {  /* a stop now starts none of those waiting */
                struct waiter *w = d->waiting;
                pool_cancel(d, w);
                w->fail(w);
        }
        for (struct ojob *j = d->jobs; j; j = j->next)
                if (j->job)
                        job_signal(j->job, SIGQUIT);
}

size_t jobs_running(const struct jaild *d)
{
        size_t n = 0;
        for (const struct ojob *j = d->jobs; j; j = j->next)
                n += j->job != NULL;
        return n;
}
