#include "config.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>

#include "jail/filt.h"

int filt_install(int exec_profile, struct jr_err *err)
{
        struct sock_fprog prog = {
                .len = exec_profile ? filt_bpf_exec_len : filt_bpf_worker_len,
                .filter = (struct sock_filter *)(exec_profile ? filt_bpf_exec : filt_bpf_worker),
        };
        /* no_new_privs is already set (caps_drop_all), as the kernel requires
         * of an unprivileged filter. */
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
                return jr_fail(err, errno, "load seccomp filter");
        return 0;
}
