#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "common/cleanup.h"
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
        files_close(&b->files);
}

static json_t *protocol(struct jr_err *err, const char *op, const json_error_t *je)
{
        jr_fail(err, 0, "%s call: %s", op, je ? je->text : "malformed");
        err->errnum = EPROTO;
        return NULL;
}

/* A key the store takes: 1 to STATE_MAX_KEY bytes, no NUL. */
static int key_ok(const char *key, size_t len)
{
        return len > 0 && len <= STATE_MAX_KEY && strlen(key) == len;
}

static json_t *store(struct broker *b)
{
        if (b->state)
                return NULL;
        struct jr_err err = { 0 };
        if (state_open(&b->state, b->cfg->state_url, b->cfg->state_max_total, &err) < 0) {
                /* The details (paths, URLs) are the operator's, not the jail's. */
                log_msg("ctx.state: %s", err.msg);
                return ctx_error("the state store is unavailable (the operator's log says why)");
        }
        return NULL;
}

static json_t *state_get_call(struct broker *b, json_t *args, struct jr_err *err)
{
        const char *key;
        size_t len;
        json_error_t je;
        if (json_unpack_ex(args, &je, JSON_STRICT, "{s:s%}", "key", &key, &len) < 0)
                return protocol(err, "state.get", &je);
        if (!key_ok(key, len))
                return ctx_error("key must be 1 to %d bytes of text without NUL", STATE_MAX_KEY);
        json_t *e = store(b);
        if (e)
                return e;
        _cleanup_free_ char *text = NULL;
        struct jr_err se = { 0 };
        if (state_get(b->state, b->cfg->ns, key, &text, &se) < 0)
                return ctx_error("%s", se.msg);
        if (!text)
                return json_pack("{s:b}", "found", 0);
        /* The stored text goes out as it is (broker_reply splices it in):
         * parsing and printing it again cost more than the rest of a get. */
        return json_pack("{s:b, s:s}", "found", 1, RAW_VALUE, text);
}

static json_t *state_set_call(struct broker *b, json_t *args, struct jr_err *err)
{
        const char *key;
        size_t len;
        json_t *value;
        json_error_t je;
        if (json_unpack_ex(args, &je, JSON_STRICT, "{s:s%, s:o}", "key", &key, &len, "value", &value) < 0)
                return protocol(err, "state.set", &je);
        if (!key_ok(key, len))
                return ctx_error("key must be 1 to %d bytes of text without NUL", STATE_MAX_KEY);
        _cleanup_free_ char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!text)
                return ctx_error("value cannot be stored as JSON");
        size_t n = strlen(text);
        if (n > b->cfg->state_max_value)
                return ctx_error("value is %zu bytes as JSON; the limit is %llu", n,
                                  (unsigned long long)b->cfg->state_max_value);
        json_t *e = store(b);
        if (e)
                return e;
        struct jr_err se = { 0 };
        if (state_set(b->state, b->cfg->ns, key, text, &se) < 0)
                return se.errnum == EDQUOT ? ctx_error("the worker's state would hold more than %llu bytes; delete "
                                                        "some", (unsigned long long)b->cfg->state_max_total)
                                           : ctx_error("%s", se.msg);
        return json_pack("{s:b}", "ok", 1);
}

static json_t *state_delete_call(struct broker *b, json_t *args, struct jr_err *err)
{
        const char *key;
        size_t len;
        json_error_t je;
        if (json_unpack_ex(args, &je, JSON_STRICT, "{s:s%}", "key", &key, &len) < 0)
                return protocol(err, "state.delete", &je);
        if (!key_ok(key, len))
                return ctx_error("key must be 1 to %d bytes of text without NUL", STATE_MAX_KEY);
        json_t *e = store(b);
        if (e)
                return e;
        int deleted = 0;
        struct jr_err se = { 0 };
        if (state_delete(b->state, b->cfg->ns, key, &deleted, &se) < 0)
                return ctx_error("%s", se.msg);
        return json_pack("{s:b, s:b}", "ok", 1, "deleted", deleted);
}

/* One page of keys: {"keys": [...], "cursor": the last key, or null when
 * no key after it starts with the prefix}. The cursor is the last key
 * itself: it must start with the prefix, and resumes just after it. */
static json_t *state_keys_call(struct broker *b, json_t *args, struct jr_err *err)
{
        const char *prefix, *cursor = NULL;
        size_t len, clen = 0;
        json_int_t limit = STATE_PAGE_KEYS;
        json_error_t je;
        if (json_unpack_ex(args, &je, JSON_STRICT, "{s:s%, s?s%, s?I}", "prefix", &prefix, &len, "cursor", &cursor,
                           &clen, "limit", &limit) < 0)
                return protocol(err, "state.keys", &je);
        if (len > STATE_MAX_KEY || strlen(prefix) != len)
                return ctx_error("prefix must be at most %d bytes of text without NUL", STATE_MAX_KEY);
        if (cursor && (!key_ok(cursor, clen) || strncmp(cursor, prefix, len) != 0))
                return ctx_error("cursor must be one keys() returned for this prefix");
        if (limit < 1 || limit > STATE_MAX_KEYS)
                return ctx_error("limit must be 1 to %d", STATE_MAX_KEYS);
        json_t *e = store(b);
        if (e)
                return e;
        json_t *keys;
        int more = 0;
        struct jr_err se = { 0 };
        struct state_page page = { .prefix = prefix, .after = cursor, .limit = (unsigned)limit };
        if (state_keys(b->state, b->cfg->ns, &page, &keys, &more, &se) < 0)
                return ctx_error("%s", se.msg);
        json_t *last = json_array_get(keys, json_array_size(keys) - 1);
        return json_pack("{s:o, s:O}", "keys", keys, "cursor", more && last ? last : json_null());
}

/* A path argument: its text, or NULL with *bad set to a user error. */
static const char *path_arg(json_t *args, const char *op, json_t **bad, struct jr_err *err, int *proto)
{
        json_t *p = json_object_get(args, "path");
        *proto = 0;
        if (!json_is_string(p)) {
                *proto = 1;
                protocol(err, op, NULL);
                return NULL;
        }
        if (strlen(json_string_value(p)) != json_string_length(p)) {
                *bad = ctx_error("a path cannot hold NUL");
                return NULL;
        }
        return json_string_value(p);
}

/* files.* calls with only a path (and, for read, "binary"). */
static json_t *files_path_call(struct broker *b, const char *op, json_t *args, struct jr_err *err)
{
        json_error_t je;
        if (json_unpack_ex(args, &je, JSON_STRICT, "{s:s}", "path", &(const char *){ 0 }) < 0)
                return protocol(err, op, &je);
        json_t *bad = NULL;
        int proto;
        const char *path = path_arg(args, op, &bad, err, &proto);
        if (!path)
                return proto ? NULL : bad;
        struct files *f = &b->files;
        switch (op[6]) {
        case 'r': return files_read(f, path, &b->payload, &b->payload_len);
        case 'l': return files_list(f, path);
        case 'd': return files_delete(f, path);
        case 'e': return files_exists(f, path);
        default: return files_size(f, path);
        }
}

static json_t *files_read_call(struct broker *b, json_t *args, struct jr_err *err)
{
        return files_path_call(b, "files.read", args, err);
}
static json_t *files_list_call(struct broker *b, json_t *args, struct jr_err *err)
{
        return files_path_call(b, "files.list", args, err);
}
static json_t *files_delete_call(struct broker *b, json_t *args, struct jr_err *err)
{
        return files_path_call(b, "files.delete", args, err);
}
static json_t *files_exists_call(struct broker *b, json_t *args, struct jr_err *err)
{
        return files_path_call(b, "files.exists", args, err);
}
static json_t *files_size_call(struct broker *b, json_t *args, struct jr_err *err)
{
        return files_path_call(b, "files.size", args, err);
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

static json_t *files_write_call(struct broker *b, json_t *args, struct jr_err *err)
{
        json_error_t je;
        const char *text = NULL, *latin = NULL;
        size_t tlen = 0, llen = 0;
        if (json_unpack_ex(args, &je, JSON_STRICT, "{s:s, s?s%, s?s%}", "path", &(const char *){ 0 }, "text",
                           &text, &tlen, "latin1", &latin, &llen) < 0 ||
            !text == !latin)
                return protocol(err, "files.write", text && latin ? NULL : &je);
        json_t *bad = NULL;
        int proto;
        const char *path = path_arg(args, "files.write", &bad, err, &proto);
        if (!path)
                return proto ? NULL : bad;
        if (text)
                return files_write(&b->files, path, text, tlen);
        _cleanup_free_ unsigned char *bytes = malloc(llen + 1);
        ssize_t n = bytes ? latin1_bytes(latin, llen, bytes) : -1;
        if (!bytes)
                return NULL;
        if (n < 0)
                return protocol(err, "files.write", NULL);
        return files_write(&b->files, path, bytes, (size_t)n);
}

static const struct {
        const char *op;
        json_t *(*fn)(struct broker *, json_t *, struct jr_err *);
} ops[] = {
        { "state.get", state_get_call },
        { "state.set", state_set_call },
        { "state.delete", state_delete_call },
        { "state.keys", state_keys_call },
        { "files.read", files_read_call },
        { "files.write", files_write_call },
        { "files.list", files_list_call },
        { "files.delete", files_delete_call },
        { "files.exists", files_exists_call },
        { "files.size", files_size_call },
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

/* The budget's refusal of `op` (*refused set; NULL with err when even
 * that cannot be made), or NULL when the call may go on. */
static json_t *over_budget(struct broker *b, const char *op, int *refused, struct jr_err *err)
{
        double left = cpu_left(&b->cpu);
        *refused = left < 0;
        if (!*refused)
                return NULL;
        b->cpu.refused++;
        json_t *r = cpu_refusal(left);
        if (!r)
                jr_fail(err, ENOMEM, "%s call", op);
        return r;
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

json_t *broker_call(struct broker *b, const char *op, json_t *args, struct jr_err *err)
{
        for (size_t i = 0; i < ELEMENTSOF(ops); i++) {
                if (strcmp(op, ops[i].op) != 0)
                        continue;
                int refused;
                json_t *r = over_budget(b, op, &refused, err);
                if (refused)
                        return r;
                r = ops[i].fn(b, args, err);  /* charged with its message, by the caller */
                if (!r && err->errnum != EPROTO)
                        return jr_fail(err, ENOMEM, "%s call", op), NULL;
                return r;
        }
        jr_fail(err, 0, "unknown call '%.64s'", op);
        err->errnum = EPROTO;
        return NULL;
}

static json_t *http_call(struct broker *b, const char *op, int64_t id, json_t *args, struct jr_err *err)
{
        if (!b->http) {
                struct jr_err he = { 0 };
                if (http_new(&b->http, &b->cfg->http, &he) < 0)
                        return ctx_error("http unavailable: %s", he.msg);
        }
        if (strcmp(op, "http.request") != 0)
                return adapter_start(&b->adapters, b->http, op, id, args, err);
        /* Once there are secrets, no response reaches the worker with one
         * in it, whoever's request it answers (a server that echoes what an
         * adapter sent it earlier). */
        _cleanup_(json_decrefp) json_t *scrub = b->cfg->secrets ? adapter_secrets(&b->adapters) : NULL;
        return http_start_scrubbed(b->http, id, args, scrub && json_array_size(scrub) ? scrub : NULL, 0, err);
}

/* An http or adapter call, refused while the job is over its budget
 * (its start is charged with its message by the caller; transfers already
 * under way go on, and the loop charges them, broker.h). */
static json_t *start_call(struct broker *b, const char *op, int64_t id, json_t *args, struct jr_err *err)
{
        int refused;
        json_t *r = over_budget(b, op, &refused, err);
        if (refused)
                return r;
        return http_call(b, op, id, args, err);
}

json_t *broker_http(struct broker *b, int64_t id, json_t *args, struct jr_err *err)
{
        return start_call(b, "http.request", id, args, err);
}

json_t *broker_adapter(struct broker *b, const char *op, int64_t id, json_t *args, struct jr_err *err)
{
        return start_call(b, op, id, args, err);
}

void broker_payload_done(struct broker *b)
{
        free(b->payload);
        b->payload = NULL;
        b->payload_len = 0;
}

char *broker_reply(struct broker *b, json_int_t id, json_t *result)
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
        } else {
                _cleanup_(json_decrefp) json_t *m = json_pack("{s:s, s:I, s:O}", "type", "reply", "id", id, "result",
                                                              result);
                if (m && b->payload && json_object_set_new(m, "payload", json_integer((json_int_t)b->payload_len)) < 0)
                        json_decref(TAKE_PTR(m));
                out = m ? json_dumps(m, JSON_COMPACT) : NULL;
        }
        json_decref(result);
        return out;
}
