#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "supervisor/engine/spawn.h"

#define JAIL_NS_FLAGS                                                                      \
        (CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC |      \
         CLONE_NEWUTS | CLONE_NEWCGROUP)

static int write_file(pid_t pid, const char *name, const char *text, struct jr_err *err)
{
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return jr_fail(err, errno, "open %s", path);
        size_t len = strlen(text);
        ssize_t n;
        do
                n = write(fd, text, len);
        while (n < 0 && errno == EINTR);
        if (n < 0 || (size_t)n != len)
                return jr_fail(err, n < 0 ? errno : EIO, "write %s", path);
        return 0;
}

static int write_maps(pid_t pid, uid_t uid, gid_t gid, struct jr_err *err)
{
        char map[64];
        snprintf(map, sizeof map, "0 %u 1\n", (unsigned)uid);
        int r = write_file(pid, "uid_map", map, err);
        if (r == -EPERM) {
                size_t n = strlen(err->msg);
                snprintf(err->msg + n, sizeof err->msg - n,
                         " (is host uid %u mapped in jailrun's own user namespace?)", (unsigned)uid);
        }
        /* "deny" before gid_map: nothing inside may ever call setgroups. */
        if (r == 0)
                r = write_file(pid, "setgroups", "deny", err);
        snprintf(map, sizeof map, "0 %u 1\n", (unsigned)gid);
        if (r == 0)
                r = write_file(pid, "gid_map", map, err);
        return r;
}

/* clone3 where the kernel has it, else clone; both hand back a pidfd.
 * With a v2 group (cgfd >= 0) clone3 places the child in it at birth, and
 * the cgroup namespace is made then; otherwise the child is moved after
 * the clone and makes its cgroup namespace itself once there (*late). */
static pid_t clone_jail(int *pidfd, int cgfd, int *late, unsigned long extra)
{
        struct clone_args a = {
                .flags = JAIL_NS_FLAGS | CLONE_PIDFD | extra | (cgfd >= 0 ? CLONE_INTO_CGROUP : 0),
                .pidfd = (unsigned long)pidfd,
                /* A sibling's exit signal is its parent's (the kernel
                 * wants 0 here): SIGCHLD, ours being a plain fork. */
                .exit_signal = (extra & CLONE_PARENT) ? 0 : SIGCHLD,
                .cgroup = cgfd >= 0 ? (unsigned long)cgfd : 0,
        };
        *late = cgfd < 0;
        if (*late)
                a.flags &= ~(unsigned long)CLONE_NEWCGROUP;
        pid_t pid = (pid_t)syscall(SYS_clone3, &a, sizeof a);
        if (pid < 0 && errno == ENOSYS) {
                *late = 1;
                pid = (pid_t)syscall(SYS_clone, (JAIL_NS_FLAGS & ~CLONE_NEWCGROUP) | CLONE_PIDFD | extra | SIGCHLD,
                                     NULL, pidfd, NULL, 0);
        }
        return pid;
}

/* Why user namespaces are refused here, in the setting's own words. */
static void explain_userns(struct jr_err *err)
{
        char buf[32] = "";
        FILE *f = fopen("/proc/sys/user/max_user_namespaces", "re");
        if (f) {
                if (!fgets(buf, sizeof buf, f))
                        buf[0] = '\0';
                fclose(f);
        }
        size_t n = strlen(err->msg);
        if (strcmp(buf, "0\n") == 0)
                snprintf(err->msg + n, sizeof err->msg - n,
                         " (user namespaces are disabled: sysctl user.max_user_namespaces = 0)");
        else if ((f = fopen("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "re"))) {
                if (fgets(buf, sizeof buf, f) && strcmp(buf, "1\n") == 0)
                        snprintf(err->msg + n, sizeof err->msg - n,
                                 " (AppArmor restricts user namespaces: "
                                 "kernel.apparmor_restrict_unprivileged_userns = 1)");
                fclose(f);
        } else if (err->errnum == EPERM)
                snprintf(err->msg + n, sizeof err->msg - n,
                         " (running inside a container without CAP_SYS_ADMIN?)");
}

/* 1 once the child has exited (its pidfd is readable). */
static int exited(int pidfd)
{
        struct pollfd p = { .fd = pidfd, .events = POLLIN };
        int n;
        while ((n = poll(&p, 1, 0)) < 0 && errno == EINTR)
                ;
        return n > 0;
}

/* One go-ahead byte to the child (jail.h). */
static int release(int go, const char *byte, struct jr_err *err)
{
        ssize_t n;
        do
                n = write(go, byte, 1);
        while (n < 0 && errno == EINTR);
        return n == 1 ? 0 : jr_fail(err, errno, "release the jail child");
}

int spawn_clone(const struct jail_cfg *cfg, int cgfd, int as_sibling, struct spawn *out, int *late,
                struct jr_err *err)
{
        /* The child starts with our supplementary groups; root's must not
         * follow it into the jail, and setgroups is denied in there. */
        if (setgroups(0, NULL) < 0 && (errno != EPERM || getgroups(0, NULL) != 0))
                return jr_fail(err, errno, "clear supplementary groups");
        fflush(NULL);  /* no buffered output duplicated into the child */
        int pidfd = -1;
        pid_t pid = clone_jail(&pidfd, cgfd, late, as_sibling ? CLONE_PARENT : 0);
        if (pid < 0) {
                int r = jr_fail(err, errno, "clone into new namespaces");
                explain_userns(err);
                return r;
        }
        if (pid == 0)
                jail_child_main(cfg);
        *out = (struct spawn){ .pid = pid, .pidfd = pidfd };
        return 0;
}

int spawn_jail(const struct jail_cfg *cfg, int sync_wr, struct cg_job *cg, struct spawn *out,
               struct jr_err *err)
{
        int late = 1;
        struct spawn s;
        /* v1: the child joins its groups itself (jail.h), nothing to move. */
        struct jail_cfg c = *cfg;
        int join[CG_V1_N];
        int r = cg && cg->h ? cg_job_join_fds(cg, join, err) : 0;
        if (r > 0) {
                c.cgroup_join = join;
                c.n_cgroup_join = (unsigned)r;
        }
        if (r >= 0)
                r = spawn_clone(&c, cg ? cg->dirfd : -1, 0, &s, &late, err);
        for (unsigned i = 0; i < c.n_cgroup_join; i++)
                closep(&join[i]);
        if (r < 0) {
                close(sync_wr);
                return r;
        }
        return spawn_release(&c, &s, late, sync_wr, c.n_cgroup_join ? NULL : cg, out, err);
}

int spawn_release(const struct jail_cfg *cfg, const struct spawn *s, int late, int sync_wr, struct cg_job *cg,
                  struct spawn *out, struct jr_err *err)
{
        _cleanup_close_ int go = sync_wr;
        pid_t pid = s->pid;
        int pidfd = s->pidfd;
        int r = write_maps(pid, cfg->host_uid, cfg->host_gid, err);
        if (r == 0)
                r = release(go, late ? JAIL_GO_CGROUPNS : JAIL_GO, err);
        /* Into the job's cgroup while the child builds its jail; it runs
         * nothing of the user's before JAIL_ATTACHED. */
        if (r == 0 && late && cg)
                r = cg_job_attach(cg, pid, err);
        if (r == 0)
                r = release(go, JAIL_ATTACHED, err);
        /* A child that already gave up on its set-up (and said why on the
         * channel) cannot be attached or released: let the loop collect
         * its report and status rather than hide them behind ours. */
        if (r < 0 && exited(pidfd))
                r = 0;
        if (r < 0) {
                kill(pid, SIGKILL);
                while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                        ;
                close(pidfd);
                return r;
        }
        *out = (struct spawn){ .pid = pid, .pidfd = pidfd };
        return 0;
}
