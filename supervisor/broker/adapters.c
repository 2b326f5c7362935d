#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "supervisor/broker/adapters.h"
#include "supervisor/broker/broker.h"
#include "supervisor/broker/ctxerr.h"

int secrets_check(const char *path, struct jr_err *err)
{
        struct stat st;
        if (lstat(path, &st) < 0)
                return jr_fail(err, errno, "secrets file %s", path);
        if (!S_ISREG(st.st_mode))
                return jr_fail(err, EINVAL, "secrets file %s: not a regular file", path);
        if (st.st_uid != 0 || (st.st_mode & 077))
                return jr_fail(err, EPERM, "secrets file %s: must be owned by root and readable by root alone "
                               "(it is uid %u, mode %04o)", path, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
        return 0;
}

/* The secrets, read now: after the jail was cloned. */
int secrets_load(struct adapters *a, struct jr_err *err)
{
        if (a->secrets)
                return 0;
        if (!a->secrets_path)
                return jr_fail(err, ENOENT, "no secrets file (jailrun --secrets)");
        _cleanup_close_ int fd = open(a->secrets_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0)
                return jr_fail(err, errno, "secrets file");
        if (!S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 077))
                return jr_fail(err, EPERM, "secrets file: must be owned by root and readable by root alone");
        if (st.st_size > SECRETS_MAX_FILE)
                return jr_fail(err, EFBIG, "secrets file: larger than %d bytes", SECRETS_MAX_FILE);
        json_error_t je;
        /* Freed on every refusal after the message is made: it may quote a key. */
        _cleanup_(json_decrefp) json_t *s = json_loadfd(fd, JSON_REJECT_DUPLICATES, &je);
        if (!json_is_object(s))  /* the parser's text may quote a secret: only where */
                return jr_fail(err, EINVAL, "secrets file: not a JSON object of strings (line %d)", je.line);
        const char *k;
        json_t *v;
        json_object_foreach(s, k, v) {
                const char *t = json_string_value(v);
                size_t n = t ? strlen(t) : 0;
                int printable = t && n >= 4 && n <= 4096 && n == json_string_length(v);
                for (size_t i = 0; printable && i < n; i++)
                        printable = t[i] > 0x20 && t[i] < 0x7f;
                if (!printable)
                        return jr_fail(err, EINVAL, "secrets file: %.100s must be 4 to 4096 printable ASCII characters "
                                       "without spaces", k);
        }
        a->secrets = TAKE_PTR(s);
        return 0;
}

json_t *adapter_secrets(struct adapters *a)
{
        json_t *all = json_array();
        const char *k;
        json_t *v;
        if (a->secrets_path && !a->secrets) {
                struct jr_err err = { 0 };
                secrets_load(a, &err);  /* a failure is the adapter call's to report */
        }
        json_object_foreach(a->secrets, k, v) if (all) json_array_append(all, v);
        return all;
}

/* An allocation failed: the call cannot be answered. */
static int oom(struct jr_err *err)
{
        return jr_fail(err, ENOMEM, "adapter call: out of memory");
}

/* The secret an adapter's declaration names under `field`, or NULL. */
static const char *secret(struct adapters *a, json_t *decl, const char *field)
{
        const char *name = json_string_value(json_object_get(decl, field));
        return name ? json_string_value(json_object_get(a->secrets, name)) : NULL;
}

/* A messenger: send(chat, text) -> POST BASE/bot<TOKEN>/sendMessage. */
static int messenger(struct adapters *a, struct http *h, int64_t id, json_t *decl, json_t *args, json_t **result,
                     struct jr_err *err)
{
        json_t *chat;
        const char *text;
        json_error_t je = { 0 };
        if (json_unpack_ex(args, &je, JSON_STRICT, "{s:s, s:o, s:s}", "adapter", &(const char *){ 0 }, "chat", &chat,
                           "text", &text) < 0 ||
            !(json_is_string(chat) || json_is_integer(chat)))
                return ctx_protocol(err, "adapter.send", &je);
        const char *token = secret(a, decl, "token_secret");
        if (!token)
                return broker_done(result, ctx_error("the secrets file has no %s",
                                                     json_string_value(json_object_get(decl, "token_secret"))));
        _cleanup_free_ char *url = NULL, *body = NULL;
        _cleanup_(json_decrefp) json_t *payload = json_pack("{s:O, s:s}", "chat_id", chat, "text", text);
        if (asprintf(&url, "%s/bot%s/sendMessage", json_string_value(json_object_get(decl, "base_url")), token) < 0 ||
            !payload || !(body = json_dumps(payload, JSON_COMPACT)))
                return oom(err);
        _cleanup_(json_decrefp) json_t *req = json_pack("{s:s, s:s, s:{s:s}, s:{}, s:f, s:s}", "method", "POST", "url",
                                                        url, "headers", "Content-Type", "application/json", "params",
                                                        "timeout", 30.0, "body", body);
        _cleanup_(json_decrefp) json_t *scrub = adapter_secrets(a);
        return req && scrub ? http_start(h, id, req, scrub, 1, result, err) : oom(err);
}

static void hex(const unsigned char *in, size_t n, char *out)
{
        for (size_t i = 0; i < n; i++)
                snprintf(out + 2 * i, 3, "%02x", in[i]);
}

/* The query as it will be sent, to sign it exactly, in *query
 * (malloc'd, even when the call ends): BROKER_NEXT, or the call's end. */
static int signed_query(json_t *params, char **query, json_t **result, struct jr_err *err)
{
        size_t qlen = 0;
        FILE *q = open_memstream(query, &qlen);
        const char *k;
        json_t *v;
        int first = 1;
        if (!q)
                return oom(err);
        json_object_foreach(params, k, v) {
                if (!json_is_string(v) || strpbrk(k, "&=#? ") || strpbrk(json_string_value(v), "&#? ")) {
                        fclose(q);
                        return broker_done(result, ctx_error("parameter %.100s: a str without & # ? or spaces", k));
                }
                fprintf(q, "%s%s=%s", first ? "" : "&", k, json_string_value(v));
                first = 0;
        }
        return fclose(q) == 0 ? BROKER_NEXT : oom(err);
}

/* A signed REST exchange: request(method, path, params, body) with the
 * key and an HMAC-SHA256 of timestamp + key + (query or body) in headers. */
static int signed_rest(struct adapters *a, struct http *h, int64_t id, json_t *decl, json_t *args, json_t **result,
                       struct jr_err *err)
{
        const char *method, *path, *body = NULL;
        json_t *params;
        json_error_t je = { 0 };
        if (json_unpack_ex(args, &je, JSON_STRICT, "{s:s, s:s, s:s, s:o, s?s}", "adapter", &(const char *){ 0 },
                           "method", &method, "path", &path, "params", &params, "body", &body) < 0 ||
            !json_is_object(params))
                return ctx_protocol(err, "adapter.request", &je);
        if (path[0] != '/' || strstr(path, "..") || strpbrk(path, "?#%\\\r\n\t ") || strlen(path) > 1024 ||
            strlen(path) != json_string_length(json_object_get(args, "path")))
                return broker_done(result, ctx_error("path must start with / and hold no '..', '?', '#', '%%', "
                                                     "backslash, spaces or NUL"));
        const char *key = secret(a, decl, "key_secret"), *sign = secret(a, decl, "sign_secret");
        if (!key || !sign)
                return broker_done(result, ctx_error("the secrets file lacks this adapter's key or signing secret"));
        _cleanup_free_ char *query = NULL;
        int r = signed_query(params, &query, result, err);
        if (r != BROKER_NEXT)
                return r;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        char ts[32];
        snprintf(ts, sizeof ts, "%lld", (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000);
        const char *signed_part = strcmp(method, "GET") == 0 || strcmp(method, "DELETE") == 0 ? query : (body ? body : "");
        _cleanup_free_ char *msg = NULL, *url = NULL;
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned maclen = 0;
        char sig[2 * EVP_MAX_MD_SIZE + 1];
        if (asprintf(&msg, "%s%s%s", ts, key, signed_part) < 0 ||
            !HMAC(EVP_sha256(), sign, (int)strlen(sign), (const unsigned char *)msg, strlen(msg), mac, &maclen))
                return oom(err);
        hex(mac, maclen, sig);
        if (asprintf(&url, "%s%s%s%s", json_string_value(json_object_get(decl, "base_url")), path, *query ? "?" : "",
                     query) < 0)
                return oom(err);
        _cleanup_(json_decrefp) json_t *headers = json_pack("{s:s, s:s, s:s}",
                json_string_value(json_object_get(decl, "key_header")), key,
                json_string_value(json_object_get(decl, "sign_header")), sig,
                json_string_value(json_object_get(decl, "timestamp_header")), ts);
        if (headers && body)
                json_object_set_new(headers, "Content-Type", json_string("application/json"));
        _cleanup_(json_decrefp) json_t *req = json_pack("{s:s, s:s, s:O, s:{}, s:f}", "method", method, "url", url,
                                                        "headers", headers, "params", "timeout", 30.0);
        if (req && body)
                json_object_set_new(req, "body", json_string(body));
        _cleanup_(json_decrefp) json_t *scrub = adapter_secrets(a);
        return req && scrub ? http_start(h, id, req, scrub, 1, result, err) : oom(err);
}

int adapter_start(struct adapters *a, struct http *h, const char *op, int64_t id, json_t *args, json_t **result,
                  struct jr_err *err)
{
        const char *name = json_string_value(json_object_get(args, "adapter"));
        if (!name)
                return ctx_protocol(err, op, NULL);
        json_t *decl = json_object_get(a->decl, name);
        if (!decl)
                return broker_done(result, ctx_error("no adapter named %.100s", name));
        const char *kind = json_string_value(json_object_get(decl, "kind"));
        int is_messenger = strcmp(kind, "messenger") == 0;
        if (is_messenger != (strcmp(op, "adapter.send") == 0))
                return ctx_protocol(err, op, NULL);
        struct jr_err se = { 0 };
        if (secrets_load(a, &se) < 0)
                return broker_done(result, ctx_error("adapter %.100s: %s", name, se.msg));
        return is_messenger ? messenger(a, h, id, decl, args, result, err)
                            : signed_rest(a, h, id, decl, args, result, err);
}
