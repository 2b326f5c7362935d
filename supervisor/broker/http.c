#include "config.h"

#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "supervisor/broker/broker.h"
#include "supervisor/broker/egress.h"
#include "supervisor/broker/http.h"
#include "supervisor/broker/scrub.h"
#include "supervisor/broker/ctxerr.h"

#define HTTP_MAX_URL 8192
#define HTTP_MAX_HEADERS 64
#define HTTP_MAX_HEADER 8192
#define HTTP_MAX_RESPONSE_HEADERS (64 * 1024)

struct xfer {
        struct http *h;
        int64_t id;
        CURL *easy;
        CURLU *url;
        struct curl_slist *req_headers;
        char *body;
        size_t len;
        int too_big;
        json_t *headers;            /* of the last response (redirects reset it) */
        size_t header_bytes;
        char denied[160];           /* why the egress policy refused a connection */
        char refused[EGRESS_MAX_WHY];  /* why a redirect was not followed (a result, not a failure) */
        unsigned hops;              /* redirects followed */
        json_t *scrub;              /* strings never to give back (the secrets) */
        int ctype_doubt;            /* the last response's Content-Type came folded or not as UTF-8 */
        int after_ctype;            /* the header line before was Content-Type */
        int head_open;              /* the last response's headers have not ended (their empty line) */
        int adapter;                /* built by the supervisor with credentials */
        char host[256];             /* of the current URL, lower case */
        char errbuf[CURL_ERROR_SIZE];
        struct xfer *next;
};

struct http {
        const struct http_cfg *cfg;
        /* With a proxy: its addresses, the only ones connected to. */
        size_t nproxy;
        struct jr_net proxy_addr[8];
        CURLM *multi;
        int epfd, tfd;
        unsigned in_flight;
        struct xfer *all;           /* in flight */
        double tokens;              /* the rate limit's bucket */
        struct timespec refilled;
};

/* --- libcurl's callbacks ------------------------------------------------------ */

static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
        struct xfer *x = clientp;
        (void)purpose;
        const unsigned char *addr = NULL;
        if (a->family == AF_INET) {
                addr = (const unsigned char *)&((struct sockaddr_in *)&a->addr)->sin_addr;
        } else if (a->family == AF_INET6) {
                addr = (const unsigned char *)&((struct sockaddr_in6 *)&a->addr)->sin6_addr;
        } else {
                snprintf(x->denied, sizeof x->denied, "an address family other than IPv4 and IPv6");
                return CURL_SOCKET_BAD;
        }
        if (egress_connect(x->h->cfg, x->h->proxy_addr, x->h->nproxy, a->family, addr, x->denied,
                           sizeof x->denied))
                return CURL_SOCKET_BAD;
        int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
        return fd < 0 ? CURL_SOCKET_BAD : fd;
}

/* Connected, before the request goes: a peer that is this very host (an
 * address routed locally that no interface shows, AnyIP) is refused. */
static int on_connected(void *clientp, char *peer, char *local, int peer_port, int local_port)
{
        struct xfer *x = clientp;
        (void)peer_port;
        (void)local_port;
        return egress_peer(x->h->cfg, peer, local, x->denied, sizeof x->denied) ? CURL_PREREQFUNC_ABORT
                                                                                 : CURL_PREREQFUNC_OK;
}

static size_t on_body(char *p, size_t size, size_t n, void *userdata)
{
        struct xfer *x = userdata;
        size_t len = size * n;
        if (x->len + len > x->h->cfg->max_response) {
                x->too_big = 1;
                return 0;  /* aborts the transfer */
        }
        char *grown = realloc(x->body, x->len + len + 1);
        if (!grown)
                return 0;
        memcpy(grown + x->len, p, len);
        x->body = grown;
        x->len += len;
        return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *userdata)
{
        struct xfer *x = userdata;
        size_t len = size * n;
        if ((x->header_bytes += len) > HTTP_MAX_RESPONSE_HEADERS)
                return 0;
        if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {  /* a new response: a redirect's, or the last */
                json_object_clear(x->headers);
                x->header_bytes = len;
                x->ctype_doubt = x->after_ctype = 0;
                x->head_open = 1;
                return len;
        }
        if (len && (p[0] == '\r' || p[0] == '\n')) {
                x->head_open = 0;
                return len;
        }
        if (len && (p[0] == ' ' || p[0] == '\t')) {  /* obs-fold: the line continues the one before */
                x->ctype_doubt |= x->after_ctype;
                return len;
        }
        x->after_ctype = 0;
        const char *colon = memchr(p, ':', len);
        if (!colon)
                return len;
        size_t nlen = (size_t)(colon - p);
        const char *v = colon + 1, *end = p + len;
        while (v < end && (*v == ' ' || *v == '\t'))
                v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
                end--;
        char name[256];
        if (nlen == 0 || nlen >= sizeof name)
                return len;
        for (size_t i = 0; i < nlen; i++)
                name[i] = (char)((p[i] >= 'A' && p[i] <= 'Z') ? p[i] + 32 : p[i]);
        name[nlen] = '\0';
        json_t *val = json_stringn(v, (size_t)(end - v));
        int ctype = strcmp(name, "content-type") == 0;
        x->after_ctype = ctype;
        if (!val || memchr(v, '\0', (size_t)(end - v))) {  /* not UTF-8: kept as Latin-1 would mislead; dropped */
                x->ctype_doubt |= ctype;
                json_decref(val);
                return len;
        }
        json_t *old = json_object_get(x->headers, name);
        if (old) {  /* repeated: joined, as HTTP allows */
                char *joined = NULL;
                if (asprintf(&joined, "%s, %s", json_string_value(old), json_string_value(val)) >= 0) {
                        json_object_set_new(x->headers, name, json_string(joined));
                        free(joined);
                }
                json_decref(val);
        } else {
                json_object_set_new(x->headers, name, val);
        }
        return len;
}

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
        struct http *h = userp;
        (void)easy;
        struct epoll_event ev = { .data.fd = s };
        if (what == CURL_POLL_REMOVE) {
                epoll_ctl(h->epfd, EPOLL_CTL_DEL, s, NULL);
                curl_multi_assign(h->multi, s, NULL);
                return 0;
        }
        ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
        if (epoll_ctl(h->epfd, socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev) < 0)
                return -1;
        curl_multi_assign(h->multi, s, (void *)1);
        return 0;
}

static int on_timer(CURLM *multi, long ms, void *userp)
{
        struct http *h = userp;
        (void)multi;
        struct itimerspec its = { 0 };
        if (ms >= 0) {  /* 0: at once (a nanosecond: zero would disarm) */
                its.it_value.tv_sec = ms / 1000;
                its.it_value.tv_nsec = ms % 1000 * 1000000 + (ms == 0);
        }
        return timerfd_settime(h->tfd, 0, &its, NULL) < 0 ? -1 : 0;
}

/* --- the client --------------------------------------------------------------- */

int http_new(struct http **out, const struct http_cfg *cfg, struct jr_err *err)
{
        /* libcurl's global set-up, once, in this single-threaded process. */
        static int initialised;
        CURLcode c = initialised ? CURLE_OK : curl_global_init(CURL_GLOBAL_DEFAULT);
        if (c != CURLE_OK) {
                jr_fail(err, ENOSYS, "curl_global_init");
                snprintf(err->msg, sizeof err->msg, "libcurl: %s", curl_easy_strerror(c));
                return -ENOSYS;
        }
        initialised = 1;
        struct http *h = calloc(1, sizeof *h);
        if (!h)
                return jr_fail(err, ENOMEM, "http");
        h->cfg = cfg;
        h->tokens = cfg->rate < 1 ? 1 : cfg->rate;
        clock_gettime(CLOCK_MONOTONIC, &h->refilled);
        h->epfd = epoll_create1(EPOLL_CLOEXEC);
        h->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        h->multi = curl_multi_init();
        if (h->epfd < 0 || h->tfd < 0 || !h->multi) {
                int r = jr_fail(err, h->multi ? errno : ENOMEM, "http client");
                http_free(h);
                return r;
        }
        if (cfg->proxy[0] &&
            egress_proxy_addresses(cfg, h->proxy_addr, ELEMENTSOF(h->proxy_addr), &h->nproxy, err) < 0) {
                int r = -err->errnum;
                http_free(h);
                return r ? r : -EINVAL;
        }
        curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
        curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
        curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer);
        curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
        *out = h;
        return 0;
}

static void xfer_free(struct xfer *x)
{
        if (x->easy) {
                curl_multi_remove_handle(x->h->multi, x->easy);
                curl_easy_cleanup(x->easy);
        }
        curl_url_cleanup(x->url);
        curl_slist_free_all(x->req_headers);
        json_decref(x->headers);
        json_decref(x->scrub);
        free(x->body);
        free(x);
}

void http_free(struct http *h)
{
        if (!h)
                return;
        while (h->all) {
                struct xfer *x = h->all;
                h->all = x->next;
                xfer_free(x);
        }
        if (h->multi)
                curl_multi_cleanup(h->multi);
        closep(&h->epfd);
        closep(&h->tfd);
        free(h);
}

int http_epoll_fd(const struct http *h)
{
        return h->epfd;
}

int http_timer_fd(const struct http *h)
{
        return h->tfd;
}

/* Headers that frame or route the request are libcurl's alone: a worker
 * that set Content-Length could smuggle a second request onto a kept
 * connection. */
static const char *const framing[] = { "content-length", "transfer-encoding", "host", "connection", "expect",
                                       "upgrade", "keep-alive", "te", "trailer", "proxy-connection",
                                       "proxy-authorization", NULL };

static int header_ok(const char *name, const char *value)
{
        size_t n = strlen(name);
        char norm[64];  /* some back ends take '_' for '-' */
        snprintf(norm, sizeof norm, "%s", name);
        for (char *c = norm; *c; c++)
                if (*c == '_')
                        *c = '-';
        for (const char *const *f = framing; *f; f++)
                if (strcasecmp(norm, *f) == 0)
                        return 0;
        if (n == 0 || n > 256 || strspn(name, "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij"
                                              "klmnopqrstuvwxyz") != n)
                return 0;
        return strlen(value) <= HTTP_MAX_HEADER && !strpbrk(value, "\r\n");
}

/* The URL (with params added) in x->url, checked: http or https, a host
 * the egress policy allows. BROKER_NEXT, or the call's end. */
static int build_url(struct xfer *x, const char *url, json_t *params, json_t **result)
{
        if (strlen(url) > HTTP_MAX_URL)
                return broker_done(result, ctx_error("the URL is longer than %d bytes", HTTP_MAX_URL));
        if (!(x->url = curl_url()))
                return -ENOMEM;
        CURLUcode rc = curl_url_set(x->url, CURLUPART_URL, url, 0);
        if (rc != CURLUE_OK)
                return rc == CURLUE_OUT_OF_MEMORY ? -ENOMEM : broker_done(result, ctx_error("not a URL: %.200s", url));
        char why[EGRESS_MAX_WHY];
        if (egress_url(x->h->cfg, x->url, url, x->host, why))
                return broker_done(result, ctx_error("%s", why));
        const char *k;
        json_t *v;
        json_object_foreach(params, k, v) {
                char *pair = NULL;
                if (asprintf(&pair, "%s=%s", k, json_string_value(v)) < 0)
                        return -ENOMEM;
                rc = curl_url_set(x->url, CURLUPART_QUERY, pair, CURLU_APPENDQUERY | CURLU_URLENCODE);
                free(pair);
                if (rc == CURLUE_OUT_OF_MEMORY)
                        return -ENOMEM;
                if (rc != CURLUE_OK)
                        return broker_done(result, ctx_error("query parameter %.100s cannot be added", k));
        }
        return BROKER_NEXT;
}

/* The worker's headers in x->req_headers: BROKER_NEXT, or the call's end. */
static int req_headers(struct xfer *x, json_t *headers, json_t **result)
{
        const char *k;
        json_t *v;
        size_t nh = 0;
        json_object_foreach(headers, k, v) {
                if (++nh > HTTP_MAX_HEADERS)
                        return broker_done(result, ctx_error("more than %d request headers", HTTP_MAX_HEADERS));
                if (!header_ok(k, json_string_value(v)))
                        return broker_done(result, ctx_error("request header %.100s is not a valid header", k));
                char *line = NULL;
                if (asprintf(&line, "%s: %s", k, json_string_value(v)) < 0)
                        return -ENOMEM;
                struct curl_slist *l = curl_slist_append(x->req_headers, line);
                free(line);
                if (!l)
                        return -ENOMEM;
                x->req_headers = l;
        }
        return BROKER_NEXT;
}

/* A request's arguments, checked. */
struct request {
        const char *method, *url, *body;
        size_t blen;
        json_t *headers, *params;
        double timeout;
};

/* Sets option `opt` unless an earlier one failed (its code kept in c). */
#define SETOPT(e, c, opt, val) ((c) = (c) != CURLE_OK ? (c) : curl_easy_setopt((e), (opt), (val)))

/* The transfer's options: BROKER_NEXT, or -ENOMEM (-EINVAL: an option
 * this libcurl lacks; never a request sent without one). */
static int options(struct xfer *x, const struct request *q)
{
        const struct http_cfg *cfg = x->h->cfg;
        CURL *e = x->easy;
        CURLcode c = CURLE_OK;
        long ms = (long)(q->timeout * 1000);
        SETOPT(e, c, CURLOPT_CURLU, x->url);
        SETOPT(e, c, CURLOPT_PROTOCOLS_STR, "http,https");
        SETOPT(e, c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        /* Redirects are followed here, hop by hop (http_done), so each
         * hop's URL meets the scheme and host rules before it is asked. */
        SETOPT(e, c, CURLOPT_FOLLOWLOCATION, 0L);
        SETOPT(e, c, CURLOPT_TIMEOUT_MS, ms);
        SETOPT(e, c, CURLOPT_CONNECTTIMEOUT_MS, ms < 10000 ? ms : 10000L);
        SETOPT(e, c, CURLOPT_NOSIGNAL, 1L);
        /* The policy's proxy, never the operator's *_proxy variables. */
        SETOPT(e, c, CURLOPT_PROXY, cfg->proxy);
        SETOPT(e, c, CURLOPT_NETRC, (long)CURL_NETRC_IGNORED);
        SETOPT(e, c, CURLOPT_USERAGENT, "jailrun/" PACKAGE_VERSION);
        SETOPT(e, c, CURLOPT_ACCEPT_ENCODING, "");  /* the size cap counts decoded bytes */
        SETOPT(e, c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)cfg->max_response);
        SETOPT(e, c, CURLOPT_PREREQFUNCTION, on_connected);
        SETOPT(e, c, CURLOPT_PREREQDATA, x);
        SETOPT(e, c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
        SETOPT(e, c, CURLOPT_OPENSOCKETDATA, x);
        SETOPT(e, c, CURLOPT_WRITEFUNCTION, on_body);
        SETOPT(e, c, CURLOPT_WRITEDATA, x);
        SETOPT(e, c, CURLOPT_HEADERFUNCTION, on_header);
        SETOPT(e, c, CURLOPT_HEADERDATA, x);
        SETOPT(e, c, CURLOPT_ERRORBUFFER, x->errbuf);
        SETOPT(e, c, CURLOPT_PRIVATE, x);
        SETOPT(e, c, CURLOPT_HTTPHEADER, x->req_headers);
        if (strcmp(q->method, "HEAD") == 0)
                SETOPT(e, c, CURLOPT_NOBODY, 1L);
        else if (strcmp(q->method, "GET") != 0)
                SETOPT(e, c, CURLOPT_CUSTOMREQUEST, q->method);
        if (x->adapter) {  /* an adapter's: a connection of its own, used once */
                SETOPT(e, c, CURLOPT_FRESH_CONNECT, 1L);
                SETOPT(e, c, CURLOPT_FORBID_REUSE, 1L);
        }
        if (q->body) {
                SETOPT(e, c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->blen);
                SETOPT(e, c, CURLOPT_COPYPOSTFIELDS, q->body);
        }
        return c == CURLE_OK ? BROKER_NEXT : c == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
}

/* Whether the rate limit refuses a request now (else it takes a token). */
static int rate_refused(struct http *h)
{
        if (h->cfg->rate <= 0)
                return 0;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double burst = h->cfg->rate < 1 ? 1 : h->cfg->rate;
        h->tokens += ((double)(now.tv_sec - h->refilled.tv_sec) + (double)(now.tv_nsec - h->refilled.tv_nsec) / 1e9) *
                     h->cfg->rate;
        h->tokens = h->tokens > burst ? burst : h->tokens;
        h->refilled = now;
        if (h->tokens < 1)
                return 1;
        h->tokens -= 1;
        return 0;
}

/* Whether every member of obj is a str without NUL (else *bad names one). */
static int all_text(json_t *obj, const char **bad)
{
        const char *k;
        json_t *v;
        json_object_foreach(obj, k, v) if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
                return *bad = k, 0;
        return 1;
}

/* The request's arguments in *q: BROKER_NEXT, or the call's end (-EPROTO
 * with err when malformed). */
static int request_args(struct http *h, json_t *args, struct request *q, json_t **result, struct jr_err *err)
{
        json_error_t je = { 0 };
        const char *bad = NULL;
        *q = (struct request){ 0 };
        if (json_unpack_ex(args, &je, JSON_STRICT, "{s:s, s:s, s:o, s:o, s:F, s?s%}", "method", &q->method, "url",
                           &q->url, "headers", &q->headers, "params", &q->params, "timeout", &q->timeout, "body",
                           &q->body, &q->blen) < 0 ||
            !json_is_object(q->headers) || !json_is_object(q->params))
                return ctx_protocol(err, "http.request", &je);
        if (!all_text(q->headers, &bad))
                return broker_done(result, ctx_error("header %.100s: a str without NUL", bad));
        if (!all_text(q->params, &bad))
                return broker_done(result, ctx_error("parameter %.100s: a str without NUL", bad));
        if (strlen(q->url) != json_string_length(json_object_get(args, "url")))
                return broker_done(result, ctx_error("the URL holds NUL"));
        if (q->body && strcmp(q->method, "GET") == 0)
                return broker_done(result, ctx_error("a GET request has no body"));
        static const char *const methods[] = { "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS" };
        int known = 0;
        for (size_t i = 0; i < ELEMENTSOF(methods); i++)
                known |= strcmp(q->method, methods[i]) == 0;
        if (!known)
                return broker_done(result, ctx_error("method %.20s is not one of GET HEAD POST PUT PATCH DELETE "
                                                     "OPTIONS", q->method));
        if (!(q->timeout > 0))
                return broker_done(result, ctx_error("timeout must be more than 0 seconds"));
        if (q->timeout > h->cfg->timeout_max)  /* at most the policy's, however long it asks */
                q->timeout = h->cfg->timeout_max;
        if (h->in_flight >= h->cfg->max_in_flight)
                return broker_done(result, ctx_error("%u requests are already in flight; that is the limit",
                                                     h->in_flight));
        if (rate_refused(h))
                return broker_done(result, ctx_error("the rate limit of %g requests a second is reached",
                                                     h->cfg->rate));
        return BROKER_NEXT;
}

/* The transfer made and added to the multi handle: BROKER_PENDING, or the
 * call's end. */
static int start(struct http *h, int64_t id, const struct request *q, json_t *scrub, int adapter, json_t **result)
{
        struct xfer *x = calloc(1, sizeof *x);
        if (!x)
                return -ENOMEM;
        *x = (struct xfer){ .h = h, .id = id, .scrub = json_incref(scrub), .adapter = adapter };
        int r = (x->headers = json_object()) && (x->easy = curl_easy_init()) ? BROKER_NEXT : -ENOMEM;
        if (r == BROKER_NEXT)
                r = build_url(x, q->url, q->params, result);
        if (r == BROKER_NEXT)
                r = req_headers(x, q->headers, result);
        if (r == BROKER_NEXT)
                r = options(x, q);
        if (r == BROKER_NEXT && curl_multi_add_handle(h->multi, x->easy) != CURLM_OK)
                r = broker_done(result, ctx_error("the request could not be started"));
        if (r != BROKER_NEXT) {
                xfer_free(x);
                return r;
        }
        x->next = h->all;
        h->all = x;
        h->in_flight++;
        return BROKER_PENDING;
}

int http_start(struct http *h, int64_t id, json_t *args, json_t *scrub, int adapter, json_t **result,
               struct jr_err *err)
{
        *result = NULL;
        _cleanup_(json_decrefp) json_t *needles = scrub ? scrub_needles(scrub) : NULL;
        if (scrub && !needles)  /* never a request whose answer goes unscrubbed */
                return -ENOMEM;
        struct request q;
        int r = request_args(h, args, &q, result, err);
        if (r == BROKER_NEXT)
                r = start(h, id, &q, needles, adapter, result);
        if (r == BROKER_DONE && !(*result = scrub_json(*result, needles)))  /* an error at once may quote the URL */
                r = -ENOMEM;
        return r;
}

void http_on_ready(struct http *h)
{
        struct epoll_event evs[16];
        int n = epoll_wait(h->epfd, evs, 16, 0);
        int running;
        for (int i = 0; i < n; i++) {
                int mask = (evs[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                           (evs[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                           (evs[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
                curl_multi_socket_action(h->multi, evs[i].data.fd, mask, &running);
        }
}

void http_on_timer(struct http *h)
{
        uint64_t ticks;
        int running;
        while (read(h->tfd, &ticks, sizeof ticks) < 0 && errno == EINTR)
                ;
        curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
}

static json_t *outcome(struct xfer *x, CURLcode rc)
{
        const struct http_cfg *cfg = x->h->cfg;
        if (rc == CURLE_OK) {
                long status = 0;
                char *eff = NULL;
                curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
                curl_url_get(x->url, CURLUPART_URL, &eff, 0);  /* the last hop's */
                json_t *r = json_pack("{s:i, s:O, s:s}", "status", (int)status, "headers", x->headers, "url",
                                      eff ? eff : "");
                curl_free(eff);
                return r;
        }
        if (x->denied[0])
                return ctx_error("refused by the egress policy: %s", x->denied);
        if (x->too_big || rc == CURLE_FILESIZE_EXCEEDED)
                return ctx_error("the response is larger than %llu bytes", (unsigned long long)cfg->max_response);
        switch (rc) {
        case CURLE_OPERATION_TIMEDOUT: return ctx_error("timed out");
        case CURLE_PARTIAL_FILE:
                if (x->head_open)
                        return ctx_error("the connection closed in the middle of the response's headers");
                return ctx_error("the connection closed before the end of the response's body");
        case CURLE_UNSUPPORTED_PROTOCOL: return ctx_error("only http and https (HTTP/1.0 or later), redirects included");
        default:
                return ctx_error("%s%s%.300s", curl_easy_strerror(rc), x->errbuf[0] ? ": " : "", x->errbuf);
        }
}

/* Drops the request headers whose lines start with one of `drop` (any
 * case): 0, or -ENOMEM with the list as it was. */
static int drop_headers(struct xfer *x, const char *const *drop)
{
        struct curl_slist *kept = NULL;
        for (struct curl_slist *l = x->req_headers; l; l = l->next) {
                int gone = 0;
                for (const char *const *d = drop; *d; d++)
                        gone |= strncasecmp(l->data, *d, strlen(*d)) == 0;
                if (gone)
                        continue;
                struct curl_slist *k = curl_slist_append(kept, l->data);
                if (!k) {
                        curl_slist_free_all(kept);
                        return -ENOMEM;
                }
                kept = k;
        }
        curl_slist_free_all(x->req_headers);
        x->req_headers = kept;
        curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->req_headers);
        return 0;
}

/* The headers a request must not carry to another host. */
static const char *const credentials[] = { "authorization:", "cookie:", "proxy-authorization:", NULL };
/* ... nor without its body. */
static const char *const body_headers[] = { "content-type:", NULL };

/* The next hop's URL in x->url, judged: 1, 0 when refused (x->refused
 * says why), or -ENOMEM. Credentials stay with their host. */
static int next_hop(struct xfer *x, const char *next)
{
        char old[256];
        snprintf(old, sizeof old, "%s", x->host);
        _cleanup_free_ char *to = strdup(next);
        CURLUcode rc = to ? curl_url_set(x->url, CURLUPART_URL, to, 0) : CURLUE_OUT_OF_MEMORY;
        if (rc == CURLUE_OUT_OF_MEMORY)
                return -ENOMEM;
        if (rc != CURLUE_OK)
                return snprintf(x->refused, sizeof x->refused, "a redirect to something that is not a URL"), 0;
        if (egress_url(x->h->cfg, x->url, to, x->host, x->refused))
                return 0;
        return strcmp(old, x->host) != 0 && drop_headers(x, credentials) < 0 ? -ENOMEM : 1;
}

/* A finished response that redirects: the next hop started (1), not to
 * be followed (0: it is the result, or x->refused says why not), or
 * -ENOMEM. */
static int follow(struct xfer *x)
{
        long status = 0;
        char *next = NULL;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(x->easy, CURLINFO_REDIRECT_URL, &next);
        if (!next || (status != 301 && status != 302 && status != 303 && status != 307 && status != 308))
                return 0;
        if (x->adapter)  /* an adapter's answer is its service's own: never followed with its credentials */
                return 0;
        if (x->hops++ >= x->h->cfg->max_redirects) {
                snprintf(x->refused, sizeof x->refused, "more than %u redirects", x->h->cfg->max_redirects);
                return 0;
        }
        int r = next_hop(x, next);
        if (r <= 0)
                return r;
        char *method = NULL;
        curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_METHOD, &method);
        if (status == 303 || ((status == 301 || status == 302) && method && strcmp(method, "POST") == 0)) {
                curl_easy_setopt(x->easy, CURLOPT_CUSTOMREQUEST, NULL);
                curl_easy_setopt(x->easy, CURLOPT_HTTPGET, 1L);
                if (drop_headers(x, body_headers) < 0)  /* the body, and what described it, are gone */
                        return -ENOMEM;
        }
        curl_multi_remove_handle(x->h->multi, x->easy);
        curl_easy_setopt(x->easy, CURLOPT_CURLU, x->url);
        free(x->body);
        x->body = NULL;
        x->len = 0;
        json_object_clear(x->headers);
        if (curl_multi_add_handle(x->h->multi, x->easy) != CURLM_OK)
                return snprintf(x->refused, sizeof x->refused, "the redirect could not be followed"), 0;
        return 1;
}

/* A finished transfer's answer: BROKER_DONE with *result and *body (the
 * text the worker gets, or NULL), or -ENOMEM with nothing to free. */
static int answer(struct xfer *x, CURLcode rc, json_t **result, void **body, size_t *len)
{
        int r = broker_done(result, x->refused[0] ? ctx_error("%s", x->refused) : outcome(x, rc));
        if (r == BROKER_DONE && rc == CURLE_OK && !x->refused[0]) {
                *body = x->body ? TAKE_PTR(x->body) : calloc(1, 1);
                *len = x->len;
                /* the worker gets text, in the charset decided here */
                r = *body ? scrub_body(result, x->ctype_doubt, x->scrub, body, len) : -ENOMEM;
        }
        if (r == BROKER_DONE && x->scrub && !(*result = scrub_json(*result, x->scrub))) {
                free(*body);  /* out of memory: an error, never the body unscrubbed */
                *body = NULL;
                *len = 0;
                r = broker_done(result, ctx_error("the response could not be checked for secrets (out of memory)"));
        }
        if (r < 0) {
                json_decref(TAKE_PTR(*result));
                free(*body);
                *body = NULL;
                *len = 0;
        }
        return r;
}

int http_done(struct http *h, int64_t *id, json_t **result, void **body, size_t *len)
{
        int left;
        CURLMsg *m;
        *result = NULL;
        *body = NULL;
        *len = 0;
        while ((m = curl_multi_info_read(h->multi, &left))) {
                if (m->msg != CURLMSG_DONE)
                        continue;
                struct xfer *x = NULL;
                CURLcode rc = m->data.result;
                curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
                /* libcurl (7.88) ends a response whose connection closed in
                 * the middle of its headers as a success: it is cut short. */
                if (x && rc == CURLE_OK && x->head_open)
                        rc = CURLE_PARTIAL_FILE;
                int next = x && rc == CURLE_OK ? follow(x) : 0;
                if (!x || next == 1)
                        continue;
                *id = x->id;
                int r = next < 0 ? next : answer(x, rc, result, body, len);
                for (struct xfer **p = &h->all; *p; p = &(*p)->next)
                        if (*p == x) {
                                *p = x->next;
                                break;
                        }
                h->in_flight--;
                xfer_free(x);
                return r;
        }
        return BROKER_PENDING;
}
