/* jailrun-jail: the program a jail executes once jail.c has built it
 * (namespaces, mounts, lo, limits, capabilities gone, no_new_privs). A
 * fresh image: nothing of the supervisor's memory is in this process. It
 * loads the seccomp filter, checks from the kernel that every protection
 * holds, tells the supervisor so, and runs the interpreter, which is
 * linked in statically where the system has the static libpython. */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/proto.h"
#include "jail/filt.h"
#include "jail/jail.h"
#include "jail/jexec.h"
#include "jail/pyrt.h"
#include "jail/verify.h"

static const char *const entry_names[] = {
        [JAIL_ENTRY_TICKS] = "ticks",
        [JAIL_ENTRY_SCRIPT] = "script",
        [JAIL_ENTRY_LOAD] = "load",
        [JAIL_ENTRY_CHECK] = "check",
        [JAIL_ENTRY_BACKTEST] = "backtest",
        [JAIL_ENTRY_SESSION] = "session",
};

/* The configuration, or a word for whoever ran this by hand. */
static int read_config(int argc, struct jexec_cfg *c)
{
        struct jr_err err = { 0 };
        if (argc == 1 && getpid() == 1 && jexec_read(CFG_FD, c, &err) == 0 && c->entry >= 0 &&
            (size_t)c->entry < ELEMENTSOF(entry_names) && entry_names[c->entry] &&
            (c->profile == JAIL_PROFILE_WORKER || c->profile == JAIL_PROFILE_EXEC)) {
                close(CFG_FD);
                /* Nothing the script executes (profile exec) inherits these. */
                if (fcntl(CHAN_FD, F_SETFD, FD_CLOEXEC) < 0 ||
                    (fcntl(DATA_FD, F_GETFD) >= 0 && fcntl(DATA_FD, F_SETFD, FD_CLOEXEC) < 0))
                        return -1;
                return 0;
        }
        fprintf(stderr, "jailrun-jail: this program runs only inside a jail made by jailrun (see jailrun(1))%s%s\n",
                err.msg[0] ? ": " : "", err.msg);
        return -1;
}

int main(int argc, char **argv)
{
        (void)argv;
        struct jexec_cfg c;
        if (read_config(argc, &c) < 0)
                return EXIT_USAGE;
        /* The name the jail had before the exec. */
        prctl(PR_SET_NAME, "jailrun");
        /* An exec makes a process dumpable again: processes the script
         * starts (profile exec) must not read or trace this one. */
        prctl(PR_SET_DUMPABLE, 0);
        struct jr_err err = { 0 };
        /* seccomp goes first: what follows is already under it. */
        if (filt_install(c.profile != JAIL_PROFILE_EXEC ? FILT_WORKER : c.flags & JEXEC_INET ? FILT_EXEC_INET : FILT_EXEC,
                         &err) < 0)
                jail_fatal("seccomp", &err, CHAN_FD);
        struct verify_cfg vc = { .host_uid = c.host_uid, .host_gid = c.host_gid };
        if (verify_process(&vc, &err) < 0)
                jail_fatal("verify", &err, CHAN_FD);
        /* The last word of the trusted set-up: from here on the channel
         * carries what user code may have forged. */
        if (jail_notify(CHAN_FD, "jailed") < 0)
                return EXIT_SETUP;
        struct pyrt_cfg pc = jexec_pyrt_cfg(&c, entry_names[c.entry]);
        return pyrt_run(&pc);
}
