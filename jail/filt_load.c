#include "config.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>

#include "jail/filt.h"

int filt_install(int kind, struct jr_err *err)
{
        struct sock_fprog prog = {
                .len = kind == FILT_EXEC_INET ? filt_bpf_exec_inet_len : kind == FILT_EXEC ? filt_bpf_exec_len
                                                                                            : filt_bpf_worker_len,
                .filter = (struct sock_filter *)(kind == FILT_EXEC_INET ? filt_bpf_exec_inet
                                                 : kind == FILT_EXEC    ? filt_bpf_exec
                                                                        : filt_bpf_worker),
        };
        /* no_new_privs is already set (caps_drop_all), as the kernel requires
         * of an unprivileged filter. */
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
                return jr_fail(err, errno, "load seccomp filter");
        return 0;
}
