/* A warm zygote's clone and what its child does before it runs the
 * jail's script: the second half of a jail's set-up (jail.c does all of
 * it for a cold jail), in the child's own namespaces. Inside jail/ only. */
#ifndef JR_WARM_H
#define JR_WARM_H

#include <sys/types.h>

#include "common/err.h"
#include "jail/mntplan.h"

struct warm_ctx {
        int profile;             /* enum jail_profile */
        struct mnt_plan plan;    /* the binds of the zygote's root */
};

/* Clones a jail from the zygote with the request's descriptors (indexed
 * by enum zy_fd; ZY_FD_CGROUP -1 for none): a child of the zygote's
 * parent, born in the v2 group if given, else to be moved (*late).
 * Returns its pid (in the zygote's pid namespace) with *pidfd, or -errno
 * with err set. The child never returns from here. */
pid_t warm_clone(const struct warm_ctx *w, const int *fds, int *pidfd, int *late, struct jr_err *err);

#endif
