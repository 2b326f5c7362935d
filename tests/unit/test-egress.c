/* The egress policy's address judgement (egress_refused), address parsing
 * (jr_net_parse) and UTF-8 repair of error texts (jr_utf8_clean). */
#include "config.h"

#include <arpa/inet.h>
#include <string.h>

#include "common/err.h"
#include "common/netaddr.h"
#include "supervisor/broker/egress.h"
#include "tests/unit/unit.h"

static const char *judge(const struct http_cfg *cfg, const char *text)
{
        unsigned char a[16];
        int fam = inet_pton(AF_INET, text, a) == 1 ? AF_INET : AF_INET6;
        ck_assert_msg(fam == AF_INET || inet_pton(AF_INET6, text, a) == 1, "bad test address %s", text);
        return egress_refused(cfg, fam, a);
}

static const char *const refused[] = {
        "127.0.0.1", "127.255.255.254", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.0.1", "169.254.169.254",
        "100.64.0.1", "0.0.0.0", "224.0.0.251", "255.255.255.255", "192.0.2.1", "198.51.100.7", "203.0.113.9",
        "192.88.99.1", "198.18.0.1", "::", "::1", "::127.0.0.1", "::ffff:127.0.0.1", "::ffff:0:10.0.0.1",
        "64:ff9b::a9fe:a9fe", "64:ff9b:1::7f00:1", "2002:7f00:1::", "2002:c0a8:101::1", "fc00::1", "fd00:ec2::254",
        "fe80::1", "ff02::1", "100::1", "2001::1", "2001:db8::1",
};

static const char *const allowed[] = { "1.1.1.1", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111",
                                       "::ffff:1.1.1.1", "2002:0101:0101::1", "64:ff9b::808:808" };

START_TEST(refuses_internal)
{
        struct http_cfg cfg = { 0 };
        ck_assert_msg(judge(&cfg, refused[_i]) != NULL, "%s allowed", refused[_i]);
}
END_TEST

START_TEST(allows_public)
{
        struct http_cfg cfg = { 0 };
        const char *why = judge(&cfg, allowed[_i]);
        ck_assert_msg(why == NULL, "%s refused: %s", allowed[_i], why);
}
END_TEST

START_TEST(allow_list_first)
{
        struct http_cfg cfg = { .nallow = 2 };
        ck_assert_int_eq(jr_net_parse("127.0.0.1", &cfg.allow[0]), 0);
        ck_assert_int_eq(jr_net_parse("10.1.0.0/16", &cfg.allow[1]), 0);
        ck_assert_ptr_null(judge(&cfg, "127.0.0.1"));
        ck_assert_ptr_null(judge(&cfg, "::ffff:127.0.0.1"));  /* judged as the IPv4 it carries */
        ck_assert_ptr_null(judge(&cfg, "10.1.200.3"));
        ck_assert_ptr_nonnull(judge(&cfg, "127.0.0.2"));
        ck_assert_ptr_nonnull(judge(&cfg, "10.2.0.1"));
}
END_TEST

START_TEST(net_parse)
{
        struct jr_net n;
        ck_assert_int_eq(jr_net_parse("10.0.0.0/8", &n), 0);
        ck_assert_int_eq(n.bits, 8);
        ck_assert_int_eq(jr_net_parse("fd00::/8", &n), 0);
        ck_assert_int_eq(n.family, AF_INET6);
        const char *bad[] = { "", "10.0.0.0/33", "::/129", "10.0.0/8", "x", "10.0.0.0/", "10.0.0.0/8x", "1.2.3.4 " };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                ck_assert_msg(jr_net_parse(bad[i], &n) < 0, "accepted '%s'", bad[i]);
}
END_TEST

START_TEST(utf8_clean)
{
        char a[] = "caf\xc3\xa9";                   /* whole: unchanged */
        ck_assert_str_eq(jr_utf8_clean(a), "caf\xc3\xa9");
        char b[] = "caf\xc3";                       /* cut in the middle of é */
        ck_assert_str_eq(jr_utf8_clean(b), "caf?");
        char c[] = "\xff\xfe ok \xe2\x82";          /* stray bytes, a cut € */
        ck_assert_str_eq(jr_utf8_clean(c), "?? ok ??");
        char d[] = "\xc0\xaf \xed\xa0\x80";         /* overlong, surrogate */
        ck_assert_str_eq(jr_utf8_clean(d), "?? ???");
}
END_TEST

int main(void)
{
        Suite *s = suite_create("egress");
        TCase *tc = tcase_create("egress");
        tcase_add_loop_test(tc, refuses_internal, 0, (int)(sizeof refused / sizeof refused[0]));
        tcase_add_loop_test(tc, allows_public, 0, (int)(sizeof allowed / sizeof allowed[0]));
        tcase_add_test(tc, allow_list_first);
        tcase_add_test(tc, net_parse);
        tcase_add_test(tc, utf8_clean);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
