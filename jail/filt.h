/* The jail's seccomp filter: loaded as policy/filtgen built it at build
 * time (policy/filtbuild.h); the jail never builds one. */
#ifndef JR_FILT_H
#define JR_FILT_H

#include "common/err.h"
#include "common/filtbpf.h"

/* Loads the filter for the profile (exec also allows execve and fork),
 * as compiled at build time by policy/filtgen from filt_build: building
 * it with libseccomp at every start cost a millisecond. Loads last: after
 * it even our own set-up calls would be refused. */
int filt_install(int kind, struct jr_err *err);  /* enum filt_kind */

#endif
