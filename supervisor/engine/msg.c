#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "common/cleanup.h"
#include "supervisor/engine/msg.h"


const char *const msg_log_level_names[LOG_LEVEL__MAX] = { "debug", "info", "warn", "error" };

/* Caps on fields inside an otherwise valid message. */
#define MSG_MAX_NAME 256          /* exception type, set-up step */
#define MSG_MAX_TEXT (64 * 1024)  /* messages and tracebacks */

int msg_log_level(const char *name)
{
        for (int i = 0; i < LOG_LEVEL__MAX; i++)
                if (strcmp(name, msg_log_level_names[i]) == 0)
                        return i;
        return -1;
}

void msg_free(struct msg *m)
{
        json_decref(m->root);
        m->root = NULL;
}

static int too_deep(const json_t *j, int depth)
{
        if (depth > CHAN_MAX_DEPTH)
                return 1;
        if (json_is_array(j)) {
                size_t i;
                json_t *v;
                json_array_foreach(j, i, v) if (too_deep(v, depth + 1)) return 1;
        } else if (json_is_object(j)) {
                const char *k;
                json_t *v;
                json_object_foreach((json_t *)j, k, v) if (too_deep(v, depth + 1)) return 1;
        }
        return 0;
}

/* Number of characters (code points) in len bytes of valid UTF-8. */
static size_t utf8_chars(const char *s, size_t len)
{
        size_t n = 0;
        for (size_t i = 0; i < len; i++)
                n += ((unsigned char)s[i] & 0xC0) != 0x80;
        return n;
}

/* A protocol violation: the reason alone, no strerror(EPROTO) after it. */
static int bad(struct jr_err *err, const char *what, const json_error_t *je)
{
        if (err) {
                snprintf(err->msg, sizeof err->msg, "%s%s%s", what, je ? ": " : "", je ? je->text : "");
                err->errnum = EPROTO;
        }
        return -EPROTO;
}

static int decode_log(struct msg *m, struct jr_err *err)
{
        json_error_t je;
        json_t *entries;
        if (json_unpack_ex(m->root, &je, JSON_STRICT, "{s:s, s:o}", "type", &(const char *){ 0 },
                           "entries", &entries) < 0)
                return bad(err, "log message", &je);
        size_t n = json_array_size(entries);
        if (!json_is_array(entries) || n == 0 || n > LOG_MAX_BATCH)
                return bad(err, "log batch must hold 1 to 20 entries", NULL);
        for (size_t i = 0; i < n; i++) {
                const char *level, *text;
                size_t len, level_len;
                if (json_unpack_ex(json_array_get(entries, i), &je, JSON_STRICT, "{s:s%, s:s%}",
                                   "level", &level, &level_len, "msg", &text, &len) < 0)
                        return bad(err, "log entry", &je);
                if (strlen(level) != level_len || msg_log_level(level) < 0)
                        return bad(err, "log entry: unknown level", NULL);
                if (utf8_chars(text, len) > LOG_MAX_CHARS)
                        return bad(err, "log entry longer than 4000 characters", NULL);
        }
        m->log.entries = entries;
        return 0;
}

static int decode_result(struct msg *m, struct jr_err *err)
{
        json_error_t je;
        json_t *e = NULL, *line = NULL;
        int ok = 0, on_error = 0;
        const char *tb = NULL;
        m->result.value = NULL;
        if (json_unpack_ex(m->root, &je, JSON_STRICT, "{s:s, s:I, s?b, s?o, s?b, s?s}", "type",
                           &(const char *){ 0 }, "id", &m->result.id, "ok", &ok, "error", &e, "on_error",
                           &on_error, "value", &m->result.value) < 0)
                return bad(err, "result message", &je);
        if (m->result.value && (!ok || strlen(m->result.value) > MSG_MAX_TEXT))
                return bad(err, "result value: only with ok, at most 64 KiB", NULL);
        if (!ok == !e)
                return bad(err, "result needs exactly one of ok:true and error", NULL);
        if (ok && on_error)
                return bad(err, "on_error follows only an error", NULL);
        m->result.on_error = on_error;
        m->result.ok = ok;
        if (m->result.id < 0)
                return bad(err, "result id is negative", NULL);
        if (ok)
                return 0;
        if (json_unpack_ex(e, &je, JSON_STRICT, "{s:s, s:s, s:o, s?s}", "type", &m->result.etype,
                           "message", &m->result.emsg, "line", &line, "traceback", &tb) < 0)
                return bad(err, "result error", &je);
        if (strlen(m->result.etype) > MSG_MAX_NAME || strlen(m->result.emsg) > MSG_MAX_TEXT ||
            (tb && strlen(tb) > MSG_MAX_TEXT))
                return bad(err, "result error field too long", NULL);
        if (!json_is_null(line) && (!json_is_integer(line) || json_integer_value(line) < 1))
                return bad(err, "result error line must be a positive integer or null", NULL);
        m->result.line = json_is_integer(line) ? json_integer_value(line) : 0;
        m->result.traceback = tb ? tb : "";
        return 0;
}

static int decode_check(struct msg *m, struct jr_err *err)
{
        json_error_t je;
        json_t *v;
        if (json_unpack_ex(m->root, &je, JSON_STRICT, "{s:s, s:o}", "type", &(const char *){ 0 },
                           "violations", &v) < 0)
                return bad(err, "check message", &je);
        if (!json_is_array(v) || json_array_size(v) > CHECK_MAX_VIOLATIONS)
                return bad(err, "check violations must be an array of at most 201", NULL);
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
                json_int_t line, col;
                const char *type, *reason;
                if (json_unpack_ex(e, &je, JSON_STRICT, "{s:I, s:I, s:s, s:s}", "line", &line, "col", &col,
                                   "type", &type, "reason", &reason) < 0)
                        return bad(err, "check violation", &je);
                if (line < 1 || col < 0 || line > INT32_MAX || col > INT32_MAX)
                        return bad(err, "check violation position out of range", NULL);
                if (strlen(type) > MSG_MAX_NAME || strlen(reason) > 4096)
                        return bad(err, "check violation field too long", NULL);
        }
        m->check.violations = v;
        return 0;
}

static int decode_call(struct msg *m, struct jr_err *err)
{
        json_error_t je;
        size_t oplen;
        if (json_unpack_ex(m->root, &je, JSON_STRICT, "{s:s, s:I, s:s%, s:o}", "type", &(const char *){ 0 },
                           "id", &m->call.id, "op", &m->call.op, &oplen, "args", &m->call.args) < 0)
                return bad(err, "call message", &je);
        if (m->call.id < 1)
                return bad(err, "call id must be positive", NULL);
        if (oplen > MSG_MAX_NAME || strlen(m->call.op) != oplen)
                return bad(err, "call op too long", NULL);
        if (!json_is_object(m->call.args))
                return bad(err, "call args must be an object", NULL);
        return 0;
}

static int decode_fatal(struct msg *m, struct jr_err *err)
{
        json_error_t je;
        if (json_unpack_ex(m->root, &je, JSON_STRICT, "{s:s, s:s, s:i, s:s}", "type",
                           &(const char *){ 0 }, "step", &m->fatal.step, "errno", &m->fatal.errnum,
                           "message", &m->fatal.message) < 0)
                return bad(err, "fatal message", &je);
        if (strlen(m->fatal.step) > MSG_MAX_NAME || strlen(m->fatal.message) > MSG_MAX_TEXT)
                return bad(err, "fatal message field too long", NULL);
        return 0;
}

static int decode_ready(struct msg *m, struct jr_err *err)
{
        json_error_t je;
        m->ready.bars = -1;
        if (json_unpack_ex(m->root, &je, JSON_STRICT, "{s:s, s?I}", "type", &(const char *){ 0 }, "bars",
                           &m->ready.bars) < 0)
                return bad(err, "ready message", &je);
        if (json_object_get(m->root, "bars") && m->ready.bars < 1)
                return bad(err, "ready: bars must be positive", NULL);
        return 0;
}

/* The shape of a backtest batch; what its entries say is checked by
 * backtest.c, which knows the run. */
static int decode_bars(struct msg *m, struct jr_err *err)
{
        json_error_t je;
        if (json_unpack_ex(m->root, &je, JSON_STRICT, "{s:s, s:I, s:o, s:o, s:o}", "type", &(const char *){ 0 },
                           "first", &m->bars.first, "us", &m->bars.us, "signals", &m->bars.signals, "errors",
                           &m->bars.errors) < 0)
                return bad(err, "bars message", &je);
        size_t n = json_array_size(m->bars.us);
        if (!json_is_array(m->bars.us) || n == 0 || n > BARS_MAX_BATCH)
                return bad(err, "bars: us must be an array of 1 to 4096 times", NULL);
        if (!json_is_array(m->bars.signals) || json_array_size(m->bars.signals) > n ||
            !json_is_array(m->bars.errors) || json_array_size(m->bars.errors) > n)
                return bad(err, "bars: signals and errors must be arrays, one entry per bar at most", NULL);
        if (m->bars.first < 0)
                return bad(err, "bars: first is negative", NULL);
        size_t i;
        json_t *v;
        json_array_foreach(m->bars.us, i, v) if (!json_is_integer(v) || json_integer_value(v) < 0)
                return bad(err, "bars: a time is not a non-negative integer", NULL);
        return 0;
}

/* Messages that are their type alone. */
static int decode_bare(struct msg *m, struct jr_err *err)
{
        json_error_t je;
        if (json_unpack_ex(m->root, &je, JSON_STRICT, "{s:s}", "type", &(const char *){ 0 }) < 0)
                return bad(err, "message", &je);
        return 0;
}

static const struct {
        const char *name;
        enum msg_type type;
        int (*decode)(struct msg *, struct jr_err *);
} kinds[] = {
        { "jailed", MSG_JAILED, decode_bare },
        { "ready", MSG_READY, decode_ready },
        { "bars", MSG_BARS, decode_bars },
        { "fatal", MSG_FATAL, decode_fatal },
        { "log", MSG_LOG, decode_log },
        { "result", MSG_RESULT, decode_result },
        { "check", MSG_CHECK, decode_check },
        { "call", MSG_CALL, decode_call },
};

/* The memory buf would take decoded, estimated from its objects, arrays
 * and commas outside strings (CHAN_MAX_DECODED); stops counting past the
 * cap. One pass, no allocation. */
static size_t decoded_estimate(const char *buf, size_t len)
{
        size_t cost = 0;
        int in_string = 0;
        for (size_t i = 0; i < len && cost <= CHAN_MAX_DECODED; i++) {
                char c = buf[i];
                if (in_string) {
                        if (c == '\\')
                                i++;
                        else if (c == '"')
                                in_string = 0;
                } else if (c == '"') {
                        in_string = 1;
                } else if (c == '{' || c == '[') {
                        cost += CHAN_DECODED_CONTAINER;
                } else if (c == ',') {
                        cost += CHAN_DECODED_VALUE;
                }
        }
        return cost;
}

int msg_decode(const char *buf, size_t len, struct msg *m, struct jr_err *err)
{
        *m = (struct msg){ 0 };
        if (len > CHAN_MAX_MSG)
        {
                if (err) {
                        snprintf(err->msg, sizeof err->msg, "message of %zu bytes exceeds %d", len, CHAN_MAX_MSG);
                        err->errnum = EMSGSIZE;
                }
                return -EMSGSIZE;
        }
        /* No message shorter than this can reach the cap: skip the pass. */
        if (len > CHAN_MAX_DECODED / CHAN_DECODED_CONTAINER && decoded_estimate(buf, len) > CHAN_MAX_DECODED)
                return bad(err, "message would take more than 32 MiB decoded (too many objects, arrays or values)",
                           NULL);
        json_error_t je;
        /* NUL is allowed in strings (log text may hold it) and escaped on
         * output; fields used as C strings simply end there. */
        _cleanup_(json_decrefp) json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
        if (!root)
                return bad(err, "invalid JSON", &je);
        if (!json_is_object(root))
                return bad(err, "message is not a JSON object", NULL);
        if (too_deep(root, 1))
                return bad(err, "message nested too deeply", NULL);
        json_t *jtype = json_object_get(root, "type");
        const char *type = json_string_value(jtype);
        if (!type || strlen(type) != json_string_length(jtype))
                return bad(err, "message has no string \"type\"", NULL);
        for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
                if (strcmp(type, kinds[i].name) != 0)
                        continue;
                m->type = kinds[i].type;
                m->root = TAKE_PTR(root);
                int r = kinds[i].decode(m, err);
                if (r < 0)
                        msg_free(m);
                return r;
        }
        return bad(err, "unknown message type", NULL);
}
