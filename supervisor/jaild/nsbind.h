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

/* A session's package directory (packages.c): a tmpfs of its own at dst,
 * writable and noexec while pip installs into it (NS_SITE_NEW once, then
 * NS_SITE_OPEN), read-only with its libraries executable after
 * (NS_SITE_SEAL). */
enum ns_kind { NS_BIND, NS_UNBIND, NS_SITE_NEW, NS_SITE_OPEN, NS_SITE_SEAL };
struct ns_op {
        enum ns_kind kind;
        const char *src, *dst;
        unsigned long bytes;  /* NS_SITE_NEW: the tmpfs's size */
};
int ns_mount(int pidfd, const struct ns_op *op, struct jr_err *err);

#endif
