/* The syscall policy of the jail, as data: which calls are allowed, which
 * are refused with EPERM (everything not listed), and which kill the whole
 * jail on sight. Calls that need an argument check (socket, clone, ioctl)
 * are handled by the filter builder and listed in neither table. */
#ifndef JR_POLICY_SECCOMP_H
#define JR_POLICY_SECCOMP_H

#include <stddef.h>

struct syscall_list {
        const char *const *names;
        size_t n;
};

/* Allowed in every profile: what CPython, numpy and pandas use. */
extern const struct syscall_list seccomp_allow_common;
/* Allowed only in profile exec (full Python, subprocesses). */
extern const struct syscall_list seccomp_allow_exec;
/* Allowed only in the other profiles (memfd_create). */
extern const struct syscall_list seccomp_allow_noexec;
/* Kill the process: no legitimate use in a jail, and each one is a known
 * route to the kernel's attack surface or to another process. */
extern const struct syscall_list seccomp_kill;

#endif
