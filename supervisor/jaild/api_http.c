/* The API server's HTTP side: the unix socket, libmicrohttpd run on our
 * loop (its epoll fd watched, its timeout on a loop timer, no thread), who
 * may connect, what a request must look like before the backend sees it,
 * and calls parked (suspended) while the backend answers. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "supervisor/jaild/api_int.h"

void api_logf(struct api *a, int priority, const char *fmt, ...)
{
        if (!a->log)
                return;
        char line[768];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        a->log(a->log_data, priority, jr_utf8_clean(line));
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
        char line[512];
        vsnprintf(line, sizeof line, fmt, ap);
        line[strcspn(line, "\n")] = '\0';
        api_logf(cls, LOG_INFO, "api: libmicrohttpd: %s", line);
}

/* ---- who may connect ------------------------------------------------ */

static int gid_allowed(const struct api *a, gid_t gid)
{
        for (size_t i = 0; i < a->n_gids; i++)
                if (a->gids[i] == gid)
                        return 1;
        return 0;
}

/* Any of the peer's supplementary groups (as they were at connect time). */
static int groups_allowed(const struct api *a, int fd)
{
        gid_t some[64];
        _cleanup_free_ gid_t *many = NULL;
        gid_t *g = some;
        socklen_t len = sizeof some;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) < 0) {
                if (errno != ERANGE || len > NGROUPS_MAX * sizeof(gid_t) || !(many = malloc(len)))
                        return 0;
                g = many;
                if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) < 0)
                        return 0;
        }
        for (size_t i = 0; i < len / sizeof(gid_t); i++)
                if (gid_allowed(a, g[i]))
                        return 1;
        return 0;
}

static int peer_allowed(const struct api *a, int fd, const struct ucred *cred)
{
        if (cred->uid == 0)
                return 1;
        for (size_t i = 0; i < a->n_uids; i++)
                if (a->uids[i] == cred->uid)
                        return 1;
        if (gid_allowed(a, cred->gid))
                return 1;
        return a->n_gids && groups_allowed(a, fd);
}

/* A refusal for the log, at most one a second, with how many were not. */
static void log_refusal(struct api *a, const struct ucred *cr)
{
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (a->refused_at.tv_sec && now.tv_sec - a->refused_at.tv_sec < 1) {
                a->refused_quiet++;
                return;
        }
        api_logf(a, LOG_WARNING, "api: refused a peer: pid %d uid %d gid %d is not allowed%s", (int)cr->pid,
                 (int)cr->uid, (int)cr->gid, a->refused_quiet ? " (and more refusals, not logged one by one)" : "");
        a->refused_at = now;
        a->refused_quiet = 0;
}

/* Reads the peer's credentials once per connection. A failure leaves no
 * peer (answered 503) or a refused one: never an allowed one. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
        struct api *a = cls;
        if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
                struct api_peer *old = *socket_context;
                if (old && !old->allowed && !old->dropped && a->refused_live)
                        a->refused_live--;
                free(*socket_context);
                *socket_context = NULL;
                return;
        }
        struct api_peer *p = calloc(1, sizeof *p);
        if (!p)
                return;
        p->cred = (struct ucred){ .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        socklen_t len = sizeof p->cred;
        if (!ci || getsockopt(ci->connect_fd, SOL_SOCKET, SO_PEERCRED, &p->cred, &len) < 0)
                api_logf(a, LOG_WARNING, "api: cannot read a peer's credentials: %s", strerror(errno));
        else
                p->allowed = peer_allowed(a, ci->connect_fd, &p->cred);
        *socket_context = p;
        if (p->allowed)
                return;
        /* A few are kept to be told why (403, as they ask), briefly; past
         * that a peer not allowed is shut out at once (MHD closes it at its
         * next look): however many it opens, they crowd out no one. */
        log_refusal(a, &p->cred);
        if (ci && a->refused_live >= API_MAX_REFUSED) {
                p->dropped = 1;
                shutdown(ci->connect_fd, SHUT_RDWR);
                return;
        }
        a->refused_live++;
        MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, API_REFUSED_TIMEOUT);
}

/* ---- parking calls -------------------------------------------------- */

/* The peer hung up while its call was parked (MHD does not look at a
 * suspended connection): the backend lets go now, not when it answers. */
static void on_hangup(struct watch *w, uint32_t events)
{
        (void)events;
        struct api_call *c = w->data;
        api_call_cancel(c);
        api_call_wake(c);
}

int api_call_suspend(struct api_call *c)
{
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci)
                return -EBADF;
        /* No events asked: epoll still reports EPOLLHUP (a full close by the
         * peer) and EPOLLERR, and nothing the peer merely sends. */
        int r = loop_watch(c->api->loop, &c->hup, ci->connect_fd, 0, 0, on_hangup, c);
        if (r < 0)
                return r;
        MHD_suspend_connection(c->conn);
        c->suspended = 1;
        return 0;
}

void api_call_wake(struct api_call *c)
{
        if (!c->suspended)
                return;
        /* Unwatched before MHD may close the fd: a closed fd's number could
         * be reused by then. */
        loop_unwatch(&c->hup);
        c->suspended = 0;
        MHD_resume_connection(c->conn);
        /* Run by our loop, MHD has no channel of its own to wake itself
         * with: it takes the resumed connection back at its next run,
         * which this queues (after the batch: we may be inside MHD). */
        loop_defer(c->api->loop, &c->api->kick);
}

/* ---- a request's life ------------------------------------------------ */

static void call_free(struct api_call *c)
{
        struct api *a = c->api;
        if (c->prev)
                c->prev->next = c->next;
        else
                a->calls = c->next;
        if (c->next)
                c->next->prev = c->prev;
        loop_unwatch(&c->hup);
        if (c->resp)
                MHD_destroy_response(c->resp);
        a->raw_held -= c->raw_reserved;
        json_decref(c->json);
        free(c->path);
        free(c->body);
        free(c->sbuf);
        free(c);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **ctx, enum MHD_RequestTerminationCode toe)
{
        (void)cls;
        (void)conn;
        (void)toe;
        struct api_call *c = *ctx;
        if (!c)
                return;
        *ctx = NULL;
        api_call_cancel(c);  /* the peer went away or the server is closing */
        call_free(c);
}

static enum MHD_Result call_send(struct api_call *c)
{
        enum MHD_Result r = MHD_queue_response(c->conn, c->status, c->resp);
        MHD_destroy_response(c->resp);
        c->resp = NULL;
        c->queued = 1;
        return r;
}

struct query_check {
        struct api_call *c;
        const char *bad;
        int bad_value;
};

static enum MHD_Result query_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
        (void)kind;
        struct query_check *q = cls;
        int r = api_query_arg(q->c->route, key, value, &q->c->follow);
        if (r == 0)
                return MHD_YES;
        q->bad = key;
        q->bad_value = r == -EINVAL;
        return MHD_NO;
}

static int check_query(struct api_call *c)
{
        struct query_check q = { .c = c };
        MHD_get_connection_values(c->conn, MHD_GET_ARGUMENT_KIND, query_arg, &q);
        if (!q.bad)
                return 0;
        if (q.bad_value)
                return api_call_fail(c, 400, "ValueError", "query parameter '%.64s': expected 1, 0, true or false",
                                     q.bad);
        return api_call_fail(c, 400, "ValueError", "unknown query parameter '%.64s'", q.bad);
}

static int is_json_type(const char *ct)
{
        static const char want[] = "application/json";
        if (!ct || strncasecmp(ct, want, sizeof want - 1) != 0)
                return 0;
        ct += sizeof want - 1;
        return *ct == '\0' || *ct == ';' || *ct == ' ' || *ct == '\t';
}

/* How the body comes: only with a Content-Length (chunked is refused, so
 * that a body over the cap is refused before a byte of it is read), and
 * at most the cap: max_body, or max_raw_body for a route taking raw bytes
 * (no route: the smaller). */
static int check_framing(struct api_call *c)
{
        struct api *a = c->api;
        int raw = c->route && (c->route->flags & API_ROUTE_RAW);
        size_t cap = raw ? a->max_raw_body : a->max_body;
        if (!c->route && a->max_raw_body < cap)
                cap = a->max_raw_body;
        if (MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING))
                return api_call_fail(c, 411, "LengthRequiredError", "a request body needs a Content-Length");
        const char *cl = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (!cl)
                return 0;
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno || end == cl || *end || n > cap)
                return api_call_fail(c, 413, "PayloadTooLargeError",
                                     "request body of %s bytes is over the limit of %zu bytes", errno ? "too many" : cl,
                                     cap);
        c->expect = n;
        return 0;
}

/* A raw body is counted against max_raw_held from its Content-Length, as
 * soon as the headers are in: the bytes it will take are known, and a
 * body past the room is refused before any of it is read. */
static int raw_reserve(struct api_call *c)
{
        struct api *a = c->api;
        if (!c->route || !(c->route->flags & API_ROUTE_RAW) || !c->expect)
                return 0;
        if (c->expect > a->max_raw_held - a->raw_held)
                return api_call_fail(c, 503, "UnavailableError",
                                     "uploads in progress hold %zu bytes; %zu more would pass the limit of %zu bytes: "
                                     "try again later", a->raw_held, c->expect, a->max_raw_held);
        a->raw_held += c->expect;
        c->raw_reserved = c->expect;
        return 0;
}

/* What is refused before the body is read (and the connection closed
 * after the answer, the body unread): a peer not allowed, a server closing,
 * a body not framed by Content-Length or over the cap, a raw body past the
 * room left for them. The route is looked up here (its cap depends on it);
 * not finding one is answered later, by call_admit. */
static int refuse_early(struct api_call *c, const char *url, const char *method, char *allow, size_t allow_size,
                        unsigned *status)
{
        struct api_peer *p = (struct api_peer *)c->peer;
        c->early = 1;
        if (!p)
                return api_call_fail(c, 503, "UnavailableError", "cannot check this connection's peer: out of memory");
        if (!p->allowed) {
                return api_call_fail(c, 403, "PermissionError", "uid %d is not allowed to use this API",
                                     (int)p->cred.uid);
        }
        if (c->api->closing)
                return api_call_fail(c, 503, "UnavailableError", "the server is shutting down");
        const char *tail = NULL;
        c->route = api_route_find(method, url, c->id, &tail, allow, allow_size, status);
        if (tail && !(c->path = strdup(tail)))
                return -ENOMEM;
        int r = check_framing(c);
        if (r == 0 && c->state != CALL_ANSWERED)
                r = raw_reserve(c);
        if (r < 0 || c->state == CALL_ANSWERED)
                return r;
        c->early = 0;
        return 0;
}

/* Everything decided from the headers alone. Returns 0 (the call is
 * answered when it was refused) or -ENOMEM. Refusals past refuse_early
 * are sent once the body (at most the cap) is in and dropped: a client
 * still writing its body would not read an answer sent before. */
static int call_admit(struct api_call *c, const char *url, const char *method)
{
        char allow[64];
        unsigned status = 0;
        int r = refuse_early(c, url, method, allow, sizeof allow, &status);
        if (r < 0 || c->state == CALL_ANSWERED)
                return r;
        if (!c->route && status == 404)
                return api_call_fail(c, 404, "NotFoundError", "no such endpoint");
        if (!c->route) {
                r = api_call_fail(c, 405, "MethodNotAllowedError", "method not allowed here; allowed: %s", allow);
                if (r == 0 && MHD_add_response_header(c->resp, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES)
                        return -ENOMEM;
                return r;
        }
        char msg[256];
        if (c->path && api_path_check(c->path, 1, msg, sizeof msg) < 0)
                return api_call_fail(c, 400, "ValueError", "%s", msg);
        r = check_query(c);
        if (r < 0 || c->state == CALL_ANSWERED)
                return r;
        if (c->expect && !(c->route->flags & API_ROUTE_RAW) &&
            !is_json_type(MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE)))
                return api_call_fail(c, 415, "UnsupportedMediaTypeError", "a request body must be application/json");
        return 0;
}

static enum MHD_Result call_new(struct api *a, struct MHD_Connection *conn, const char *url, const char *method,
                                void **ctx)
{
        struct api_call *c = calloc(1, sizeof *c);
        if (!c)
                return MHD_NO;
        *c = (struct api_call){ .api = a, .conn = conn, .hup = WATCH_INIT, .state = CALL_NEW, .next = a->calls };
        if (a->calls)
                a->calls->prev = c;
        a->calls = c;
        *ctx = c;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        c->peer = ci ? ci->socket_context : NULL;
        if (call_admit(c, url, method) < 0)
                return MHD_NO;
        /* An answer now skips the body: MHD discards it, unread, and closes. */
        if (c->state == CALL_ANSWERED && (c->early || !c->expect))
                return call_send(c);
        return MHD_YES;
}

static int body_add(struct api_call *c, const char *data, size_t n)
{
        /* MHD hands over no more than the Content-Length, checked already. */
        if (n > c->expect - c->len)
                return -EMSGSIZE;
        if (!c->body) {
                c->body = malloc(c->expect);
                if (!c->body)
                        return -ENOMEM;
        }
        memcpy(c->body + c->len, data, n);
        c->len += n;
        return 0;
}

/* The body as a checked object ({} when there is none). Returns 0 (the
 * call is answered 400 when the body is wrong) or -ENOMEM. */
static int body_parse(struct api_call *c)
{
        char msg[256];
        int r = api_body_parse(c->route, c->body, c->len, &c->json, msg, sizeof msg);
        if (r == -EINVAL)
                return api_call_fail(c, 400, "ValueError", "%s", msg);
        return r;
}

/* What the backend left the call as when its callback returned. */
static enum MHD_Result call_held(struct api_call *c)
{
        struct api *a = c->api;
        switch (c->state) {
        case CALL_ANSWERED:
        case CALL_STREAM:
        case CALL_STREAM_ENDED:
                return call_send(c);
        case CALL_HELD:
                break;
        default:
                return MHD_NO;
        }
        if (!c->cancel) {
                api_logf(a, LOG_ERR, "api: %s %s: the backend neither answered nor kept the call",
                         c->route->method, c->route->pattern);
                c->state = CALL_NEW;
                a->n_held--;
                if (api_call_fail(c, 500, "InternalError", "the server did not answer") < 0)
                        return MHD_NO;
                return call_send(c);
        }
        /* Only calls the backend keeps count against the cap: the one over
         * it is let go at once (the backend's cancel) and refused. */
        if (a->n_held > a->max_held) {
                api_call_cancel(c);
                if (api_call_fail(c, 503, "UnavailableError", "too many requests in progress (%u)", a->max_held) < 0)
                        return MHD_NO;
                return call_send(c);
        }
        if (api_call_suspend(c) < 0) {
                api_call_cancel(c);
                return MHD_NO;
        }
        return MHD_YES;
}

static enum MHD_Result call_dispatch(struct api_call *c)
{
        struct api *a = c->api;
        /* A raw body goes to the backend as it came. */
        if (!(c->route->flags & API_ROUTE_RAW) && body_parse(c) < 0)
                return MHD_NO;
        if (c->state == CALL_ANSWERED)
                return call_send(c);
        c->state = CALL_HELD;
        a->n_held++;
        if (c->route->dispatch(a->ops, a->ops_data, c) == -ENOSYS) {
                c->state = CALL_NEW;
                a->n_held--;
                if (api_call_fail(c, 501, "NotImplementedError", "this server does not provide %s %s",
                                  c->route->method, c->route->pattern) < 0)
                        return MHD_NO;
        }
        return call_held(c);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **ctx)
{
        (void)version;
        struct api_call *c = *ctx;
        if (!c)
                return call_new(cls, conn, url, method, ctx);
        if (*upload_size) {
                /* A refused call's body (within the cap) is read and dropped. */
                if (c->state == CALL_NEW && body_add(c, upload, *upload_size) < 0)
                        return MHD_NO;
                *upload_size = 0;
                return MHD_YES;
        }
        switch (c->state) {
        case CALL_NEW:
                return call_dispatch(c);
        case CALL_ANSWERED:
        case CALL_STREAM:
        case CALL_STREAM_ENDED:
                /* Woken with the answer that came while it was parked. */
                return c->resp ? call_send(c) : MHD_NO;
        default:
                return MHD_NO;  /* cancelled: close */
        }
}

/* ---- on the loop ------------------------------------------------------ */

static void api_rearm(struct api *a)
{
        MHD_UNSIGNED_LONG_LONG ms;
        int r = MHD_get_timeout(a->mhd, &ms) == MHD_YES ? timer_arm(&a->tick, (double)ms / 1000.0, 0)
                                                         : timer_disarm(&a->tick);
        if (r < 0)
                api_logf(a, LOG_ERR, "api: cannot arm the connection timer: %s", strerror(-r));
}

static void api_run(struct api *a)
{
        if (MHD_run(a->mhd) != MHD_YES)
                api_logf(a, LOG_ERR, "api: libmicrohttpd could not run");
        api_rearm(a);
}

static void on_mhd(struct watch *w, uint32_t events)
{
        (void)events;
        api_run(w->data);
}

static void on_tick(struct timer *t)
{
        api_run(t->data);
}

static void on_kick(struct defer *d)
{
        api_run(d->data);
}

/* ---- the socket ------------------------------------------------------- */

/* Clears the way for bind: nothing there, or a socket nothing answers on
 * (a crashed server's), removed. Anything else is not ours to remove. */
static int clear_stale(const char *path, const struct sockaddr_un *sa, struct jr_err *err)
{
        struct stat st;
        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : jr_fail(err, errno, "api: %s", path);
        if (!S_ISSOCK(st.st_mode))
                return jr_fail(err, EEXIST, "api: %s exists and is not a socket", path);
        _cleanup_close_ int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (probe < 0)
                return jr_fail(err, errno, "api: socket");
        if (connect(probe, (const struct sockaddr *)sa, sizeof *sa) == 0 || errno == EAGAIN)
                return jr_fail(err, EADDRINUSE, "api: a server answers on %s already", path);
        if (errno != ECONNREFUSED)
                return jr_fail(err, errno, "api: probe %s", path);
        if (unlink(path) < 0 && errno != ENOENT)
                return jr_fail(err, errno, "api: remove the stale socket %s", path);
        return 0;
}

static int socket_setup(struct api *a, const struct api_config *cfg, int fd, const struct sockaddr_un *sa,
                        struct jr_err *err)
{
        if (bind(fd, (const struct sockaddr *)sa, sizeof *sa) < 0)
                return jr_fail(err, errno, "api: bind %s", cfg->socket_path);
        struct stat st;
        if (stat(cfg->socket_path, &st) < 0)
                return jr_fail(err, errno, "api: %s", cfg->socket_path);
        a->dev = st.st_dev;
        a->ino = st.st_ino;
        if (cfg->socket_gid != (gid_t)-1 && chown(cfg->socket_path, (uid_t)-1, cfg->socket_gid) < 0)
                return jr_fail(err, errno, "api: chown %s to gid %d", cfg->socket_path, (int)cfg->socket_gid);
        /* The mode before listen(): until then a connect is refused, so the
         * file's mode from the umask meanwhile lets nobody in. */
        if (chmod(cfg->socket_path, cfg->socket_mode) < 0)
                return jr_fail(err, errno, "api: chmod %s", cfg->socket_path);
        if (listen(fd, SOMAXCONN) < 0)
                return jr_fail(err, errno, "api: listen on %s", cfg->socket_path);
        return 0;
}

/* Removes the socket file if it is still the one we made. */
static void socket_remove(struct api *a)
{
        struct stat st;
        if (a->path && a->ino && stat(a->path, &st) == 0 && st.st_dev == a->dev && st.st_ino == a->ino &&
            unlink(a->path) < 0)
                api_logf(a, LOG_WARNING, "api: cannot remove %s: %s", a->path, strerror(errno));
        a->ino = 0;
}

static int socket_open(struct api *a, const struct api_config *cfg, struct jr_err *err)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(cfg->socket_path) >= sizeof sa.sun_path)
                return jr_fail(err, ENAMETOOLONG, "api: socket path %s", cfg->socket_path);
        memcpy(sa.sun_path, cfg->socket_path, strlen(cfg->socket_path));
        int r = clear_stale(cfg->socket_path, &sa, err);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return jr_fail(err, errno, "api: socket");
        r = socket_setup(a, cfg, fd, &sa, err);
        if (r < 0) {
                socket_remove(a);
                return r;
        }
        return TAKE_FD(fd);
}

/* ---- the server ------------------------------------------------------- */

static int copy_config(struct api *a, const struct api_config *cfg)
{
        a->path = strdup(cfg->socket_path);
        a->uids = calloc(cfg->n_allow_uids + 1, sizeof *a->uids);
        a->gids = calloc(cfg->n_allow_gids + 1, sizeof *a->gids);
        if (!a->path || !a->uids || !a->gids)
                return -ENOMEM;
        if (cfg->n_allow_uids)
                memcpy(a->uids, cfg->allow_uids, cfg->n_allow_uids * sizeof *a->uids);
        if (cfg->n_allow_gids)
                memcpy(a->gids, cfg->allow_gids, cfg->n_allow_gids * sizeof *a->gids);
        a->n_uids = cfg->n_allow_uids;
        a->n_gids = cfg->n_allow_gids;
        a->max_body = cfg->max_body ? cfg->max_body : API_MAX_BODY_DEFAULT;
        a->max_raw_body = cfg->max_raw_body ? cfg->max_raw_body : API_MAX_RAW_BODY_DEFAULT;
        a->max_raw_held = cfg->max_raw_held ? cfg->max_raw_held : API_MAX_RAW_HELD_DEFAULT;
        if (a->max_raw_held < a->max_raw_body)  /* one upload of the largest size fits, alone */
                a->max_raw_held = a->max_raw_body;
        a->stream_buffer = cfg->stream_buffer ? cfg->stream_buffer : 1u << 20;
        a->max_held = cfg->max_held ? cfg->max_held : 4096;
        a->ops = cfg->ops;
        a->ops_data = cfg->ops_data;
        a->log = cfg->log;
        a->log_data = cfg->log_data;
        return 0;
}

/* MHD's unescape callback: api_unescape (api_routes.c). */
static size_t unescape(void *cls, struct MHD_Connection *conn, char *s)
{
        (void)cls;
        (void)conn;
        return api_unescape(s);
}

static int mhd_start(struct api *a, const struct api_config *cfg, int fd, struct jr_err *err)
{
        /* No thread of MHD's own: its epoll set is served by our loop. */
        unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
        a->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, a,
                                  MHD_OPTION_EXTERNAL_LOGGER, mhd_log, a,  /* first: it logs the rest */
                                  MHD_OPTION_LISTEN_SOCKET, fd,
                                  MHD_OPTION_NOTIFY_CONNECTION, on_connection, a,
                                  MHD_OPTION_NOTIFY_COMPLETED, on_completed, a,
                                  MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections ? cfg->max_connections : 1024u,
                                  MHD_OPTION_CONNECTION_TIMEOUT, cfg->idle_timeout ? cfg->idle_timeout : 60u,
                                  MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
                                  MHD_OPTION_END);
        if (!a->mhd)
                return jr_fail(err, EIO, "api: libmicrohttpd could not start on %s", cfg->socket_path);
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(a->mhd, MHD_DAEMON_INFO_EPOLL_FD);
        if (!di)
                return jr_fail(err, EIO, "api: libmicrohttpd has no epoll fd");
        int r = loop_watch(a->loop, &a->mhd_w, di->epoll_fd, EPOLLIN, 0, on_mhd, a);
        if (r < 0)
                return jr_fail(err, -r, "api: watch libmicrohttpd's epoll fd");

        r = timer_init(a->loop, &a->tick, 0, on_tick, a);
        if (r < 0)
                return jr_fail(err, -r, "api: timer");
        api_rearm(a);
        return 0;
}

int api_open(struct api **out, struct loop *l, const struct api_config *cfg, struct jr_err *err)
{
        *out = NULL;
        if (!cfg->socket_path || !cfg->ops)
                return jr_fail(err, EINVAL, "api: a socket path and a backend are needed");
        struct api *a = calloc(1, sizeof *a);
        if (!a)
                return jr_fail(err, ENOMEM, "api");
        a->loop = l;
        a->mhd_w = (struct watch)WATCH_INIT;

        a->tick = (struct timer)TIMER_INIT;
        a->kick = (struct defer){ .run = on_kick, .data = a };
        int r = copy_config(a, cfg);
        if (r < 0) {
                api_close(a);
                return jr_fail(err, -r, "api");
        }
        int fd = socket_open(a, cfg, err);
        if (fd < 0) {
                api_close(a);
                return fd;
        }
        r = mhd_start(a, cfg, fd, err);
        if (r < 0) {
                if (!a->mhd)  /* once started, MHD owns the listening fd */
                        close(fd);
                api_close(a);
                return r;
        }
        *out = a;
        return 0;
}

/* Answers what the backend still held 503 (its cancel callbacks run
 * first), ends streams, and lets MHD send what it can without waiting. */
static void api_drain(struct api *a)
{
        for (struct api_call *c = a->calls; c; c = c->next) {
                int held = c->state == CALL_HELD;
                api_call_cancel(c);
                if (held && api_call_fail(c, 503, "UnavailableError", "the server is shutting down") < 0)
                        c->state = CALL_CANCELLED;
                api_call_wake(c);
        }
        for (int i = 0; i < 4; i++)
                MHD_run(a->mhd);
}

void api_close(struct api *a)
{
        if (!a)
                return;
        a->closing = 1;
        if (a->mhd)
                api_drain(a);
        loop_unwatch(&a->mhd_w);
        timer_close(&a->tick);
        /* Closes every connection (each call's completion frees it) and the
         * listening socket. */
        if (a->mhd)
                MHD_stop_daemon(a->mhd);
        /* Last: resumes above queued it, and it must not run on a freed a. */
        loop_undefer(a->loop, &a->kick);
        socket_remove(a);
        free(a->path);
        free(a->uids);
        free(a->gids);
        free(a);
}
