/* TEST DOUBLE. The API server (supervisor/jaild/api*.c) driven by a small
 * in-memory backend, for tests/jaild/test_api_layer.py. Nothing here runs
 * a job: workers are records, a "tick" is a short timer, a "job" answers
 * when the test's hooks say (policy.test_delay seconds, or once
 * policy.test_barrier jobs wait at once; policy.test_forget: never, as a
 * broken backend would). It exists to exercise the HTTP
 * side: routing, checks, late answers, streams, cancellation.
 *
 * Session files (sfiles.c, real) work in --files-dir DIR for session "s1"
 * (any other id: 404), with --max-raw-body as the largest file.
 *
 * api-test-server SOCKET [--mode OCTAL] [--gid G] [--allow-uid U]...
 *     [--allow-gid G]... [--max-body N] [--max-held N] [--stream-buffer N]
 *     [--without metrics] [--files-dir DIR] [--max-raw-body N] [--max-raw-held N]
 * prints "ready" once it listens, serves until SIGTERM or SIGINT. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "supervisor/jaild/api.h"
#include "supervisor/jaild/sfiles.h"

struct tworker;

/* A call the double answers later: a tick, a job, a log follower. */
struct tpend {
        struct tb *b;
        struct api_call *c;
        struct tworker *w;          /* tick, follower: its worker */
        struct timer t;
        int follower;
        int barrier;                /* a job waiting for that many */
        unsigned job;
        struct tpend *prev, *next;
};

struct tworker {
        char id[16];
        json_t *rec;                /* what GET shows */
        json_t *log;                /* lines so far */
        unsigned ticks;
        struct tworker *next;
};

struct tb {
        struct loop loop;
        struct api *api;
        struct tworker *workers;
        struct tpend *pend;
        unsigned next_worker, next_job;
        unsigned n_pending, n_followers, n_cancelled, n_dropped;
        int stop;
        int files_fd;               /* session s1's directory; -1: none */
        size_t file_max;
};

static void pend_unlink(struct tpend *p)
{
        struct tb *b = p->b;
        if (p->prev)
                p->prev->next = p->next;
        else
                b->pend = p->next;
        if (p->next)
                p->next->prev = p->prev;
        if (p->follower)
                b->n_followers--;
        else
                b->n_pending--;
        timer_close(&p->t);
        free(p);
}

static void pend_cancelled(void *data)
{
        struct tpend *p = data;
        p->b->n_cancelled++;
        pend_unlink(p);
}

static struct tpend *pend_new(struct tb *b, struct api_call *c, struct tworker *w, int follower)
{
        struct tpend *p = calloc(1, sizeof *p);
        if (!p)
                return NULL;
        *p = (struct tpend){ .b = b, .c = c, .w = w, .t = TIMER_INIT, .follower = follower, .next = b->pend };
        if (follower)
                b->n_followers++;
        else
                b->n_pending++;
        if (b->pend)
                b->pend->prev = p;
        b->pend = p;
        api_call_on_cancel(c, pend_cancelled, p);
        return p;
}

static struct tworker *worker_find(struct tb *b, const char *id)
{
        for (struct tworker *w = b->workers; w; w = w->next)
                if (strcmp(w->id, id) == 0)
                        return w;
        return NULL;
}

static struct tworker *worker_or_404(struct tb *b, struct api_call *c, const char *id)
{
        struct tworker *w = worker_find(b, id);
        if (!w)
                api_reply_error(c, 404, "NotFoundError", "no worker %s", id);
        return w;
}

static void worker_log(struct tb *b, struct tworker *w, const char *msg)
{
        json_array_append_new(w->log, json_pack("{s:s, s:s}", "level", "info", "message", msg));
        for (struct tpend *p = b->pend; p; p = p->next)
                if (p->follower && p->w == w &&
                    api_stream_line(p->c, json_pack("{s:s, s:s}", "level", "info", "message", msg)) == -ENOBUFS)
                        b->n_dropped++;
}

/* A schedule is the backend's to check: the double takes {"every": s}. */
static const struct api_field schedule_fields[] = {
        { "every", API_NUMBER | API_REQUIRED },
        { NULL, 0 },
};

static void t_worker_create(void *data, struct api_call *c, json_t *spec)
{
        struct tb *b = data;
        json_t *sched = json_object_get(spec, "schedule");
        if (sched && api_call_check(c, sched, schedule_fields, "schedule") < 0)
                return;
        const char *name = json_string_value(json_object_get(spec, "name"));
        for (struct tworker *w = b->workers; name && w; w = w->next)
                if (json_equal(json_object_get(w->rec, "name"), json_object_get(spec, "name"))) {
                        api_reply_error(c, 409, "ConflictError", "a worker named %s exists: %s", name, w->id);
                        return;
                }
        struct tworker *w = calloc(1, sizeof *w);
        if (!w) {
                api_reply_error(c, 503, "UnavailableError", "out of memory");
                return;
        }
        snprintf(w->id, sizeof w->id, "w%u", ++b->next_worker);
        w->rec = json_deep_copy(spec);
        w->log = json_array();
        json_object_set_new(w->rec, "id", json_string(w->id));
        json_object_set_new(w->rec, "paused", json_false());
        w->next = b->workers;
        b->workers = w;
        api_reply(c, 201, json_incref(w->rec));
}

static void t_worker_list(void *data, struct api_call *c)
{
        struct tb *b = data;
        json_t *list = json_array();
        for (struct tworker *w = b->workers; w; w = w->next)
                json_array_append(list, w->rec);
        api_reply(c, 200, json_pack("{s:o}", "workers", list));
}

static void t_worker_get(void *data, struct api_call *c, const char *id)
{
        struct tworker *w = worker_or_404(data, c, id);
        if (w)
                api_reply(c, 200, json_incref(w->rec));
}

static void t_worker_update(void *data, struct api_call *c, const char *id, json_t *changes)
{
        struct tworker *w = worker_or_404(data, c, id);
        json_t *sched = json_object_get(changes, "schedule");
        if (!w || (json_is_object(sched) && api_call_check(c, sched, schedule_fields, "schedule") < 0))
                return;
        json_object_update(w->rec, changes);
        api_reply(c, 200, json_incref(w->rec));
}

static void t_worker_delete(void *data, struct api_call *c, const char *id)
{
        struct tb *b = data;
        struct tworker *w = worker_or_404(b, c, id);
        if (!w)
                return;
        for (struct tpend *p = b->pend, *next; p; p = next) {
                next = p->next;
                if (p->w != w)
                        continue;
                if (p->follower)
                        api_stream_end(p->c);
                else
                        api_reply_error(p->c, 409, "ConflictError", "worker %s was deleted", w->id);
                pend_unlink(p);
        }
        for (struct tworker **pp = &b->workers; *pp; pp = &(*pp)->next)
                if (*pp == w) {
                        *pp = w->next;
                        break;
                }
        json_decref(w->rec);
        json_decref(w->log);
        free(w);
        api_reply(c, 204, NULL);
}

static void tick_done(struct timer *t)
{
        struct tpend *p = t->data;
        struct tworker *w = p->w;
        char msg[64];
        snprintf(msg, sizeof msg, "tick %u", ++w->ticks);
        worker_log(p->b, w, msg);
        api_reply(p->c, 200, json_pack("{s:s, s:i, s:{}}", "id", w->id, "tick", (int)w->ticks, "result"));
        pend_unlink(p);
}

static void t_worker_tick(void *data, struct api_call *c, const char *id)
{
        struct tb *b = data;
        struct tworker *w = worker_or_404(b, c, id);
        if (!w)
                return;
        if (json_is_true(json_object_get(w->rec, "paused"))) {
                api_reply_error(c, 409, "ConflictError", "worker %s is paused", w->id);
                return;
        }
        struct tpend *p = pend_new(b, c, w, 0);
        if (!p || timer_init(&b->loop, &p->t, 0, tick_done, p) < 0 || timer_arm(&p->t, 0.05, 0) < 0) {
                if (p)
                        pend_unlink(p);
                api_reply_error(c, 503, "UnavailableError", "cannot start a tick");
        }
}

static void set_paused(struct tb *b, struct api_call *c, const char *id, int paused)
{
        struct tworker *w = worker_or_404(b, c, id);
        if (!w)
                return;
        if (json_is_true(json_object_get(w->rec, "paused")) == paused) {
                api_reply_error(c, 409, "ConflictError", "worker %s is %s already", w->id,
                                paused ? "paused" : "running");
                return;
        }
        json_object_set_new(w->rec, "paused", json_boolean(paused));
        api_reply(c, 200, json_incref(w->rec));
}

static void t_worker_pause(void *data, struct api_call *c, const char *id)
{
        set_paused(data, c, id, 1);
}

static void t_worker_resume(void *data, struct api_call *c, const char *id)
{
        set_paused(data, c, id, 0);
}

static void t_worker_logs(void *data, struct api_call *c, const char *id, int follow)
{
        struct tb *b = data;
        struct tworker *w = worker_or_404(b, c, id);
        if (!w)
                return;
        if (api_stream_begin(c, 200) < 0) {
                api_reply_error(c, 503, "UnavailableError", "cannot start a stream");
                return;
        }
        size_t i;
        json_t *line;
        json_array_foreach(w->log, i, line)
                api_stream_line(c, json_incref(line));
        if (!follow) {
                api_stream_end(c);
                return;
        }
        if (!pend_new(b, c, w, 1))
                api_stream_end(c);
}

static void job_answer(struct tpend *p)
{
        api_reply(p->c, 200, json_pack("{s:i, s:s, s:i}", "job", (int)p->job, "status", "done", "exit", 0));
        pend_unlink(p);
}

static void job_timer(struct timer *t)
{
        job_answer(t->data);
}

/* Answers every job waiting at a barrier once n of them wait. */
static void barrier_check(struct tb *b, int n)
{
        int waiting = 0;
        for (struct tpend *p = b->pend; p; p = p->next)
                waiting += p->barrier == n;
        if (waiting < n)
                return;
        for (struct tpend *p = b->pend, *next; p; p = next) {
                next = p->next;
                if (p->barrier == n)
                        job_answer(p);
        }
}

static void t_job_submit(void *data, struct api_call *c, json_t *job)
{
        struct tb *b = data;
        json_t *policy = json_object_get(job, "policy");
        double delay = json_number_value(json_object_get(policy, "test_delay"));
        int barrier = (int)json_integer_value(json_object_get(policy, "test_barrier"));
        unsigned id = ++b->next_job;
        /* A broken backend: neither answers nor keeps the call. */
        if (json_is_true(json_object_get(policy, "test_forget")))
                return;
        if (delay <= 0 && barrier <= 0) {
                api_reply(c, 200, json_pack("{s:i, s:s, s:i}", "job", (int)id, "status", "done", "exit", 0));
                return;
        }
        struct tpend *p = pend_new(b, c, NULL, 0);
        if (!p) {
                api_reply_error(c, 503, "UnavailableError", "out of memory");
                return;
        }
        p->job = id;
        if (barrier > 0) {
                p->barrier = barrier;
                barrier_check(b, barrier);
        } else if (timer_init(&b->loop, &p->t, 0, job_timer, p) < 0 || timer_arm(&p->t, delay, 0) < 0) {
                api_reply_error(c, 503, "UnavailableError", "cannot start a job");
                pend_unlink(p);
        }
}

static void t_health(void *data, struct api_call *c)
{
        struct tb *b = data;
        api_reply(c, 200, json_pack("{s:s, s:i, s:i, s:i, s:i}", "status", "ok", "pending", (int)b->n_pending,
                                    "followers", (int)b->n_followers, "cancelled", (int)b->n_cancelled,
                                    "dropped", (int)b->n_dropped));
}

static void t_metrics(void *data, struct api_call *c)
{
        struct tb *b = data;
        unsigned n = 0;
        for (struct tworker *w = b->workers; w; w = w->next)
                n++;
        char text[256];
        int len = snprintf(text, sizeof text,
                           "# HELP jaild_workers Workers known.\n# TYPE jaild_workers gauge\njaild_workers %u\n", n);
        api_reply_text(c, 200, "text/plain; version=0.0.4", text, (size_t)len);
}

static int session_dir(struct tb *b, struct api_call *c, const char *id)
{
        if (strcmp(id, "s1") == 0 && b->files_fd >= 0)
                return b->files_fd;
        api_reply_error(c, 404, "NotFoundError", "no session %s", id);
        return -1;
}

static void t_file_get(void *data, struct api_call *c, const char *id, const char *path)
{
        struct tb *b = data;
        int fd = session_dir(b, c, id);
        if (fd >= 0)
                sfiles_reply_get(c, fd, path, b->file_max);
}

static void t_file_put(void *data, struct api_call *c, const char *id, const char *path, const char *body,
                       size_t len)
{
        int fd = session_dir(data, c, id);
        if (fd >= 0)
                sfiles_reply_put(c, fd, path, body, len);
}

static void t_file_delete(void *data, struct api_call *c, const char *id, const char *path)
{
        int fd = session_dir(data, c, id);
        if (fd >= 0)
                sfiles_reply_delete(c, fd, path);
}

static struct api_ops test_ops = {
        .worker_create = t_worker_create,
        .worker_list = t_worker_list,
        .worker_get = t_worker_get,
        .worker_update = t_worker_update,
        .worker_delete = t_worker_delete,
        .worker_tick = t_worker_tick,
        .worker_pause = t_worker_pause,
        .worker_resume = t_worker_resume,
        .worker_logs = t_worker_logs,
        .job_submit = t_job_submit,
        .health = t_health,
        .metrics = t_metrics,
        .session_file_get = t_file_get,
        .session_file_put = t_file_put,
        .session_file_delete = t_file_delete,
};

static void log_line(void *data, int priority, const char *line)
{
        (void)data;
        fprintf(stderr, "api-test-server: <%d> %s\n", priority, line);
}

static void on_signal(struct watch *w, uint32_t events)
{
        (void)events;
        struct signalfd_siginfo si;
        while (read(w->fd, &si, sizeof si) == sizeof si)
                ((struct tb *)w->data)->stop = 1;
}

#define MAX_IDS 16

static int parse_args(int argc, char **argv, struct api_config *cfg, uid_t *uids, gid_t *gids, struct tb *b)
{
        for (int i = 2; i < argc; i++) {
                const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
                if (!val)
                        return -EINVAL;
                unsigned long v = strtoul(val, NULL, strcmp(opt, "--mode") == 0 ? 8 : 10);
                i++;
                if (strcmp(opt, "--mode") == 0)
                        cfg->socket_mode = (mode_t)v;
                else if (strcmp(opt, "--gid") == 0)
                        cfg->socket_gid = (gid_t)v;
                else if (strcmp(opt, "--allow-uid") == 0 && cfg->n_allow_uids < MAX_IDS)
                        uids[cfg->n_allow_uids++] = (uid_t)v;
                else if (strcmp(opt, "--allow-gid") == 0 && cfg->n_allow_gids < MAX_IDS)
                        gids[cfg->n_allow_gids++] = (gid_t)v;
                else if (strcmp(opt, "--max-body") == 0)
                        cfg->max_body = v;
                else if (strcmp(opt, "--max-held") == 0)
                        cfg->max_held = (unsigned)v;
                else if (strcmp(opt, "--stream-buffer") == 0)
                        cfg->stream_buffer = v;
                else if (strcmp(opt, "--without") == 0 && strcmp(val, "metrics") == 0)
                        test_ops.metrics = NULL;
                else if (strcmp(opt, "--max-raw-body") == 0)
                        cfg->max_raw_body = v;
                else if (strcmp(opt, "--max-raw-held") == 0)
                        cfg->max_raw_held = v;
                else if (strcmp(opt, "--files-dir") == 0) {
                        if ((b->files_fd = open(val, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
                                return -errno;
                } else
                        return -EINVAL;
        }
        return 0;
}

static void free_workers(struct tb *b)
{
        while (b->workers) {
                struct tworker *w = b->workers;
                b->workers = w->next;
                json_decref(w->rec);
                json_decref(w->log);
                free(w);
        }
}

int main(int argc, char **argv)
{
        static uid_t uids[MAX_IDS];
        static gid_t gids[MAX_IDS];
        struct tb b = { .files_fd = -1 };
        struct api_config cfg = { .socket_path = argv[1], .socket_mode = 0600, .socket_gid = (gid_t)-1,
                                  .allow_uids = uids, .allow_gids = gids, .ops = &test_ops, .ops_data = &b,
                                  .log = log_line };
        if (argc < 2 || parse_args(argc, argv, &cfg, uids, gids, &b) < 0) {
                fprintf(stderr, "usage: api-test-server SOCKET [--mode OCTAL] [--gid G] [--allow-uid U]... "
                                "[--allow-gid G]... [--max-body N] [--max-held N] [--stream-buffer N]\n");
                return 2;
        }
        sigset_t sigs;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGTERM);
        sigaddset(&sigs, SIGINT);
        struct watch sw = WATCH_INIT;
        struct jr_err err = { 0 };
        _cleanup_close_ int sfd = -1;
        if (loop_init(&b.loop) < 0 || sigprocmask(SIG_BLOCK, &sigs, NULL) < 0 ||
            (sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK)) < 0 ||
            loop_watch(&b.loop, &sw, sfd, EPOLLIN, 1, on_signal, &b) < 0) {
                perror("api-test-server: set-up");
                return 1;
        }
        if (api_open(&b.api, &b.loop, &cfg, &err) < 0) {
                fprintf(stderr, "api-test-server: %s\n", err.msg);
                return 1;
        }
        b.file_max = cfg.max_raw_body ? cfg.max_raw_body : API_MAX_RAW_BODY_DEFAULT;
        printf("ready\n");
        fflush(stdout);
        while (!b.stop)
                if (loop_run_once(&b.loop, -1) < 0) {
                        perror("api-test-server: loop");
                        break;
                }
        /* Every held call is cancelled here: the double's records of them go. */
        api_close(b.api);
        fprintf(stderr, "api-test-server: stopped, %u cancelled in all, %u pending left\n", b.n_cancelled,
                b.n_pending);
        free_workers(&b);
        if (b.files_fd >= 0)
                close(b.files_fd);
        loop_unwatch(&sw);
        loop_close(&b.loop);
        return b.pend ? 1 : 0;
}
