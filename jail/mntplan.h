/* The mount planner: from the paths the interpreter needs, work out the
 * directories, symlinks and read-only binds that reproduce exactly those
 * paths (and the symlink chains leading to them) in an empty root.
 * Pure apart from lstat/readlink/opendir under `root`, so it is unit-tested
 * against a fake tree. */
#ifndef JR_MNTPLAN_H
#define JR_MNTPLAN_H

#include <limits.h>
#include <stddef.h>

#include "common/err.h"

enum mnt_op {
        MNT_OP_DIR,      /* mkdir in the new root */
        MNT_OP_SYMLINK,  /* recreate a symlink with the same target text */
        MNT_OP_BIND,     /* read-only recursive bind of a file or directory */
};

struct mnt_entry {
        enum mnt_op op;
        int is_dir;            /* BIND: the source is a directory */
        char path[PATH_MAX];   /* absolute path inside the jail */
        char target[PATH_MAX]; /* SYMLINK: link text */
};

/* Paths already seen to be plain directories on the host: walks share
 * prefixes (/usr, /usr/lib, ...), and hundreds of links get walked. */
#define MNTPLAN_DIRCACHE 1024

struct mnt_plan {
        char root[PATH_MAX];   /* host tree the paths are looked up in ("" = /) */
        struct mnt_entry *v;
        size_t n, cap;
        char *dirs[MNTPLAN_DIRCACHE];  /* open-addressed set of paths */
};

/* Sets up an empty plan reading the host tree under root. */
int mntplan_init(struct mnt_plan *p, const char *root, struct jr_err *err);
void mntplan_free(struct mnt_plan *p);

/* Makes `path` (absolute) reachable in the new root: every symlink on the
 * way is recreated and followed, every directory on the way created, and
 * the final object bound. A path that does not exist is skipped (returns 0):
 * callers list candidates. Returns 0 or -errno. */
int mntplan_add(struct mnt_plan *p, const char *path, struct jr_err *err);

/* For each symlink directly in `dir` (whose name contains `name_has`,
 * unless NULL) whose target the jail will show, recreate it (e.g. /lib ->
 * usr/lib, or the /etc/alternatives links the loader follows to a bound
 * library). Where a target leads is worked out on the plan itself (one
 * readlink per link, nothing else on the host). Exposes nothing new: only
 * names for what is already there. */
int mntplan_add_links_into(struct mnt_plan *p, const char *dir, const char *name_has,
                           struct jr_err *err);

/* Adds the directories of the objects mapped executable in a
 * /proc/PID/maps text (shared libraries; never a file mapped as data),
 * skipping `exclude` (the running binary: the jail never needs its file). */
int mntplan_add_maps(struct mnt_plan *p, const char *maps, const char *exclude,
                     struct jr_err *err);

/* Records `path` as bound, without looking at the host: a plan carried
 * into a process that can no longer see it (a zygote), for mnt_expected. */
int mntplan_add_bound(struct mnt_plan *p, const char *path, struct jr_err *err);

/* Sorts parents first and drops entries a bind already covers. */
void mntplan_finish(struct mnt_plan *p);

/* 1 when `path` is `dir` or lies beneath it. */
int path_within(const char *path, const char *dir);

#endif
