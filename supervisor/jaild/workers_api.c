/* jaild's API for workers: create, list, get, change, delete, tick,
 * pause, resume and their logs (docs/api.md). */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "supervisor/jaild/worker.h"

static const struct api_field create_fields[] = {
        { "name", API_STRING | API_REQUIRED }, { "source", API_STRING | API_REQUIRED }, { "profile", API_STRING },
        { "policy", API_OBJECT },              { "schedule", API_OBJECT },               { NULL, 0 },
};

/* A change the registry or the scripts' directory refused: 400 for a
 * value, 507 for a full disk (docs/api.md; nothing was changed), 500 else. */
static void reply_refused(struct api_call *c, int r, const char *msg)
{
        int full = r == -ENOSPC || r == -EDQUOT;
        api_reply_error(c, r == -EINVAL ? 400 : full ? 507 : 500,
                        r == -EINVAL ? "ValueError" : full ? "InsufficientStorageError" : "InternalError", "%s",
                        msg && msg[0] ? msg : strerror(-r));
}

/* Why a change was refused: the script's msg (made to say that nothing
 * was changed, as the registry's own errors do), or the registry's. */
static const char *nothing_changed(char *msg, size_t size, const char *registry_msg)
{
        if (!msg[0])
                return registry_msg;
        size_t n = strlen(msg);
        snprintf(msg + n, size - n, "; nothing was changed");
        return msg;
}

/* The new worker stored and its script written, as one: the registry's
 * transaction commits once the script is on disk beside (SCRIPT.new,
 * renamed after the commit). The worker, listed; or NULL answered, with
 * nothing stored nor left. */
static struct worker *store_new(struct jaild *d, struct api_call *c, const struct registry_new *n)
{
        struct registry_worker row = { 0 };
        struct jr_err err = { 0 };
        char msg[512] = "";
        int r = registry_begin(d->reg, &err);
        if (r == 0)
                r = registry_add(d->reg, n, &row, &err);
        struct worker *w = r == 0 ? worker_new(d, row.id, msg, sizeof msg) : NULL;
        registry_worker_clear(&row);
        if (r == 0 && !w)
                r = -EIO;
        if (r == 0)
                r = script_prepare(w, w->row.source, w->row.source_len, msg, sizeof msg);
        if (r == 0 && (r = registry_commit(d->reg, &err)) < 0)
                script_discard(w);
        if (r < 0) {
                registry_rollback(d->reg);
                if (w)
                        worker_free(w);
                if (r == -EEXIST)
                        api_reply_error(c, 409, "ConflictError", "a worker named %s exists", n->name);
                else
                        reply_refused(c, r, nothing_changed(msg, sizeof msg, err.msg));
                return NULL;
        }
        if (script_install(w, msg, sizeof msg) < 0) {
                w->script_stale = 1;  /* stored: its start writes it again, or says why it cannot */
                jlog_msg(d, LOG_ERR, w->row.name, "%s", msg);
        }
        link_worker(w);
        return w;
}

void api_worker_create(void *data, struct api_call *c, json_t *spec)
{
        struct jaild *d = data;
        if (d->draining)
                return api_reply_error(c, 503, "UnavailableError", "jaild is stopping");
        if (api_call_check(c, spec, create_fields, NULL) < 0)
                return;
        const char *name = json_string_value(json_object_get(spec, "name"));
        const char *profile = json_string_value(json_object_get(spec, "profile")) ?: "worker";
        json_t *policy = json_object_get(spec, "policy"), *schedule = json_object_get(spec, "schedule");
        if (!job_valid_name(name))
                return api_reply_error(c, 400, "ValueError", "name: 1 to 64 of A-Z a-z 0-9 . _ -, not starting with .");
        if (reserved_name(name))
                return api_reply_error(c, 400, "ValueError", "name: %s is reserved (worker ids are w- and 16 hex digits; "
                                       "job. names one-shot jobs' namespaces)", name);
        if (check_spec(d, c, profile, policy, schedule) < 0)
                return;
        for (struct worker *o = d->workers; o; o = o->next)  /* one being deleted is out of the registry already */
                if (strcmp(o->row.name, name) == 0)
                        return api_reply_error(c, 409, "ConflictError", "a worker named %s is being deleted", name);
        _cleanup_(json_decrefp) json_t *none = policy ? NULL : json_object();
        _cleanup_free_ char *ptext = json_dumps(policy ? policy : none, JSON_COMPACT | JSON_SORT_KEYS);
        _cleanup_free_ char *stext = schedule ? json_dumps(schedule, JSON_COMPACT | JSON_SORT_KEYS) : strdup("{}");
        json_t *src = json_object_get(spec, "source");
        struct registry_new n = { .name = name, .profile = profile, .source = json_string_value(src),
                                  .source_len = json_string_length(src), .policy = ptext, .schedule = stext };
        if (!ptext || !stext)
                return api_reply_error(c, 500, "InternalError", "out of memory");
        struct worker *w = store_new(d, c, &n);
        if (!w)
                return;
        jlog_msg(d, LOG_NOTICE, w->row.name, "created (%s)", w->row.id);
        worker_start(w);
        api_reply(c, 201, worker_json(w));
}

void api_worker_list(void *data, struct api_call *c)
{
        struct jaild *d = data;
        json_t *all = json_array();
        for (struct worker *w = d->workers; all && w; w = w->next)
                json_array_append_new(all, worker_json(w));
        api_reply(c, 200, json_pack("{s:o}", "workers", all));
}

void api_worker_get(void *data, struct api_call *c, const char *id)
{
        struct worker *w = find_or_404(data, c, id);
        if (w)
                api_reply(c, 200, worker_json(w));
}

static const struct api_field update_fields[] = {
        { "source", API_STRING }, { "policy", API_OBJECT }, { "schedule", API_OBJECT | API_NULL },
        { "name", API_STRING },   { "profile", API_STRING }, { NULL, 0 },
};

/* The PATCH's changes stored as one transaction, a new source's script
 * written beside and renamed over the old once they are durable: 0 with
 * *row the stored worker, or -errno answered (nothing was changed). */
static int store_changes(struct worker *w, struct api_call *c, json_t *policy, json_t *schedule, json_t *src,
                         struct registry_worker *row)
{
        struct registry *reg = w->d->reg;
        struct jr_err err = { 0 };
        char msg[512] = "";
        _cleanup_free_ char *p = policy ? json_dumps(policy, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        _cleanup_free_ char *s = schedule ? json_dumps(schedule, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        int r = (policy && !p) || (schedule && !s) ? -ENOMEM : registry_begin(reg, &err);
        if (r == 0 && p)
                r = registry_set_policy(reg, w->row.id, p, &err);
        if (r == 0 && s)
                r = registry_set_schedule(reg, w->row.id, s, &err);
        if (r == 0 && src)
                r = registry_set_source(reg, w->row.id, json_string_value(src), json_string_length(src), NULL, &err);
        if (r == 0)
                r = registry_get(reg, w->row.id, row, &err);
        if (r == 0 && src)
                r = script_prepare(w, row->source, row->source_len, msg, sizeof msg);
        if (r == 0 && (r = registry_commit(reg, &err)) < 0 && src)
                script_discard(w);
        if (r < 0) {
                registry_rollback(reg);
                registry_worker_clear(row);
                reply_refused(c, r, nothing_changed(msg, sizeof msg, err.msg));
                return r;
        }
        if (src)  /* stored: one not renamed is written again at the next start, or it says why not */
                w->script_stale = script_install(w, msg, sizeof msg) < 0;
        if (src && w->script_stale)
                jlog_msg(w->d, LOG_ERR, w->row.name, "%s", msg);
        return 0;
}

/* A new policy or schedule restarts the job with it once its tick in
 * flight returns; a new source alone is reloaded (as SIGHUP does
 * jailrun's: the last that loaded runs on if it does not load). */
void api_worker_update(void *data, struct api_call *c, const char *id, json_t *changes)
{
        struct worker *w = find_or_404(data, c, id);
        if (!w || api_call_check(c, changes, update_fields, NULL) < 0)
                return;
        const char *name = json_string_value(json_object_get(changes, "name"));
        const char *profile = json_string_value(json_object_get(changes, "profile"));
        if ((name && strcmp(name, w->row.name) != 0) || (profile && strcmp(profile, w->row.profile) != 0))
        {
                const char *what = name && strcmp(name, w->row.name) != 0 ? "name" : "profile";
                return api_reply_error(c, 400, "ValueError", "%s: a worker's %s stays; create another worker", what,
                                       what);
        }
        if (w->after == AFTER_DELETE)
                return api_reply_error(c, 409, "ConflictError", "the worker is being deleted");
        json_t *policy = json_object_get(changes, "policy"), *schedule = json_object_get(changes, "schedule");
        json_t *src = json_object_get(changes, "source");
        _cleanup_(json_decrefp) json_t *none = json_is_null(schedule) ? json_object() : NULL;
        if (none)
                schedule = none;  /* null: no schedule, ticks only when asked */
        _cleanup_(json_decrefp) json_t *old = policy ? NULL : json_loads(w->row.policy, 0, NULL);
        if ((policy || schedule) && check_spec(w->d, c, w->row.profile, policy ? policy : old, schedule) < 0)
                return;
        struct registry_worker row = { 0 };
        if ((policy || schedule || src) && store_changes(w, c, policy, schedule, src, &row) < 0)
                return;
        if (policy || schedule || src) {
                registry_worker_clear(&w->row);
                w->row = row;
        }
        if (w->job && w->after == AFTER_NOTHING && (policy || schedule || w->script_stale))
                worker_stop(w, AFTER_RESTART, NULL, 0);
        else if (w->job && w->after == AFTER_NOTHING && src)
                job_signal(w->job, SIGHUP);
        api_reply(c, 200, worker_json(w));
}

void api_worker_delete(void *data, struct api_call *c, const char *id)
{
        struct worker *w = find_or_404(data, c, id);
        if (!w)
                return;
        if (w->stop_call)
                return api_reply_error(c, 409, "ConflictError", "the worker is being stopped");
        /* Out of the registry first: one that refuses (a full disk) leaves the
         * worker as it was, its job untouched. */
        struct jr_err err = { 0 };
        int r = w->after == AFTER_DELETE ? 0 : registry_delete(w->d->reg, w->row.id, &err);
        if (r < 0)
                return reply_refused(c, r, err.msg);
        if (w->job)
                return worker_stop(w, AFTER_DELETE, c, 1);
        api_reply(c, 200, json_pack("{s:s, s:s}", "id", w->row.id, "state", "deleted"));
        unlink(w->script);
        unlink_worker(w);
        worker_free(w);
}

static void tick_cancel(void *data)
{
        struct tickwait *t = data;
        for (struct tickwait **p = &t->w->ticks; *p; p = &(*p)->next)
                if (*p == t) {
                        *p = t->next;
                        break;
                }
        free(t);
}

void api_worker_tick(void *data, struct api_call *c, const char *id)
{
        struct worker *w = find_or_404(data, c, id);
        if (!w)
                return;
        if (!w->job || w->after != AFTER_NOTHING)
                return api_reply_error(c, 409, "WorkerStopped", "the worker is %s", worker_state(w));
        struct tickwait *t = calloc(1, sizeof *t);
        if (!t)
                return api_reply_error(c, 500, "InternalError", "out of memory");
        int r = job_tick(w->job);
        if (r < 0) {
                free(t);
                return api_reply_error(c, 409, "WorkerBusy", "the worker is %s; a tick can start once it is idle",
                                       worker_state(w));
        }
        *t = (struct tickwait){ .next = w->ticks, .w = w, .call = c, .id = (unsigned)r };
        w->ticks = t;
        api_call_on_cancel(c, tick_cancel, t);
}

void api_worker_pause(void *data, struct api_call *c, const char *id)
{
        struct worker *w = find_or_404(data, c, id);
        struct jr_err err = { 0 };
        int r;
        if (!w)
                return;
        if (w->stop_call)
                return api_reply_error(c, 409, "ConflictError", "the worker is being stopped");
        if (!w->row.paused && (r = registry_set_paused(w->d->reg, w->row.id, 1, &err)) < 0)
                return reply_refused(c, r, err.msg);
        w->row.paused = 1;
        if (w->job)
                return worker_stop(w, AFTER_PAUSE, c, 0);
        api_reply(c, 200, worker_json(w));
}

void api_worker_resume(void *data, struct api_call *c, const char *id)
{
        struct worker *w = find_or_404(data, c, id);
        struct jr_err err = { 0 };
        int r;
        if (!w)
                return;
        if (w->d->draining)
                return api_reply_error(c, 503, "UnavailableError", "jaild is stopping");
        if (w->stop_call)
                return api_reply_error(c, 409, "ConflictError", "the worker is being stopped");
        if (w->row.paused && (r = registry_set_paused(w->d->reg, w->row.id, 0, &err)) < 0)
                return reply_refused(c, r, err.msg);
        w->row.paused = 0;
        if (!w->job)
                worker_start(w);
        else if (w->after == AFTER_PAUSE)
                w->after = AFTER_RESTART;  /* it stops, then starts again */
        api_reply(c, 200, worker_json(w));
}

void api_worker_logs(void *data, struct api_call *c, const char *id, int follow)
{
        struct jaild *d = data;
        struct worker *w = find_or_404(d, c, id);
        if (!w)
                return;
        if (follow && d->followers >= JAILD_MAX_FOLLOWERS)
                return api_reply_error(c, 503, "UnavailableError", "%u log streams are followed already; end one first",
                                       JAILD_MAX_FOLLOWERS);
        if (api_stream_begin(c, 200) < 0)
                return;
        /* The newest lines, at most LOGS_REPLAY_MAX bytes of them: one
         * request costs the loop and the socket a bounded amount. */
        size_t from = w->nlines, bytes = 0;
        while (from > 0 && bytes + strlen(w->lines[(w->head + from - 1) % WORKER_LOG_LINES]) <= LOGS_REPLAY_MAX)
                bytes += strlen(w->lines[(w->head + --from) % WORKER_LOG_LINES]);
        for (size_t i = from; i < w->nlines; i++) {
                json_t *v = json_loads(w->lines[(w->head + i) % WORKER_LOG_LINES], 0, NULL);
                if (v && api_stream_line(c, v) == -ENOBUFS)
                        break;
        }
        struct follower *f = follow ? calloc(1, sizeof *f) : NULL;
        if (!f)
                return api_stream_end(c);
        *f = (struct follower){ .next = w->followers, .w = w, .call = c };
        w->followers = f;
        d->followers++;
        api_call_on_cancel(c, follower_cancel, f);
}
