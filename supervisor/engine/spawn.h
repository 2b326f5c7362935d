/* Cloning the jail child into its namespaces and writing its id maps. */
#ifndef JR_SPAWN_H
#define JR_SPAWN_H

#include <sys/types.h>

#include "common/err.h"
#include "jail/jail.h"
#include "supervisor/engine/cgroup.h"

struct spawn {
        pid_t pid;
        int pidfd;
};

/* Clones a child running jail_child_main(cfg) in new user, mount, net,
 * pid, ipc, uts and cgroup namespaces, born inside the job's cgroup
 * (clone3 CLONE_INTO_CGROUP on v2) or moved there before it is released;
 * maps uid/gid 0 inside to cfg->host_uid/host_gid, then lets it go by
 * writing to sync_wr (which is closed here). Returns 0 or -errno; on
 * failure no child is left. */
int spawn_jail(const struct jail_cfg *cfg, int sync_wr, struct cg_job *cg, struct spawn *out,
               struct jr_err *err);

/* The two halves of spawn_jail, for a jail cloned by another (clean)
 * process. spawn_clone clones the child (a sibling of the caller, i.e. a
 * child of the caller's parent, if as_sibling) and says whether it must be
 * moved into its cgroup (*late); spawn_release, in the supervisor, writes
 * its maps, moves it and lets it go, as spawn_jail does. */
int spawn_clone(const struct jail_cfg *cfg, int cgfd, int as_sibling, struct spawn *out, int *late,
                struct jr_err *err);
int spawn_release(const struct jail_cfg *cfg, const struct spawn *s, int late, int sync_wr, struct cg_job *cg,
                  struct spawn *out, struct jr_err *err);

#endif
