/* Inside the API server: shared by api_http.c (the libmicrohttpd glue),
 * api_call.c (answers, streams, field checks) and api_routes.c (the
 * route table). Nothing outside supervisor/jaild/api*.c includes it. */
#ifndef JR_API_INT_H
#define JR_API_INT_H

#include <jansson.h>
#include <microhttpd.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include "supervisor/engine/loop.h"
#include "supervisor/jaild/api.h"

#define API_ID_MAX 128

struct api {
        struct loop *loop;
        struct MHD_Daemon *mhd;
        struct watch mhd_w;         /* MHD's epoll fd */
        struct timer tick;          /* MHD's next timeout */
        struct defer kick;          /* MHD_run after a resume (no ITC) */
        char *path;
        dev_t dev;                  /* the socket file we made: removed */
        ino_t ino;                  /* at close only if it is still ours */
        uid_t *uids;
        size_t n_uids;
        gid_t *gids;
        size_t n_gids;
        size_t max_body;
        size_t max_raw_body;
        size_t max_raw_held;
        size_t raw_held;            /* bytes of raw bodies admitted, not yet freed */
        size_t stream_buffer;
        unsigned max_held;
        unsigned n_held;            /* calls the backend holds */
        const struct api_ops *ops;
        void *ops_data;
        api_log_fn log;
        void *log_data;
        struct api_call *calls;     /* every live call */
        int closing;
        unsigned refused_live;      /* connections of peers not allowed, open (API_MAX_REFUSED) */
        struct timespec refused_at; /* the last refusal logged (at most one a second) */
        unsigned long refused_quiet; /* refusals since, not logged */
};

/* Connections of peers not allowed that are kept to be told 403 (the rest
 * are shut at once), and the seconds each may stay idle. */
#define API_MAX_REFUSED 16
#define API_REFUSED_TIMEOUT 5

/* What a connection's peer is, read once when it connects. */
struct api_peer {
        struct ucred cred;
        int allowed;
        int dropped;                /* shut at once (past API_MAX_REFUSED) */
};

enum call_state {
        CALL_NEW,                   /* headers checked, body coming */
        CALL_HELD,                  /* the backend is answering */
        CALL_ANSWERED,              /* resp is the answer (not sent yet) */
        CALL_STREAM,                /* resp streams what the backend pushes */
        CALL_STREAM_ENDED,          /* ... and it pushes no more */
        CALL_CANCELLED,             /* the backend let go: close */
};

struct api_route;

struct api_call {
        struct api *api;
        struct api_call *prev, *next;
        struct MHD_Connection *conn;
        const struct api_peer *peer;
        const struct api_route *route;
        char id[API_ID_MAX + 1];
        char *path;                 /* a {path} tail, decoded and checked; NULL: none */
        int follow;
        char *body;
        size_t len, cap, expect;
        size_t raw_reserved;        /* counted in api->raw_held for this call's raw body */
        json_t *json;               /* the validated body ({} when none) */
        enum call_state state;
        int early;                  /* answered before its body is read */
        unsigned status;
        struct MHD_Response *resp;  /* our reference until queued */
        int queued;
        int suspended;
        struct watch hup;           /* the peer's hang-up while suspended */
        void (*cancel)(void *data);
        void *cancel_data;
        char *sbuf;                 /* stream bytes not yet read by MHD */
        size_t soff, slen, scap;
};

/* api_http.c */
void api_logf(struct api *a, int priority, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Lets a suspended call go on: its answer or stream data is there, or it
 * was cancelled. */
void api_call_wake(struct api_call *c);
/* Parks the call (from MHD's handler or content reader) until it is woken,
 * watching for the peer hanging up meanwhile. Returns 0 or -errno. */
int api_call_suspend(struct api_call *c);

/* api_call.c */
/* {"error": {"type": type, "message": msg}} as a response (NULL: ENOMEM). */
struct MHD_Response *api_error_response(const char *type, const char *msg);
/* Sets the call's answer to an error without the backend (parse errors,
 * refusals): state CALL_ANSWERED. Returns 0 or -ENOMEM. */
int api_call_fail(struct api_call *c, unsigned status, const char *type, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
/* The backend lets go of the call (its cancel callback runs) if it holds it. */
void api_call_cancel(struct api_call *c);
/* MHD's content reader for a stream. */
ssize_t api_stream_read(void *cls, uint64_t pos, char *buf, size_t max);

/* api_routes.c */
struct api_route {
        const char *method;
        const char *pattern;        /* "/v1/workers/{id}/tick" */
        const struct api_field *body;
        const char *query;          /* the one query argument it takes, or NULL */
        /* Calls the backend; -ENOSYS when the backend lacks the op. */
        int (*dispatch)(const struct api_ops *ops, void *data, struct api_call *c);
        unsigned flags;             /* API_ROUTE_* */
};

/* The body is raw bytes, not JSON: any content type, capped by
 * max_raw_body and max_raw_held; body is NULL for such a route. */
#define API_ROUTE_RAW 1u

/* The route for method and path. NULL when none: *status is 404, or 405
 * with allow filled ("GET, DELETE"). The {id} segment goes into id; a
 * pattern ending in "{path}" takes the rest of the path, whatever it is
 * (api_path_check is the caller's), pointed to by *tail (NULL for other
 * routes). */
const struct api_route *api_route_find(const char *method, const char *path, char id[API_ID_MAX + 1],
                                       const char **tail, char *allow, size_t allow_size, unsigned *status);

/* A query argument key=value (value NULL: none) for route r: 0 with
 * *follow set, -ENOENT for a key r does not take, -EINVAL for a value
 * other than 1, 0, true, false or empty. */
int api_query_arg(const struct api_route *r, const char *key, const char *value, int *follow);

/* A JSON route's body (len bytes; none: {}) parsed and checked against
 * r->body. Returns 0 with *out (the caller's), -EINVAL with the reason in
 * msg (invalid JSON, a field refused), or -ENOMEM; *out is NULL then. */
int api_body_parse(const struct api_route *r, const char *body, size_t len, json_t **out, char *msg, size_t size);

/* Percent-decoding of the URL path and query in place, as MHD's own,
 * except that a %00 becomes byte 0x01: MHD hands the path over as a C
 * string, which a NUL would cut short ("a%00b" read as "a"); 0x01 is
 * refused as a control character instead (api_path_check), and matches
 * no id. An escape that is not two hex digits stays as it is. Returns the
 * new length. */
size_t api_unescape(char *s);

#endif
