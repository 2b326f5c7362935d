/* The one entry point from the supervisor into the jail: a config struct
 * and the function the cloned child runs. Nothing else in jail/ is visible
 * to supervisor/. */
#ifndef JR_JAIL_H
#define JR_JAIL_H

#include <stddef.h>
#include <sys/types.h>

struct jr_err;

/* Open files per process in a jail (RLIMIT_NOFILE, hard). */
#define JAIL_MAX_FILES 1024

/* The go-ahead bytes on the sync pipe. First JAIL_GO (the child was born
 * in its cgroup) or JAIL_GO_CGROUPNS (it is being moved there and will
 * make its cgroup namespace itself): the id maps are written, set-up may
 * start. Then JAIL_ATTACHED: the child is in its cgroup, so its limits
 * hold; it waits for this before dropping privileges and running anything
 * of the user's. Moving a task between v1 groups can wait for an RCU grace
 * period, which thus overlaps the mount set-up. */
#define JAIL_GO "g"
#define JAIL_GO_CGROUPNS "c"
#define JAIL_ATTACHED "a"

enum jail_profile {
        JAIL_PROFILE_WORKER,
        JAIL_PROFILE_EXEC,
};

/* What the runtime does with the script. */
enum jail_entry {
        JAIL_ENTRY_TICKS,   /* load it, then tick(ctx) per "run" message */
        JAIL_ENTRY_SCRIPT,  /* run it top to bottom (profile exec) */
        JAIL_ENTRY_LOAD,    /* load it, check its entry point, wait for shutdown */
        JAIL_ENTRY_CHECK,   /* validate it without running it: one "check" message */
        JAIL_ENTRY_BACKTEST, /* parse the bars on DATA_FD, load it, run on_bar_strategy per bar */
        JAIL_ENTRY_SESSION, /* no script: run each "execute" message's code in one namespace */
};

struct jail_cfg {
        enum jail_profile profile;   /* the kernel side: worker or exec */
        enum jail_entry entry;
        /* The effective policy (JSON text): the Python layer's rules. */
        const char *policy_json;

        /* The child's ends; moved to 0, 1, 2 and CHAN_FD. */
        int stdin_fd;
        int stdout_fd;
        int stderr_fd;
        int channel_fd;
        /* Moved to DATA_FD when >= 0 (the bars of a backtest) and named
         * data_name inside; else DATA_FD is closed like every other. */
        int data_fd;
        const char *data_name;

        /* Read end of the go-ahead pipe: the supervisor writes one byte once
         * the uid/gid maps are in place; EOF means it died, so we exit. */
        int sync_fd;
        /* Supervisor-only fd the child must close before anything else (the
         * go-ahead pipe's write end), or -1. */
        int close_fd;
        /* The jail program (jail_program_find), executed once the jail is
         * built. */
        const char *program;

        uid_t host_uid;  /* what uid 0 inside maps to; checked, not set */
        gid_t host_gid;

        /* The script, already read by the supervisor: the jail never sees
         * the host path, only this text and its display name. */
        const char *script;
        size_t script_len;
        const char *script_name;

        int argc;              /* exec: sys.argv[1:] */
        char *const *argv;

        unsigned long scratch_bytes;  /* exec: size of the writable tmpfs */
        int inet;                     /* exec: TCP sockets allowed (FILT_EXEC_INET; still only lo) */
        const char *cgroup_path;      /* the job's v1 groups below each hierarchy's root, or NULL */
        unsigned max_tasks;           /* RLIMIT_NPROC of its host uid, which no other job
                                         shares: the task limit again, below the cgroup */

        /* cgroup v1: the job's groups' `tasks` files, open for writing,
         * n_cgroup_join of them (entries < 0 skipped), or none. The child
         * writes 0 to each before anything else, which moves it into its
         * groups: a task moving itself takes no global lock, where the
         * supervisor moving it waits for an RCU grace period (~15 ms). The
         * kernel checks the credentials of the files' opener, not the
         * child's. Closed once written: they could move any task. */
        const int *cgroup_join;
        unsigned n_cgroup_join;
};

/* Runs in the freshly cloned child (new user, mount, net, pid, ipc, uts and
 * cgroup namespaces). Builds the jail, then executes the jail program
 * (jailrun-jail), which loads the seccomp filter and runs the interpreter.
 * Never returns: the program exits with the script's status, or the child
 * with EXIT_SETUP after reporting the failing step over the channel. */
_Noreturn void jail_child_main(const struct jail_cfg *cfg);

/* The configuration a jail's program reads (profile, entry, ids, limits,
 * policy, script, arguments) in a sealed memfd, close-on-exec: a warm
 * zygote's child gets it this way. The fd, or -errno with err set. */
int jail_config_memfd(const struct jail_cfg *cfg, struct jr_err *err);

/* Warm zygotes (jaild). A zygote is a process with the jail's root
 * already built and the interpreter initialised with the profile's heavy
 * modules imported; every jail after is cloned from it into its own
 * user, mount, net, pid, ipc, uts and cgroup namespaces, does the rest
 * of a jail's set-up and checks there, and runs its script without an
 * exec. It never receives a script, a policy, a state value or a secret:
 * each jail's configuration reaches the jail alone, as a memfd passed
 * through (jail_config_memfd). */
/* The zygote's process name, which a jail it clones keeps until its set-up
 * is done: how the supervisor knows a clone the zygote never told it of. */
#define JAIL_ZYGOTE_NAME "jailrun-zygote"

struct jail_zygote_cfg {
        enum jail_profile profile;
        const char *program;     /* jailrun-zygote (jail_zygote_program_find) */
        int ctl_fd;              /* its end of the control pair (common/zyproto.h) */
        int stderr_fd;           /* where its interpreter's own errors go */
        const char *preload;     /* JSON array of module names to import */
};

/* Runs in the freshly cloned child (new mount, net, ipc and uts
 * namespaces, no new user namespace: it stays root, with no capability
 * once it has executed the program, and runs nothing of a user's).
 * Builds the jail's root and executes the zygote program, which reports
 * on ctl_fd. Never returns. */
_Noreturn void jail_zygote_main(const struct jail_zygote_cfg *zc);

/* Finds the jail program for jail_cfg.program: in jailrun's libexec
 * directory (pkglibexecdir) for the installed jailrun, or in the build
 * tree (../jail/jailrun-jail from supervisor/jailrun). It must be a regular
 * file owned by root (or by jailrun's user) that nobody else may write,
 * and executable by others (the jails' uids). Returns 0 with the path in
 * path, or -errno with the path and reason in err. */
int jail_program_find(char *path, size_t size, struct jr_err *err);
/* The same for the zygote program (jailrun-zygote). */
int jail_zygote_program_find(char *path, size_t size, struct jr_err *err);

#endif
