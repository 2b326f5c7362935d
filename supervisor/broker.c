#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/cleanup.h"
#include "supervisor/broker.h"

void broker_init(struct broker *b, const struct broker_cfg *cfg)
{
        *b = (struct broker){ .cfg = cfg };
}

void broker_close(struct broker *b)
{
        state_close(b->state);
        b->state = NULL;
}

__attribute__((format(printf, 1, 2)))
static json_t *user_error(const char *fmt, ...)
{
        char msg[600];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        return json_pack("{s:s}", "error", msg);
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
        if (state_open(&b->state, b->cfg->state_url, &err) < 0)
                return user_error("state store unavailable: %s", err.msg);
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
                return user_error("key must be 1 to %d bytes of text without NUL", STATE_MAX_KEY);
        json_t *e = store(b);
        if (e)
                return e;
        _cleanup_free_ char *text = NULL;
        struct jr_err se = { 0 };
        if (state_get(b->state, b->cfg->ns, key, &text, &se) < 0)
                return user_error("%s", se.msg);
        if (!text)
                return json_pack("{s:b}", "found", 0);
        json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        if (!v)
                return user_error("the stored value of '%.100s' is not valid JSON", key);
        return json_pack("{s:b, s:o}", "found", 1, "value", v);
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
                return user_error("key must be 1 to %d bytes of text without NUL", STATE_MAX_KEY);
        _cleanup_free_ char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!text)
                return user_error("value cannot be stored as JSON");
        size_t n = strlen(text);
        if (n > b->cfg->state_max_value)
                return user_error("value is %zu bytes as JSON; the limit is %llu", n,
                                  (unsigned long long)b->cfg->state_max_value);
        json_t *e = store(b);
        if (e)
                return e;
        struct jr_err se = { 0 };
        if (state_set(b->state, b->cfg->ns, key, text, &se) < 0)
                return user_error("%s", se.msg);
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
                return user_error("key must be 1 to %d bytes of text without NUL", STATE_MAX_KEY);
        json_t *e = store(b);
        if (e)
                return e;
        int deleted = 0;
        struct jr_err se = { 0 };
        if (state_delete(b->state, b->cfg->ns, key, &deleted, &se) < 0)
                return user_error("%s", se.msg);
        return json_pack("{s:b, s:b}", "ok", 1, "deleted", deleted);
}

static json_t *state_keys_call(struct broker *b, json_t *args, struct jr_err *err)
{
        const char *prefix;
        size_t len;
        json_error_t je;
        if (json_unpack_ex(args, &je, JSON_STRICT, "{s:s%}", "prefix", &prefix, &len) < 0)
                return protocol(err, "state.keys", &je);
        if (len > STATE_MAX_KEY || strlen(prefix) != len)
                return user_error("prefix must be at most %d bytes of text without NUL", STATE_MAX_KEY);
        json_t *e = store(b);
        if (e)
                return e;
        json_t *keys;
        struct jr_err se = { 0 };
        if (state_keys(b->state, b->cfg->ns, prefix, &keys, &se) < 0)
                return se.errnum == E2BIG ? user_error("more than %d keys; ask for a longer prefix", STATE_MAX_KEYS)
                                          : user_error("%s", se.msg);
        return json_pack("{s:o}", "keys", keys);
}

static const struct {
        const char *op;
        json_t *(*fn)(struct broker *, json_t *, struct jr_err *);
} ops[] = {
        { "state.get", state_get_call },
        { "state.set", state_set_call },
        { "state.delete", state_delete_call },
        { "state.keys", state_keys_call },
};

json_t *broker_call(struct broker *b, const char *op, json_t *args, struct jr_err *err)
{
        for (size_t i = 0; i < ELEMENTSOF(ops); i++)
                if (strcmp(op, ops[i].op) == 0) {
                        json_t *r = ops[i].fn(b, args, err);
                        if (!r && err->errnum != EPROTO)
                                return jr_fail(err, ENOMEM, "%s call", op), NULL;
                        return r;
                }
        jr_fail(err, 0, "unknown call '%.64s'", op);
        err->errnum = EPROTO;
        return NULL;
}
