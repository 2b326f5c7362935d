/* The daemon's API server: HTTP/1.1 with JSON bodies (raw bytes for files) on a unix socket
 * (libmicrohttpd), served on the front-end's loop without threads.
 *
 * The server owns the socket, checks every peer's credentials
 * (SO_PEERCRED), caps, parses and validates request bodies, routes each
 * request to one backend callback (struct api_ops) and sends what the
 * backend answers: now, or later (the connection waits, suspended, and
 * costs nothing meanwhile), or as a stream of JSON lines. Every error
 * answer is {"error": {"type": ..., "message": ...}}. */
#ifndef JR_API_H
#define JR_API_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <syslog.h>

#include "common/err.h"
#include "supervisor/engine/loop.h"

struct api;
/* One request the backend is answering. It belongs to the backend from the
 * moment its callback is called until the backend finishes it (api_reply,
 * api_reply_error, api_reply_text, api_stream_end) or it is cancelled. */
struct api_call;

/* The backend: one callback per endpoint (NULL: that endpoint answers 501).
 * Bodies are validated objects, borrowed: valid until the call is finished
 * or cancelled. Ids are path segments of [A-Za-z0-9._-], at most 128 bytes,
 * valid as long as the body. A callback either finishes the call before it
 * returns, or registers api_call_on_cancel() and finishes it later from the
 * loop; one that does neither has its call answered 500 (an answer that
 * could never come would hold the client forever). */
struct api_ops {
        /* POST /v1/workers: {source, profile?, policy?, schedule?, name?} */
        void (*worker_create)(void *data, struct api_call *c, json_t *spec);
        /* GET /v1/workers */
        void (*worker_list)(void *data, struct api_call *c);
        /* GET /v1/workers/{id} */
        void (*worker_get)(void *data, struct api_call *c, const char *id);
        /* PATCH /v1/workers/{id}: {source?, profile?, policy?, schedule?, name?} */
        void (*worker_update)(void *data, struct api_call *c, const char *id, json_t *changes);
        /* DELETE /v1/workers/{id} */
        void (*worker_delete)(void *data, struct api_call *c, const char *id);
        /* POST /v1/workers/{id}/tick: answered when the tick returns */
        void (*worker_tick)(void *data, struct api_call *c, const char *id);
        /* POST /v1/workers/{id}/pause, POST /v1/workers/{id}/resume */
        void (*worker_pause)(void *data, struct api_call *c, const char *id);
        void (*worker_resume)(void *data, struct api_call *c, const char *id);
        /* GET /v1/workers/{id}/logs[?follow=1]: a stream of JSON lines; with
         * follow it goes on as lines come, until the client goes away. */
        void (*worker_logs)(void *data, struct api_call *c, const char *id, int follow);
        /* POST /v1/jobs: {source, profile?, policy?, args?, stdin?, name?},
         * answered when the job ends */
        void (*job_submit)(void *data, struct api_call *c, json_t *job);
        /* GET /v1/health */
        void (*health)(void *data, struct api_call *c);
        /* GET /metrics: Prometheus text (api_reply_text) */
        void (*metrics)(void *data, struct api_call *c);
        /* POST /v1/sessions: {memory_limit?, cpu_limit?, timeout?, packages?, name?},
         * answered when the session's interpreter is ready */
        void (*session_create)(void *data, struct api_call *c, json_t *spec);
        /* GET /v1/sessions, GET and DELETE /v1/sessions/{id} */
        void (*session_list)(void *data, struct api_call *c);
        void (*session_get)(void *data, struct api_call *c, const char *id);
        void (*session_delete)(void *data, struct api_call *c, const char *id);
        /* POST /v1/sessions/{id}/execute[?stream=1]: {code, timeout?} */
        void (*session_execute)(void *data, struct api_call *c, const char *id, json_t *body, int stream);
        /* POST /v1/sessions/{id}/packages: {names} */
        void (*session_packages)(void *data, struct api_call *c, const char *id, json_t *body);

        /* ---- session files (docs/api.md, "Session files") ----
         * path is the rest of the URL after ".../files/", percent-decoded
         * and checked by api_path_check (relative, no "." or ".." or empty
         * segment, no control character, at most API_PATH_MAX bytes); ""
         * names the session directory itself. Valid as long as the id. */
        /* GET /v1/sessions/{id}/files/{path}: the file's bytes
         * (api_reply_bytes) or a directory's listing */
        void (*session_file_get)(void *data, struct api_call *c, const char *id, const char *path);
        /* PUT /v1/sessions/{id}/files/{path}: the raw request body, len
         * bytes (any content type, at most max_raw_body; "" when empty),
         * borrowed like a JSON body */
        void (*session_file_put)(void *data, struct api_call *c, const char *id, const char *path,
                                 const char *body, size_t len);
        /* DELETE /v1/sessions/{id}/files/{path} */
        void (*session_file_delete)(void *data, struct api_call *c, const char *id, const char *path);
};

/* Where log lines go (journald, stderr ...): priority is a syslog LOG_*;
 * line has no newline and quotes nothing a client sent unescaped. */
typedef void (*api_log_fn)(void *data, int priority, const char *line);

#define API_MAX_BODY_DEFAULT (1u << 20)
#define API_MAX_RAW_BODY_DEFAULT (16u << 20)
#define API_MAX_RAW_HELD_DEFAULT (64u << 20)

struct api_config {
        const char *socket_path;    /* created here; a stale one is replaced */
        mode_t socket_mode;         /* of the socket file, e.g. 0660 */
        gid_t socket_gid;           /* its group; (gid_t)-1 keeps the creator's */
        /* Peers allowed besides root: by uid, or by gid (their primary group
         * or any supplementary one). Others get 403 PermissionError. */
        const uid_t *allow_uids;
        size_t n_allow_uids;
        const gid_t *allow_gids;
        size_t n_allow_gids;
        size_t max_body;            /* bytes of a request body; 0: API_MAX_BODY_DEFAULT */
        unsigned max_connections;   /* 0: 1024 */
        unsigned max_held;          /* calls the backend keeps at once (answers later); one
                                     * more is cancelled and answered 503; 0: 4096 */
        unsigned idle_timeout;      /* seconds an idle connection is kept; 0: 60 */
        size_t stream_buffer;       /* bytes a stream queues for a slow reader; 0: 1 MiB */
        const struct api_ops *ops;
        void *ops_data;
        api_log_fn log;             /* NULL: no log */
        void *log_data;
        /* Raw (non-JSON) request bodies, of the routes that take one (PUT
         * files): each at most max_raw_body bytes (more: 413 from the
         * headers alone); all those being received or held by the backend
         * at most max_raw_held bytes together, counted by Content-Length
         * from the headers (past it: 503, the body unread). */
        size_t max_raw_body;        /* 0: API_MAX_RAW_BODY_DEFAULT (16 MiB) */
        size_t max_raw_held;        /* 0: API_MAX_RAW_HELD_DEFAULT (64 MiB); at least max_raw_body */
};

/* Creates, binds and listens on cfg->socket_path and serves it on l. A
 * socket file already there is removed only if nothing answers on it;
 * anything else there is an error. The config is copied; ops and the data
 * pointers must outlive the server. Returns 0 or -errno (err says why). */
int api_open(struct api **out, struct loop *l, const struct api_config *cfg, struct jr_err *err);

/* Stops serving: calls still held by the backend are cancelled (their
 * cancel callbacks run first) and answered 503, every connection is
 * closed, the socket file removed. NULL is accepted. */
void api_close(struct api *a);

/* Called once if the call ends before the backend finished it (the client
 * went away, the server is closing); after it returns the backend must not
 * touch the call again. */
void api_call_on_cancel(struct api_call *c, void (*cancel)(void *data), void *data);

/* The peer that made the request (SO_PEERCRED at connect time). */
void api_call_peer(const struct api_call *c, pid_t *pid, uid_t *uid, gid_t *gid);

/* Finishes the call with status and a JSON body (stolen; NULL: no body).
 * Never fails for the caller: if the answer cannot be built the connection
 * is closed and the reason logged. */
void api_reply(struct api_call *c, unsigned status, json_t *body);
/* Finishes the call with {"error": {"type": type, "message": ...}}. */
void api_reply_error(struct api_call *c, unsigned status, const char *type, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
/* Finishes the call with text of the given content type (copied; any
 * bytes, NULs too; sent with its Content-Length). */
void api_reply_text(struct api_call *c, unsigned status, const char *content_type, const char *text,
                    size_t len);
/* The same with bytes the call takes (malloc'd; freed once sent, or at
 * once if the call is not the backend's): no copy of a large answer. */
void api_reply_bytes(struct api_call *c, unsigned status, const char *content_type, void *bytes, size_t len);
/* Finishes the call with size bytes of the regular file fd (taken: closed
 * by the response), read as they are sent. */
void api_reply_fd(struct api_call *c, unsigned status, const char *content_type, int fd, uint64_t size);

/* Starts a stream answer: status, then JSON lines (application/x-ndjson)
 * as the backend pushes them, until api_stream_end. Returns 0, or -EALREADY
 * when the call was already answered. */
int api_stream_begin(struct api_call *c, unsigned status);
/* Queues one line (value stolen, encoded compact on one line). Returns 0,
 * -ENOBUFS when the reader lags more than the stream buffer behind (the line
 * is dropped; the backend may end the stream), -ENOMEM, -EINVAL (no stream). */
int api_stream_line(struct api_call *c, json_t *value);
/* Finishes a stream once the queued lines are sent. */
void api_stream_end(struct api_call *c);

/* Field checks for a JSON object. Types are a mask; API_NUMBER takes
 * integers and reals; API_REQUIRED makes a field mandatory. */
enum {
        API_STRING = 1u << 0,
        API_INTEGER = 1u << 1,
        API_NUMBER = 1u << 2,
        API_BOOLEAN = 1u << 3,
        API_OBJECT = 1u << 4,
        API_ARRAY = 1u << 5,
        API_NULL = 1u << 6,
        API_REQUIRED = 1u << 8,
};

struct api_field {
        const char *name;
        unsigned flags;
};

/* Checks obj (which must be an object) against fields, a list ended by
 * {NULL}: a field not listed, a missing required one, or one of another
 * type is refused. where names obj in the message ("schedule" gives
 * "schedule.every: ..."; NULL for the top level). Returns 0, or -EINVAL
 * with a message naming the field in msg. */
int api_check_object(const json_t *obj, const struct api_field *fields, const char *where, char *msg,
                     size_t size);

/* Bytes of a file path in a URL (after percent-decoding). */
#define API_PATH_MAX 4096

/* Checks a file path taken from a URL: at most API_PATH_MAX bytes,
 * relative, its segments separated by single slashes, none empty (so no
 * leading, doubled or trailing slash), "." or "..", or longer than 255
 * bytes, and no control character (a %00 in the URL arrives as one).
 * Bytes that are not UTF-8 are allowed (file names are bytes). "" passes
 * only with empty_ok. Returns 0, or -EINVAL with the reason in msg. */
int api_path_check(const char *path, int empty_ok, char *msg, size_t size);

/* The same check for a backend callback: on failure the call is finished
 * with 400 ValueError and -EINVAL returned. */
int api_call_check(struct api_call *c, const json_t *obj, const struct api_field *fields, const char *where);

#endif
