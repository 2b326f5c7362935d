/* A service for tests/vm/systemd.test: drives jaild's log and notify
 * modules the way jaild does, under a real systemd. Logs one entry of each
 * kind (a worker's hostile text among them), says READY=1, and on SIGHUP
 * reloads (RELOADING=1 ... READY=1), on SIGTERM stops (STOPPING=1), pinging
 * the watchdog when the manager asks for it. Exit 0, or 1 on an error. */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <syslog.h>
#include <unistd.h>

#include "supervisor/jaild/jlog.h"
#include "supervisor/jaild/notify.h"

static int serve(struct jlog *l, int sfd, int wd_ms)
{
        unsigned reloads = 0;
        for (;;) {
                struct pollfd p = { .fd = sfd, .events = POLLIN };
                int n = poll(&p, 1, wd_ms > 0 ? wd_ms : -1);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return jlog_errno(l, -errno, NULL, NULL, "poll");
                if (n == 0) {
                        notify_watchdog();
                        continue;
                }
                struct signalfd_siginfo si;
                if (read(sfd, &si, sizeof si) != (ssize_t)sizeof si)
                        return jlog_errno(l, -EIO, NULL, NULL, "read signalfd");
                if (si.ssi_signo == SIGTERM) {
                        notify_stopping("stopping");
                        jlog(l, LOG_NOTICE, NULL, NULL, "stopping after %u reloads", reloads);
                        return 0;
                }
                notify_reloading("reloading");
                reloads++;
                jlog(l, LOG_INFO, NULL, NULL, "reloaded");
                notify_ready("reloaded");
                notify_status("%u reloads", reloads);
        }
}

int main(void)
{
        struct jlog l;
        jlog_init(&l, &(struct jlog_cfg){ .target = JLOG_AUTO, .level = LOG_INFO, .fd = STDERR_FILENO });
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGHUP);
        int sfd = -1;
        if (sigprocmask(SIG_BLOCK, &set, NULL) < 0 || (sfd = signalfd(-1, &set, SFD_CLOEXEC)) < 0)
                return jlog_errno(&l, -errno, NULL, NULL, "signalfd"), 1;
        uint64_t wd = 0;
        int r = notify_watchdog_interval(&wd);
        jlog(&l, LOG_NOTICE, NULL, NULL, "sink %s, watchdog %s", l.journal ? "journal" : "stderr",
             r > 0 ? "on" : "off");
        jlog(&l, LOG_WARNING, "w1", "j1", "log: %s", "line\nforged\x1b[2J");
        jlog(&l, LOG_DEBUG, "w1", "j1", "below the level");
        r = notify_ready("probe ready");
        if (r <= 0)
                return jlog(&l, LOG_ERR, NULL, NULL, "READY=1 not sent (%d)", r), 1;
        r = serve(&l, sfd, wd ? (int)(wd / 1000) : 0);
        jlog_free(&l, 1000);
        return r < 0;
}
