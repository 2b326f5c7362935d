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
/* exec.shell: the shell and the everyday tools scripts call through it
 * (jailrun-policy(5) lists them); each is a plain program (none is set-uid,
 * and the binds are nosuid anyway) that needs only libraries the jail has. */
const char *const mnt_shell_tools[] = {
        "sh", "cat", "echo", "printf", "ls", "mkdir", "rmdir", "rm", "cp", "mv", "ln", "touch",
        "chmod", "head", "tail", "wc", "sort", "uniq", "cut", "tr", "tee", "env", "true", "false",
        "pwd", "date", "sleep", "basename", "dirname", "test", "[", "expr", "seq", "grep", "sed",
        "xargs", "find", NULL,
};

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

/* Profile exec: the data its everyday packages read (matplotlib's), the
 * interpreter as a program, its "python3" name when the host's leads to
 * it, and with the shell the tools. */
static int add_programs(const struct mnt_cfg *cfg, struct mnt_plan *plan, struct jr_err *err)
{
        int r = add_path_list(plan, JR_EXEC_DATAPATH, err);
        if (r == 0)
                r = mntplan_add(plan, JR_PYTHON_EXE, err);
        char host[PATH_MAX], exe[PATH_MAX];
        if (r == 0 && realpath(OLD MNT_BIN "/python3", host) && realpath(OLD JR_PYTHON_EXE, exe) &&
            strcmp(host, exe) == 0)
                r = mntplan_add(plan, MNT_BIN "/python3", err);
        for (size_t i = 0; r == 0 && cfg->shell && mnt_shell_tools[i]; i++) {
                char path[PATH_MAX];
                if (jr_snprintf(path, sizeof path, MNT_BIN "/%s", mnt_shell_tools[i]) < 0)
                        return jr_fail(err, ENAMETOOLONG, "tool '%s'", mnt_shell_tools[i]);
                r = mntplan_add(plan, path, err);
        }
        if (r == 0 && cfg->programs)
                r = add_path_list(plan, cfg->programs, err);
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
        if (r == 0 && cfg->exec)
                r = add_programs(cfg, plan, err);
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

static int make_dev(const struct mnt_cfg *cfg, struct jr_err *err)
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
        /* Its tmpfs comes later (a zygote's child mounts its own). */
        if (cfg->exec && mkdir(NEW MNT_SHM, 0755) < 0)
                return jr_fail(err, errno, "mkdir " MNT_SHM);
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

/* The scratch tmpfs at `at` (its own path in the jail, or under NEW).
 * Nothing written there runs (noexec): not as a program, not through the
 * loader, not mapped as code. */
static int mount_scratch(const char *at, unsigned long bytes, struct jr_err *err)
{
        char opts[64];
        snprintf(opts, sizeof opts, "mode=0700,size=%lu", bytes);
        if (mount("tmpfs", at, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) < 0)
                return jr_fail(err, errno, "mount tmpfs at " MNT_SCRATCH);
        return 0;
}

/* The job's own /dev/shm at `at`: POSIX semaphores and shared memory
 * (multiprocessing's locks, queues, shared_memory). Its pages are the
 * job's memory cgroup's like any it writes; the size makes a full one
 * ENOSPC before that. Nothing there runs (noexec). */
static int mount_shm(const char *at, unsigned long bytes, struct jr_err *err)
{
        char opts[96];
        snprintf(opts, sizeof opts, "mode=1777,size=%lu,nr_inodes=%d", bytes, MNT_SHM_INODES);
        if (mount("tmpfs", at, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) < 0)
                return jr_fail(err, errno, "mount tmpfs at " MNT_SHM);
        return 0;
}

/* Covers the zygote's MNT_BIN (the interpreter and the shell's tools)
 * with a read-only tmpfs holding the interpreter alone (and its python3
 * name): a job without exec.shell has no /bin/sh. The cover is this
 * namespace's own mount, which nothing in the jail may unmount (no
 * capability, and seccomp kills umount2). */
static int hide_shell(struct jr_err *err)
{
        _cleanup_close_ int py = open_tree(AT_FDCWD, JR_PYTHON_EXE, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        if (py < 0)
                return jr_fail(err, errno, "open_tree %s", JR_PYTHON_EXE);
        struct stat st;
        int link = lstat(MNT_BIN "/python3", &st) == 0 && S_ISLNK(st.st_mode);
        if (mount("tmpfs", MNT_BIN, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=16k,nr_inodes=8") < 0)
                return jr_fail(err, errno, "mount tmpfs at " MNT_BIN);
        int fd = open(JR_PYTHON_EXE, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0444);
        if (fd < 0)
                return jr_fail(err, errno, "create mountpoint '%s'", JR_PYTHON_EXE);
        close(fd);  /* an open file keeps the tmpfs from going read-only */
        if (move_mount(py, "", AT_FDCWD, JR_PYTHON_EXE, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                return jr_fail(err, errno, "move_mount %s", JR_PYTHON_EXE);
        if (link && symlink(strrchr(JR_PYTHON_EXE, '/') + 1, MNT_BIN "/python3") < 0)
                return jr_fail(err, errno, "symlink " MNT_BIN "/python3");
        if (mount(NULL, MNT_BIN, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                return jr_fail(err, errno, "remount " MNT_BIN " read-only");
        return 0;
}

int mnt_warm_child(const struct mnt_child *c, struct jr_err *err)
{
        if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "subset=pid") < 0)
                return jr_fail(err, errno, "mount /proc");
        int r = c->scratch_bytes ? mount_scratch(MNT_SCRATCH, c->scratch_bytes, err) : 0;
        if (r == 0 && c->shm_bytes)
                r = mount_shm(MNT_SHM, c->shm_bytes, err);
        if (r == 0 && c->hide_shell)
                r = hide_shell(err);
        return r;
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
        if (cfg->exec && cfg->shm_bytes) {
                int r = mount_shm(NEW MNT_SHM, cfg->shm_bytes, err);
                if (r < 0)
                        return r;
        }
        if (!cfg->scratch_bytes)
                return 0;
        if (mkdir(NEW MNT_SCRATCH, 0700) < 0)
                return jr_fail(err, errno, "mkdir " MNT_SCRATCH);
        return mount_scratch(NEW MNT_SCRATCH, cfg->scratch_bytes, err);
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
                r = make_dev(cfg, err);
        if (r == 0)
                r = make_proc_and_scratch(cfg, err);
        if (r == 0)
                r = enter_new_root(err);
        return r;
}

int mnt_expected(const struct mnt_plan *plan, const char *mp)
{
        static const char *const fixed[] = { "/", "/proc", "/dev", MNT_SCRATCH, MNT_PROGRAM, MNT_ZPROGRAM,
                                             MNT_SHM, MNT_BIN };
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
