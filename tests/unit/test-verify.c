/* The fail-closed checks refuse every state that is not the jail's. */
#include "config.h"

#include "tests/unit/unit.h"

#include <errno.h>
#include <string.h>

#include "jail/mnt.h"
#include "jail/verify.h"

#define CAPS0 "CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n" \
              "CapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\n"
#define GOOD "Name:\tjailrun\nUid:\t0\t0\t0\t0\n" CAPS0 "NoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n"

static const struct { const char *name, *status, *want; } status_cases[] = {
        { "no seccomp", "Name:\tx\n" CAPS0 "NoNewPrivs:\t1\nSeccomp:\t0\n", "seccomp" },
        { "strict seccomp", "Name:\tx\n" CAPS0 "NoNewPrivs:\t1\nSeccomp:\t1\n", "seccomp" },
        { "seccomp missing", "Name:\tx\n" CAPS0 "NoNewPrivs:\t1\n", "seccomp" },
        { "no nnp", "Name:\tx\n" CAPS0 "NoNewPrivs:\t0\nSeccomp:\t2\n", "no_new_privs" },
        { "effective cap", "CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000200000\n"
                           "CapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n", "CapEff" },
        { "bounding cap", "CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n"
                          "CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n", "CapBnd" },
        { "ambient missing", "CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n"
                             "CapBnd:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n", "CapAmb" },
        { "empty", "", "seccomp" },
};

START_TEST(test_status)
{
        struct jr_err err = { 0 };
        ck_assert_int_eq(verify_status_text(GOOD, &err), 0);
        for (size_t i = 0; i < sizeof status_cases / sizeof status_cases[0]; i++) {
                err.msg[0] = '\0';
                ck_assert_msg(verify_status_text(status_cases[i].status, &err) == -EPERM, "%s passed",
                              status_cases[i].name);
                ck_assert_msg(strstr(err.msg, status_cases[i].want), "%s: %s", status_cases[i].name, err.msg);
        }
}
END_TEST

START_TEST(test_maps)
{
        struct jr_err err = { 0 };
        ck_assert_int_eq(verify_map_text("uid_map", "         0     100007          1\n", 100007, &err), 0);
        const char *bad[] = {
                "         0     100008          1\n",                 /* another uid */
                "         0          0          1\n",                 /* host root */
                "         0     100007          2\n",                 /* two uids */
                "         1     100007          1\n",
                "         0     100007          1\n      1000       1000          1\n",
                "",
                "0 100007",
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                ck_assert_msg(verify_map_text("uid_map", bad[i], 100007, &err) == -EPERM, "case %zu", i);
}
END_TEST

#define NETHDR "Inter-|   Receive  |  Transmit\n face |bytes    packets|bytes\n"

START_TEST(test_net)
{
        struct jr_err err = { 0 };
        ck_assert_int_eq(verify_net_text(NETHDR "    lo:       0       0\n", &err), 0);
        ck_assert_int_eq(verify_net_text(NETHDR "    lo: 0 0\n  eth0: 0 0\n", &err), -EPERM);
        ck_assert_int_eq(verify_net_text(NETHDR "  eth0: 0 0\n", &err), -EPERM);
        ck_assert_int_eq(verify_net_text(NETHDR, &err), -EPERM);
        ck_assert_int_eq(verify_net_text(NETHDR "  lo0: 1\n", &err), -EPERM);
}
END_TEST

START_TEST(test_cgroup)
{
        struct jr_err err = { 0 };
        ck_assert_int_eq(verify_cgroup_text("0::/\n", &err), 0);
        ck_assert_int_eq(verify_cgroup_text("4:memory:/\n1:cpu:/\n0::/\n", &err), 0);
        ck_assert_int_eq(verify_cgroup_text("0::/jailrun/job-1\n", &err), -EPERM);
        ck_assert_int_eq(verify_cgroup_text("4:memory:/\n0::/..\n", &err), -EPERM);
        ck_assert_int_eq(verify_cgroup_text("0::/../..\n", &err), -EPERM);
        ck_assert_int_eq(verify_cgroup_text("", &err), -EPERM);
}
END_TEST

START_TEST(test_mountinfo)
{
        struct mnt_plan plan;
        struct jr_err err = { 0 };
        ck_assert_int_eq(mntplan_init(&plan, "", NULL), 0);
        ck_assert_int_eq(mntplan_add(&plan, "/usr/lib", NULL), 0);
        mntplan_finish(&plan);
        const char *ok[] = {
                "65 42 0:41 / / ro,nosuid - tmpfs tmpfs ro\n",
                "66 65 254:0 /usr/lib /usr/lib ro - ext4 /dev/vda rw\n",
                "67 66 254:1 / /usr/lib/sub ro - ext4 /dev/vdb rw\n",  /* beneath a bind */
                "70 65 0:42 / /dev ro - tmpfs tmpfs ro\n",
                "71 70 0:6 /null /dev/null rw - devtmpfs devtmpfs rw\n",
                "74 65 0:43 / /proc rw - proc proc rw\n",
                "75 65 0:44 / /scratch rw - tmpfs tmpfs rw\n",
                "76 70 0:45 / /dev/shm rw - tmpfs tmpfs rw\n",       /* profile exec */
                "77 65 0:46 / /usr/bin ro - tmpfs tmpfs ro\n",       /* a warm jail without the shell */
        };
        for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
                ck_assert_msg(verify_mountinfo_line(&plan, ok[i], &err) == 0, "%s: %s", ok[i], err.msg);
        const char *bad[] = {
                "80 65 254:0 / /oldroot rw - ext4 /dev/vda rw\n",      /* the old root */
                "81 65 0:5 / /sys ro - sysfs sysfs ro\n",
                "82 70 0:6 /sda /dev/sda rw - devtmpfs devtmpfs rw\n",
                "83 65 254:0 /usr /usr ro - ext4 /dev/vda rw\n",        /* wider than planned */
                "84 65 0:7 / /proc/sys rw - proc proc rw\n",
                "85 77 254:0 /usr/bin/dash /usr/bin/dash ro - ext4 /dev/vda rw\n",  /* not in the plan */
                "86 70 0:47 / /dev/shm/x rw - tmpfs tmpfs rw\n",
                "garbage\n",
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                ck_assert_msg(verify_mountinfo_line(&plan, bad[i], &err) < 0, "accepted %s", bad[i]);
        mntplan_free(&plan);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("verify");
        TCase *tc = tcase_create("checks");
        tcase_add_test(tc, test_status);
        tcase_add_test(tc, test_maps);
        tcase_add_test(tc, test_net);
        tcase_add_test(tc, test_mountinfo);
        tcase_add_test(tc, test_cgroup);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
