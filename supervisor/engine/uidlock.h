/* One host uid per running jail: a lock file per uid under UIDLOCK_DIR,
 * held (flock) for the job's lifetime and removed at the end. */
#ifndef JR_UIDLOCK_H
#define JR_UIDLOCK_H

#include <limits.h>
#include <sys/types.h>

#include "common/err.h"

#define UIDLOCK_DIR "/run/jailrun/uids"

struct uidlock {
        uid_t uid;
        int fd;               /* -1 when not held */
        int stale_busy;       /* lock files acquire's sweep left: their uid still ran */
        char path[PATH_MAX];
};

/* Takes a free uid in [lo, hi], starting from a point derived from `seed`
 * so concurrent jobs rarely probe the same uids. Returns 0 or -errno
 * (-EAGAIN: every uid in the range is taken). */
int uidlock_acquire(struct uidlock *l, uid_t lo, uid_t hi, unsigned seed, struct jr_err *err);

/* Removes the lock files nobody holds (those of a supervisor killed with
 * SIGKILL) once no process runs as their uid (its jails die a moment after
 * it; until then the uid is not free, and acquire does not take it
 * either): done at every acquire, by a daemon at its start, and at a
 * job's end when its acquire left some. Returns how many it left. */
int uidlock_sweep(void);

/* Releases the lock but leaves the file, for a job whose processes may
 * live on (its cgroup could not be emptied): the next to want the uid
 * takes it only once no process runs as it. Safe to call twice. */
void uidlock_abandon(struct uidlock *l);

/* Removes the lock file and releases the lock. Safe to call twice. */
void uidlock_release(struct uidlock *l);

#endif
