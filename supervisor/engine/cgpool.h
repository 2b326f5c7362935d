/* A pool of job cgroups made ahead, for a front-end that starts many jobs
 * (jaild): a job takes a ready group and its limits are written then; at
 * its end what is left in it is killed and the group goes back, emptied,
 * not removed. Making, resetting and removing groups happens on the loop's
 * hook, after the batch that answered the job, so no mkdir or rmdir sits
 * on a job's start or end (unless it finds none ready: then one is made
 * for it, and counted).
 *
 * A reused group's accounting stays the job's own: the memory peak is
 * reset as the job takes it and counted from what is charged then; CPU
 * time and the OOM and task-limit events are counted from what the group
 * showed when it came back. What cannot be reset retires the group (it is
 * removed and a fresh one made, off the path): a memory peak the kernel
 * cannot reset (cgroup v2 before 6.12), a peak of tasks above 1 (pids.peak
 * has no reset; a group whose peak is 1 gives every later job its own
 * exact peak, since each has at least one task), a group that did not
 * empty. Groups are named pool-N below the parent. */
#ifndef JR_CGPOOL_H
#define JR_CGPOOL_H

#include <stdint.h>

#include "common/err.h"
#include "supervisor/engine/cgroup.h"
#include "supervisor/engine/loop.h"

/* Most groups a pool keeps ready or idle. */
#define CG_POOL_MAX 4096

struct cg_pool_cfg {
        const char *parent;          /* below each hierarchy's root, as cgroup_parent */
        unsigned size;               /* ready groups kept ahead of jobs (low-water mark), >= 1 */
        unsigned max;                /* most idle groups kept (more coming back are removed), >= size */
        /* Trouble with a group (it cannot be made, removed or reused), for
         * the front-end's log; may be NULL. */
        void (*log)(void *data, const char *msg);
        void *log_data;
};

struct cg_pool_stats {
        unsigned ready;              /* waiting for a job */
        unsigned in_use;             /* taken by a job */
        uint64_t taken;              /* groups jobs took ... */
        uint64_t reused;             /* ... of them, groups an earlier job had used */
        uint64_t made_ahead;         /* mkdir on the hook, off every job's path */
        uint64_t made_on_start;      /* mkdir on a job's start, none being ready */
        uint64_t removed;            /* rmdir, always on the hook */
        uint64_t retired;            /* groups that could not be reused (see above) */
};

struct cg_pool;

/* A pool on loop l for the groups under c->parent; it makes c->size groups
 * now. 0, or -errno with the reason in err (no cgroup backend, a group
 * that cannot be made). */
int cg_pool_new(struct loop *l, const struct cg_pool_cfg *c, struct cg_pool **out, struct jr_err *err);

/* The host's backend as the pool found it (outlives every job it serves). */
const struct cg_host *cg_pool_host(const struct cg_pool *p);

/* A group for a job, with limits l: *out is a copy of the pool's (its
 * descriptors borrowed) with out->slot set. 0 or -errno. */
int cg_pool_take(struct cg_pool *p, const struct cg_limits *l, struct cg_job *out, struct jr_err *err);

/* The job's group goes back: what is in it is killed and waited for (as
 * cg_job_destroy, without the rmdir); *j is cleared. 0, or -EBUSY when it
 * did not empty (it is then retired). */
int cg_pool_give(struct cg_job *j, struct jr_err *err);

void cg_pool_stats(const struct cg_pool *p, struct cg_pool_stats *s);

/* Removes every group of the pool and frees it; after every job that took
 * from it has ended. */
void cg_pool_free(struct cg_pool *p);

#endif
