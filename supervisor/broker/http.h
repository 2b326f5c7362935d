/* ctx.http: requests made by the supervisor for a worker, with libcurl's
 * multi interface driven from the job's event loop (no thread per
 * request). Its sockets live in an epoll set of its own, which the job's
 * loop watches with a timerfd for libcurl's timeouts.
 *
 * What a request may reach is the egress policy's (egress.h), judged on
 * every connection and every redirect; what comes back is scrubbed of
 * secrets (scrub.h). */
#ifndef JR_HTTP_H
#define JR_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/netaddr.h"

#define HTTP_MAX_ALLOW 64
#define HTTP_MAX_HOSTS 64

struct http_cfg {
        double timeout_max;          /* seconds a request may take at most */
        uint64_t max_response;       /* bytes of a response body */
        unsigned max_in_flight;      /* requests of one worker at once */
        unsigned max_redirects;
        double rate;                 /* requests started per second (a bucket of as many); 0 = no limit */
        /* Internal addresses allowed all the same (tests: 127.0.0.1/32). */
        size_t nallow;
        struct jr_net allow[HTTP_MAX_ALLOW];
        /* Host names: exact, or "*.example.com" for its subdomains. Any
         * host may be asked for when allow_hosts is empty; deny wins. */
        size_t nallow_hosts, ndeny_hosts;
        char allow_hosts[HTTP_MAX_HOSTS][254];
        char deny_hosts[HTTP_MAX_HOSTS][254];
        /* An egress proxy (http://HOST:PORT) for every request, or "". */
        char proxy[512];
};

struct http;

int http_new(struct http **out, const struct http_cfg *cfg, struct jr_err *err);
void http_free(struct http *h);

/* The fds for the job's loop: an epoll set (readable when a socket is
 * ready) and a timerfd (libcurl's next timeout). */
int http_epoll_fd(const struct http *h);
int http_timer_fd(const struct http *h);

/* Starts request `id` (args: method, url, headers, params, body_text |
 * body_latin1, timeout), with every string of `scrub` (an array: the
 * secrets loaded; NULL: none) replaced by "[secret]" in whatever its
 * answer and body hold, under any escapes, and a body that cannot be
 * checked withheld (scrub.h); `adapter`: a request the supervisor built
 * with credentials (a connection of its own, used once; redirects not
 * followed). Ends as a ctx call does (broker.h): BROKER_PENDING when it
 * is under way (its answer comes out of http_done), BROKER_DONE with
 * *result an error dict when refused at once, -EPROTO with err for
 * malformed args, -ENOMEM. */
int http_start(struct http *h, int64_t id, json_t *args, json_t *scrub, int adapter, json_t **result,
               struct jr_err *err);

/* Drives the transfers: after the epoll set or the timer was readable. */
void http_on_ready(struct http *h);
void http_on_timer(struct http *h);

/* A finished request: BROKER_DONE with its id, result ({status,
 * headers, url, charset: "utf-8", json} or {"error"}) and body (malloc'd
 * UTF-8 text, the charset decided and decoded here: scrub_body; or NULL)
 * in the out-parameters; BROKER_PENDING when none is finished; -ENOMEM
 * with its id when one finished but its answer could not be made. */
int http_done(struct http *h, int64_t *id, json_t **result, void **body, size_t *len);

#endif
