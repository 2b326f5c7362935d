/* One cgroup per job: hard limits on memory, tasks and CPU, the OOM and
 * task-limit events, accounting, and a kill that reaches every process of
 * the job. cgroup v2 where the unified hierarchy has the controllers; else
 * the v1 hierarchies (memory, pids, cpu, cpuacct, freezer) with the same
 * semantics. Never touches the host's mounts: only groups under a parent
 * of our own. */
#ifndef JR_CGROUP_H
#define JR_CGROUP_H

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"

enum cg_backend { CG_NONE, CG_V1, CG_V2 };

enum cg_v1_ctl { CG_MEMORY, CG_PIDS, CG_CPU, CG_CPUACCT, CG_FREEZER, CG_V1_N };

struct cg_host {
        enum cg_backend backend;
        char v2[PATH_MAX];           /* cgroup2 mount point */
        char v1[CG_V1_N][PATH_MAX];  /* each v1 controller's mount point, "" if none */
        char why[PATH_MAX + 128];    /* CG_NONE: what is missing */
};

struct cg_limits {
        uint64_t memory;             /* bytes */
        unsigned pids;
        uint64_t cpu_quota_us;       /* per cpu_period_us */
        uint64_t cpu_period_us;
};

/* -1 where the backend cannot tell. */
struct cg_stats {
        int64_t peak_memory_bytes;
        int64_t cpu_user_us, cpu_system_us;
        int64_t pids_peak;
        int64_t oom_kills;           /* processes the kernel killed at the memory limit */
        int64_t pids_max_hits;       /* forks refused at the task limit */
};

struct cg_job {
        const struct cg_host *h;
        char rel[PATH_MAX];          /* "<parent>/<name>" below each hierarchy's mount */
        int made[CG_V1_N + 1];       /* directories created (v1 per controller; v2 in [0]) */
        int dirfd;                   /* v2: the group, for clone3 CLONE_INTO_CGROUP */
        int oom_fd;                  /* v1: eventfd signalled on OOM; -1 on v2 */
};

/* Finds the backend from /proc/self/mountinfo and the controllers present. */
int cg_detect(struct cg_host *h, struct jr_err *err);
const char *cg_backend_name(enum cg_backend b);

/* Creates the job's group(s) under `parent` (relative to each hierarchy's
 * mount; made, with the controllers delegated, if missing) and applies the
 * limits. Cleans up after itself on failure. */
int cg_job_create(struct cg_job *j, const struct cg_host *h, const char *parent, const char *name,
                  const struct cg_limits *l, struct jr_err *err);

/* Moves pid into the job's group(s), before it runs anything of the
 * user's: on v1 always, on v2 only where clone3 could not place the child
 * there at birth (CLONE_INTO_CGROUP). */
int cg_job_attach(struct cg_job *j, pid_t pid, struct jr_err *err);

/* v1: the "tasks" file of each of the job's groups, opened for writing
 * (by us: the kernel judges a write by the opener's credentials), into
 * fds (at most max): a single-threaded child that writes "0" to each
 * moves itself in without the RCU grace period a move by pid waits for
 * (cgroup_threadgroup_rwsem, ~10 ms). The count (0 on v2: a child is
 * born in its group there), or -errno with err set and none open. */
int cg_job_join_fds(const struct cg_job *j, int *fds, size_t max, struct jr_err *err);

/* The processes in the job's group (the pids controller's on v1), at most
 * max of them into out; their count (0 when it cannot be read). */
size_t cg_job_pids(const struct cg_job *j, pid_t *out, size_t max);

/* CPU time used so far by everything in the group, in µs. */
int cg_job_cpu_us(const struct cg_job *j, uint64_t *us);

/* Events and accounting; fields the backend lacks stay -1. */
void cg_job_stats(const struct cg_job *j, struct cg_stats *s);

/* Kills every process in the group (cgroup.kill, or freeze and kill each),
 * waits until it is empty, and removes the group. Returns 0 or -errno; the
 * group is gone either way unless the kernel refused rmdir for 2 s. */
int cg_job_destroy(struct cg_job *j, struct jr_err *err);

/* Removes groups of jobs whose jailrun died without cleaning up (kill -9):
 * "job-PID" directories under parent whose PID is no longer a jailrun. */
void cg_sweep_stale(const struct cg_host *h, const char *parent);
/* The same for every job-* group under parent (all != 0: a daemon that
 * owns parent alone, at its start), or only those of dead jailruns. */
void cg_sweep(const struct cg_host *h, const char *parent, int all);

#endif
