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

/* Returns 0 when every check holds, else -errno with the check named in
 * err ("check seccomp: ..."). Needs only read access to /proc/self. */
int verify_jail(const struct verify_cfg *cfg, struct jr_err *err);

/* Reads a small file whole into buf (NUL-terminated). Returns length or -errno. */
ssize_t read_small_file(const char *path, char *buf, size_t size);

#endif
