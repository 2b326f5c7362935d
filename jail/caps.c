#include "config.h"

#include <errno.h>
#include <linux/securebits.h>
#include <sys/capability.h>
#include <sys/prctl.h>

#include "common/cleanup.h"
#include "jail/caps.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(cap_t, cap_free)

int caps_drop_all(struct jr_err *err)
{
        /* uid 0 inside must not regain capabilities through execve or a uid
         * change, and nothing may undo that: lock the securebits while we
         * still hold CAP_SETPCAP. */
        unsigned bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                        SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                        SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
        if (cap_set_secbits(bits) < 0)
                return jr_fail(err, errno, "set securebits");
        for (cap_value_t c = 0; c < (cap_value_t)cap_max_bits(); c++)
                if (cap_drop_bound(c) < 0 && errno != EINVAL)
                        return jr_fail(err, errno, "drop capability %d from the bounding set", c);
        if (cap_reset_ambient() < 0)
                return jr_fail(err, errno, "clear the ambient set");
        _cleanup_(cap_freep) cap_t none = cap_init();
        if (!none)
                return jr_fail(err, errno, "cap_init");
        if (cap_set_proc(none) < 0)
                return jr_fail(err, errno, "clear effective, permitted and inheritable sets");
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return jr_fail(err, errno, "set no_new_privs");
        return 0;
}
