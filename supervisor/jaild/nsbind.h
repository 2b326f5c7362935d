/* A host directory bound into a running jail, and taken away (nsbind.c). */
#ifndef JR_JAILD_NSBIND_H
#define JR_JAILD_NSBIND_H

#include "common/err.h"

/* With src: binds it read-only (nosuid, nodev, noexec) at dst (made if
 * missing, never through a symlink) in the mount namespace of the process
 * pidfd names. Without: detaches what is mounted at dst there and removes
 * the directory if empty. 0 or -errno (err says why). Blocks for the
 * helper child's few system calls. */
int ns_bind(int pidfd, const char *src, const char *dst, struct jr_err *err);

#endif
