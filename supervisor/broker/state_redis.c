/* ctx.state on Redis (hiredis), for many nodes sharing state. One hash per
 * worker namespace, "jailrun:state:NS", field = key, value = JSON text;
 * beside it the byte total ("...:bytes") and the keys in a sorted set of
 * equal scores ("...:keys"), read by lexical range: a page of keys costs
 * the server O(log n + page). All three change together, in scripts.
 * "Durable once set returns" is only true of a server that fsyncs its
 * append-only file on every write, so the store refuses a server that is
 * not configured so (appendonly yes, appendfsync always). */
#include "config.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "supervisor/broker/state.h"
#include "supervisor/engine/log.h"

/* A round trip longer than this is an error, not a stalled supervisor. */
#define REDIS_TIMEOUT_S 5
#define REDIS_NO_ANSWER "no answer within 5 s (the server is stopped or overloaded)"

struct redis_store {
        redisContext *c;
        char host[PATH_MAX];
        int port, db, unix_sock;
        int lost;             /* the server went away; said to the operator once */
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

/* What broke the connection, in words: a read or write that timed out
 * says so (hiredis gives it as EAGAIN's text). */
static const char *conn_why(const redisContext *c)
{
        if (c->err == REDIS_ERR_IO && strcmp(c->errstr, strerror(EAGAIN)) == 0)
                return REDIS_NO_ANSWER;
        return c->errstr;
}

/* The server went away: said once to the operator, not at every call. */
static void redis_lost(struct redis_store *s, const char *why)
{
        if (!s->lost)
                log_msg("ctx.state: redis: lost the server (%s); each call connects again", why);
        s->lost = 1;
}

static int redis_fail(struct redis_store *s, struct jr_err *err, const char *what, const redisReply *r)
{
        if (r && r->type == REDIS_REPLY_ERROR) {
                jr_fail(err, 0, "state %s: redis: %.300s", what, r->str);
        } else if (s->c->err) {
                jr_fail(err, 0, "state %s: redis: connection lost: %s", what, conn_why(s->c));
                redis_lost(s, conn_why(s->c));
        } else {
                jr_fail(err, 0, "state %s: redis: unexpected reply", what);
        }
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
        struct timeval tv = { REDIS_TIMEOUT_S, 0 };
        s->c = s->unix_sock ? redisConnectUnixWithTimeout(s->host, tv) : redisConnectWithTimeout(s->host, s->port, tv);
        if (!s->c || s->c->err) {
                jr_fail(err, 0, "state: redis: cannot connect: %s", s->c ? s->c->errstr : "out of memory");
                err->errnum = ECONNREFUSED;
                return -ECONNREFUSED;
        }
        redisSetTimeout(s->c, tv);
        if (s->db) {
                _cleanup_(reply_freep) redisReply *rep = redisCommand(s->c, "SELECT %d", s->db);
                if (!rep || rep->type == REDIS_REPLY_ERROR)
                        return redis_fail(s, err, "select", rep);
        }
        int durable = config_is(s, "appendonly", "yes") && config_is(s, "appendfsync", "always");
        if (s->c->err) {  /* no answer to CONFIG GET: not a server's refusal */
                jr_fail(err, 0, "state: redis: cannot connect: %s", conn_why(s->c));
                err->errnum = ECONNREFUSED;
                return -ECONNREFUSED;
        }
        if (!durable) {
                jr_fail(err, 0, "state: the redis server does not make a write durable before answering "
                        "(it needs appendonly yes and appendfsync always)");
                err->errnum = EIO;
                return -EIO;
        }
        (void)url;
        return 0;
}

/* Whether an idle connection was closed by the server (it restarted, or
 * dropped us): readable with no request out means EOF or a reset. */
static int redis_closed(const redisContext *c)
{
        struct pollfd p = { .fd = c->fd, .events = POLLIN | POLLRDHUP };
        int n;
        do
                n = poll(&p, 1, 0);
        while (n < 0 && errno == EINTR);
        return n != 0;
}

/* A context that failed (a timeout, a dropped connection) or that the
 * server closed while idle is not used again: the call connects afresh,
 * so a server restarted between two calls costs neither an error. */
static int redis_ready(struct redis_store *s, struct jr_err *err)
{
        if (s->c && !s->c->err && !redis_closed(s->c))
                return 0;
        int r = redis_connect(s, NULL, err);
        if (r < 0) {
                redis_lost(s, s->c && s->c->err ? conn_why(s->c) : err->msg);
                return r;
        }
        if (s->lost)
                log_msg("ctx.state: redis: connected again");
        s->lost = 0;
        return 0;
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
        "redis.call('ZADD', KEYS[3], 0, ARGV[1]) "
        "redis.call('INCRBY', KEYS[2], new - old) "
        "return 1";

static int redis_set(void *impl, const char *ns, const char *key, const char *json, struct jr_err *err)
{
        struct redis_store *s = impl;
        int rr = redis_ready(s, err);
        if (rr < 0)
                return rr;
        char hash[128], total[140], index[140], max[32];
        snprintf(hash, sizeof hash, HASH_FMT, ns);
        snprintf(total, sizeof total, "%s:bytes", hash);
        snprintf(index, sizeof index, "%s:keys", hash);
        snprintf(max, sizeof max, "%llu", (unsigned long long)s->max_total);
        _cleanup_(reply_freep) redisReply *r = redisCommand(s->c, "EVAL %s 3 %s %s %s %s %s %s", set_script, hash, total,
                                                            index, key, json, max);
        if (r && r->type == REDIS_REPLY_INTEGER && r->integer == -1)
                return jr_fail(err, EDQUOT, "the worker's state would hold more than %llu bytes",
                               (unsigned long long)s->max_total);
        return r && r->type == REDIS_REPLY_INTEGER ? 0 : redis_fail(s, err, "set", r);
}

static const char del_script[] =
        "local old = #ARGV[1] + redis.call('HSTRLEN', KEYS[1], ARGV[1]) "
        "local n = redis.call('HDEL', KEYS[1], ARGV[1]) "
        "if n > 0 then redis.call('DECRBY', KEYS[2], old) end "
        "redis.call('ZREM', KEYS[3], ARGV[1]) "
        "return n";

static int redis_delete(void *impl, const char *ns, const char *key, int *deleted, struct jr_err *err)
{
        struct redis_store *s = impl;
        int rr = redis_ready(s, err);
        if (rr < 0)
                return rr;
        char hash[128], total[140], index[140];
        snprintf(hash, sizeof hash, HASH_FMT, ns);
        snprintf(total, sizeof total, "%s:bytes", hash);
        snprintf(index, sizeof index, "%s:keys", hash);
        _cleanup_(reply_freep) redisReply *r = redisCommand(s->c, "EVAL %s 3 %s %s %s %s", del_script, hash, total,
                                                            index, key);
        if (!r || r->type != REDIS_REPLY_INTEGER)
                return redis_fail(s, err, "delete", r);
        *deleted = r->integer > 0;
        return 0;
}

/* A page of keys from the index (KEYS[2]) by lexical range ARGV[1] to
 * ARGV[2], cut at ARGV[3] keys and ARGV[4] bytes of text (each key's
 * length plus one), in reply {more, key...}. An index that does not hold
 * as many keys as the hash (a namespace written before there was one, or
 * by a jailrun that did not keep it) is made again first, once. */
static const char keys_script[] =
        "if redis.call('ZCARD', KEYS[2]) ~= redis.call('HLEN', KEYS[1]) then "
        "  redis.call('DEL', KEYS[2]) "
        "  local all = redis.call('HKEYS', KEYS[1]) "
        "  for i = 1, #all, 1000 do "
        "    local args = {} "
        "    for j = i, math.min(i + 999, #all) do args[#args + 1] = 0; args[#args + 1] = all[j] end "
        "    redis.call('ZADD', KEYS[2], unpack(args)) "
        "  end "
        "end "
        "local limit, cap = tonumber(ARGV[3]), tonumber(ARGV[4]) "
        "local ks = redis.call('ZRANGEBYLEX', KEYS[2], ARGV[1], ARGV[2], 'LIMIT', 0, limit + 1) "
        "local out, bytes = {0}, 0 "
        "for i, k in ipairs(ks) do "
        "  bytes = bytes + #k + 1 "
        "  if i > limit or bytes > cap then out[1] = 1; return out end "
        "  out[#out + 1] = k "
        "end "
        "return out";

/* The range of a page: from the prefix (inclusive) or after the cursor,
 * up to the prefix and the byte 0xff, which UTF-8 keys never hold. */
static void page_range(const struct state_page *pg, char *min, char *max, size_t size)
{
        if (pg->after)
                snprintf(min, size, "(%s", pg->after);
        else if (pg->prefix[0])
                snprintf(min, size, "[%s", pg->prefix);
        else
                snprintf(min, size, "-");
        if (pg->prefix[0])
                snprintf(max, size, "(%s\xff", pg->prefix);
        else
                snprintf(max, size, "+");
}

static int redis_keys(void *impl, const char *ns, const struct state_page *pg, json_t **keys, int *more,
                      struct jr_err *err)
{
        struct redis_store *s = impl;
        int rr = redis_ready(s, err);
        if (rr < 0)
                return rr;
        char hash[128], index[140], min[STATE_MAX_KEY + 4], max[STATE_MAX_KEY + 4], limit[16], cap[16];
        snprintf(hash, sizeof hash, HASH_FMT, ns);
        snprintf(index, sizeof index, "%s:keys", hash);
        page_range(pg, min, max, sizeof min);
        snprintf(limit, sizeof limit, "%u", pg->limit);
        snprintf(cap, sizeof cap, "%d", STATE_PAGE_BYTES);
        _cleanup_(reply_freep) redisReply *r = redisCommand(s->c, "EVAL %s 2 %s %s %s %s %s %s", keys_script, hash,
                                                            index, min, max, limit, cap);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1 || r->elements > pg->limit + 1 ||
            r->element[0]->type != REDIS_REPLY_INTEGER)
                return redis_fail(s, err, "keys", r);
        _cleanup_(json_decrefp) json_t *out = json_array();
        if (!out)
                return jr_fail(err, ENOMEM, "state keys");
        for (size_t i = 1; i < r->elements; i++) {
                redisReply *e = r->element[i];
                if (e->type != REDIS_REPLY_STRING)
                        return redis_fail(s, err, "keys", NULL);
                if (json_array_append_new(out, json_stringn(e->str, e->len)) < 0)
                        return jr_fail(err, ENOMEM, "state keys");
        }
        *more = r->element[0]->integer != 0;
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
