/* The supervisor's side of a backtest (supervisor/engine/backtest.c): batches
 * from the jail decoded and checked against the run, the 5 % rule, the
 * report and the per-bar time percentiles. */
#include "config.h"

#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "supervisor/engine/backtest.h"
#include "supervisor/engine/msg.h"
#include "tests/unit/unit.h"

/* Decodes `text` as a datagram and adds it; 0 or -errno. */
static int add(struct backtest *b, const char *text)
{
        struct msg m;
        struct jr_err err = { 0 };
        int r = msg_decode(text, strlen(text), &m, &err);
        if (r == 0) {
                r = bt_add(b, &m, &err);
                msg_free(&m);
        }
        return r;
}

static void start(struct backtest *b, unsigned total)
{
        struct jr_err err = { 0 };
        bt_init(b, 5, 5);
        ck_assert_int_eq(bt_start(b, total, &err), 0);
}

/* A report file for the test; its path in buf. */
static void report_path(char *buf, size_t size)
{
        snprintf(buf, size, "/tmp/jailrun-test-backtest.%d.json", (int)getpid());
        unlink(buf);
}

/* As start(), with the report going to path. */
static void start_reporting(struct backtest *b, unsigned total, const char *path, enum btr_format f,
                            uint64_t max)
{
        struct jr_err err = { 0 };
        bt_init(b, 5, 5);
        ck_assert_int_eq(bt_report_to(b, path, f, max, &err), 0);
        ck_assert_int_eq(bt_start(b, total, &err), 0);
}

/* The finished report's text (to be freed). */
static char *finish(struct backtest *b, const char *path)
{
        struct jr_err err = { 0 };
        json_t *sum = bt_report(b, "completed", NULL);
        ck_assert_int_eq(bt_report_finish(b, sum, &err), 0);
        json_decref(sum);
        FILE *f = fopen(path, "re");
        ck_assert_ptr_nonnull(f);
        char *text = calloc(1, 1 << 20);
        size_t n = fread(text, 1, (1 << 20) - 1, f);
        text[n] = '\0';
        fclose(f);
        unlink(path);
        return text;
}

START_TEST(good_batches)
{
        struct backtest b;
        char path[64];
        report_path(path, sizeof path);
        start_reporting(&b, 4, path, BTR_JSON, BTR_MAX_DEFAULT);
        ck_assert_int_eq(add(&b, "{\"type\":\"bars\",\"first\":0,\"us\":[5,7],\"signals\":[{\"bar\":1,\"time\":60,"
                                 "\"return\":\"{\\\"x\\\":[1,2.5]}\",\"orders\":[{\"side\":\"buy\",\"action\":"
                                 "\"buy_to_open\",\"qty\":1,\"order_type\":\"market\"}]}],\"errors\":[]}"),
                         0);
        ck_assert_int_eq(add(&b, "{\"type\":\"bars\",\"first\":2,\"us\":[9,1],\"signals\":[],\"errors\":[{\"bar\":"
                                 "3,\"time\":180,\"type\":\"TimeoutError\",\"message\":\"slow\",\"line\":4}]}"),
                         0);
        ck_assert_uint_eq(b.done, 4);
        ck_assert_uint_eq(b.failed, 1);
        ck_assert_uint_eq(b.orders, 1);
        uint32_t p50, p99, max;
        bt_times(&b, &p50, &p99, &max);
        ck_assert_uint_eq(p50, 5);
        ck_assert_uint_eq(p99, 7);
        ck_assert_uint_eq(max, 9);
        char *s = finish(&b, path);
        /* one document; the signals one a line, the summary after them */
        ck_assert_str_eq(s, "{\"jailrun_backtest\":1,\"bars\":4,\"signals\":[\n"
                            "{\"bar\":1,\"time\":60,\"return\":{\"x\":[1,2.5]},\"orders\":[{\"side\":\"buy\","
                            "\"action\":\"buy_to_open\",\"qty\":1,\"order_type\":\"market\"}]}\n"
                            "],\"outcome\":\"completed\",\"bars_run\":4,\"bars_ok\":3,\"bars_failed\":1,"
                            "\"signals_count\":1,\"orders_count\":1,\"failures\":{\"SecurityError\":0,"
                            "\"TimeoutError\":1,\"MemoryError\":0,\"ProtocolError\":0,\"RuntimeError\":0},"
                            "\"errors\":{\"TimeoutError\":{\"count\":1,\"first\":{\"bar\":3,\"time\":180,"
                            "\"message\":\"slow\",\"line\":4}}}}\n");
        free(s);
        bt_free(&b);
}
END_TEST

/* Each of these is refused after a run of 10 bars began with 2 reported. */
static const char *const bad[] = {
        /* not following what came before */
        "{\"type\":\"bars\",\"first\":0,\"us\":[1],\"signals\":[],\"errors\":[]}",
        "{\"type\":\"bars\",\"first\":3,\"us\":[1],\"signals\":[],\"errors\":[]}",
        "{\"type\":\"bars\",\"first\":2,\"us\":[1,1,1,1,1,1,1,1,1],\"signals\":[],\"errors\":[]}",
        /* entries outside the batch or out of order */
        "{\"type\":\"bars\",\"first\":2,\"us\":[1],\"signals\":[{\"bar\":3,\"time\":1,\"return\":\"1\"}],\"errors\":[]}",
        "{\"type\":\"bars\",\"first\":2,\"us\":[1,1],\"signals\":[{\"bar\":3,\"time\":1,\"return\":\"1\"},"
        "{\"bar\":2,\"time\":1,\"return\":\"1\"}],\"errors\":[]}",
        "{\"type\":\"bars\",\"first\":2,\"us\":[1],\"signals\":[],\"errors\":[{\"bar\":1,\"time\":1,\"type\":"
        "\"RuntimeError\",\"message\":\"m\",\"line\":null}]}",
        /* a category that is none */
        "{\"type\":\"bars\",\"first\":2,\"us\":[1],\"signals\":[],\"errors\":[{\"bar\":2,\"time\":1,\"type\":"
        "\"Fine\",\"message\":\"m\",\"line\":null}]}",
        "{\"type\":\"bars\",\"first\":2,\"us\":[1],\"signals\":[],\"errors\":[{\"bar\":2,\"time\":1,\"type\":"
        "\"RuntimeError\",\"message\":\"m\",\"line\":0}]}",
        /* return values that are not JSON, or too deep */
        "{\"type\":\"bars\",\"first\":2,\"us\":[1],\"signals\":[{\"bar\":2,\"time\":1,\"return\":\"{nope\"}],\"errors\":[]}",
        "{\"type\":\"bars\",\"first\":2,\"us\":[1],\"signals\":[{\"bar\":2,\"time\":1,\"return\":\"NaN\"}],\"errors\":[]}",
        "{\"type\":\"bars\",\"first\":2,\"us\":[1],\"signals\":[{\"bar\":2,\"time\":1,\"return\":"
        "\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\"}],\"errors\":[]}",
        "{\"type\":\"bars\",\"first\":2,\"us\":[1],\"signals\":[{\"bar\":2,\"time\":1,\"return\":\"{\\\"a\\\":1,"
        "\\\"a\\\":2}\"}],\"errors\":[]}",
        /* a signal with nothing in it, unknown fields */
        "{\"type\":\"bars\",\"first\":2,\"us\":[1],\"signals\":[{\"bar\":2,\"time\":1}],\"errors\":[]}",
        "{\"type\":\"bars\",\"first\":2,\"us\":[1],\"signals\":[{\"bar\":2,\"time\":1,\"return\":\"1\",\"x\":1}],"
        "\"errors\":[]}",
        /* orders the sdk would never have taken */
        "{\"type\":\"bars\",\"first\":2,\"us\":[1],\"signals\":[{\"bar\":2,\"time\":1,\"orders\":[{\"side\":\"buy\","
        "\"action\":\"sell_to_open\",\"qty\":1,\"order_type\":\"market\"}]}],\"errors\":[]}",
        "{\"type\":\"bars\",\"first\":2,\"us\":[1],\"signals\":[{\"bar\":2,\"time\":1,\"orders\":[{\"side\":\"buy\","
        "\"action\":\"buy_to_open\",\"qty\":-1,\"order_type\":\"market\"}]}],\"errors\":[]}",
        "{\"type\":\"bars\",\"first\":2,\"us\":[1],\"signals\":[{\"bar\":2,\"time\":1,\"orders\":[{\"side\":\"buy\","
        "\"action\":\"buy_to_open\",\"qty\":1,\"order_type\":\"limit\"}]}],\"errors\":[]}",
        "{\"type\":\"bars\",\"first\":2,\"us\":[1],\"signals\":[{\"bar\":2,\"time\":1,\"orders\":[{\"side\":\"buy\","
        "\"action\":\"buy_to_open\",\"qty\":1,\"order_type\":\"market\",\"price\":3}]}],\"errors\":[]}",
        "{\"type\":\"bars\",\"first\":2,\"us\":[1],\"signals\":[{\"bar\":2,\"time\":1,\"orders\":[]}],\"errors\":[]}",
        /* malformed for the decoder */
        "{\"type\":\"bars\",\"first\":2,\"us\":[],\"signals\":[],\"errors\":[]}",
        "{\"type\":\"bars\",\"first\":2,\"us\":[-1],\"signals\":[],\"errors\":[]}",
        "{\"type\":\"bars\",\"first\":2,\"us\":[1],\"signals\":[],\"errors\":[],\"more\":1}",
        "{\"type\":\"bars\",\"first\":2,\"us\":[1],\"signals\":{},\"errors\":[]}",
        "{\"type\":\"bars\",\"first\":-2,\"us\":[1],\"signals\":[],\"errors\":[]}",
        /* good entries before a bad one: none of them may stay (red team) */
        "{\"type\":\"bars\",\"first\":2,\"us\":[1,1],\"signals\":[{\"bar\":2,\"time\":1,\"return\":\"1\"}],"
        "\"errors\":[{\"bar\":3,\"time\":1,\"type\":\"Bogus\",\"message\":\"m\",\"line\":null}]}",
        "{\"type\":\"bars\",\"first\":2,\"us\":[1,1],\"signals\":[],\"errors\":[{\"bar\":2,\"time\":1,\"type\":"
        "\"RuntimeError\",\"message\":\"m\",\"line\":null},{\"bar\":3,\"time\":1,\"type\":\"Nope\",\"message\":"
        "\"m\",\"line\":null}]}",
};

START_TEST(bad_batches)
{
        struct backtest b;
        char path[64];
        report_path(path, sizeof path);
        start_reporting(&b, 10, path, BTR_JSONL, BTR_MAX_DEFAULT);
        ck_assert_int_eq(add(&b, "{\"type\":\"bars\",\"first\":0,\"us\":[1,1],\"signals\":[],\"errors\":[]}"), 0);
        ck_assert_msg(add(&b, bad[_i]) < 0, "accepted: %s", bad[_i]);
        /* the run is as it was before the refused batch */
        ck_assert_uint_eq(b.done, 2);
        ck_assert_uint_eq(b.failed, 0);
        ck_assert_uint_eq(b.orders, 0);
        ck_assert_uint_eq(b.signals, 0);
        for (int c = 0; c < BT_CATEGORIES; c++)
                ck_assert(b.count[c] == 0 && b.first[c] == NULL);
        /* and nothing of it reached the report */
        char *s = finish(&b, path);
        ck_assert_msg(strncmp(s, "{\"jailrun_backtest\":1,\"bars\":10,\"outcome\":", 42) == 0 &&
                      strchr(s, '\n') == s + strlen(s) - 1, "%s", s);
        free(s);
        bt_free(&b);
}
END_TEST

/* failures of total: the run stops once more than 5 % and at least 5 failed */
static void rule(unsigned total, unsigned fails, int over)
{
        struct backtest b;
        start(&b, total);
        char buf[256];
        for (unsigned i = 0; i < fails; i++) {
                snprintf(buf, sizeof buf, "{\"type\":\"bars\",\"first\":%u,\"us\":[1],\"signals\":[],\"errors\":"
                         "[{\"bar\":%u,\"time\":1,\"type\":\"RuntimeError\",\"message\":\"m\",\"line\":null}]}", i, i);
                ck_assert_int_eq(add(&b, buf), 0);
        }
        ck_assert_msg(bt_over(&b) == over, "%u of %u: over is %d", fails, total, bt_over(&b));
        bt_free(&b);
}

START_TEST(five_percent)
{
        rule(100, 4, 0);
        rule(100, 5, 0);
        rule(100, 6, 1);
        rule(50, 5, 1);
        rule(50, 4, 0);   /* 8 %, but fewer than 5 */
        rule(1000, 50, 0);
        rule(1000, 51, 1);
}
END_TEST

/* The signals' limit is the report's bytes (--report-max), checked per
 * batch before any of it is written; a return value of many small values
 * is held parsed only while it is encoded (a red-team finding: it once
 * cost the supervisor gigabytes). */
START_TEST(report_max_in_bytes)
{
        struct backtest b;
        char path[64];
        report_path(path, sizeof path);
        start_reporting(&b, 100000, path, BTR_JSON, 1 << 20);
        size_t n = 21800, len = 3 * n + 2;
        char *ret = malloc(len + 1), *msg = malloc(len + 256);
        ret[0] = '[';
        for (size_t i = 0; i < n; i++)
                memcpy(ret + 1 + 3 * i, i + 1 < n ? "{}," : "{} ", 3);
        ret[len - 1] = ']';
        ret[len] = '\0';
        int refused_at = -1, r = 0;
        struct jr_err err = { 0 };
        for (int k = 0; k < 200 && refused_at < 0; k++) {
                snprintf(msg, len + 256, "{\"type\":\"bars\",\"first\":%d,\"us\":[1],\"signals\":[{\"bar\":%d,"
                         "\"time\":1,\"return\":\"%s\"}],\"errors\":[]}", k, k, ret);
                struct msg m;
                ck_assert_int_eq(msg_decode(msg, strlen(msg), &m, &err), 0);
                if ((r = bt_add(&b, &m, &err)) < 0)
                        refused_at = k;
                msg_free(&m);
        }
        /* 16 signals of ~64 KiB fit in 1 MiB, the 17th does not */
        ck_assert_int_eq(refused_at, 16);
        ck_assert_int_eq(r, -EFBIG);
        ck_assert_str_eq(err.msg, "the report reached --report-max 1 MiB by bar 16 (16 signals): return less per "
                                  "bar, or raise --report-max");
        ck_assert_uint_eq(b.signals, 16);
        char *s = finish(&b, path);
        json_error_t je;
        json_t *doc = json_loads(s, 0, &je);
        ck_assert_msg(doc != NULL, "not JSON: %s", je.text);
        ck_assert_uint_eq(json_array_size(json_object_get(doc, "signals")), 16);
        ck_assert_uint_le(strlen(s), (1 << 20) + 1024);
        json_decref(doc);
        free(s);
        free(ret);
        free(msg);
        bt_free(&b);
}
END_TEST

/* The per-bar times are a histogram: exact below BT_HIST_EXACT us, within
 * 1/64 above, the max exact; what it takes does not grow with the bars. */
START_TEST(time_percentiles)
{
        struct backtest b;
        start(&b, 200);
        char buf[256];
        for (unsigned i = 0; i < 200; i++) {
                unsigned us = i < 100 ? 7 : i < 198 ? 1000 + i : i == 198 ? 70000 : 4000000000u;
                snprintf(buf, sizeof buf, "{\"type\":\"bars\",\"first\":%u,\"us\":[%u],\"signals\":[],\"errors\":[]}",
                         i, us);
                ck_assert_int_eq(add(&b, buf), 0);
        }
        uint32_t p50, p99, max;
        bt_times(&b, &p50, &p99, &max);
        ck_assert_uint_eq(p50, 7);       /* rank 99 of 0..199 */
        ck_assert_uint_eq(p99, 1197);    /* rank 197 */
        ck_assert_uint_eq(max, 4000000000u);
        bt_free(&b);
        start(&b, 3);
        ck_assert_int_eq(add(&b, "{\"type\":\"bars\",\"first\":0,\"us\":[70000,70000,4000000000],\"signals\":[],"
                                 "\"errors\":[]}"), 0);
        bt_times(&b, &p50, &p99, &max);
        ck_assert_uint_le(p50, 70000);
        ck_assert_uint_ge(p50, 70000 - 70000 / 64);
        bt_free(&b);
}
END_TEST

START_TEST(bar_counts)
{
        struct backtest b;
        struct jr_err err = { 0 };
        bt_init(&b, 5, 5);
        ck_assert_int_lt(bt_start(&b, 0, &err), 0);
        ck_assert_int_eq(bt_start(&b, 3, &err), 0);
        ck_assert_int_lt(bt_start(&b, 3, &err), 0);  /* once */
        bt_free(&b);
        /* no more bars than the file has lines (red team: the supervisor's
         * memory grew with the count the jail claimed) */
        bt_init(&b, 5, 5);
        b.max_total = 3;
        ck_assert_int_lt(bt_start(&b, 4, &err), 0);
        ck_assert_str_eq(err.msg, "the jail claims 4 bars; the bars file has 3 lines");
        ck_assert_int_eq(bt_start(&b, 3, &err), 0);
        bt_free(&b);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("backtest");
        TCase *tc = tcase_create("backtest");
        tcase_add_test(tc, good_batches);
        tcase_add_loop_test(tc, bad_batches, 0, (int)(sizeof bad / sizeof bad[0]));
        tcase_add_test(tc, five_percent);
        tcase_add_test(tc, bar_counts);
        tcase_add_test(tc, report_max_in_bytes);
        tcase_add_test(tc, time_percentiles);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
