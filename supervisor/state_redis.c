/* ctx.state on Redis (hiredis), for many nodes sharing state. One hash per
 * worker namespace, "jailrun:state:NS", field = key, value = JSON text.
 * "Durable once set returns" is only true of a server that fsyncs its
 * append-only file on every write, so the store refuses a server that is
 * not configured so (appendonly yes, appendfsync always). */
#include "config.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "supervisor/state.h"

/* A round trip longer than this is an error, not a stalled supervisor. */
#define REDIS_TIMEOUT_MS 5000

struct redis_store {
        redisContext *c;
};

int state_is_redis(const char *url)
{
        return strncmp(url, "redis://", 8) == 0 || strncmp(url, "unix://", 7) == 0;
}

static void reply_freep(redisReply **r)
{
        if (*r)
                freeReplyObject(*r);
}

/* Parses redis://HOST[:PORT][/DB] or unix:///PATH[?db=N]. */
static int parse_url(const char *url, char *host, size_t hsize, int *port, int *db, int *unix_sock)
{
        char *end;
        *db = 0;
        *port = 6379;
        if (strncmp(url, "unix://", 7) == 0) {
                *unix_sock = 1;
                const char *path = url + 7, *q = strchr(path, '?');
                size_t n = q ? (size_t)(q - path) : strlen(path);
                if (path[0] != '/' || n == 0 || n >= hsize)
                        return -EINVAL;
                memcpy(host, path, n);
                host[n] = '\0';
                if (q) {
                        if (strncmp(q, "?db=", 4) != 0)
                                return -EINVAL;
                        long v = strtol(q + 4, &end, 10);
                        if (*end || end == q + 4 || v < 0 || v > 1000000)
                                return -EINVAL;
                        *db = (int)v;
                }
                return 0;
        }
        *unix_sock = 0;
        const char *h = url + 8;
        size_t n = strcspn(h, ":/");
        if (n == 0 || n >= hsize)
                return -EINVAL;
        memcpy(host, h, n);
        host[n] = '\0';
        const char *p = h + n;
        if (*p == ':') {
                long v = strtol(p + 1, &end, 10);
                if (end == p + 1 || v < 1 || v > 65535)
                        return -EINVAL;
                *port = (int)v;
                p = end;
        }
        if (*p == '/' && p[1]) {
                long v = strtol(p + 1, &end, 10);
                if (*end || v < 0 || v > 1000000)
                        return -EINVAL;
                *db = (int)v;
        } else if (*p && strcmp(p, "/") != 0) {
                return -EINVAL;
        }
        return 0;
}

int state_url_ok(const char *url)
{
        char host[PATH_MAX];
        int port, db, unix_sock;
        return !state_is_redis(url) || parse_url(url, host, sizeof host, &port, &db, &unix_sock) == 0;
}

static int redis_fail(struct redis_store *s, struct jr_err *err, const char *what, const redisReply *r)
{
        if (r && r->type == REDIS_REPLY_ERROR)
                jr_fail(err, 0, "state %s: redis: %.300s", what, r->str);
        else
                jr_fail(err, 0, "state %s: redis: %s", what, s->c->err ? s->c->errstr : "unexpected reply");
        err->errnum = EIO;
        return -EIO;
}

/* CONFIG GET NAME == want. */
static int config_is(struct redis_store *s, const char *name, const char *want)
{
        _cleanup_(reply_freep) redisReply *r = redisCommand(s->c, "CONFIG GET %s", name);
        return r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->type == REDIS_REPLY_STRING &&
               strcmp(r->element[1]->str, want) == 0;
}

static void redis_close(void *impl)
{
        struct redis_store *s = impl;
        if (!s)
                return;
        if (s->c)
                redisFree(s->c);
        free(s);
}

static int redis_open(void **out, const char *url, struct jr_err *err)
{
        char host[PATH_MAX];
        int port, db, unix_sock;
        if (parse_url(url, host, sizeof host, &port, &db, &unix_sock) < 0)
                return jr_fail(err, EINVAL, "state URL '%.200s' (redis://HOST[:PORT][/DB] or unix:///PATH[?db=N])",
                               url);
        _cleanup_free_ struct redis_store *s = calloc(1, sizeof *s);
        if (!s)
                return jr_fail(err, ENOMEM, "state");
        struct timeval tv = { REDIS_TIMEOUT_MS / 1000, (REDIS_TIMEOUT_MS % 1000) * 1000 };
        s->c = unix_sock ? redisConnectUnixWithTimeout(host, tv) : redisConnectWithTimeout(host, port, tv);
        if (!s->c || s->c->err) {
                int r = jr_fail(err, 0, "state: connect to %.200s: %s", url, s->c ? s->c->errstr : "out of memory");
                err->errnum = ECONNREFUSED;
                redis_close(TAKE_PTR(s));
                return r == 0 ? -ECONNREFUSED : -ECONNREFUSED;
        }
        redisSetTimeout(s->c, tv);
        int r = 0;
        if (db) {
                _cleanup_(reply_freep) redisReply *rep = redisCommand(s->c, "SELECT %d", db);
                if (!rep || rep->type == REDIS_REPLY_ERROR)
                        r = redis_fail(s, err, "select", rep);
        }
        if (r == 0 && !(config_is(s, "appendonly", "yes") && config_is(s, "appendfsync", "always"))) {
                r = jr_fail(err, 0, "state: redis at %.200s does not make a write durable before answering "
                            "(it needs appendonly yes and appendfsync always)", url);
                err->errnum = EIO;
                r = -EIO;
        }
        if (r < 0) {
                redis_close(TAKE_PTR(s));
                return r;
        }
        *out = TAKE_PTR(s);
        return 0;
}

#define HASH_FMT "jailrun:state:%s"

static int redis_get(void *impl, const char *ns, const char *key, char **json, struct jr_err *err)
{
        struct redis_store *s = impl;
        *json = NULL;
        char hash[128];
        snprintf(hash, sizeof hash, HASH_FMT, ns);
        _cleanup_(reply_freep) redisReply *r = redisCommand(s->c, "HGET %s %s", hash, key);
        if (!r || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL))
                return redis_fail(s, err, "get", r);
        if (r->type == REDIS_REPLY_STRING && !(*json = strndup(r->str, r->len)))
                return jr_fail(err, ENOMEM, "state get");
        return 0;
}

static int redis_set(void *impl, const char *ns, const char *key, const char *json, struct jr_err *err)
{
        struct redis_store *s = impl;
        char hash[128];
        snprintf(hash, sizeof hash, HASH_FMT, ns);
        _cleanup_(reply_freep) redisReply *r = redisCommand(s->c, "HSET %s %s %s", hash, key, json);
        return r && r->type == REDIS_REPLY_INTEGER ? 0 : redis_fail(s, err, "set", r);
}

static int redis_delete(void *impl, const char *ns, const char *key, int *deleted, struct jr_err *err)
{
        struct redis_store *s = impl;
        char hash[128];
        snprintf(hash, sizeof hash, HASH_FMT, ns);
        _cleanup_(reply_freep) redisReply *r = redisCommand(s->c, "HDEL %s %s", hash, key);
        if (!r || r->type != REDIS_REPLY_INTEGER)
                return redis_fail(s, err, "delete", r);
        *deleted = r->integer > 0;
        return 0;
}

static int by_bytes(const void *a, const void *b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int redis_keys(void *impl, const char *ns, const char *prefix, json_t **keys, struct jr_err *err)
{
        struct redis_store *s = impl;
        char hash[128];
        snprintf(hash, sizeof hash, HASH_FMT, ns);
        _cleanup_(reply_freep) redisReply *n = redisCommand(s->c, "HLEN %s", hash);
        if (!n || n->type != REDIS_REPLY_INTEGER)
                return redis_fail(s, err, "keys", n);
        if (n->integer > 1000000)
                return jr_fail(err, E2BIG, "more than %d keys", STATE_MAX_KEYS);
        _cleanup_(reply_freep) redisReply *r = redisCommand(s->c, "HKEYS %s", hash);
        if (!r || r->type != REDIS_REPLY_ARRAY)
                return redis_fail(s, err, "keys", r);
        size_t plen = strlen(prefix), m = 0;
        _cleanup_free_ const char **pick = calloc(r->elements + 1, sizeof *pick);
        if (!pick)
                return jr_fail(err, ENOMEM, "state keys");
        for (size_t i = 0; i < r->elements; i++) {
                redisReply *e = r->element[i];
                if (e->type == REDIS_REPLY_STRING && strlen(e->str) == e->len && strncmp(e->str, prefix, plen) == 0)
                        pick[m++] = e->str;
        }
        if (m > STATE_MAX_KEYS)
                return jr_fail(err, E2BIG, "more than %d keys", STATE_MAX_KEYS);
        qsort(pick, m, sizeof *pick, by_bytes);
        _cleanup_(json_decrefp) json_t *out = json_array();
        for (size_t i = 0; out && i < m; i++)
                if (json_array_append_new(out, json_string(pick[i])) < 0)
                        return jr_fail(err, ENOMEM, "state keys");
        if (!out)
                return jr_fail(err, ENOMEM, "state keys");
        *keys = TAKE_PTR(out);
        return 0;
}

const struct state_backend state_redis_backend = {
        .name = "redis",
        .open = redis_open,
        .close = redis_close,
        .get = redis_get,
        .set = redis_set,
        .del = redis_delete,
        .keys = redis_keys,
};
