#include "config.h"

#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "common/cleanup.h"
#include "common/filtbpf.h"
#include "policy/filtbuild.h"
#include "policy/seccomp.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(scmp_filter_ctx, seccomp_release)

/* Namespace flags a clone() may not carry: a new user namespace would hand
 * back every capability we dropped. */
#define CLONE_NS_MASK                                                                     \
        ((uint64_t)(CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |       \
                    CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET))

static int cover(uint32_t prefix, int depth, const uint32_t *excl, size_t n,
                 int (*emit)(void *, uint32_t, uint32_t), void *ctx)
{
        uint32_t mask = depth ? ~(uint32_t)0 << (32 - depth) : 0;
        size_t hits = 0;
        for (size_t i = 0; i < n; i++)
                hits += (excl[i] & mask) == prefix;
        if (hits == 0)
                return emit(ctx, mask, prefix);
        if (depth == 32)
                return 0;  /* exactly an excluded value */
        uint32_t bit = (uint32_t)1 << (31 - depth);
        int r = cover(prefix, depth + 1, excl, n, emit, ctx);
        return r < 0 ? r : cover(prefix | bit, depth + 1, excl, n, emit, ctx);
}

int filt_cover_except(const uint32_t *excl, size_t n,
                      int (*emit)(void *ctx, uint32_t mask, uint32_t value), void *ctx)
{
        return cover(0, 0, excl, n, emit, ctx);
}

static int emit_ioctl(void *ctx, uint32_t mask, uint32_t value)
{
        return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                                SCMP_A1_64(SCMP_CMP_MASKED_EQ, (uint64_t)mask, (uint64_t)value));
}

static int add_list(scmp_filter_ctx ctx, uint32_t action, const struct syscall_list *l,
                    struct jr_err *err)
{
        for (size_t i = 0; i < l->n; i++) {
                int nr = seccomp_syscall_resolve_name(l->names[i]);
                if (nr == __NR_SCMP_ERROR)
                        continue;  /* not on this architecture: refused by default */
                int r = seccomp_rule_add(ctx, action, nr, 0);
                if (r < 0)
                        return jr_fail(err, -r, "seccomp rule for %s", l->names[i]);
        }
        return 0;
}

/* TCP over IPv4 and IPv6 (the type's low bits; SOCK_NONBLOCK and
 * SOCK_CLOEXEC above them are free): FILT_EXEC_INET only. */
static int add_inet(scmp_filter_ctx ctx)
{
        int r = 0;
        static const int families[] = { AF_INET, AF_INET6 };
        for (size_t i = 0; r == 0 && i < ELEMENTSOF(families); i++)
                r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 2, SCMP_A0_64(SCMP_CMP_EQ, (uint64_t)families[i]),
                                     SCMP_A1_32(SCMP_CMP_MASKED_EQ, 0xf, SOCK_STREAM));
        return r;
}

static int add_checked(scmp_filter_ctx ctx, int inet, struct jr_err *err)
{
        /* Only unix sockets: no network, no netlink, no packet sockets. */
        int r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
                                 SCMP_A0_64(SCMP_CMP_EQ, AF_UNIX));
        if (r == 0 && inet)
                r = add_inet(ctx);
        if (r == 0)
                r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socketpair), 1,
                                     SCMP_A0_64(SCMP_CMP_EQ, AF_UNIX));
        /* Threads and plain children only. */
        if (r == 0)
                r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                                     SCMP_A0_64(SCMP_CMP_MASKED_EQ, CLONE_NS_MASK, 0));
        /* clone3 passes its flags in memory the filter cannot read: answer
         * ENOSYS so libc falls back to clone, which we can check. */
        if (r == 0)
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
        if (r < 0)
                return jr_fail(err, -r, "seccomp argument rules");
        /* Every ioctl but terminal input injection and console control. */
        static const uint32_t no_ioctl[] = { TIOCSTI, TIOCLINUX };
        r = filt_cover_except(no_ioctl, ELEMENTSOF(no_ioctl), emit_ioctl, ctx);
        if (r < 0)
                return jr_fail(err, -r, "seccomp ioctl rules");
        return 0;
}

int filt_build(int kind, scmp_filter_ctx *out, struct jr_err *err)
{
        int exec_profile = kind == FILT_EXEC || kind == FILT_EXEC_INET;
        _cleanup_(seccomp_releasep) scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
        if (!ctx)
                return jr_fail(err, ENOMEM, "seccomp_init");
        /* 32-bit and x32 entry points: a foreign ABI is an attack, not a mistake. */
        int r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
        if (r < 0)
                return jr_fail(err, -r, "seccomp bad-arch action");
        r = add_list(ctx, SCMP_ACT_ALLOW, &seccomp_allow_common, err);
        if (r == 0)
                r = add_list(ctx, SCMP_ACT_ALLOW, exec_profile ? &seccomp_allow_exec : &seccomp_allow_noexec, err);
        if (r == 0)
                r = add_list(ctx, SCMP_ACT_KILL_PROCESS, &seccomp_kill, err);
        if (r == 0)
                r = add_checked(ctx, kind == FILT_EXEC_INET, err);
        if (r < 0)
                return r;
        *out = TAKE_PTR(ctx);
        return 0;
}
