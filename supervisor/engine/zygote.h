/* The zygote: a process forked from the supervisor before the job holds
 * anything a jail must not see (a secret, a state value, an HTTP body, a
 * log line), which clones every jail after the first. A clone is a copy of
 * its parent's memory, freed memory included, so a worker restarted by a
 * supervisor that has served it would start with all of that in its
 * address space; cloned from the zygote, it starts with the job's options
 * and the script alone. The jail is cloned as the supervisor's child
 * (CLONE_PARENT): the supervisor waits for it and holds its pidfd. */
#ifndef JR_ZYGOTE_H
#define JR_ZYGOTE_H

#include <stddef.h>
#include <sys/types.h>

#include "common/err.h"
#include "jail/jail.h"
#include "supervisor/engine/cgroup.h"
#include "supervisor/engine/spawn.h"

struct zygote {
        pid_t pid;   /* 0: none */
        int sock;    /* our end of its SOCK_SEQPACKET pair */
};

/* Forks the zygote; *base is the configuration every jail starts from
 * (its fds and script are replaced at each spawn) and cgfd the job's v2
 * cgroup directory or -1. */
int zygote_start(struct zygote *z, const struct jail_cfg *base, int cgfd, struct jr_err *err);

/* Has the zygote clone a jail with cfg's fds and script, then writes its
 * maps, moves it into its cgroup and releases it (spawn_release). */
int zygote_spawn(struct zygote *z, const struct jail_cfg *cfg, int sync_wr, struct cg_job *cg, struct spawn *out,
                 struct jr_err *err);

/* Ends the zygote and reaps it. */
void zygote_stop(struct zygote *z);

#endif
