/* The embedded interpreter: libpython initialised with an isolated config
 * (no site, no user site, no environment, no .pyc writes), the _jailrun
 * channel module, and the runtime compiled into the binary. */
#ifndef JR_PYRT_H
#define JR_PYRT_H

#include <stddef.h>

struct pyrt_cfg {
        const char *entry;        /* runtime.main's entry: ticks, script, load, check */
        const char *policy_json;  /* the effective policy */
        const char *script;
        size_t script_len;
        const char *script_name;
        const char *data_name;    /* what DATA_FD holds, for messages; "" if nothing */
        int argc;
        char *const *argv;
        const char *pypath;   /* ':'-separated module search path */
        const char *home;     /* interpreter prefix */
};

/* Runs the script to completion; returns the process exit status. */
int pyrt_run(const struct pyrt_cfg *cfg);

/* A warm zygote's interpreter (jail/warm.c): initialised as pyrt_run
 * does (cfg's entry, pypath and home), the runtime and its guard and
 * validator made, each module of the JSON array preload_json imported
 * (one that fails is skipped and named in *report, malloc'd), and the
 * heap frozen for the collector. 0, or -1 with *report saying why. */
int pyrt_prepare(const struct pyrt_cfg *cfg, const char *preload_json, char **report);

/* Around the zygote's clone: the interpreter's at-fork protocol. */
void pyrt_before_fork(void);
void pyrt_after_fork_parent(void);

/* In the child, first: the interpreter's after-fork work (random
 * reseeded), numpy's global generator reseeded, DATA_NAME set. 0, or -1
 * with *why (malloc'd). */
int pyrt_after_fork_child(const char *data_name, char **why);

/* In the child, once jailed: runs cfg's entry on the zygote's runtime;
 * the exit status. */
int pyrt_run_forked(const struct pyrt_cfg *cfg);

#endif
