/* What crosses from the jail's set-up (jail.c, in the cloned child) into
 * the jail program (jailrun-jail) it executes: one sealed memfd on CFG_FD
 * holding a header and the texts, and the reports both send before user
 * code runs. Inside jail/ only. */
#ifndef JR_JEXEC_H
#define JR_JEXEC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"
#include "jail/pyrt.h"

/* The configuration memfd: the only fd the exec keeps beyond 0-4; the jail
 * program reads it and closes it before anything else. */
#define CFG_FD 5

#define JEXEC_MAGIC 0x786a726aU  /* "jrjx" */
/* The entry of a warm zygote's own configuration (jail/zsetup.c): the
 * policy text is the JSON array of modules to preload, the arguments the
 * paths bound in its root. */
#define JEXEC_ENTRY_ZYGOTE 100
/* Largest configuration: the supervisor caps scripts far below. */
#define JEXEC_MAX_BYTES (64u << 20)
/* Profile exec's filter that also allows TCP sockets (jail_cfg.inet). */
#define JEXEC_INET 1u

struct jexec_hdr {
        uint32_t magic;
        uint32_t profile;       /* enum jail_profile */
        uint32_t entry;         /* enum jail_entry */
        uint32_t argc;
        uint32_t host_uid;      /* what uid/gid 0 inside must map to */
        uint32_t host_gid;
        uint32_t max_tasks;     /* RLIMIT_NPROC (a warm jail sets its own) */
        uint32_t flags;         /* JEXEC_INET */
        uint64_t scratch_bytes; /* exec: the scratch tmpfs (a warm jail mounts its own) */
        /* Lengths of the texts that follow in this order, each followed by
         * a NUL: the policy JSON, the script, its display name, the data
         * file's name, the job's v1 cgroup path (below each hierarchy's
         * root, for a warm jail's check of its own move; "" if none), then
         * argc NUL-terminated arguments (args_len bytes
         * in all, NULs included). */
        uint64_t policy_len, script_len, name_len, data_name_len, cgroup_len, args_len;
};

/* The configuration as the jail program sees it: pointers into one buffer. */
struct jexec_cfg {
        int profile, entry;
        uid_t host_uid;
        gid_t host_gid;
        unsigned max_tasks;
        unsigned flags;         /* JEXEC_INET */
        unsigned long scratch_bytes;
        const char *policy_json;
        const char *script;
        size_t script_len;
        const char *script_name;
        const char *data_name;
        const char *cgroup_path;
        int argc;
        char **argv;    /* argc entries and a NULL */
        char *buf;      /* owns everything above */
};

/* Reads and checks the configuration on fd (every length against the
 * file's size, every text NUL-terminated where the header says). Returns
 * 0 or -errno with the reason in err. */
int jexec_read(int fd, struct jexec_cfg *out, struct jr_err *err);

/* Writes c (every pointer but buf and argv's NULL used) into a new sealed
 * memfd, close-on-exec. Returns the fd or -errno with err set. */
int jexec_make(const struct jexec_cfg *c, struct jr_err *err);

/* The interpreter's configuration for c, running `entry`. */
struct pyrt_cfg jexec_pyrt_cfg(const struct jexec_cfg *c, const char *entry);

/* Sends a message that is its type alone ("jailed"); 0 or -1. */
int jail_notify(int chan, const char *type);

/* Reports the failing set-up step over the channel (or on stderr when
 * chan < 0) and exits with EXIT_SETUP. */
_Noreturn void jail_fatal(const char *step, const struct jr_err *err, int chan);

#endif
