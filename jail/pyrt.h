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

#endif
