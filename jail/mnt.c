#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sched.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "jail/mnt.h"

/* bubblewrap's layout: a throw-away tmpfs holds both the old root (so bind
 * sources stay reachable, nothing hidden under a mountpoint) and the new
 * root being built. */
#define BASE "/tmp"
#define OLD "/oldroot"
#define NEW "/newroot"

static const char *const dev_nodes[] = { "null", "zero", "urandom" };
static const char *const dev_links[][2] = {
        { "fd", "/proc/self/fd" },      { "stdin", "/proc/self/fd/0" },
        { "stdout", "/proc/self/fd/1" }, { "stderr", "/proc/self/fd/2" },
};

static int pivot(const char *new_root, const char *put_old)
{
        return (int)syscall(SYS_pivot_root, new_root, put_old);
}

static int setattr_tree(const char *path, unsigned long long set, int recursive,
                        struct jr_err *err)
{
        struct mount_attr a = { .attr_set = set };
        if (mount_setattr(AT_FDCWD, path, recursive ? AT_RECURSIVE : 0, &a, sizeof a) < 0)
                return jr_fail(err, errno, "mount_setattr '%s'", path);
        return 0;
}

/* Read-only, nosuid, nodev bind of src (in the old root) at dst. */
static int bind_ro(const char *src, const char *dst, int is_dir, struct jr_err *err)
{
        if (is_dir) {
                if (mkdir(dst, 0755) < 0 && errno != EEXIST)
                        return jr_fail(err, errno, "mkdir '%s'", dst);
        } else {
                int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0444);
                if (fd < 0)
                        return jr_fail(err, errno, "create mountpoint '%s'", dst);
                close(fd);
        }
        if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
                return jr_fail(err, errno, "bind '%s' at '%s'", src, dst);
        return setattr_tree(dst, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 1, err);
}

static int apply_plan(const struct mnt_plan *plan, struct jr_err *err)
{
        for (size_t i = 0; i < plan->n; i++) {
                const struct mnt_entry *e = &plan->v[i];
                char dst[PATH_MAX], src[PATH_MAX];
                if (jr_snprintf(dst, sizeof dst, NEW "%s", e->path) < 0 ||
                    jr_snprintf(src, sizeof src, OLD "%s", e->path) < 0)
                        return jr_fail(err, ENAMETOOLONG, "path '%s'", e->path);
                int r = 0;
                switch (e->op) {
                case MNT_OP_DIR:
                        if (mkdir(dst, 0755) < 0 && errno != EEXIST)
                                r = jr_fail(err, errno, "mkdir '%s'", dst);
                        break;
                case MNT_OP_SYMLINK:
                        if (symlink(e->target, dst) < 0 && errno != EEXIST)
                                r = jr_fail(err, errno, "symlink '%s'", dst);
                        break;
                case MNT_OP_BIND:
                        r = bind_ro(src, dst, e->is_dir, err);
                        break;
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Binds the jail program read-only at MNT_PROGRAM, making the directories
 * on the way (in the jail's tmpfs: none of them may lie in a bind). */
static int bind_program(const struct mnt_cfg *cfg, struct jr_err *err)
{
        char src[PATH_MAX], dst[PATH_MAX];
        if (jr_snprintf(src, sizeof src, OLD "%s", cfg->program) < 0 ||
            jr_snprintf(dst, sizeof dst, NEW "%s", cfg->zygote ? MNT_ZPROGRAM : MNT_PROGRAM) < 0)
                return jr_fail(err, ENAMETOOLONG, "path of the jail program '%s'", cfg->program);
        for (char *s = strchr(dst + sizeof NEW, '/'); s; s = strchr(s + 1, '/')) {
                *s = '\0';
                int r = mkdir(dst, 0755);
                *s = '/';
                if (r < 0 && errno != EEXIST)
                        return jr_fail(err, errno, "mkdir on the way to %s", MNT_PROGRAM);
        }
        return bind_ro(src, dst, 0, err);
}

static int add_path_list(struct mnt_plan *plan, const char *list, struct jr_err *err)
{
        char buf[4096];
        if (jr_snprintf(buf, sizeof buf, "%s", list) < 0)
                return jr_fail(err, ENAMETOOLONG, "path list '%s'", list);
        int r = 0;
        for (char *save = NULL, *d = strtok_r(buf, ":", &save); d && r == 0;
             d = strtok_r(NULL, ":", &save))
                r = mntplan_add(plan, d, err);
        return r;
}

static int make_plan(const struct mnt_cfg *cfg, struct mnt_plan *plan, struct jr_err *err)
{
        int r = mntplan_init(plan, OLD, err);
        if (r < 0)
                return r;
        r = mntplan_add_maps(plan, cfg->maps, cfg->exe, err);
        if (r == 0 && cfg->interp)
                r = mntplan_add(plan, cfg->interp, err);
        /* The loader's cache; nothing else of the host's /etc. */
        if (r == 0)
                r = mntplan_add(plan, "/etc/ld.so.cache", err);
        if (r == 0)
                r = add_path_list(plan, cfg->pypath, err);
        if (r == 0)
                r = add_path_list(plan, cfg->datapath, err);
        /* Names the loader follows into what is already bound: /lib ->
         * usr/lib, and the alternatives of shared objects (BLAS, LAPACK).
         * Only those: nothing else in the jail can use an alternative (no
         * program directory is bound), and reading all of them (hundreds)
         * cost a millisecond. */
        if (r == 0)
                r = mntplan_add_links_into(plan, "/", NULL, err);
        if (r == 0)
                r = mntplan_add_links_into(plan, "/etc/alternatives", ".so", err);
        if (r == 0)
                mntplan_finish(plan);
        return r;
}

static int make_dev(struct jr_err *err)
{
        if (mkdir(NEW "/dev", 0755) < 0)
                return jr_fail(err, errno, "mkdir /dev");
        if (mount("tmpfs", NEW "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k,nr_inodes=64") < 0)
                return jr_fail(err, errno, "mount tmpfs at /dev");
        for (size_t i = 0; i < ELEMENTSOF(dev_nodes); i++) {
                char src[64], dst[64];
                snprintf(src, sizeof src, OLD "/dev/%s", dev_nodes[i]);
                snprintf(dst, sizeof dst, NEW "/dev/%s", dev_nodes[i]);
                int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
                if (fd < 0)
                        return jr_fail(err, errno, "create '%s'", dst);
                close(fd);
                if (mount(src, dst, NULL, MS_BIND, NULL) < 0)
                        return jr_fail(err, errno, "bind '%s'", src);
                int r = setattr_tree(dst, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, 0, err);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < ELEMENTSOF(dev_links); i++) {
                char dst[64];
                snprintf(dst, sizeof dst, NEW "/dev/%s", dev_links[i][0]);
                if (symlink(dev_links[i][1], dst) < 0)
                        return jr_fail(err, errno, "symlink '%s'", dst);
        }
        if (mount(NULL, NEW "/dev", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k,nr_inodes=64") < 0)
                return jr_fail(err, errno, "remount /dev read-only");
        return 0;
}

/* A zygote's /proc: an instance of an empty pid namespace (a helper made
 * it and died), showing no process and, being pid-only, nothing else.
 * It is there because a user namespace may mount a proc only where one
 * is already fully visible: each child mounts its own over it. Should a
 * child ever take its own away, this one shows nothing. */
static int make_empty_proc(struct jr_err *err)
{
        pid_t helper = fork();
        if (helper < 0)
                return jr_fail(err, errno, "fork for the empty /proc");
        if (helper == 0) {
                if (unshare(CLONE_NEWPID) < 0)
                        _exit(1);
                pid_t init = fork();
                if (init == 0)
                        _exit(mount("proc", NEW "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "subset=pid") < 0
                              ? 2 : 0);
                int st = 0;
                while (init > 0 && waitpid(init, &st, 0) < 0 && errno == EINTR)
                        ;
                _exit(init > 0 && WIFEXITED(st) ? WEXITSTATUS(st) : 3);
        }
        int st = 0;
        while (waitpid(helper, &st, 0) < 0)
                if (errno != EINTR)
                        return jr_fail(err, errno, "wait for the empty /proc");
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                return jr_fail(err, EPERM, "mount an empty /proc (helper status %d)", st);
        return 0;
}

int mnt_warm_child(unsigned long scratch_bytes, struct jr_err *err)
{
        if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "subset=pid") < 0)
                return jr_fail(err, errno, "mount /proc");
        if (!scratch_bytes)
                return 0;
        char opts[64];
        snprintf(opts, sizeof opts, "mode=0700,size=%lu", scratch_bytes);
        if (mount("tmpfs", MNT_SCRATCH, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
                return jr_fail(err, errno, "mount tmpfs at " MNT_SCRATCH);
        return 0;
}

static int make_proc_and_scratch(const struct mnt_cfg *cfg, struct jr_err *err)
{
        if (mkdir(NEW "/proc", 0555) < 0)
                return jr_fail(err, errno, "mkdir /proc");
        if (cfg->zygote) {  /* each child mounts its own /proc and scratch */
                int r = make_empty_proc(err);
                if (r == 0 && cfg->scratch_bytes && mkdir(NEW MNT_SCRATCH, 0700) < 0)
                        r = jr_fail(err, errno, "mkdir " MNT_SCRATCH);
                return r;
        }
        /* subset=pid: process directories only; no /proc/sys, kcore,
         * kallsyms or other kernel-wide files. */
        if (mount("proc", NEW "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "subset=pid") < 0)
                return jr_fail(err, errno, "mount /proc");
        if (!cfg->scratch_bytes)
                return 0;
        char opts[64];
        snprintf(opts, sizeof opts, "mode=0700,size=%lu", cfg->scratch_bytes);
        if (mkdir(NEW MNT_SCRATCH, 0700) < 0)
                return jr_fail(err, errno, "mkdir " MNT_SCRATCH);
        if (mount("tmpfs", NEW MNT_SCRATCH, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
                return jr_fail(err, errno, "mount tmpfs at " MNT_SCRATCH);
        return 0;
}

/* Enters the base tmpfs with the host root parked at OLD. */
static int enter_base(struct jr_err *err)
{
        /* Nothing we mount may propagate back to the host, or from it to us. */
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return jr_fail(err, errno, "make / private");
        if (mount("tmpfs", BASE, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700,size=64k") < 0)
                return jr_fail(err, errno, "mount base tmpfs at " BASE);
        if (mkdir(BASE OLD, 0700) < 0 || mkdir(BASE NEW, 0755) < 0)
                return jr_fail(err, errno, "mkdir in base tmpfs");
        if (pivot(BASE, BASE OLD) < 0)
                return jr_fail(err, errno, "pivot_root into base tmpfs");
        if (chdir("/") < 0)
                return jr_fail(err, errno, "chdir /");
        if (mount("tmpfs", NEW, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") < 0)
                return jr_fail(err, errno, "mount root tmpfs");
        return 0;
}

/* Pivots into NEW and detaches everything else: the host root is gone
 * from this mount namespace, not merely hidden. */
static int enter_new_root(struct jr_err *err)
{
        if (chdir(NEW) < 0)
                return jr_fail(err, errno, "chdir " NEW);
        if (pivot(".", ".") < 0)
                return jr_fail(err, errno, "pivot_root into new root");
        if (umount2(".", MNT_DETACH) < 0)
                return jr_fail(err, errno, "detach old root");
        if (chdir("/") < 0)
                return jr_fail(err, errno, "chdir / in new root");
        if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
                return jr_fail(err, errno, "remount / read-only");
        return 0;
}

int mnt_build_root(const struct mnt_cfg *cfg, struct mnt_plan *plan, struct jr_err *err)
{
        int r = enter_base(err);
        if (r == 0)
                r = make_plan(cfg, plan, err);
        if (r == 0)
                r = apply_plan(plan, err);
        if (r == 0)
                r = bind_program(cfg, err);
        if (r == 0)
                r = make_dev(err);
        if (r == 0)
                r = make_proc_and_scratch(cfg, err);
        if (r == 0)
                r = enter_new_root(err);
        return r;
}

int mnt_expected(const struct mnt_plan *plan, const char *mp)
{
        static const char *const fixed[] = { "/", "/proc", "/dev", MNT_SCRATCH, MNT_PROGRAM, MNT_ZPROGRAM };
        for (size_t i = 0; i < ELEMENTSOF(fixed); i++)
                if (strcmp(mp, fixed[i]) == 0)
                        return 1;
        if (strncmp(mp, "/dev/", 5) == 0)
                for (size_t i = 0; i < ELEMENTSOF(dev_nodes); i++)
                        if (strcmp(mp + 5, dev_nodes[i]) == 0)
                                return 1;
        for (size_t i = 0; i < plan->n; i++)
                if (plan->v[i].op == MNT_OP_BIND && path_within(mp, plan->v[i].path))
                        return 1;
        return 0;
}
