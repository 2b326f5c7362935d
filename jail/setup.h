/* The steps of a jail's set-up that a cold jail (jail.c, in the clone of
 * the supervisor) and a warm one (warm.c, in the clone of a zygote) both
 * take. Inside jail/ only. */
#ifndef JR_SETUP_H
#define JR_SETUP_H

#include <limits.h>

#include "common/err.h"

/* What the mount planner needs from the host, read before any mount. */
struct host_view {
        char maps[256 * 1024];
        char exe[PATH_MAX];
        const char *interp;
};
int jail_read_host_view(struct host_view *hv, struct jr_err *err);

/* The host's view read, the host name set, the root built from it as
 * mc says (mnt.h: its program, scratch, exec, shell, zygote; the fields
 * read from the host are filled here). 0 or -errno. */
struct mnt_cfg;
struct mnt_plan;
int jail_build_root(struct mnt_cfg *mc, struct mnt_plan *plan, struct jr_err *err);

/* What the kernel side of a jail of profile exec takes from its policy
 * (jailrun-policy(5)): exec.shell, and the size of /dev/shm, half of
 * limits.memory (the other half left to the processes, so a full
 * /dev/shm is ENOSPC, not the job killed for memory). */
struct jail_exec_opts {
        int shell;
        unsigned long shm_bytes;
        char programs[4096];  /* exec.programs, ':'-separated ("" none) */
};
/* From the policy's text (checked by the supervisor). 0, or -errno with
 * err set when it is not a policy. */
int jail_exec_opts(const char *policy_json, struct jail_exec_opts *out, struct jr_err *err);

/* Moves fd (a configuration memfd, or -errno passed through) to CFG_FD,
 * kept across an exec. 0 or -errno. */
int jail_place_config(int fd, struct jr_err *err);

/* One byte of the go-ahead pipe; EOF (the supervisor died) or a read
 * error ends the process with EXIT_SETUP. */
char jail_read_sync(int fd);

/* Waits for JAIL_ATTACHED on sync (then closed); if the first byte was
 * JAIL_GO_CGROUPNS, roots a cgroup namespace where we now are. */
int jail_wait_attached(int sync, char go, struct jr_err *err);

/* Default dispositions, nothing blocked. */
int jail_reset_signals(struct jr_err *err);

/* setresuid/setresgid 0 (the one host uid), the parent-death signal armed
 * again, and the supervisor seen alive on chan. */
int jail_become_root(int chan, struct jr_err *err);

/* The fixed environment of the profile and its working directory. */
int jail_set_env(int profile, struct jr_err *err);

/* RLIMIT_NPROC above the task limit, RLIMIT_NOFILE: hard. */
int jail_set_rlimits(unsigned max_tasks, struct jr_err *err);

#endif
