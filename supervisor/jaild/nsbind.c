/* A host directory bound read-only into a running jail for a while (a
 * session's package install: the operator's wheel directory), and taken
 * away after. The mount is made by a child of jaild that joins the jail's
 * mount namespace: a process whose fs is shared with threads cannot join
 * one, and jaild's own namespace must not change. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <limits.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "supervisor/jaild/nsbind.h"

/* <sys/mount.h> clashes with <linux/mount.h>: umount2(2)'s flags. */
#ifndef MNT_DETACH
#define MNT_DETACH 2
#endif
#ifndef UMOUNT_NOFOLLOW
#define UMOUNT_NOFOLLOW 8
#endif

/* In the child: says what failed on the pipe and ends. */
static __attribute__((noreturn)) void child_fail(int fd, const char *what)
{
        char msg[256];
        int n = snprintf(msg, sizeof msg, "%s: %s", what, strerror(errno));
        if (n > 0 && write(fd, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1) < 0) {
                /* nothing more to say it with */
        }
        _exit(1);
}

/* The mount point `dst` (made as its directory's owner if missing, never
 * through a symlink), opened O_PATH in the child's mount namespace. */
static int mount_point(int fd, const char *dst, struct stat *owner)
{
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", dst);
        char *slash = strrchr(dir, '/');
        if (slash)
                *(slash == dir ? slash + 1 : slash) = '\0';
        if (lstat(dir, owner) < 0)
                child_fail(fd, "the mount point's directory");
        setfsgid(owner->st_gid);
        setfsuid(owner->st_uid);
        if (mkdir(dst, 0755) < 0 && errno != EEXIST)
                child_fail(fd, "make the mount point");
        setfsuid(0);
        setfsgid(0);
        struct open_how how = { .flags = O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
                                .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS };
        int target = (int)syscall(SYS_openat2, AT_FDCWD, dst, &how, sizeof how);
        if (target < 0)
                child_fail(fd, "open the mount point");
        return target;
}

static void child_bind(int fd, int pidfd, const char *src, const char *dst)
{
        int tree = (int)syscall(SYS_open_tree, AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (tree < 0)
                child_fail(fd, "open_tree of the directory");
        struct mount_attr attr = {
                .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
        };
        if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0)
                child_fail(fd, "make the bind read-only");
        if (setns(pidfd, CLONE_NEWNS) < 0)
                child_fail(fd, "join the jail's mount namespace");
        /* The jail owns the directory the mount point is made in: nothing
         * it put there (a symlink) is followed, and what is made there is
         * made as its owner (root's uid means nothing in the jail's user
         * namespace). */
        struct stat owner;
        int target = mount_point(fd, dst, &owner);
        if (syscall(SYS_move_mount, tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
                child_fail(fd, "mount");
        _exit(0);
}

static void child_unbind(int fd, int pidfd, const char *dst)
{
        if (setns(pidfd, CLONE_NEWNS) < 0)
                child_fail(fd, "join the jail's mount namespace");
        if (syscall(SYS_umount2, dst, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL && errno != ENOENT)
                child_fail(fd, "unmount");
        (void)rmdir(dst);  /* the jail may have put something in it meanwhile: then it stays */
        _exit(0);
}

/* A new tmpfs at dst, owned by dst's directory's owner: writable, noexec. */
static void child_site_new(int fd, int pidfd, const char *dst, unsigned long bytes)
{
        if (setns(pidfd, CLONE_NEWNS) < 0)
                child_fail(fd, "join the jail's mount namespace");
        struct stat owner;
        int target = mount_point(fd, dst, &owner);
        int fs = (int)syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC);
        if (fs < 0)
                child_fail(fd, "fsopen tmpfs");
        char v[32];
        snprintf(v, sizeof v, "%lu", bytes);
        int r = (int)syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "size", v, 0);
        snprintf(v, sizeof v, "%u", (unsigned)owner.st_uid);
        r = r < 0 ? r : (int)syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "uid", v, 0);
        snprintf(v, sizeof v, "%u", (unsigned)owner.st_gid);
        r = r < 0 ? r : (int)syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "gid", v, 0);
        r = r < 0 ? r : (int)syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "mode", "0755", 0);
        r = r < 0 ? r : (int)syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0);
        if (r < 0)
                child_fail(fd, "configure the tmpfs");
        int mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC,
                               MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
        if (mnt < 0)
                child_fail(fd, "fsmount");
        if (syscall(SYS_move_mount, mnt, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
                child_fail(fd, "mount");
        _exit(0);
}

/* The mount at dst made writable and noexec (open), or read-only with
 * programs and libraries allowed (sealed). */
static void child_site_attr(int fd, int pidfd, const char *dst, int open)
{
        if (setns(pidfd, CLONE_NEWNS) < 0)
                child_fail(fd, "join the jail's mount namespace");
        struct open_how how = { .flags = O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
                                .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS };
        int target = (int)syscall(SYS_openat2, AT_FDCWD, dst, &how, sizeof how);
        if (target < 0)
                child_fail(fd, "open the mount");
        struct mount_attr attr = {
                .attr_set = open ? MOUNT_ATTR_NOEXEC : MOUNT_ATTR_RDONLY,
                .attr_clr = open ? MOUNT_ATTR_RDONLY : MOUNT_ATTR_NOEXEC,
        };
        if (syscall(SYS_mount_setattr, target, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0)
                child_fail(fd, open ? "make it writable" : "make it read-only");
        _exit(0);
}

static void child_run(int fd, int pidfd, const struct ns_op *op)
{
        switch (op->kind) {
        case NS_BIND: child_bind(fd, pidfd, op->src, op->dst); break;
        case NS_UNBIND: child_unbind(fd, pidfd, op->dst); break;
        case NS_SITE_NEW: child_site_new(fd, pidfd, op->dst, op->bytes); break;
        case NS_SITE_OPEN: child_site_attr(fd, pidfd, op->dst, 1); break;
        case NS_SITE_SEAL: child_site_attr(fd, pidfd, op->dst, 0); break;
        }
        _exit(1);
}

int ns_mount(int pidfd, const struct ns_op *op, struct jr_err *err)
{
        static const char *const names[] = { [NS_BIND] = "bind", [NS_UNBIND] = "unbind", [NS_SITE_NEW] = "mount a tmpfs at",
                                             [NS_SITE_OPEN] = "open", [NS_SITE_SEAL] = "seal" };
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return jr_fail(err, errno, "pipe");
        pid_t pid = fork();
        if (pid < 0) {
                int e = errno;
                close(p[0]);
                close(p[1]);
                return jr_fail(err, e, "fork");
        }
        if (pid == 0) {
                close(p[0]);
                child_run(p[1], pidfd, op);
        }
        close(p[1]);
        char msg[256] = "";
        ssize_t n;
        while ((n = read(p[0], msg, sizeof msg - 1)) < 0 && errno == EINTR)
                ;
        msg[n > 0 ? n : 0] = '\0';
        close(p[0]);
        int ws = 0;
        while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
                ;
        if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0)
                return 0;
        if (err) {
                err->errnum = EIO;
                snprintf(err->msg, sizeof err->msg, "%s %s in the jail: %s", names[op->kind], op->dst,
                         msg[0] ? msg : "the helper process failed");
        }
        return -EIO;
}

int ns_bind(int pidfd, const char *src, const char *dst, struct jr_err *err)
{
        struct ns_op op = { .kind = src ? NS_BIND : NS_UNBIND, .src = src, .dst = dst };
        return ns_mount(pidfd, &op, err);
}
