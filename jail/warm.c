/* The child of a warm zygote: it starts as a copy of the zygote (the
 * interpreter up, the heavy modules imported, no job's data anywhere),
 * takes its own descriptors and configuration, finishes the jail's set-up
 * in its own namespaces, checks every protection from the kernel exactly
 * as a cold jail does, and runs the script on the zygote's runtime. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/proto.h"
#include "common/zyproto.h"
#include "jail/caps.h"
#include "jail/filt.h"
#include "jail/jail.h"
#include "jail/jexec.h"
#include "jail/mnt.h"
#include "jail/net.h"
#include "jail/pyrt.h"
#include "jail/setup.h"
#include "jail/verify.h"
#include "jail/warm.h"

#define WARM_NS_FLAGS                                                                      \
        (CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC |      \
         CLONE_NEWUTS | CLONE_NEWCGROUP)

static const char *const entry_names[] = {
        [JAIL_ENTRY_TICKS] = "ticks",
        [JAIL_ENTRY_SCRIPT] = "script",
        [JAIL_ENTRY_LOAD] = "load",
        [JAIL_ENTRY_SESSION] = "session",
};

/* Writes "0" to each v1 "tasks" file given: the child moves itself into
 * the job's groups, before it has anything of its own (*joined: how many). */
static int join_groups(const int *fds, int *joined, struct jr_err *err)
{
        *joined = 0;
        for (int i = ZY_FD__MAX; i < ZY_MAX_FDS; i++) {
                if (fds[i] < 0)
                        continue;
                ssize_t n;
                while ((n = write(fds[i], "0", 1)) < 0 && errno == EINTR)
                        ;
                if (n != 1)
                        return jr_fail(err, n < 0 ? errno : EIO, "join the job's cgroup");
                ++*joined;
        }
        return 0;
}

/* After join_groups, with our own /proc: every v1 hierarchy of the
 * job's controllers lists us in the job's group ("/" + path), before the
 * cgroup namespace is rooted there. */
static int check_joined(const char *path, struct jr_err *err)
{
        static const char *const ctls[] = { "memory", "pids", "cpu", "cpuacct", "freezer" };
        char buf[4096], want[PATH_MAX + 2];
        ssize_t n = read_small_file("/proc/self/cgroup", buf, sizeof buf);
        if (n < 0)
                return jr_fail(err, (int)-n, "read /proc/self/cgroup");
        snprintf(want, sizeof want, "/%s", path);
        int seen = 0;
        for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                char *c1 = strchr(l, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
                if (!c2)
                        return jr_fail(err, EPROTO, "unreadable /proc/self/cgroup line '%.64s'", l);
                *c2 = '\0';
                int ours = 0;
                for (char *s2 = NULL, *w = strtok_r(c1 + 1, ",", &s2); w; w = strtok_r(NULL, ",", &s2))
                        for (size_t i = 0; i < ELEMENTSOF(ctls); i++)
                                ours |= strcmp(w, ctls[i]) == 0;
                if (!ours)
                        continue;
                if (strcmp(c2 + 1, want) != 0)
                        return jr_fail(err, EPERM, "check cgroup: in %s, not the job's %s", c2 + 1, want);
                seen++;
        }
        return seen ? 0 : jr_fail(err, EPERM, "check cgroup: in none of the job's groups");
}

/* stdio on 0-2 and the channel on CHAN_FD (the zygote's control pair,
 * which sat there, closed first); the job's v1 groups joined (*joined);
 * the go-ahead pipe in *sync and the configuration read into *c; nothing
 * else open. Failures before the channel is in place just exit. */
static void take_fds(const int *fds, int *sync, struct jexec_cfg *c, int *joined)
{
        /* First of all, so that a child whose zygote dies now is in the
         * job's group while it lives (the supervisor kills it by its name
         * and pidfd: engine/warm.h warm_lost). */
        struct jr_err jerr = { 0 };
        int jr = join_groups(fds, joined, &jerr);
        int tmp[ZY_FD__MAX];
        for (int i = 0; i < ZY_FD__MAX; i++)
                tmp[i] = fds[i] < 0 ? -1 : fcntl(fds[i], F_DUPFD_CLOEXEC, 10);
        for (int i = 0; i < ZY_FD_CGROUP; i++)
                if (tmp[i] < 0)
                        _exit(EXIT_SETUP);
        close(ZY_CTL_FD);
        for (int i = 0; i <= ZY_FD_CHAN; i++)
                if (dup2(tmp[i], i) < 0)
                        _exit(EXIT_SETUP);
        if (fcntl(CHAN_FD, F_SETFD, FD_CLOEXEC) < 0)
                _exit(EXIT_SETUP);
        struct jr_err err = { 0 };
        if (jr < 0)
                jail_fatal("cgroup", &jerr, CHAN_FD);
        if (jexec_read(tmp[ZY_FD_CONFIG], c, &err) < 0)
                jail_fatal("configuration", &err, CHAN_FD);
        *sync = tmp[ZY_FD_SYNC];
        /* Everything but 0-3 and the pipe: the zygote's, the copies. */
        if (syscall(SYS_close_range, CHAN_FD + 1, (unsigned)*sync - 1, 0) < 0 ||
            syscall(SYS_close_range, (unsigned)*sync + 1, ~0U, 0) < 0)
                _exit(EXIT_SETUP);
}

static int check_entry(const struct jexec_cfg *c, struct jr_err *err)
{
        if (c->entry < 0 || (size_t)c->entry >= ELEMENTSOF(entry_names) || !entry_names[c->entry])
                return jr_fail(err, EINVAL, "entry %d cannot start warm", c->entry);
        return 0;
}

static int set_host(struct jr_err *err)
{
        if (sethostname("jail", 4) < 0)
                return jr_fail(err, errno, "sethostname");
        return net_setup_lo(err);
}

static int after_fork(const struct jexec_cfg *c, struct jr_err *err)
{
        _cleanup_free_ char *why = NULL;
        if (pyrt_after_fork_child(c->data_name, &why) < 0)
                return jr_fail(err, EPROTO, "the interpreter after the fork: %s", why ? why : "failed");
        return 0;
}

/* What the child mounts of its own (mnt_warm_child): profile exec's
 * scratch, /dev/shm and, without exec.shell, the cover of the tools. */
static int warm_mounts(const struct jexec_cfg *c, struct jr_err *err)
{
        struct jail_exec_opts eo = { 0 };
        int exec = c->profile == JAIL_PROFILE_EXEC;
        int r = exec ? jail_exec_opts(c->policy_json, &eo, err) : 0;
        if (r == 0 && eo.programs[0])  /* the supervisor starts such jails cold */
                r = jr_fail(err, EINVAL, "exec.programs: a warm jail's root is its zygote's");
        struct mnt_child mc = {
                .scratch_bytes = exec ? c->scratch_bytes : 0,
                .shm_bytes = eo.shm_bytes,
                .hide_shell = exec && !eo.shell,
        };
        return r < 0 ? r : mnt_warm_child(&mc, err);
}

_Noreturn static void warm_child(const struct warm_ctx *w, const int *fds)
{
        struct jr_err err = { 0 };
        struct jexec_cfg c;
        int sync = -1, joined = 0;
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                _exit(EXIT_SETUP);
        take_fds(fds, &sync, &c, &joined);
#define STEP(name, call)                                \
        do {                                            \
                if ((call) < 0)                         \
                        jail_fatal(name, &err, CHAN_FD);   \
        } while (0)
        STEP("configuration", check_entry(&c, &err));
        if (c.profile != w->profile)
                STEP("configuration", jr_fail(&err, EINVAL, "a jail of profile %d from the zygote of %d", c.profile,
                                              w->profile));
        char go = jail_read_sync(sync);
        STEP("identity", jail_become_root(CHAN_FD, &err));
        STEP("mounts", warm_mounts(&c, &err));
        if (joined) {  /* moved itself: checked, then the namespace rooted there */
                STEP("cgroup", check_joined(c.cgroup_path, &err));
                if (unshare(CLONE_NEWCGROUP) < 0)
                        STEP("cgroup", jr_fail(&err, errno, "unshare CLONE_NEWCGROUP"));
        }
        STEP("network", set_host(&err));
        STEP("cgroup", jail_wait_attached(sync, go, &err));
        if (setsid() < 0)
                STEP("session", jr_fail(&err, errno, "setsid"));
        STEP("environment", jail_set_env(c.profile, &err));
        STEP("limits", jail_set_rlimits(c.max_tasks, &err));
        STEP("capabilities", caps_drop_all(&err));
        struct verify_cfg vc = { .host_uid = c.host_uid, .host_gid = c.host_gid, .plan = &w->plan };
        STEP("verify", verify_world(&vc, &err));
        STEP("interpreter", after_fork(&c, &err));
        STEP("seccomp", filt_install(c.profile != JAIL_PROFILE_EXEC ? FILT_WORKER
                                     : c.flags & JEXEC_INET ? FILT_EXEC_INET : FILT_EXEC, &err));
        STEP("verify", verify_process(&vc, &err));
#undef STEP
        prctl(PR_SET_NAME, "jailrun");
        prctl(PR_SET_DUMPABLE, 0);
        /* The last word of the trusted set-up, as in a cold jail. */
        if (jail_notify(CHAN_FD, "jailed") < 0)
                _exit(EXIT_SETUP);
        struct pyrt_cfg pc = jexec_pyrt_cfg(&c, entry_names[c.entry]);
        exit(pyrt_run_forked(&pc));
}

pid_t warm_clone(const struct warm_ctx *w, const int *fds, int *pidfd, int *late, struct jr_err *err)
{
        int cgfd = fds[ZY_FD_CGROUP];
        struct clone_args a = {
                .flags = WARM_NS_FLAGS | CLONE_PIDFD | CLONE_PARENT | (cgfd >= 0 ? CLONE_INTO_CGROUP : 0),
                .pidfd = (uint64_t)(uintptr_t)pidfd,
                .exit_signal = 0,  /* a sibling's is its parent's */
                .cgroup = cgfd >= 0 ? (uint64_t)cgfd : 0,
        };
        *late = cgfd < 0;
        if (*late)
                a.flags &= ~(uint64_t)CLONE_NEWCGROUP;
        pyrt_before_fork();
        pid_t pid = (pid_t)syscall(SYS_clone3, &a, sizeof a);
        if (pid == 0)
                warm_child(w, fds);
        int e = errno;
        pyrt_after_fork_parent();
        if (pid < 0)
                return jr_fail(err, e, "clone into new namespaces");
        return pid;
}
