#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "common/cleanup.h"
#include "common/proto.h"
#include "supervisor/broker/broker.h"
#include "supervisor/engine/log.h"
#include "supervisor/broker/ctxerr.h"

/* A result member whose string is JSON text to be spliced in as "value". */
#define RAW_VALUE "\x01raw"

void broker_init(struct broker *b, const struct broker_cfg *cfg, double (*job_cpu)(void *), void *ctx)
{
        *b = (struct broker){ .cfg = cfg, .cpu = { .job_cpu = job_cpu, .ctx = ctx } };
        clock_gettime(CLOCK_MONOTONIC, &b->cpu.started);
        b->cpu.read_at = b->cpu.started;
        files_init(&b->files, &cfg->files);
        b->adapters = (struct adapters){ .decl = cfg->adapters, .secrets_path = cfg->secrets };
}

void broker_close(struct broker *b)
{
        http_free(b->http);
        b->http = NULL;
        json_decref(b->adapters.secrets);
        b->adapters.secrets = NULL;
        state_close(b->state);
        b->state = NULL;
        redis_store_free(b->redis);
        b->redis = NULL;
        files_close(&b->files);
}

/* One call, as the dispatcher hands it to its operation. */
struct call {
        const char *op;
        int64_t id;
        json_t *args;
        json_t **result;
        struct jr_err *err;
};

static int protocol(const struct call *c, const json_error_t *je)
{
        return ctx_protocol(c->err, c->op, je);
}

/* A key the store takes: 1 to STATE_MAX_KEY bytes, no NUL. */
static int key_ok(const char *key, size_t len)
{
        return len > 0 && len <= STATE_MAX_KEY && strlen(key) == len;
}

static int bad_key(const struct call *c)
{
        return broker_done(c->result, ctx_error("key must be 1 to %d bytes of text without NUL", STATE_MAX_KEY));
}

/* The store, made by the first state call (a Redis store connects at its
 * first call): BROKER_NEXT, or the call's end. */
static int store(struct broker *b, const struct call *c)
{
        if (b->state || b->redis)
                return BROKER_NEXT;
        struct jr_err err = { 0 };
        const char *url = b->cfg->state_url;
        int r = state_is_redis(url) ? redis_store_new(&b->redis, url, b->cfg->state_max_total, &err)
                                    : state_open(&b->state, url, b->cfg->state_max_total, &err);
        if (r < 0) {
                /* The details (paths, URLs) are the operator's, not the jail's. */
                log_msg("ctx.state: %s", err.msg);
                return broker_done(c->result, ctx_error("the state store is unavailable (the operator's log says "
                                                        "why)"));
        }
        return BROKER_NEXT;
}

/* The answer to a state operation, from its outcome (which it leaves to
 * the caller to clear); NULL when out of memory. */
static json_t *state_result(const struct broker *b, enum state_op op, const struct state_out *o)
{
        if (o->rc < 0)
                return o->err.errnum == EDQUOT ? ctx_error("the worker's state would hold more than %llu bytes; "
                                                           "delete some",
                                                           (unsigned long long)b->cfg->state_max_total)
                                               : ctx_error("%s", o->err.msg);
        json_t *last = NULL;
        switch (op) {
        case STATE_GET:
                /* The stored text goes out as it is (broker_reply splices it
                 * in): parsing and printing it again cost more than the rest
                 * of a get. */
                return o->json ? json_pack("{s:b, s:s}", "found", 1, RAW_VALUE, o->json)
                               : json_pack("{s:b}", "found", 0);
        case STATE_SET:
                return json_pack("{s:b}", "ok", 1);
        case STATE_DELETE:
                return json_pack("{s:b, s:b}", "ok", 1, "deleted", o->deleted);
        case STATE_KEYS:
                last = json_array_get(o->keys, json_array_size(o->keys) - 1);
                return json_pack("{s:O, s:O}", "keys", o->keys, "cursor", o->more && last ? last : json_null());
        }
        return NULL;
}

/* Runs q: answered at once on SQLite, under way on Redis (BROKER_PENDING,
 * answered by broker_state_done) unless it ends at once. */
static int state_run(struct broker *b, const struct call *c, const struct state_req *q)
{
        struct state_out o;
        if (b->redis) {
                if (redis_store_start(b->redis, c->id, q, &o))
                        return BROKER_PENDING;
        } else {
                state_do(b->state, q, &o);
        }
        json_t *r = state_result(b, q->op, &o);
        state_out_clear(&o);
        return broker_done(c->result, r);
}

int broker_state_done(struct broker *b, int64_t *id, json_t **result)
{
        struct state_out o;
        enum state_op op;
        if (!b->redis || !redis_store_done(b->redis, id, &op, &o))
                return BROKER_PENDING;
        *result = state_result(b, op, &o);
        state_out_clear(&o);
        return *result ? BROKER_DONE : -ENOMEM;
}

void broker_state_orphan(struct broker *b)
{
        if (b->redis)
                redis_store_orphan(b->redis);
}

/* A call with one argument, its key: BROKER_NEXT when the key is good and
 * the store open, else the call's answer. */
static int key_call(struct broker *b, const struct call *c, const char **key)
{
        size_t len;
        json_error_t je = { 0 };
        if (json_unpack_ex(c->args, &je, JSON_STRICT, "{s:s%}", "key", key, &len) < 0)
                return protocol(c, &je);
        if (!key_ok(*key, len))
                return bad_key(c);
        return store(b, c);
}

static int state_get_call(struct broker *b, const struct call *c)
{
        const char *key;
        int r = key_call(b, c, &key);
        if (r != BROKER_NEXT)
                return r;
        return state_run(b, c, &(struct state_req){ .op = STATE_GET, .ns = b->cfg->ns, .key = key });
}

static int state_set_call(struct broker *b, const struct call *c)
{
        const char *key;
        size_t len;
        json_t *value;
        json_error_t je = { 0 };
        if (json_unpack_ex(c->args, &je, JSON_STRICT, "{s:s%, s:o}", "key", &key, &len, "value", &value) < 0)
                return protocol(c, &je);
        if (!key_ok(key, len))
                return bad_key(c);
        _cleanup_free_ char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!text)
                return broker_done(c->result, ctx_error("value cannot be stored as JSON"));
        size_t n = strlen(text);
        if (n > b->cfg->state_max_value)
                return broker_done(c->result, ctx_error("value is %zu bytes as JSON; the limit is %llu", n,
                                                        (unsigned long long)b->cfg->state_max_value));
        int r = store(b, c);
        if (r != BROKER_NEXT)
                return r;
        return state_run(b, c, &(struct state_req){ .op = STATE_SET, .ns = b->cfg->ns, .key = key, .json = text });
}

static int state_delete_call(struct broker *b, const struct call *c)
{
        const char *key;
        int r = key_call(b, c, &key);
        if (r != BROKER_NEXT)
                return r;
        return state_run(b, c, &(struct state_req){ .op = STATE_DELETE, .ns = b->cfg->ns, .key = key });
}

/* keys()'s arguments checked: BROKER_NEXT, or the call's end. */
static int keys_args(const struct call *c, struct state_page *page)
{
        const char *prefix, *cursor = NULL;
        size_t len, clen = 0;
        json_int_t limit = STATE_PAGE_KEYS;
        json_error_t je = { 0 };
        if (json_unpack_ex(c->args, &je, JSON_STRICT, "{s:s%, s?s%, s?I}", "prefix", &prefix, &len, "cursor",
                           &cursor, &clen, "limit", &limit) < 0)
                return protocol(c, &je);
        if (len > STATE_MAX_KEY || strlen(prefix) != len)
                return broker_done(c->result, ctx_error("prefix must be at most %d bytes of text without NUL",
                                                        STATE_MAX_KEY));
        if (cursor && (!key_ok(cursor, clen) || strncmp(cursor, prefix, len) != 0))
                return broker_done(c->result, ctx_error("cursor must be one keys() returned for this prefix"));
        if (limit < 1 || limit > STATE_MAX_KEYS)
                return broker_done(c->result, ctx_error("limit must be 1 to %d", STATE_MAX_KEYS));
        *page = (struct state_page){ .prefix = prefix, .after = cursor, .limit = (unsigned)limit };
        return BROKER_NEXT;
}

/* One page of keys: {"keys": [...], "cursor": the last key, or null when
 * no key after it starts with the prefix}. The cursor is the last key
 * itself: it must start with the prefix, and resumes just after it. */
static int state_keys_call(struct broker *b, const struct call *c)
{
        struct state_req q = { .op = STATE_KEYS, .ns = b->cfg->ns };
        int r = keys_args(c, &q.page);
        if (r == BROKER_NEXT)
                r = store(b, c);
        if (r != BROKER_NEXT)
                return r;
        return state_run(b, c, &q);
}

/* The path argument, in *path: BROKER_NEXT, or the call's end. */
static int path_arg(const struct call *c, const char **path)
{
        json_t *p = json_object_get(c->args, "path");
        if (!json_is_string(p))
                return protocol(c, NULL);
        if (strlen(json_string_value(p)) != json_string_length(p))
                return broker_done(c->result, ctx_error("a path cannot hold NUL"));
        *path = json_string_value(p);
        return BROKER_NEXT;
}

/* files.* calls with only a path. */
static int files_path_call(struct broker *b, const struct call *c)
{
        json_error_t je = { 0 };
        const char *path;
        if (json_unpack_ex(c->args, &je, JSON_STRICT, "{s:s}", "path", &(const char *){ 0 }) < 0)
                return protocol(c, &je);
        int r = path_arg(c, &path);
        if (r != BROKER_NEXT)
                return r;
        struct files *f = &b->files;
        switch (c->op[6]) {
        case 'r': return files_read(f, path, c->result, &b->payload, &b->payload_len);
        case 'l': return files_list(f, path, c->result);
        case 'd': return files_delete(f, path, c->result);
        case 'e': return files_exists(f, path, c->result);
        default: return files_size(f, path, c->result);
        }
}

/* Text as code points U+0000..U+00FF back to the bytes they stand for;
 * -1 for anything else (only a broken runtime sends it). */
static ssize_t latin1_bytes(const char *s, size_t len, unsigned char *out)
{
        size_t o = 0;
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c < 0x80) {
                        out[o++] = c;
                } else if ((c == 0xc2 || c == 0xc3) && i + 1 < len && ((unsigned char)s[i + 1] & 0xc0) == 0x80) {
                        out[o++] = (unsigned char)(((c & 0x1f) << 6) | ((unsigned char)s[++i] & 0x3f));
                } else {
                        return -1;
                }
        }
        return (ssize_t)o;
}

static int files_write_call(struct broker *b, const struct call *c)
{
        json_error_t je = { 0 };
        const char *text = NULL, *latin = NULL, *path;
        size_t tlen = 0, llen = 0;
        if (json_unpack_ex(c->args, &je, JSON_STRICT, "{s:s, s?s%, s?s%}", "path", &(const char *){ 0 }, "text",
                           &text, &tlen, "latin1", &latin, &llen) < 0 ||
            !text == !latin)
                return protocol(c, text && latin ? NULL : &je);
        int r = path_arg(c, &path);
        if (r != BROKER_NEXT)
                return r;
        if (text)
                return files_write(&b->files, path, text, tlen, c->result);
        _cleanup_free_ unsigned char *bytes = malloc(llen + 1);
        if (!bytes)
                return -ENOMEM;
        ssize_t n = latin1_bytes(latin, llen, bytes);
        if (n < 0)
                return protocol(c, NULL);
        return files_write(&b->files, path, bytes, (size_t)n, c->result);
}

/* http.request and the adapters' calls: BROKER_PENDING once under way. */
static int http_call(struct broker *b, const struct call *c)
{
        if (!b->http) {
                struct jr_err he = { 0 };
                if (http_new(&b->http, &b->cfg->http, &he) < 0)
                        return broker_done(c->result, ctx_error("http unavailable: %s", he.msg));
        }
        if (strcmp(c->op, "http.request") != 0)
                return adapter_start(&b->adapters, b->http, c->op, c->id, c->args, c->result, c->err);
        /* Once there are secrets, no response reaches the worker with one
         * in it, whoever's request it answers (a server that echoes what an
         * adapter sent it earlier). */
        _cleanup_(json_decrefp) json_t *scrub = b->cfg->secrets ? adapter_secrets(&b->adapters) : NULL;
        if (b->cfg->secrets && !scrub)  /* never a request whose answer goes unscrubbed */
                return -ENOMEM;
        return http_start(b->http, c->id, c->args, json_array_size(scrub) ? scrub : NULL, 0, c->result, c->err);
}

static const struct {
        const char *op;
        int (*fn)(struct broker *, const struct call *);
} ops[] = {
        { "state.get", state_get_call },
        { "state.set", state_set_call },
        { "state.delete", state_delete_call },
        { "state.keys", state_keys_call },
        { "files.read", files_path_call },
        { "files.write", files_write_call },
        { "files.list", files_path_call },
        { "files.delete", files_path_call },
        { "files.exists", files_path_call },
        { "files.size", files_path_call },
        { "http.request", http_call },
        { "adapter.send", http_call },
        { "adapter.request", http_call },
};

static double seconds(const struct timespec *a, const struct timespec *b)
{
        return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

/* What is left of the budget, in seconds (below 0: spent). The job's own
 * CPU is read again only when the budget looks spent, and at most every
 * BROKER_CPU_REREAD: a job refused in a loop costs a reading now and then. */
static double cpu_left(struct broker_cpu *c)
{
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double left = BROKER_CPU_RESERVE + BROKER_CPU_TRICKLE * seconds(&c->started, &now) + c->job_seen -
                      (double)c->used_ns / 1e9;
        if (left >= 0 || !c->job_cpu || seconds(&c->read_at, &now) < BROKER_CPU_REREAD)
                return left;
        c->read_at = now;
        double job = c->job_cpu(c->ctx);
        if (job > c->job_seen) {
                left += job - c->job_seen;
                c->job_seen = job;
        }
        return left;
}

static json_t *cpu_refusal(double left)
{
        double wait = -left / BROKER_CPU_TRICKLE;  /* if the job does nothing meanwhile */
        json_t *r = ctx_error("rate limited: this job's ctx calls have used their supervisor CPU budget (as much "
                               "CPU as the job has used itself, plus %.0f ms a second and %g s in reserve); try "
                               "again in at most %.3f s", BROKER_CPU_TRICKLE * 1000, BROKER_CPU_RESERVE, wait);
        if (r && json_object_set_new(r, "retry_after", json_real(wait)) < 0)
                json_decref(TAKE_PTR(r));
        return r;
}

/* The budget's refusal of the call (BROKER_DONE), or BROKER_NEXT when it
 * may go on. */
static int over_budget(struct broker *b, const struct call *c)
{
        double left = cpu_left(&b->cpu);
        if (left >= 0)
                return BROKER_NEXT;
        b->cpu.refused++;
        return broker_done(c->result, cpu_refusal(left));
}

double broker_cpu_left(struct broker *b)
{
        return cpu_left(&b->cpu);
}

void broker_cpu_mark(struct timespec *t0)
{
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, t0);
}

void broker_cpu_charge(struct broker *b, const struct timespec *t0)
{
        struct timespec t1;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
        int64_t ns = (int64_t)(t1.tv_sec - t0->tv_sec) * 1000000000 + (t1.tv_nsec - t0->tv_nsec);
        if (ns > 0)
                b->cpu.used_ns += (uint64_t)ns;
}

int broker_call(struct broker *b, const char *op, int64_t id, json_t *args, json_t **result, struct jr_err *err)
{
        *result = NULL;
        for (size_t i = 0; i < ELEMENTSOF(ops); i++) {
                if (strcmp(op, ops[i].op) != 0)
                        continue;
                const struct call c = { .op = op, .id = id, .args = args, .result = result, .err = err };
                /* A call is charged with its message, by the caller; an
                 * http transfer under way, by the loop (broker.h). */
                int r = over_budget(b, &c);
                if (r == BROKER_NEXT)
                        r = ops[i].fn(b, &c);
                if (r < 0 && !err->errnum)  /* the supervisor's own failure: said so */
                        jr_fail(err, -r, "%s call", op);
                if (r < 0)
                        json_decref(TAKE_PTR(*result));
                return r;
        }
        jr_fail(err, 0, "unknown call '%.64s'", op);
        err->errnum = EPROTO;
        return -EPROTO;
}

int broker_http_done(struct broker *b, int64_t *id, json_t **result)
{
        *result = NULL;
        if (!b->http)
                return BROKER_PENDING;
        return http_done(b->http, id, result, &b->payload, &b->payload_len);
}

void broker_payload_done(struct broker *b)
{
        free(b->payload);
        b->payload = NULL;
        b->payload_len = 0;
}

/* The reply's text, with a stored value's JSON text (RAW_VALUE) spliced
 * in as "value" as it is; NULL when out of memory. */
static char *reply_text(struct broker *b, int64_t id, json_t *result)
{
        json_t *raw = json_object_get(result, RAW_VALUE);
        char *out = NULL;
        if (raw) {
                _cleanup_(json_decrefp) json_t *keep = json_incref(raw);
                json_object_del(result, RAW_VALUE);
                _cleanup_free_ char *rest = json_dumps(result, JSON_COMPACT);  /* {"found":true} */
                size_t n = rest ? strlen(rest) : 0;
                if (n < 2 || asprintf(&out, "{\"type\":\"reply\",\"id\":%lld,\"result\":%.*s,\"value\":%s}}",
                                      (long long)id, (int)(n - 1), rest, json_string_value(keep)) < 0)
                        out = NULL;
                return out;
        }
        _cleanup_(json_decrefp) json_t *m = json_pack("{s:s, s:I, s:O}", "type", "reply", "id", (json_int_t)id,
                                                      "result", result);
        if (m && b->payload && json_object_set_new(m, "payload", json_integer((json_int_t)b->payload_len)) < 0)
                json_decref(TAKE_PTR(m));
        return m ? json_dumps(m, JSON_COMPACT) : NULL;
}

int broker_reply(struct broker *b, int64_t id, json_t *result, char **text)
{
        *text = reply_text(b, id, result);
        json_decref(result);
        if (*text && strlen(*text) > CHAN_MAX_MSG) {  /* a legitimate call asked for too much: its error */
                free(TAKE_PTR(*text));
                broker_payload_done(b);
                json_t *e = ctx_error("the result is larger than one reply carries (1 MiB); ask for less");
                *text = e ? reply_text(b, id, e) : NULL;
                json_decref(e);
        }
        return *text ? 0 : -ENOMEM;
}
