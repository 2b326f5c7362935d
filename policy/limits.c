#include "config.h"

#include "policy/limits.h"

const struct profile_limits limits_worker = {
        .profile = "worker",
        .memory_default = 256ULL << 20, .memory_max = 1ULL << 30,
        .cpus_default = 1, .cpus_max = 4,
        .pids_default = 64, .pids_max = 256,
};

const struct profile_limits limits_exec = {
        .profile = "exec",
        .memory_default = 512ULL << 20, .memory_max = 2ULL << 30,
        .cpus_default = 1, .cpus_max = 4,
        .pids_default = 64, .pids_max = 1024,
};
