/* What the backend does with a call: answer it (JSON, an error, text),
 * stream JSON lines into it, check the fields of an object. A call is the
 * backend's from its callback until it finishes it or it is cancelled;
 * anything else it does with the call is logged and ignored, never
 * followed (the connection may be gone). */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "supervisor/jaild/api_int.h"

static struct MHD_Response *typed(struct MHD_Response *r, const char *content_type)
{
        if (r && MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES) {
                MHD_destroy_response(r);
                return NULL;
        }
        return r;
}

/* j encoded compact on one line (with its newline), as a response. */
static struct MHD_Response *json_response(const json_t *j)
{
        const size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
        size_t n = json_dumpb(j, NULL, 0, flags);
        if (n == 0)
                return NULL;
        char *buf = malloc(n + 1);
        if (!buf)
                return NULL;
        if (json_dumpb(j, buf, n, flags) != n) {
                free(buf);
                return NULL;
        }
        buf[n] = '\n';
        struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(n + 1, buf, free);
        if (!r) {
                free(buf);
                return NULL;
        }
        return typed(r, "application/json");
}

struct MHD_Response *api_error_response(const char *type, const char *msg)
{
        char clean[512];
        jr_utf8_copy(clean, sizeof clean, msg);
        _cleanup_(json_decrefp) json_t *j = json_pack("{s:{s:s, s:s}}", "error", "type", type, "message", clean);
        return j ? json_response(j) : NULL;
}

static int verror(struct api_call *c, unsigned status, const char *type, const char *fmt, va_list ap)
        __attribute__((format(printf, 4, 0)));

static int verror(struct api_call *c, unsigned status, const char *type, const char *fmt, va_list ap)
{
        char msg[512];
        vsnprintf(msg, sizeof msg, fmt, ap);
        struct MHD_Response *r = api_error_response(type, msg);
        if (!r)
                return -ENOMEM;
        if (c->resp)
                MHD_destroy_response(c->resp);
        c->resp = r;
        c->status = status;
        c->state = CALL_ANSWERED;
        return 0;
}

int api_call_fail(struct api_call *c, unsigned status, const char *type, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = verror(c, status, type, fmt, ap);
        va_end(ap);
        return r;
}

void api_call_cancel(struct api_call *c)
{
        if (c->state != CALL_HELD && c->state != CALL_STREAM)
                return;
        c->state = CALL_CANCELLED;
        c->api->n_held--;
        void (*cancel)(void *) = TAKE_PTR(c->cancel);
        if (cancel)
                cancel(c->cancel_data);
}

void api_call_on_cancel(struct api_call *c, void (*cancel)(void *data), void *data)
{
        c->cancel = cancel;
        c->cancel_data = data;
}

void api_call_peer(const struct api_call *c, pid_t *pid, uid_t *uid, gid_t *gid)
{
        if (pid)
                *pid = c->peer->cred.pid;
        if (uid)
                *uid = c->peer->cred.uid;
        if (gid)
                *gid = c->peer->cred.gid;
}

/* Is the call the backend's to answer (state want)? */
static int owned(struct api_call *c, enum call_state want, const char *what)
{
        if (c->state == want)
                return 1;
        api_logf(c->api, LOG_ERR, "api: %s %s: backend %s on a call it does not hold (state %d): ignored",
                 c->route->method, c->route->pattern, what, (int)c->state);
        return 0;
}

/* The backend's answer r (NULL: it could not be built: the connection is
 * closed instead). */
static void finish(struct api_call *c, unsigned status, struct MHD_Response *r)
{
        c->api->n_held--;
        if (!r) {
                api_logf(c->api, LOG_ERR, "api: %s %s: cannot build the answer: out of memory",
                         c->route->method, c->route->pattern);
                c->state = CALL_CANCELLED;
        } else {
                c->resp = r;
                c->status = status;
                c->state = CALL_ANSWERED;
        }
        c->cancel = NULL;
        api_call_wake(c);
}

void api_reply(struct api_call *c, unsigned status, json_t *body)
{
        _cleanup_(json_decrefp) json_t *b = body;
        if (!owned(c, CALL_HELD, "reply"))
                return;
        struct MHD_Response *r = b ? json_response(b)
                                   : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        finish(c, status, r);
}

void api_reply_error(struct api_call *c, unsigned status, const char *type, const char *fmt, ...)
{
        if (!owned(c, CALL_HELD, "error reply"))
                return;
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        finish(c, status, api_error_response(type, msg));
}

void api_reply_text(struct api_call *c, unsigned status, const char *content_type, const char *text, size_t len)
{
        if (!owned(c, CALL_HELD, "text reply"))
                return;
        struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
        finish(c, status, typed(r, content_type));
}

void api_reply_bytes(struct api_call *c, unsigned status, const char *content_type, void *bytes, size_t len)
{
        _cleanup_free_ void *b = bytes;
        if (!owned(c, CALL_HELD, "bytes reply"))
                return;
        struct MHD_Response *r = len ? MHD_create_response_from_buffer_with_free_callback(len, b, free)
                                     : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (r && len)
                b = NULL;  /* the response's now */
        finish(c, status, typed(r, content_type));
}

void api_reply_fd(struct api_call *c, unsigned status, const char *content_type, int fd, uint64_t size)
{
        if (!owned(c, CALL_HELD, "file reply")) {
                close(fd);
                return;
        }
        /* MHD reads the file as it sends it (and closes fd with the
         * response): a slow reader holds a descriptor, not a copy. A file
         * shrunk meanwhile ends the connection early. */
        struct MHD_Response *r = size ? MHD_create_response_from_fd64(size, fd)
                                      : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!r || !size)
                close(fd);
        finish(c, status, typed(r, content_type));
}

int api_call_check(struct api_call *c, const json_t *obj, const struct api_field *fields, const char *where)
{
        char msg[256];
        if (api_check_object(obj, fields, where, msg, sizeof msg) == 0)
                return 0;
        api_reply_error(c, 400, "ValueError", "%s", msg);
        return -EINVAL;
}

/* ---- streams ------------------------------------------------------- */

int api_stream_begin(struct api_call *c, unsigned status)
{
        if (c->state != CALL_HELD)
                return -EALREADY;
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 32 * 1024, api_stream_read, c,
                                                                   NULL);
        r = typed(r, "application/x-ndjson");
        if (!r)
                return -ENOMEM;
        c->resp = r;
        c->status = status;
        c->state = CALL_STREAM;
        api_call_wake(c);
        return 0;
}

/* Room for n more bytes, the read part moved out first. */
static int sbuf_reserve(struct api_call *c, size_t n)
{
        if (c->soff) {
                memmove(c->sbuf, c->sbuf + c->soff, c->slen - c->soff);
                c->slen -= c->soff;
                c->soff = 0;
        }
        if (c->scap - c->slen >= n)
                return 0;
        size_t cap = c->scap ? c->scap : 4096;
        while (cap - c->slen < n)
                cap *= 2;
        char *p = realloc(c->sbuf, cap);
        if (!p)
                return -ENOMEM;
        c->sbuf = p;
        c->scap = cap;
        return 0;
}

int api_stream_line(struct api_call *c, json_t *value)
{
        _cleanup_(json_decrefp) json_t *v = value;
        if (c->state != CALL_STREAM)
                return -EINVAL;
        const size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
        size_t n = json_dumpb(v, NULL, 0, flags);
        if (n == 0)
                return -ENOMEM;
        if (c->slen - c->soff + n + 1 > c->api->stream_buffer)
                return -ENOBUFS;
        int r = sbuf_reserve(c, n + 1);
        if (r < 0)
                return r;
        if (json_dumpb(v, c->sbuf + c->slen, n, flags) != n)
                return -ENOMEM;
        c->sbuf[c->slen + n] = '\n';
        c->slen += n + 1;
        api_call_wake(c);
        return 0;
}

void api_stream_end(struct api_call *c)
{
        if (!owned(c, CALL_STREAM, "stream end"))
                return;
        c->state = CALL_STREAM_ENDED;
        c->api->n_held--;
        c->cancel = NULL;
        api_call_wake(c);
}

ssize_t api_stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
        (void)pos;
        struct api_call *c = cls;
        size_t have = c->slen - c->soff;
        if (have) {
                size_t n = have < max ? have : max;
                memcpy(buf, c->sbuf + c->soff, n);
                c->soff += n;
                if (c->soff == c->slen)
                        c->soff = c->slen = 0;
                return (ssize_t)n;
        }
        if (c->state == CALL_STREAM_ENDED)
                return MHD_CONTENT_READER_END_OF_STREAM;
        if (c->state != CALL_STREAM || c->api->closing)
                return MHD_CONTENT_READER_END_WITH_ERROR;
        /* Nothing to send yet: wait, suspended, for the backend's next line
         * (0 without suspending would spin). */
        if (api_call_suspend(c) < 0) {
                api_call_cancel(c);
                return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        return 0;
}

/* ---- field checks -------------------------------------------------- */

static unsigned type_bits(const json_t *v)
{
        switch (json_typeof(v)) {
        case JSON_STRING: return API_STRING;
        case JSON_INTEGER: return API_INTEGER | API_NUMBER;
        case JSON_REAL: return API_NUMBER;
        case JSON_TRUE:
        case JSON_FALSE: return API_BOOLEAN;
        case JSON_OBJECT: return API_OBJECT;
        case JSON_ARRAY: return API_ARRAY;
        case JSON_NULL: return API_NULL;
        }
        return 0;
}

static const char *const type_names[] = { "string", "integer", "number", "boolean", "object", "array", "null" };

static const char *type_name(const json_t *v)
{
        return json_is_real(v) ? "real" : type_names[__builtin_ctz(type_bits(v))];
}

/* "string or null" for the type bits of flags. */
static void expected(unsigned flags, char *buf, size_t size)
{
        buf[0] = '\0';
        for (unsigned i = 0; i < ELEMENTSOF(type_names); i++)
                if (flags & (1u << i)) {
                        size_t used = strlen(buf);
                        snprintf(buf + used, size - used, "%s%s", used ? " or " : "", type_names[i]);
                }
}

static const struct api_field *field_find(const struct api_field *fields, const char *name)
{
        for (; fields->name; fields++)
                if (strcmp(fields->name, name) == 0)
                        return fields;
        return NULL;
}

static int refuse(char *msg, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int refuse(char *msg, size_t size, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, size, fmt, ap);
        va_end(ap);
        jr_utf8_clean(msg);  /* a key cut mid-character */
        return -EINVAL;
}

int api_check_object(const json_t *obj, const struct api_field *fields, const char *where, char *msg, size_t size)
{
        const char *pre = where ? where : "", *dot = where ? "." : "";
        if (!json_is_object(obj))
                return refuse(msg, size, "%s: expected an object, got %s", where ? where : "body",
                              obj ? type_name(obj) : "nothing");
        const char *key;
        const json_t *v;
        json_object_foreach((json_t *)obj, key, v)
                if (!field_find(fields, key))
                        return refuse(msg, size, "unknown field '%s%s%.64s'", pre, dot, key);
        for (const struct api_field *f = fields; f->name; f++) {
                v = json_object_get(obj, f->name);
                if (!v) {
                        if (f->flags & API_REQUIRED)
                                return refuse(msg, size, "missing required field '%s%s%s'", pre, dot, f->name);
                        continue;
                }
                if (!(type_bits(v) & f->flags)) {
                        char want[96];
                        expected(f->flags, want, sizeof want);
                        return refuse(msg, size, "field '%s%s%s': expected %s, got %s", pre, dot, f->name, want,
                                      type_name(v));
                }
        }
        return 0;
}
