/* The channel codec against well-formed and hostile datagrams. */
#include "config.h"

#include "tests/unit/unit.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor/engine/msg.h"

struct decode_case {
        const char *name;
        const char *json;
        int want;            /* 0 or -errno */
        enum msg_type type;  /* when want == 0 */
};

static const struct decode_case cases[] = {
        { "ready", "{\"type\":\"ready\"}", 0, MSG_READY },
        { "log", "{\"type\":\"log\",\"entries\":[{\"level\":\"info\",\"msg\":\"hi\"}]}", 0, MSG_LOG },
        { "result ok", "{\"type\":\"result\",\"id\":3,\"ok\":true}", 0, MSG_RESULT },
        { "result error", "{\"type\":\"result\",\"id\":1,\"error\":{\"type\":\"ValueError\",\"message\":\"m\",\"line\":4}}", 0, MSG_RESULT },
        { "result error then on_error", "{\"type\":\"result\",\"id\":1,\"error\":{\"type\":\"E\",\"message\":\"m\",\"line\":null},\"on_error\":true}", 0, MSG_RESULT },
        { "result error null line", "{\"type\":\"result\",\"id\":1,\"error\":{\"type\":\"E\",\"message\":\"m\",\"line\":null,\"traceback\":\"t\"}}", 0, MSG_RESULT },
        { "fatal", "{\"type\":\"fatal\",\"step\":\"mounts\",\"errno\":1,\"message\":\"x\"}", 0, MSG_FATAL },
        /* hostile */
        { "empty", "", -EPROTO, 0 },
        { "truncated", "{\"type\":\"rea", -EPROTO, 0 },
        { "not an object", "[1,2]", -EPROTO, 0 },
        { "scalar", "42", -EPROTO, 0 },
        { "no type", "{\"entries\":[]}", -EPROTO, 0 },
        { "type not string", "{\"type\":7}", -EPROTO, 0 },
        { "unknown type", "{\"type\":\"exec\"}", -EPROTO, 0 },
        { "duplicate key", "{\"type\":\"ready\",\"type\":\"ready\"}", -EPROTO, 0 },
        { "unknown field", "{\"type\":\"ready\",\"x\":1}", -EPROTO, 0 },
        { "log no entries", "{\"type\":\"log\",\"entries\":[]}", -EPROTO, 0 },
        { "log entries not array", "{\"type\":\"log\",\"entries\":{}}", -EPROTO, 0 },
        { "log bad level", "{\"type\":\"log\",\"entries\":[{\"level\":\"panic\",\"msg\":\"x\"}]}", -EPROTO, 0 },
        { "log msg not string", "{\"type\":\"log\",\"entries\":[{\"level\":\"info\",\"msg\":5}]}", -EPROTO, 0 },
        { "log extra field", "{\"type\":\"log\",\"entries\":[{\"level\":\"info\",\"msg\":\"x\",\"y\":1}]}", -EPROTO, 0 },
        { "result both", "{\"type\":\"result\",\"id\":1,\"ok\":true,\"error\":{\"type\":\"E\",\"message\":\"m\",\"line\":1}}", -EPROTO, 0 },
        { "result neither", "{\"type\":\"result\",\"id\":1}", -EPROTO, 0 },
        { "result ok then on_error", "{\"type\":\"result\",\"id\":1,\"ok\":true,\"on_error\":true}", -EPROTO, 0 },
        { "result ok false", "{\"type\":\"result\",\"id\":1,\"ok\":false}", -EPROTO, 0 },
        { "result negative id", "{\"type\":\"result\",\"id\":-1,\"ok\":true}", -EPROTO, 0 },
        { "result id string", "{\"type\":\"result\",\"id\":\"1\",\"ok\":true}", -EPROTO, 0 },
        { "result line zero", "{\"type\":\"result\",\"id\":1,\"error\":{\"type\":\"E\",\"message\":\"m\",\"line\":0}}", -EPROTO, 0 },
        { "result line string", "{\"type\":\"result\",\"id\":1,\"error\":{\"type\":\"E\",\"message\":\"m\",\"line\":\"3\"}}", -EPROTO, 0 },
        { "nul in string", "{\"type\":\"ready\\u0000\"}", -EPROTO, 0 },
        { "invalid utf-8", "{\"type\":\"\xff\xfe\"}", -EPROTO, 0 },
        { "fatal missing errno", "{\"type\":\"fatal\",\"step\":\"s\",\"message\":\"x\"}", -EPROTO, 0 },
};

START_TEST(test_decode_table)
{
        const struct decode_case *c = &cases[_i];
        struct msg m;
        struct jr_err err = { 0 };
        int r = msg_decode(c->json, strlen(c->json), &m, &err);
        ck_assert_msg(r == c->want, "%s: got %d (%s), want %d", c->name, r, err.msg, c->want);
        if (r == 0) {
                ck_assert_int_eq(m.type, c->type);
                msg_free(&m);
        } else {
                ck_assert_msg(err.msg[0], "%s: no reason given", c->name);
        }
}
END_TEST

START_TEST(test_result_fields)
{
        const char *j = "{\"type\":\"result\",\"id\":7,\"error\":{\"type\":\"KeyError\",\"message\":\"'a'\",\"line\":12}}";
        struct msg m;
        ck_assert_int_eq(msg_decode(j, strlen(j), &m, NULL), 0);
        ck_assert_int_eq(m.result.id, 7);
        ck_assert_int_eq(m.result.ok, 0);
        ck_assert_str_eq(m.result.etype, "KeyError");
        ck_assert_str_eq(m.result.emsg, "'a'");
        ck_assert_int_eq(m.result.line, 12);
        ck_assert_str_eq(m.result.traceback, "");
        msg_free(&m);
}
END_TEST

/* Builds {"type":"log","entries":[...]} with n entries of text t. */
static char *log_msg_json(int n, const char *t)
{
        size_t cap = 64 + (size_t)n * (strlen(t) + 40);
        char *s = malloc(cap);
        size_t off = (size_t)snprintf(s, cap, "{\"type\":\"log\",\"entries\":[");
        for (int i = 0; i < n; i++)
                off += (size_t)snprintf(s + off, cap - off, "%s{\"level\":\"info\",\"msg\":\"%s\"}",
                                        i ? "," : "", t);
        snprintf(s + off, cap - off, "]}");
        return s;
}

START_TEST(test_log_limits)
{
        struct msg m;
        char *s = log_msg_json(LOG_MAX_BATCH, "x");
        ck_assert_int_eq(msg_decode(s, strlen(s), &m, NULL), 0);
        ck_assert_int_eq(json_array_size(m.log.entries), LOG_MAX_BATCH);
        msg_free(&m);
        free(s);
        s = log_msg_json(LOG_MAX_BATCH + 1, "x");
        ck_assert_int_eq(msg_decode(s, strlen(s), &m, NULL), -EPROTO);
        free(s);
        /* 4000 characters (multi-byte ones count once) pass, 4001 do not. */
        char *t = malloc(LOG_MAX_CHARS * 2 + 3);
        for (int i = 0; i < LOG_MAX_CHARS; i++)
                memcpy(t + 2 * i, "\xc3\xa9", 2);
        t[LOG_MAX_CHARS * 2] = '\0';
        s = log_msg_json(1, t);
        ck_assert_int_eq(msg_decode(s, strlen(s), &m, NULL), 0);
        msg_free(&m);
        free(s);
        strcpy(t + LOG_MAX_CHARS * 2, "a");
        s = log_msg_json(1, t);
        ck_assert_int_eq(msg_decode(s, strlen(s), &m, NULL), -EPROTO);
        free(s);
        free(t);
}
END_TEST

START_TEST(test_depth_cap)
{
        /* Nesting inside an otherwise unknown field: the depth check runs
         * before any field is looked at. */
        for (int depth = CHAN_MAX_DEPTH - 2; depth <= CHAN_MAX_DEPTH + 2; depth++) {
                char buf[256];
                size_t off = (size_t)snprintf(buf, sizeof buf, "{\"type\":\"ready\",\"x\":");
                for (int i = 0; i < depth; i++)
                        buf[off++] = '[';
                for (int i = 0; i < depth; i++)
                        buf[off++] = ']';
                snprintf(buf + off, sizeof buf - off, "}");
                struct jr_err err = { 0 };
                struct msg m;
                int r = msg_decode(buf, strlen(buf), &m, &err);
                ck_assert_int_eq(r, -EPROTO);
                if (depth + 1 > CHAN_MAX_DEPTH)
                        ck_assert_msg(strstr(err.msg, "deep"), "depth %d: %s", depth, err.msg);
                else
                        ck_assert_msg(!strstr(err.msg, "deep"), "depth %d: %s", depth, err.msg);
        }
}
END_TEST

START_TEST(test_oversize)
{
        size_t n = CHAN_MAX_MSG + 1;
        char *big = malloc(n);
        memset(big, ' ', n);
        struct jr_err err = { 0 };
        struct msg m;
        ck_assert_int_eq(msg_decode(big, n, &m, &err), -EMSGSIZE);
        free(big);
}
END_TEST

/* A datagram of `unit` repeated to fill ~1 MiB, wrapped as a log batch. */
static char *filled(const char *head, const char *unit, size_t *len)
{
        size_t h = strlen(head), u = strlen(unit), n = (CHAN_MAX_MSG - h - 8) / u;
        char *buf = malloc(h + n * u + 8);
        ck_assert_ptr_nonnull(buf);
        memcpy(buf, head, h);
        for (size_t i = 0; i < n; i++)
                memcpy(buf + h + i * u, unit, u);
        memcpy(buf + h + n * u - 1, "]}", 3);  /* over the last unit's comma */
        *len = h + n * u + 1;
        return buf;
}

START_TEST(test_decoded_memory_estimate)
{
        struct { const char *head, *unit; int refused; } t[] = {
                { "{\"type\":\"log\",\"entries\":[", "{},", 1 },          /* ~90 MB decoded */
                { "{\"type\":\"log\",\"entries\":[", "[],", 1 },
                { "{\"type\":\"log\",\"entries\":[", "0,", 0 },           /* ~17 MB: within */
                { "{\"type\":\"log\",\"entries\":[\"", "{[,", 0 },       /* all inside one string */
                { "{\"type\":\"log\",\"entries\":[\"", "\\\"{", 0 },  /* escaped quotes keep it one */
        };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
                size_t len;
                char *buf = filled(t[i].head, t[i].unit, &len);
                struct jr_err err = { 0 };
                struct msg m;
                ck_assert_int_eq(msg_decode(buf, len, &m, &err), -EPROTO);  /* never a valid log either */
                ck_assert_msg(!!strstr(err.msg, "would take more than") == t[i].refused, "case %zu: %s", i, err.msg);
                free(buf);
        }
}
END_TEST

START_TEST(test_level_names)
{
        ck_assert_int_eq(msg_log_level("debug"), LOG_LEVEL_DEBUG);
        ck_assert_int_eq(msg_log_level("error"), LOG_LEVEL_ERROR);
        ck_assert_int_eq(msg_log_level("ERROR"), -1);
        ck_assert_int_eq(msg_log_level(""), -1);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("msg");
        TCase *tc = tcase_create("decode");
        tcase_add_loop_test(tc, test_decode_table, 0, (int)(sizeof cases / sizeof cases[0]));
        tcase_add_test(tc, test_result_fields);
        tcase_add_test(tc, test_log_limits);
        tcase_add_test(tc, test_depth_cap);
        tcase_add_test(tc, test_oversize);
        tcase_add_test(tc, test_decoded_memory_estimate);
        tcase_add_test(tc, test_level_names);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
