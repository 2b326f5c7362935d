/* The ioctl cover: masked-equality tests whose union is exactly "not one
 * of the excluded values", on the low 32 bits. */
#include "config.h"

#include "tests/unit/unit.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <seccomp.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "jail/filt.h"
#include "policy/filtbuild.h"

struct rules {
        uint32_t mask[256], value[256];
        int n;
};

static int collect(void *ctx, uint32_t mask, uint32_t value)
{
        struct rules *r = ctx;
        if (r->n == 256)
                return -1;
        r->mask[r->n] = mask;
        r->value[r->n] = value;
        r->n++;
        return 0;
}

static int allowed(const struct rules *r, uint32_t v)
{
        for (int i = 0; i < r->n; i++)
                if ((v & r->mask[i]) == r->value[i])
                        return 1;
        return 0;
}

static void check_cover(const uint32_t *ex, size_t n)
{
        struct rules r = { .n = 0 };
        ck_assert_int_eq(filt_cover_except(ex, n, collect, &r), 0);
        ck_assert_int_le(r.n, 32 * (int)(n ? n : 1));
        for (size_t i = 0; i < n; i++) {
                ck_assert_msg(!allowed(&r, ex[i]), "excluded 0x%x allowed", ex[i]);
                /* every neighbour, every single-bit flip is allowed */
                for (int b = 0; b < 32; b++) {
                        uint32_t v = ex[i] ^ ((uint32_t)1 << b);
                        int is_ex = 0;
                        for (size_t k = 0; k < n; k++)
                                is_ex |= v == ex[k];
                        ck_assert_msg(allowed(&r, v) == !is_ex, "0x%x", v);
                }
                ck_assert(allowed(&r, ex[i] + 1) || ex[i] + 1 == ex[(i + 1) % n]);
        }
        /* a pseudo-random sweep */
        uint32_t x = 12345;
        for (int i = 0; i < 200000; i++) {
                x = x * 1103515245u + 12345u;
                int is_ex = 0;
                for (size_t k = 0; k < n; k++)
                        is_ex |= x == ex[k];
                ck_assert_int_eq(allowed(&r, x), !is_ex);
        }
}

START_TEST(test_tty_ioctls)
{
        const uint32_t ex[] = { TIOCSTI, TIOCLINUX };
        check_cover(ex, 2);
}
END_TEST

START_TEST(test_edges)
{
        const uint32_t zero[] = { 0 }, top[] = { 0xffffffffu }, both[] = { 0, 0xffffffffu };
        check_cover(zero, 1);
        check_cover(top, 1);
        check_cover(both, 2);
        struct rules r = { .n = 0 };
        ck_assert_int_eq(filt_cover_except(NULL, 0, collect, &r), 0);
        ck_assert_int_eq(r.n, 1);  /* nothing excluded: one test that always matches */
        ck_assert(allowed(&r, 0x5412));
}
END_TEST

/* The filter the jail loads (compiled at build time) is exactly what
 * libseccomp builds from the policy now. */
static void check_same(int exec_profile, const struct sock_filter *built, unsigned short n)
{
        scmp_filter_ctx ctx = NULL;
        struct jr_err err = { 0 };
        ck_assert_msg(filt_build(exec_profile, &ctx, &err) == 0, "%s", err.msg);
        int fd = memfd_create("bpf", MFD_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(seccomp_export_bpf(ctx, fd), 0);
        seccomp_release(ctx);
        off_t len = lseek(fd, 0, SEEK_END);
        ck_assert_int_eq(len, (off_t)(n * sizeof *built));
        struct sock_filter *now = malloc((size_t)len);
        ck_assert_int_eq(pread(fd, now, (size_t)len, 0), len);
        ck_assert_msg(memcmp(now, built, (size_t)len) == 0, "build-time filter is stale");
        free(now);
        close(fd);
}

START_TEST(test_build_time_filters_current)
{
        check_same(0, filt_bpf_worker, filt_bpf_worker_len);
        check_same(1, filt_bpf_exec, filt_bpf_exec_len);
        check_same(FILT_EXEC_INET, filt_bpf_exec_inet, filt_bpf_exec_inet_len);
        ck_assert_int_ne(filt_bpf_worker_len, filt_bpf_exec_len);  /* exec allows more */
        ck_assert_int_ne(filt_bpf_exec_len, filt_bpf_exec_inet_len);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("filt");
        TCase *tc = tcase_create("cover");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_tty_ioctls);
        tcase_add_test(tc, test_edges);
        tcase_add_test(tc, test_build_time_filters_current);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
