/* jailrun-zygote: a warm zygote (jail.h). Executed in a jail's root by
 * jail/zsetup.c, root in the host's user namespace with no capability, it
 * initialises the interpreter, imports the profile's heavy modules and
 * then clones jails on request. It never reads what it passes on: each
 * request's descriptors (stdio, channel, go-ahead pipe, the jail's
 * configuration memfd, its cgroup) go to the child untouched. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/proto.h"
#include "common/zyproto.h"
#include "jail/caps.h"
#include "jail/jail.h"
#include "jail/jexec.h"
#include "jail/pyrt.h"
#include "jail/warm.h"

static void hello(int errnum, const char *msg)
{
        struct zy_hello h = { .magic = ZY_MAGIC, .errnum = errnum };
        snprintf(h.msg, sizeof h.msg, "%s", msg ? msg : "");
        (void)!send(ZY_CTL_FD, &h, sizeof h, MSG_NOSIGNAL);
}

/* The plan the set-up built, from the configuration's arguments. */
static int read_plan(const struct jexec_cfg *c, struct mnt_plan *plan, struct jr_err *err)
{
        int r = mntplan_init(plan, "", err);
        for (int i = 0; r == 0 && i < c->argc; i++)
                r = mntplan_add_bound(plan, c->argv[i], err);
        return r;
}

/* One request: a clone answered with its pid and pidfd. Returns -1 when
 * the supervisor is gone or broke the protocol (the zygote then ends). */
static int serve_one(const struct warm_ctx *w)
{
        struct zy_req q;
        int got_fds[ZY_MAX_FDS], fds[ZY_MAX_FDS];
        size_t got = 0;
        ssize_t n = jr_recv_fds(ZY_CTL_FD, &q, sizeof q, got_fds, ZY_MAX_FDS, &got);
        if (n <= 0)
                return -1;
        size_t want = (size_t)ZY_FD_CGROUP + (q.has_cgroup ? 1 : 0) + q.n_join;
        if (q.magic != ZY_MAGIC || q.n_join > ZY_MAX_JOIN || got != want) {
                for (size_t i = 0; i < got; i++)
                        close(got_fds[i]);
                return -1;
        }
        /* Fixed places: the cgroup's, then the joins'; -1 where none. */
        for (size_t i = 0; i < ZY_MAX_FDS; i++)
                fds[i] = -1;
        memcpy(fds, got_fds, ZY_FD_CGROUP * sizeof *fds);
        size_t k = ZY_FD_CGROUP;
        if (q.has_cgroup)
                fds[ZY_FD_CGROUP] = got_fds[k++];
        memcpy(fds + ZY_FD__MAX, got_fds + k, q.n_join * sizeof *fds);
        struct zy_rep rep = { .magic = ZY_MAGIC };
        struct jr_err err = { 0 };
        int late = 1, pidfd = -1;
        pid_t pid = warm_clone(w, fds, &pidfd, &late, &err);
        if (pid < 0) {
                rep.errnum = err.errnum ? err.errnum : EIO;
                snprintf(rep.msg, sizeof rep.msg, "%.255s", err.msg);
        } else {
                rep.pid = pid;
                rep.late = late;
        }
        for (int i = 0; i < ZY_MAX_FDS; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
        int r = jr_send_fds(ZY_CTL_FD, &rep, sizeof rep, &pidfd, pidfd >= 0 ? 1 : 0);
        if (pidfd >= 0)
                close(pidfd);
        return r < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
        (void)argv;
        struct jexec_cfg c;
        struct jr_err err = { 0 };
        if (argc != 1 || jexec_read(CFG_FD, &c, &err) < 0 || c.entry != JEXEC_ENTRY_ZYGOTE ||
            (c.profile != JAIL_PROFILE_WORKER && c.profile != JAIL_PROFILE_EXEC)) {
                fprintf(stderr, "jailrun-zygote: this program runs only as a zygote made by jaild (see jaild(8))%s%s\n",
                        err.msg[0] ? ": " : "", err.msg);
                return EXIT_USAGE;
        }
        close(CFG_FD);
        prctl(PR_SET_NAME, JAIL_ZYGOTE_NAME);
        prctl(PR_SET_DUMPABLE, 0);
        struct warm_ctx w = { .profile = c.profile };
        if (read_plan(&c, &w.plan, &err) < 0 || caps_drop_all(&err) < 0) {
                hello(err.errnum ? err.errnum : EIO, err.msg);
                return EXIT_SETUP;
        }
        struct pyrt_cfg pc = {
                .entry = "ticks",
                .pypath = JR_PYPATH,
                .home = JR_PYHOME,
        };
        _cleanup_free_ char *report = NULL;
        if (pyrt_prepare(&pc, c.policy_json, &report) < 0) {
                hello(EPROTO, report ? report : "the interpreter could not be initialised");
                return EXIT_SETUP;
        }
        hello(0, report);
        while (serve_one(&w) == 0)
                ;
        return 0;
}
