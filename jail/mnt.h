/* The jail's filesystem: a fresh tmpfs root holding read-only binds of what
 * the interpreter needs, a tiny /dev, a pid-only /proc, and (profile exec)
 * a writable scratch tmpfs. */
#ifndef JR_MNT_H
#define JR_MNT_H

#include "common/err.h"
#include "jail/mntplan.h"

struct mnt_cfg {
        const char *maps;        /* /proc/self/maps text, read before any mount */
        const char *exe;         /* the running binary, left out of the plan */
        const char *interp;      /* the program's ELF interpreter (PT_INTERP) or NULL */
        const char *pypath;      /* ':'-separated module search path */
        const char *datapath;    /* ':'-separated data dirs (time zones) */
        const char *program;     /* the jail program on the host, bound at MNT_PROGRAM */
        unsigned long scratch_bytes;  /* 0: no scratch dir */
        /* A warm zygote's root: the program (jailrun-zygote) at
         * MNT_ZPROGRAM, an empty /proc (mnt.c), the scratch directory
         * and /dev/shm without their tmpfs: each child mounts its own. */
        int zygote;
        /* Profile exec: the interpreter as a program (JR_PYTHON_EXE, what
         * sys.executable names) and a /dev/shm of shm_bytes. */
        int exec;
        unsigned long shm_bytes;
        /* exec: /bin/sh and the tools of mnt_shell_tools. A zygote of
         * profile exec always has them; a child whose policy says no
         * hides them (mnt_warm_child). */
        int shell;
        /* exec: the policy's exec.programs, ':'-separated (NULL: none),
         * bound read-only where they are on the host. Cold jails only: a
         * zygote's root is fixed (the supervisor refuses them warm). */
        const char *programs;
};

/* What a zygote's child mounts of its own (mnt_warm_child). */
struct mnt_child {
        unsigned long scratch_bytes;  /* 0: none */
        unsigned long shm_bytes;      /* 0: none */
        int hide_shell;               /* cover the zygote's tools (exec.shell off) */
};

#define MNT_SCRATCH "/scratch"
#define MNT_SHM "/dev/shm"
/* The one directory of programs in a jail of profile exec. */
#define MNT_BIN "/usr/bin"
/* Files a /dev/shm may hold (each costs the kernel an inode). */
#define MNT_SHM_INODES 4096

/* The names in MNT_BIN that exec.shell adds (sh, a link to dash, first),
 * NULL-terminated. */
extern const char *const mnt_shell_tools[];
/* Where the jail program is in every jail: its installed path, whichever
 * file (installed or in a build tree) was bound there. */
#define MNT_PROGRAM JR_PKGLIBEXECDIR "/jailrun-jail"

/* Where a zygote's program is. */
#define MNT_ZPROGRAM JR_PKGLIBEXECDIR "/jailrun-zygote"

/* Builds the root and pivots into it; the old root is detached and gone.
 * `plan` is filled (and kept for mnt_expected). Returns 0 or -errno with
 * the failing step in err. */
int mnt_build_root(const struct mnt_cfg *cfg, struct mnt_plan *plan, struct jr_err *err);

/* In a child of a zygote, in its own namespaces: its pid-only /proc
 * over the zygote's empty one, its scratch and /dev/shm tmpfs (those of
 * c's sizes > 0), and with hide_shell a MNT_BIN holding only the
 * interpreter over the zygote's. 0 or -errno. */
int mnt_warm_child(const struct mnt_child *c, struct jr_err *err);

/* 1 when `mountpoint` (as in /proc/self/mountinfo) is one the jail made. */
int mnt_expected(const struct mnt_plan *plan, const char *mountpoint);

#endif
