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
        struct stat parent;
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", dst);
        char *slash = strrchr(dir, '/');
        if (slash)
                *(slash == dir ? slash + 1 : slash) = '\0';
        if (lstat(dir, &parent) < 0)
                child_fail(fd, "the mount point's directory");
        setfsgid(parent.st_gid);
        setfsuid(parent.st_uid);
        if (mkdir(dst, 0755) < 0 && errno != EEXIST)
                child_fail(fd, "make the mount point");
        setfsuid(0);
        setfsgid(0);
        struct open_how how = { .flags = O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
                                .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS };
        int target = (int)syscall(SYS_openat2, AT_FDCWD, dst, &how, sizeof how);
        if (target < 0)
                child_fail(fd, "open the mount point");
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

int ns_bind(int pidfd, const char *src, const char *dst, struct jr_err *err)
{
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
                if (src)
                        child_bind(p[1], pidfd, src, dst);
                child_unbind(p[1], pidfd, dst);
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
                snprintf(err->msg, sizeof err->msg, "%s %s in the jail: %s", src ? "bind" : "unbind", dst,
                         msg[0] ? msg : "the helper process failed");
        }
        return -EIO;
}
