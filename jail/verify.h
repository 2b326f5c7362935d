/* Fail closed: after set-up and before any user code, read back from the
 * kernel that every protection is really in force. */
#ifndef JR_VERIFY_H
#define JR_VERIFY_H

#include <sys/types.h>

#include "common/err.h"
#include "jail/mntplan.h"

struct verify_cfg {
        uid_t host_uid;
        gid_t host_gid;
        const struct mnt_plan *plan;
};

/* Each returns 0 when every check holds, else -errno with the check named
 * in err ("check seccomp: ..."), and needs only read access to /proc/self.
 * verify_world: the network, the cgroup namespace and every mount against
 * cfg->plan (the set-up checks these before it executes the jail program;
 * nothing after changes them). verify_process: seccomp in filter mode,
 * no_new_privs, every capability set empty, the id maps, no groups, pid 1
 * (the jail program checks these once it has loaded its filter: what an
 * execve left is what counts). */
int verify_world(const struct verify_cfg *cfg, struct jr_err *err);
int verify_process(const struct verify_cfg *cfg, struct jr_err *err);

/* The checks on the texts the kernel gives (unit-tested on bad ones).
 * Each returns 0, or -EPERM/-EPROTO with the failed check named in err. */
int verify_status_text(const char *status, struct jr_err *err);  /* /proc/self/status */
int verify_map_text(const char *name, const char *text, unsigned long want, struct jr_err *err);
int verify_net_text(const char *netdev, struct jr_err *err);     /* /proc/self/net/dev */
int verify_cgroup_text(const char *cgroups, struct jr_err *err); /* /proc/self/cgroup: all "/" */
int verify_mountinfo_line(const struct mnt_plan *plan, const char *line, struct jr_err *err);

/* Reads a small file whole into buf (NUL-terminated). Returns length or -errno. */
ssize_t read_small_file(const char *path, char *buf, size_t size);

#endif
