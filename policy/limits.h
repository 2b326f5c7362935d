/* Per-profile resource limits: defaults and maxima (design.md §5). Values
 * a user asks for beyond a maximum are refused, naming it. */
#ifndef JR_POLICY_LIMITS_H
#define JR_POLICY_LIMITS_H

#include <stdint.h>

struct profile_limits {
        const char *profile;
        uint64_t memory_default, memory_max;   /* bytes */
        double cpus_default, cpus_max;         /* cores */
        unsigned pids_default, pids_max;       /* tasks (processes and threads) */
};

/* Lower bounds, whatever the profile: below them the interpreter cannot
 * start at all, which would look like a bug rather than a limit. */
#define LIMIT_MEMORY_MIN (32ULL << 20)
#define LIMIT_CPUS_MIN 0.01
#define LIMIT_PIDS_MIN 4

extern const struct profile_limits limits_worker, limits_exec;

#endif
