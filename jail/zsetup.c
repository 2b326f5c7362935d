/* A warm zygote's set-up, in the clone of the supervisor that starts it:
 * the jail's root built as for any jail, then the zygote program executed
 * (jail/zygote.c). It stays root in the host's user namespace (its
 * children each get a user namespace of their own), so it is given
 * nothing a jail could use: no user code, no configuration of a job. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/proto.h"
#include "common/zyproto.h"
#include "jail/jail.h"
#include "jail/jexec.h"
#include "jail/mnt.h"
#include "jail/setup.h"

/* Tells the supervisor why the zygote could not be made, and exits. */
_Noreturn static void zfatal(const char *step, const struct jr_err *err)
{
        struct zy_hello h = { .magic = ZY_MAGIC, .errnum = err->errnum ? err->errnum : EIO };
        snprintf(h.msg, sizeof h.msg, "zygote set-up failed at %s: %s", step, err->msg);
        (void)!send(ZY_CTL_FD, &h, sizeof h, MSG_NOSIGNAL);
        _exit(EXIT_SETUP);
}

/* stdin and stdout on /dev/null, stderr the supervisor's, the control
 * pair on ZY_CTL_FD (kept across the exec), nothing else. */
static int zplace_fds(const struct jail_zygote_cfg *zc, struct jr_err *err)
{
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        int ctl = fcntl(zc->ctl_fd, F_DUPFD_CLOEXEC, 10);
        int serr = fcntl(zc->stderr_fd, F_DUPFD_CLOEXEC, 10);
        if (null < 0 || ctl < 0 || serr < 0)
                return jr_fail(err, errno, "zygote descriptors");
        if (dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(serr, 2) < 0 || dup2(ctl, ZY_CTL_FD) < 0)
                return jr_fail(err, errno, "zygote dup2");
        if (syscall(SYS_close_range, ZY_CTL_FD + 1, ~0U, 0) < 0)
                return jr_fail(err, errno, "close_range");
        return 0;
}

/* The root: each child mounts its own scratch and /dev/shm (here only
 * their directories, for profile exec) and /proc. Profile exec's has the
 * shell's tools: a child whose policy has no exec.shell covers them. */
static int zbuild_root(const struct jail_zygote_cfg *zc, struct mnt_plan *plan, struct jr_err *err)
{
        int exec = zc->profile == JAIL_PROFILE_EXEC;
        struct mnt_cfg mc = { .program = zc->program, .scratch_bytes = exec, .zygote = 1, .exec = exec, .shell = exec };
        return jail_build_root(&mc, plan, err);
}

/* The zygote's configuration: its profile, the modules to preload, and
 * the plan's binds (the program checks every child's mounts against them). */
static int zconfig(const struct jail_zygote_cfg *zc, const struct mnt_plan *plan, struct jr_err *err)
{
        _cleanup_free_ char **binds = calloc(plan->n + 1, sizeof *binds);
        if (!binds)
                return jr_fail(err, ENOMEM, "zygote configuration");
        int n = 0;
        for (size_t i = 0; i < plan->n; i++)
                if (plan->v[i].op == MNT_OP_BIND)
                        binds[n++] = (char *)plan->v[i].path;
        struct jexec_cfg c = {
                .profile = zc->profile,
                .entry = JEXEC_ENTRY_ZYGOTE,
                .policy_json = zc->preload,
                .script = "",
                .script_name = "",
                .data_name = "",
                .argc = n,
                .argv = binds,
        };
        return jail_place_config(jexec_make(&c, err), err);
}

_Noreturn void jail_zygote_main(const struct jail_zygote_cfg *zc)
{
        struct jr_err err = { 0 };
        struct mnt_plan plan = { 0 };
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                _exit(EXIT_SETUP);
        if (zplace_fds(zc, &err) < 0)
                _exit(EXIT_SETUP);  /* no control pair to say it on */
#define STEP(name, call)                                \
        do {                                            \
                if ((call) < 0)                         \
                        zfatal(name, &err);             \
        } while (0)
        STEP("signals", jail_reset_signals(&err));
        STEP("mounts", zbuild_root(zc, &plan, &err));
        if (setsid() < 0)
                zfatal("session", &(struct jr_err){ .errnum = errno, .msg = "setsid" });
        STEP("environment", jail_set_env(zc->profile, &err));
        STEP("configuration", zconfig(zc, &plan, &err));
        mntplan_free(&plan);
        char *const argv[] = { (char *)"jailrun-zygote", NULL };
        execve(MNT_ZPROGRAM, argv, environ);
        STEP("exec", jr_fail(&err, errno, "execute the zygote program %s", MNT_ZPROGRAM));
#undef STEP
        _exit(EXIT_SETUP);
}
