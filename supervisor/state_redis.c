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
        char host[PATH_MAX];
        int port, db, unix_sock;
        uint64_t max_total;   /* bytes of values per namespace; 0 = none */
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

/* (Re)connects, selects the database, checks durability. */
static int redis_connect(struct redis_store *s, const char *url, struct jr_err *err)
{
        if (s->c)
                redisFree(s->c);
        struct timeval tv = { REDIS_TIMEOUT_MS / 1000, (REDIS_TIMEOUT_MS % 1000) * 1000 };
        s->c = s->unix_sock ? redisConnectUnixWithTimeout(s->host, tv) : redisConnectWithTimeout(s->host, s->port, tv);
        if (!s->c || s->c->err) {
                jr_fail(err, 0, "state: redis: %s", s->c ? s->c->errstr : "out of memory");
                err->errnum = ECONNREFUSED;
                return -ECONNREFUSED;
        }
        redisSetTimeout(s->c, tv);
        if (s->db) {
                _cleanup_(reply_freep) redisReply *rep = redisCommand(s->c, "SELECT %d", s->db);
                if (!rep || rep->type == REDIS_REPLY_ERROR)
                        return redis_fail(s, err, "select", rep);
        }
        if (!(config_is(s, "appendonly", "yes") && config_is(s, "appendfsync", "always"))) {
                jr_fail(err, 0, "state: the redis server does not make a write durable before answering "
                        "(it needs appendonly yes and appendfsync always)");
                err->errnum = EIO;
                return -EIO;
        }
        (void)url;
        return 0;
}

/* A context that failed (a timeout, a dropped connection) is not used
 * again: the next call connects afresh. */
static int redis_ready(struct redis_store *s, struct jr_err *err)
{
        return s->c && !s->c->err ? 0 : redis_connect(s, NULL, err);
}

static int redis_open(void **out, const char *url, uint64_t max_total, struct jr_err *err)
{
        _cleanup_free_ struct redis_store *s = calloc(1, sizeof *s);
        if (!s)
                return jr_fail(err, ENOMEM, "state");
        s->max_total = max_total;
        if (parse_url(url, s->host, sizeof s->host, &s->port, &s->db, &s->unix_sock) < 0)
                return jr_fail(err, EINVAL, "state URL '%.200s' (redis://HOST[:PORT][/DB] or unix:///PATH[?db=N])",
                               url);
        int r = redis_connect(s, url, err);
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
        int rr = redis_ready(s, err);
        if (rr < 0)
                return rr;
        char hash[128];
        snprintf(hash, sizeof hash, HASH_FMT, ns);
        _cleanup_(reply_freep) redisReply *r = redisCommand(s->c, "HGET %s %s", hash, key);
        if (!r || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL))
                return redis_fail(s, err, "get", r);
        if (r->type == REDIS_REPLY_STRING && !(*json = strndup(r->str, r->len)))
                return jr_fail(err, ENOMEM, "state get");
        return 0;
}

/* HSET with the namespace's byte total kept beside it (HASH:bytes), in
 * one script so concurrent jailruns cannot race past the cap. */
static const char set_script[] =  /* a key costs its bytes too */
        "local old = 0 "
        "if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then "
        "  old = #ARGV[1] + redis.call('HSTRLEN', KEYS[1], ARGV[1]) end "
        "local new = #ARGV[1] + #ARGV[2] "
        "local used = tonumber(redis.call('GET', KEYS[2]) or '0') "
        "local max = tonumber(ARGV[3]) "
        "if max > 0 and used - old + new > max then return -1 end "
        "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) "
        "redis.call('INCRBY', KEYS[2], new - old) "
        "return 1";

static int redis_set(void *impl, const char *ns, const char *key, const char *json, struct jr_err *err)
{
        struct redis_store *s = impl;
        int rr = redis_ready(s, err);
        if (rr < 0)
                return rr;
        char hash[128], total[140], max[32];
        snprintf(hash, sizeof hash, HASH_FMT, ns);
        snprintf(total, sizeof total, "%s:bytes", hash);
        snprintf(max, sizeof max, "%llu", (unsigned long long)s->max_total);
        _cleanup_(reply_freep) redisReply *r = redisCommand(s->c, "EVAL %s 2 %s %s %s %s %s", set_script, hash, total,
                                                            key, json, max);
        if (r && r->type == REDIS_REPLY_INTEGER && r->integer == -1)
                return jr_fail(err, EDQUOT, "the worker's state would hold more than %llu bytes",
                               (unsigned long long)s->max_total);
        return r && r->type == REDIS_REPLY_INTEGER ? 0 : redis_fail(s, err, "set", r);
}

static const char del_script[] =
        "local old = #ARGV[1] + redis.call('HSTRLEN', KEYS[1], ARGV[1]) "
        "local n = redis.call('HDEL', KEYS[1], ARGV[1]) "
        "if n > 0 then redis.call('DECRBY', KEYS[2], old) end "
        "return n";

static int redis_delete(void *impl, const char *ns, const char *key, int *deleted, struct jr_err *err)
{
        struct redis_store *s = impl;
        int rr = redis_ready(s, err);
        if (rr < 0)
                return rr;
        char hash[128], total[140];
        snprintf(hash, sizeof hash, HASH_FMT, ns);
        snprintf(total, sizeof total, "%s:bytes", hash);
        _cleanup_(reply_freep) redisReply *r = redisCommand(s->c, "EVAL %s 2 %s %s %s", del_script, hash, total, key);
        if (!r || r->type != REDIS_REPLY_INTEGER)
                return redis_fail(s, err, "delete", r);
        *deleted = r->integer > 0;
        return 0;
}

static int by_bytes(const void *a, const void *b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* prefix as a glob that matches it literally. */
static void glob_escape(const char *prefix, char *out, size_t size)
{
        size_t o = 0;
        for (const char *p = prefix; *p && o + 3 < size; p++) {
                if (strchr("*?[]\\", *p))
                        out[o++] = '\\';
                out[o++] = *p;
        }
        out[o++] = '*';
        out[o] = '\0';
}

/* HSCAN ... MATCH prefix*: the server filters, so the supervisor holds
 * only the matches (at most STATE_MAX_KEYS + 1 of them). */
static int redis_keys(void *impl, const char *ns, const char *prefix, json_t **keys, struct jr_err *err)
{
        struct redis_store *s = impl;
        int rr = redis_ready(s, err);
        if (rr < 0)
                return rr;
        char hash[128], pattern[2 * STATE_MAX_KEY + 4], cursor[32] = "0";
        snprintf(hash, sizeof hash, HASH_FMT, ns);
        glob_escape(prefix, pattern, sizeof pattern);
        _cleanup_(json_decrefp) json_t *found = json_array();
        if (!found)
                return jr_fail(err, ENOMEM, "state keys");
        do {
                _cleanup_(reply_freep) redisReply *r = redisCommand(s->c, "HSCAN %s %s MATCH %s COUNT 1000", hash, cursor,
                                                                    pattern);
                if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
                    r->element[1]->type != REDIS_REPLY_ARRAY)
                        return redis_fail(s, err, "keys", r);
                snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
                redisReply *items = r->element[1];
                for (size_t i = 0; i + 1 < items->elements; i += 2) {  /* field, value */
                        redisReply *e = items->element[i];
                        if (e->type == REDIS_REPLY_STRING && strlen(e->str) == e->len &&
                            json_array_append_new(found, json_string(e->str)) < 0)
                                return jr_fail(err, ENOMEM, "state keys");
                }
                if (json_array_size(found) > STATE_MAX_KEYS)
                        return jr_fail(err, E2BIG, "more than %d keys", STATE_MAX_KEYS);
        } while (strcmp(cursor, "0") != 0);
        size_t m = json_array_size(found);
        _cleanup_free_ const char **pick = calloc(m + 1, sizeof *pick);
        if (!pick)
                return jr_fail(err, ENOMEM, "state keys");
        for (size_t i = 0; i < m; i++)
                pick[i] = json_string_value(json_array_get(found, i));
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
