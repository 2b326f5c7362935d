/* The jail's seccomp filter, built with libseccomp from policy/seccomp.c. */
#ifndef JR_FILT_H
#define JR_FILT_H

#include <stddef.h>
#include <stdint.h>
#include <linux/filter.h>

#include "common/err.h"

/* Calls emit(ctx, mask, value) for a set of masked-equality tests on a
 * 32-bit value v (match when (v & mask) == value) whose union is exactly
 * "v is not one of excl[0..n)". At most 32 * n tests. Returns 0 or the
 * first negative value emit returned. This is how an ioctl request is
 * allowed except for a few values while comparing only its low 32 bits
 * (the kernel ignores the rest; a full-width compare is bypassable). */
int filt_cover_except(const uint32_t *excl, size_t n,
                      int (*emit)(void *ctx, uint32_t mask, uint32_t value), void *ctx);

/* Builds the filter (not loaded) into *out, to release with
 * seccomp_release. Returns 0 or -errno. */
int filt_build(int exec_profile, void **out, struct jr_err *err);

/* Loads the filter for the profile (exec also allows execve and fork),
 * as compiled at build time by policy/filtgen from filt_build: building
 * it with libseccomp at every start cost a millisecond. Loads last: after
 * it even our own set-up calls would be refused. */
int filt_install(int exec_profile, struct jr_err *err);

/* The build-time filters (policy/seccomp_bpf.c, generated). */
extern const struct sock_filter filt_bpf_worker[], filt_bpf_exec[];
extern const unsigned short filt_bpf_worker_len, filt_bpf_exec_len;

#endif
