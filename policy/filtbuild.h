/* The jail's seccomp filters, built with libseccomp from the lists of
 * policy/seccomp.c: at build time by policy/filtgen (into the generated
 * policy/seccomp_bpf.c, declared in common/filtbpf.h, which the jail
 * loads), and by the unit tests. */
#ifndef JR_FILTBUILD_H
#define JR_FILTBUILD_H

#include <stddef.h>
#include <stdint.h>

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
int filt_build(int kind, void **out, struct jr_err *err);  /* enum filt_kind */

#endif
