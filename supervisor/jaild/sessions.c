/* jaild's exec sessions (POST /v1/sessions, docs/api.md): a persistent
 * interpreter in a jail of profile exec (engine entry "session"), which
 * runs the code of each execute request in turn in one namespace, with
 * its own private directory as working directory. A session lives until
 * it is deleted, stays idle past sessions.idle_timeout, or dies (a cell
 * past its time limit and grace, the memory limit, jaild stopping); a
 * dead one is kept, saying why, until it is deleted or its idle time
 * passes. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "supervisor/jaild/relay.h"
#include "supervisor/jaild/sesscheck.h"
#include "supervisor/jaild/session.h"

/* Request bodies reach these handlers checked against their routes'
 * fields (api_routes.c): types and required fields hold here. */

const char *session_state(const struct session *s)
{
        if (s->dead)
                return "dead";
        if (!s->ready)
                return "starting";
        return s->cells ? "busy" : "ready";
}

json_t *session_json(const struct session *s)
{
        json_t *o = json_pack("{s:s, s:s, s:I, s:f, s:I, s:I, s:f, s:f, s:s, s:I}", "id", s->id, "state",
                              session_state(s), "memory_limit", (json_int_t)s->memory, "cpu_limit", s->cpus,
                              "executions", (json_int_t)s->executions, "created", (json_int_t)s->created,
                              "timeout", s->timeout, "idle_timeout", s->idle_s, "workdir",
                              SESSION_WORKDIR, "last_used", (json_int_t)s->last_used);
        if (o)  /* the first cell runs; the others wait their turn */
                json_object_set_new(o, "waiting", json_integer(s->queued ? (json_int_t)s->queued - 1 : 0));
        if (o && s->name[0])
                json_object_set_new(o, "name", json_string(s->name));
        if (o && s->dead)
                json_object_set_new(o, "error", json_pack("{s:s, s:s}", "type", s->dead_type, "message", s->dead_msg));
        return o;
}

/* --- the idle clock ---------------------------------------------------- */

static void idle_expired(struct timer *t)
{
        struct session *s = t->data;
        if (s->cells)  /* busy: the clock starts again when it is idle */
                return;
        jlog_msg(s->d, LOG_INFO, NULL, "session %s idle for %g s: %s", s->id, s->idle_s,
                 s->dead ? "forgotten" : "ended");
        session_end(s, NULL);
}

void session_touch(struct session *s)
{
        s->last_used = time(NULL);
        if (timer_arm(&s->idle, s->idle_s, 0) < 0)
                jlog_msg(s->d, LOG_WARNING, NULL, "session %s: its idle timer could not be set", s->id);
}

/* --- list and lookup --------------------------------------------------- */

struct session *session_find(struct jaild *d, const char *id)
{
        for (struct session *s = d->sessions; s; s = s->next)
                if (strcmp(s->id, id) == 0 || (s->name[0] && strcmp(s->name, id) == 0))
                        return s;
        return NULL;
}

/* The session a path names, or NULL answered: 404, or 410 for one that
 * has died (the reason) or one of an earlier jaild's run. */
struct session *session_live_or_answer(struct jaild *d, struct api_call *c, const char *id)
{
        struct session *s = session_find(d, id);
        if (!s && sessions_gone(d, id))
                api_reply_error(c, 410, "SessionDied", "session %s ended when the jaild that ran it stopped", id);
        else if (!s)
                api_reply_error(c, 404, "NotFound", "no session %s", id);
        else if (s->dead)
                api_reply_error(c, 410, "SessionDied", "session %s has ended: %s: %s", s->id, s->dead_type,
                                s->dead_msg);
        else if (s->deleting)
                api_reply_error(c, 410, "SessionDied", "session %s is being deleted", s->id);
        else
                return s;
        return NULL;
}

/* --- lifecycle --------------------------------------------------------- */

static void session_free(struct session *s)
{
        struct jaild *d = s->d;
        for (struct session **p = &d->sessions; *p; p = &(*p)->next)
                if (*p == s) {
                        *p = s->next;
                        d->n_sessions--;
                        break;
                }
        cells_free(s);
        relay_close(s->relay);
        timer_close(&s->idle);
        closep(&s->dirfd);
        s->dirfd = -1;  /* closep leaves the number: a second close would hit a reused one */
        outq_free(&s->sink.out);
        outq_free(&s->sink.err);
        free(s->out.p);
        free(s->err.p);
        free(s->idle_out[0].p);
        free(s->idle_out[1].p);
        json_decref((json_t *)s->o.broker.adapters);
        json_decref(s->packages);
        free(s->policy_json);
        free(s);
}

static void answer_create(struct session *s, unsigned status, const char *type, const char *msg)
{
        struct api_call *c = s->create;
        if (!c)
                return;
        s->create = NULL;
        if (status == 201)
                api_reply(c, 201, session_json(s));
        else
                api_reply_error(c, status, type, "%s", msg);
}

static void session_ended(struct job *job, void *data)
{
        struct session *s = data;
        struct jaild *d = s->d;
        job_free(job);
        s->job = NULL;
        closep(&s->dirfd);
        s->dirfd = -1;  /* session_free closes it again */
        if (!s->stopped)  /* else its record stays: the next jaild reports it lost with this one */
                sessions_forget(d, s->id);
        if (!s->dead) {
                s->dead = 1;
                jr_utf8_copy(s->dead_type, sizeof s->dead_type, s->res.etype[0] ? s->res.etype : "SessionDied");
                jr_utf8_copy(s->dead_msg, sizeof s->dead_msg,
                             s->res.emsg[0] ? s->res.emsg : "the session's interpreter ended");
        }
        answer_create(s, s->res.status == JOB_SETUP ? 500 : 503, s->res.status == JOB_SETUP ? "SetupError"
                      : "SessionDied", s->dead_msg);
        cells_fail(s, s->dead_type, s->dead_msg);
        jlog_msg(d, s->deleting ? LOG_INFO : LOG_NOTICE, NULL, "session %s ended: %s: %s", s->id, s->dead_type,
                 s->dead_msg);
        if (s->delete_call) {
                api_reply(s->delete_call, 200, json_pack("{s:s, s:s}", "id", s->id, "state", "deleted"));
                s->delete_call = NULL;
        }
        if (s->deleting || s->forget)
                session_free(s);
        else
                session_touch(s);  /* a dead session says why until its idle time passes */
        maybe_done(d);
}

static void delete_cancel(void *data)
{
        struct session *s = data;
        s->delete_call = NULL;  /* it goes all the same */
}

void session_end(struct session *s, struct api_call *c)
{
        s->delete_call = c;
        if (c && s->job)
                api_call_on_cancel(c, delete_cancel, s);
        if (!s->job) {  /* dead already: forgotten now */
                if (c)
                        api_reply(c, 200, json_pack("{s:s, s:s}", "id", s->id, "state", "deleted"));
                s->delete_call = NULL;
                return session_free(s);
        }
        s->deleting = 1;
        if (!s->dead) {
                s->dead = 1;
                snprintf(s->dead_type, sizeof s->dead_type, "SessionDied");
                snprintf(s->dead_msg, sizeof s->dead_msg, "session %s was deleted%s", s->id,
                         c ? "" : " (idle past its idle_timeout)");
        }
        job_signal(s->job, SIGQUIT);  /* its jail is killed; session_ended follows */
}

static void session_ready(void *data)
{
        struct session *s = data;
        if (session_open_dir(s) < 0) {
                jlog_msg(s->d, LOG_WARNING, NULL, "session %s: its directory could not be opened: %s", s->id,
                         strerror(errno));
        }
        s->ready = 1;
        session_touch(s);
        jlog_msg(s->d, LOG_INFO, NULL, "session %s ready (%s, %g cores, %g s a cell)", s->id, s->mem_text, s->cpus,
                 s->timeout);
        if (s->packages && json_array_size(s->packages)) {  /* the answer waits for them */
                struct cell *cl = packages_queue(s, NULL, s->packages);
                if (cl)
                        cl->for_create = 1;
                else
                        answer_create(s, 500, "InternalError", "the packages' install could not be queued");
        } else {
                answer_create(s, 201, NULL, NULL);
        }
        cells_next(s);
}

void session_created(struct session *s, json_t *resp, const struct job_exec_result *r)
{
        struct api_call *c = s->create;
        if (!c)
                return;
        if (resp && r->ok && !s->dead) {
                s->create = NULL;
                json_t *o = session_json(s);
                if (o)
                        json_object_set(o, "packages", resp);
                return api_reply(c, 201, o);
        }
        const char *err = resp ? json_string_value(json_object_get(json_object_get(resp, "data"), "stderr")) : NULL;
        size_t n = err ? strlen(err) : 0;
        char msg[1024];
        snprintf(msg, sizeof msg, "the packages could not be installed; the session was ended. %s%.850s",
                 n > 800 ? "..." : "", err ? err + (n > 800 ? n - 800 : 0) : s->dead_msg);
        answer_create(s, 424, "PackagesFailed", msg);
        if (!s->dead)
                session_end(s, NULL);
}

static void create_cancel(void *data)
{
        struct session *s = data;
        s->create = NULL;  /* nobody waits: the session goes */
        s->forget = 1;
        if (s->job)
                job_signal(s->job, SIGQUIT);
}

/* --- create ------------------------------------------------------------ */

/* The limits asked for, within the exec profile's maxima; answered 400 if not. */
static int take_limits(struct session *s, struct api_call *c, const json_t *spec)
{
        struct session_limits l = { .memory = s->memory, .mem_max = s->mem_max, .cpus = s->cpus,
                                    .cpus_max = s->cpus_max, .timeout = s->timeout,
                                    .idle_max = s->d->cfg->sessions.idle_timeout };
        char msg[256];
        if (session_take_limits(spec, &l, msg, sizeof msg) < 0) {
                api_reply_error(c, 400, "ValueError", "%s", msg);
                return -EINVAL;
        }
        s->memory = l.memory;
        s->cpus = l.cpus;
        s->timeout = l.timeout;
        s->idle_s = l.idle_s;
        format_size(s->memory, s->mem_text, sizeof s->mem_text);
        return 0;
}

/* The policy the jail reads says the session's own limits (its /dev/shm
 * is sized from limits.memory), not the profile's defaults. */
static int policy_limits(struct session *s)
{
        json_error_t je;
        json_t *p = json_loads(s->policy_json, 0, &je);
        json_t *lim = json_object_get(p, "limits");
        char *text = NULL;
        if (json_is_object(lim) && json_object_set_new(lim, "memory", json_integer((json_int_t)s->memory)) == 0 &&
            json_object_set_new(lim, "cpus", json_real(s->cpus)) == 0)
                text = json_dumps(p, JSON_COMPACT);
        json_decref(p);
        if (!text)
                return -ENOMEM;
        free(s->policy_json);
        s->policy_json = text;
        return 0;
}

static int session_opts(struct session *s, struct api_call *c, const json_t *spec)
{
        struct jaild *d = s->d;
        char msg[1024];
        if (build_opts(d, &s->o, "exec", NULL, &s->policy_json, msg, sizeof msg) < 0) {
                api_reply_error(c, 500, "InternalError", "%s", msg);
                return -EINVAL;
        }
        /* The exec profile's defaults and maxima (jailrun-policy(5)). */
        s->memory = s->o.memory;
        s->cpus = s->o.cpus;
        s->timeout = SESSION_TIMEOUT_DEFAULT;
        s->mem_max = SESSION_MEMORY_MAX;
        s->cpus_max = SESSION_CPUS_MAX;
        if (take_limits(s, c, spec) < 0)
                return -EINVAL;
        if (policy_limits(s) < 0) {
                api_reply_error(c, 500, "InternalError", "the session's policy could not be written");
                return -ENOMEM;
        }
        struct job_opts *o = &s->o;
        o->entry = JAIL_ENTRY_SESSION;
        o->memory = s->memory;
        o->cpus = s->cpus;
        o->manual = o->forever = 1;
        o->timeout_s = 0;     /* a session lives until it ends; each cell has its limit */
        o->cpu_time_s = 0;
        o->tick_grace_s = SESSION_GRACE_S;
        o->scratch_bytes = (unsigned long)d->cfg->sessions.dir_bytes;
        /* pip reaches an index through jaild's relay, over TCP on lo: the
         * filter that allows TCP sockets (the namespace still has lo alone). */
        o->inet = d->cfg->sessions.index_url && !d->cfg->sessions.wheel_dir;
        o->policy_json = s->policy_json;
        o->script_text = "";
        o->script_len = 0;
        o->script_path = "<session>";
        o->job_id = s->id;
        o->on_ready = session_ready;
        o->on_exec = cell_done;
        o->tick_data = s;
        o->broker.ns = s->ns;
        o->broker.files.root = NULL;
        return 0;
}

static int new_id(char *out, size_t size)
{
        uint64_t rnd;
        if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
                return -errno;
        snprintf(out, size, "s-%016llx", (unsigned long long)rnd);
        return 0;
}

static int check_create(struct jaild *d, struct api_call *c, const json_t *spec)
{
        if (d->draining) {
                api_reply_error(c, 503, "UnavailableError", "jaild is stopping");
                return -EAGAIN;
        }
        const char *name = json_string_value(json_object_get(spec, "name"));
        if (name && !job_valid_name(name)) {
                api_reply_error(c, 400, "ValueError", "name: 1 to 64 of A-Z a-z 0-9 . _ -, not starting with .");
                return -EINVAL;
        }
        if (name && session_find(d, name)) {
                api_reply_error(c, 409, "ConflictError", "name: a session of that name exists");
                return -EEXIST;
        }
        if (d->n_sessions >= d->cfg->sessions.max) {
                api_reply_error(c, 503, "SessionLimit", "%u sessions run already (sessions.max)", d->cfg->sessions.max);
                return -EBUSY;
        }
        json_t *pk = json_object_get(spec, "packages");
        if (json_array_size(pk) && !d->cfg->sessions.wheel_dir && !d->cfg->sessions.index_url) {
                api_reply_error(c, 409, "PackagesUnavailable", "%s", SESSION_NO_PACKAGES);
                return -EINVAL;
        }
        return pk ? packages_check(c, pk) : 0;
}

void api_session_create(void *data, struct api_call *c, json_t *spec)
{
        struct jaild *d = data;
        if (check_create(d, c, spec) < 0)
                return;
        struct session *s = calloc(1, sizeof *s);
        if (!s)
                return api_reply_error(c, 500, "InternalError", "out of memory");
        s->d = d;
        s->dirfd = -1;
        s->tail = &s->cells;
        s->created = s->last_used = time(NULL);
        int r = new_id(s->id, sizeof s->id);
        if (r < 0) {
                free(s);
                return api_reply_error(c, 500, "InternalError", "getrandom: %s", strerror(-r));
        }
        const char *name = json_string_value(json_object_get(spec, "name"));
        if (name)
                snprintf(s->name, sizeof s->name, "%s", name);
        s->packages = json_incref(json_object_get(spec, "packages"));
        snprintf(s->ns, sizeof s->ns, "session.%s", s->id);
        s->next = d->sessions;
        d->sessions = s;
        d->n_sessions++;
        if (timer_init(&d->loop, &s->idle, 0, idle_expired, s) < 0) {
                api_reply_error(c, 500, "InternalError", "timerfd: %s", strerror(errno));
                return session_free(s);
        }
        if (session_opts(s, c, spec) < 0)
                return session_free(s);
        outq_init_fn(&s->sink.out, cell_output, &s->out_ctx[0]);
        outq_init_fn(&s->sink.err, cell_output, &s->out_ctx[1]);
        s->out_ctx[0] = (struct out_ctx){ s, 1 };
        s->out_ctx[1] = (struct out_ctx){ s, 2 };
        s->create = c;
        api_call_on_cancel(c, create_cancel, s);
        if (sessions_remember(d, s->id) < 0)
                jlog_msg(d, LOG_WARNING, NULL, "session %s: not recorded in the registry", s->id);
        if (job_start(&d->loop, &s->o, &s->sink, &s->res, session_ended, s, &s->job) < 0) {
                s->create = NULL;
                sessions_forget(d, s->id);
                api_reply_error(c, 500, "SetupError", "%s", s->res.emsg[0] ? s->res.emsg : "the session did not start");
                return session_free(s);
        }
        jlog_msg(d, LOG_INFO, NULL, "session %s starting", s->id);
}

void api_session_list(void *data, struct api_call *c)
{
        struct jaild *d = data;
        json_t *a = json_array();
        for (struct session *s = d->sessions; a && s; s = s->next)
                if (json_array_append_new(a, session_json(s)) < 0) {
                        json_decref(a);
                        a = NULL;
                }
        if (!a)
                return api_reply_error(c, 500, "InternalError", "out of memory");
        api_reply(c, 200, json_pack("{s:o}", "sessions", a));
}

void api_session_get(void *data, struct api_call *c, const char *id)
{
        struct jaild *d = data;
        struct session *s = session_find(d, id);
        if (!s)
                return (void)session_live_or_answer(d, c, id);
        json_t *o = session_json(s);
        if (o && s->job) {
                struct cg_stats st;
                job_usage(s->job, &st);
                json_object_set_new(o, "stats", json_pack("{s:I, s:I}", "memory_peak_bytes", (json_int_t)st.peak_memory_bytes,
                                                          "cpu_ms", (json_int_t)(st.cpu_us < 0 ? -1 : st.cpu_us / 1000)));
        }
        if (!o)
                return api_reply_error(c, 500, "InternalError", "out of memory");
        api_reply(c, 200, o);
}

void api_session_delete(void *data, struct api_call *c, const char *id)
{
        struct jaild *d = data;
        struct session *s = session_find(d, id);
        if (!s)
                return (void)session_live_or_answer(d, c, id);
        if (s->deleting)
                return api_reply_error(c, 409, "ConflictError", "session %s is being deleted", s->id);
        jlog_msg(d, LOG_INFO, NULL, "session %s deleted", s->id);
        session_end(s, c);
}

void api_session_execute(void *data, struct api_call *c, const char *id, json_t *body, int stream)
{
        struct jaild *d = data;
        struct session *s = session_live_or_answer(d, c, id);
        if (!s)
                return;
        json_t *code = json_object_get(body, "code");
        double timeout;
        char msg[256];
        int r = session_execute_check(body, s->timeout, &timeout, msg, sizeof msg);
        if (r < 0)
                return api_reply_error(c, r == -EMSGSIZE ? 413 : 400, "ValueError", "%s", msg);
        if (cell_queue(s, c, json_string_value(code), json_string_length(code), timeout, stream))
                cells_next(s);
}

/* --- the daemon's side ------------------------------------------------- */

void sessions_drain(struct jaild *d)
{
        for (struct session *s = d->sessions, *next; s; s = next) {
                next = s->next;
                if (s->job && !s->deleting) {
                        s->forget = 1;
                        s->stopped = 1;
                        s->dead = 1;
                        snprintf(s->dead_type, sizeof s->dead_type, "SessionDied");
                        snprintf(s->dead_msg, sizeof s->dead_msg, "jaild is stopping");
                        job_signal(s->job, SIGQUIT);
                } else if (!s->job) {
                        session_free(s);
                }
        }
}

size_t sessions_running(const struct jaild *d)
{
        size_t n = 0;
        for (const struct session *s = d->sessions; s; s = s->next)
                n += s->job != NULL;
        return n;
}

void sessions_free(struct jaild *d)
{
        while (d->sessions)
                session_free(d->sessions);
}

void sessions_metrics(struct jaild *d, FILE *f)
{
        size_t live = 0, dead = 0;
        for (const struct session *s = d->sessions; s; s = s->next) {
                live += !s->dead;
                dead += s->dead;
        }
        fprintf(f, "# HELP jaild_sessions Exec sessions by state.\n# TYPE jaild_sessions gauge\n"
                   "jaild_sessions{state=\"live\"} %zu\njaild_sessions{state=\"dead\"} %zu\n"
                   "# HELP jaild_session_executions_total Cells run in sessions.\n"
                   "# TYPE jaild_session_executions_total counter\njaild_session_executions_total %llu\n",
                live, dead, (unsigned long long)d->cells_run);
}
