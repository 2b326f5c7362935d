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
        int64_t cpu_us;              /* CPU in all, exact (v1's user/system split is counted in ticks) */
};

/* What a reused group's counters held when its job began (all 0 for a
 * new group): what the kernel reports less this is the job's own. */
struct cg_base {
        int64_t memory;              /* charged then; the peak was reset to it */
        int64_t cpu_us, user_us, system_us;
        int64_t oom_kills, pids_max_hits;
};

struct cg_slot;

struct cg_job {
        const struct cg_host *h;
        char rel[PATH_MAX];          /* "<parent>/<name>" below each hierarchy's mount */
        int made[CG_V1_N + 1];       /* directories created (v1 per controller; v2 in [0]) */
        int dirfd;                   /* v2: the group, for clone3 CLONE_INTO_CGROUP */
        int oom_fd;                  /* v1: eventfd signalled on OOM; -1 on v2 */
        int peak_fd;                 /* the peak's file kept open to reset it (reuse), or -1 */
        struct cg_limits lim;        /* as last written; all 0 before */
        struct cg_base base;
        struct cg_slot *slot;        /* a pool's group (cgpool.h), borrowed; NULL: the job's own */
};

/* A struct cg_job that holds nothing yet. */
#define CG_JOB_INIT { .dirfd = -1, .oom_fd = -1, .peak_fd = -1 }

/* Finds the backend from /proc/self/mountinfo and the controllers present. */
int cg_detect(struct cg_host *h, struct jr_err *err);
const char *cg_backend_name(enum cg_backend b);

/* Creates the job's group(s) under `parent` (relative to each hierarchy's
 * mount; made, with the controllers delegated, if missing) and applies the
 * limits. Cleans up after itself on failure. */
int cg_job_create(struct cg_job *j, const struct cg_host *h, const char *parent, const char *name,
                  const struct cg_limits *l, struct jr_err *err);

/* cg_job_create in two steps: the group without the limits (a pool's,
 * made ahead of its job), then the limits, written where they differ
 * from j->lim. */
int cg_job_make(struct cg_job *j, const struct cg_host *h, const char *parent, const char *name,
                struct jr_err *err);
int cg_job_limits(struct cg_job *j, const struct cg_limits *l, struct jr_err *err);

/* Moves pid into the job's group(s), before it runs anything of the
 * user's: on v1 always, on v2 only where clone3 could not place the child
 * there at birth (CLONE_INTO_CGROUP). On v1 this takes the kernel's
 * global cgroup_threadgroup_rwsem for writing, which waits for an RCU
 * grace period unless a move ran just before (~15 ms on this kind of
 * host): a child given the join fds moves itself instead, which does not
 * take it (jail.h, cgroup_join). */
int cg_job_attach(struct cg_job *j, pid_t pid, struct jr_err *err);

/* v1: each of the job's groups' `tasks` file opened for writing, in
 * fds[0..n) (-1 where a hierarchy is shared or absent), for the jail child
 * to join them itself (jail.h, cgroup_join); the caller closes them once
 * the child is cloned (opened per clone, not kept: a daemon with a
 * thousand groups would hold five thousand). Returns n, 0 on v2, or
 * -errno (none left open). */
int cg_job_join_fds(const struct cg_job *j, int fds[CG_V1_N], struct jr_err *err);

/* Kills every process in the group (cgroup.kill, or freeze and kill each)
 * and waits (up to 2 s) until it is empty: 0, or -EBUSY if it is not. */
int cg_job_empty(const struct cg_job *j);
/* 1 when nothing is left in the group; reads, kills nothing. */
int cg_job_is_empty(const struct cg_job *j);

/* For a pool that reuses groups (cgpool.c). cg_job_open_peak keeps the
 * peak's file open and returns 1 if the peak can be reset (v1; v2 from
 * kernel 6.12, where a write resets what reads through the same
 * descriptor see), 0 if not (the group can serve one job), or -errno.
 * cg_job_reset_peak, as a job takes the group, resets the peak to what
 * is charged now and records that in j->base.memory. cg_job_baseline
 * records the counters of the emptied group in j->base, and returns its
 * peak of tasks (pids.peak, which cannot be reset; -1 where the kernel has
 * none). */
int cg_job_open_peak(struct cg_job *j);
int cg_job_reset_peak(struct cg_job *j, struct jr_err *err);
int64_t cg_job_baseline(struct cg_job *j);

/* The processes in the job's group (the pids controller's on v1), at most
 * max of them into out; their count (0 when it cannot be read). */
size_t cg_job_pids(const struct cg_job *j, pid_t *out, size_t max);

/* CPU time the job used so far (everything in its group), in µs. */
int cg_job_cpu_us(const struct cg_job *j, uint64_t *us);

/* The job's events and accounting (a reused group's less j->base);
 * fields the backend lacks stay -1. */
void cg_job_stats(const struct cg_job *j, struct cg_stats *s);

/* Kills every process in the group (cg_job_empty), removes the group and
 * closes its descriptors. Returns 0 or -errno; the group is gone either
 * way unless the kernel refused rmdir for 2 s. A pool's group goes back
 * with cg_pool_give instead. */
int cg_job_destroy(struct cg_job *j, struct jr_err *err);

/* Removes groups of jobs whose jailrun died without cleaning up (kill -9):
 * "job-PID" directories under parent whose PID is no longer a jailrun. */
void cg_sweep_stale(const struct cg_host *h, const char *parent);
/* The same for every job-* and pool-* group under parent (all != 0: a
 * daemon that owns parent alone, at its start), or only those of dead
 * jailruns. */
void cg_sweep(const struct cg_host *h, const char *parent, int all);

#endif
