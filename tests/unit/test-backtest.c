/* The supervisor's side of a backtest (supervisor/backtest.c): batches
 * from the jail decoded and checked against the run, the 5 % rule, the
 * report and the per-bar time percentiles. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "supervisor/backtest.h"
#include "supervisor/msg.h"
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

START_TEST(good_batches)
{
        struct backtest b;
        start(&b, 4);
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
        json_t *r = bt_report(&b, "completed", NULL);
        char *s = json_dumps(r, JSON_COMPACT);
        ck_assert_ptr_nonnull(strstr(s, "\"return\":{\"x\":[1,2.5]}"));
        ck_assert_ptr_nonnull(strstr(s, "\"TimeoutError\":{\"count\":1,\"first\":{\"bar\":3,\"time\":180,"
                                        "\"message\":\"slow\",\"line\":4}}"));
        free(s);
        json_decref(r);
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
        start(&b, 10);
        ck_assert_int_eq(add(&b, "{\"type\":\"bars\",\"first\":0,\"us\":[1,1],\"signals\":[],\"errors\":[]}"), 0);
        ck_assert_msg(add(&b, bad[_i]) < 0, "accepted: %s", bad[_i]);
        /* the run is as it was before the refused batch */
        ck_assert_uint_eq(b.done, 2);
        ck_assert_uint_eq(b.failed, 0);
        ck_assert_uint_eq(b.orders, 0);
        ck_assert_uint_eq(json_array_size(b.signals), 0);
        for (int c = 0; c < BT_CATEGORIES; c++)
                ck_assert(b.count[c] == 0 && b.first[c] == NULL);
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

/* A return value of many small values costs far more parsed than as text:
 * the signals' budget counts the values, so a run of them is refused long
 * before the supervisor holds gigabytes (a red-team finding). */
START_TEST(signals_budget_counts_values)
{
        struct backtest b;
        start(&b, 100000);
        size_t n = 21800, len = 3 * n + 2;
        char *ret = malloc(len + 1), *msg = malloc(len + 256);
        ret[0] = '[';
        for (size_t i = 0; i < n; i++)
                memcpy(ret + 1 + 3 * i, i + 1 < n ? "{}," : "{} ", 3);
        ret[len - 1] = ']';
        ret[len] = '\0';
        int refused_at = -1;
        for (int k = 0; k < 200 && refused_at < 0; k++) {
                snprintf(msg, len + 256, "{\"type\":\"bars\",\"first\":%d,\"us\":[1],\"signals\":[{\"bar\":%d,"
                         "\"time\":1,\"return\":\"%s\"}],\"errors\":[]}", k, k, ret);
                if (add(&b, msg) < 0)
                        refused_at = k;
        }
        ck_assert_msg(refused_at > 0 && refused_at < 40, "refused at %d", refused_at);
        free(ret);
        free(msg);
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
        tcase_add_test(tc, signals_budget_counts_values);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
