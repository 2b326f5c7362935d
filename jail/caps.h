/* Capabilities: every set emptied (bounding and ambient included), the
 * root-regains-capabilities rules switched off and locked, no_new_privs. */
#ifndef JR_CAPS_H
#define JR_CAPS_H

#include "common/err.h"

/* Returns 0 or -errno. Must run after every step that needs a capability
 * (mounts, lo, hostname) and before seccomp. */
int caps_drop_all(struct jr_err *err);

#endif
