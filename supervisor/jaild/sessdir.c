/* A session's directory as the host sees it, and the registry's record of
 * the sessions a jaild runs (session.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <syslog.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "supervisor/jaild/session.h"

int session_open_dir(struct session *s)
{
        int pidfd = -1;
        pid_t pid = s->job ? job_pid(s->job, &pidfd) : -1;
        if (pid <= 0) {
                errno = ESRCH;
                return -1;
        }
        /* The jail's init is our child, not reaped: its pid is its own. */
        char root[64];
        snprintf(root, sizeof root, "/proc/%d/root", (int)pid);
        _cleanup_close_ int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0)
                return -1;
        struct open_how how = {
                .flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW,
                .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        int fd = (int)syscall(SYS_openat2, rootfd, SESSION_WORKDIR + 1, &how, sizeof how);
        if (fd < 0)
                return -1;
        closep(&s->dirfd);
        s->dirfd = fd;
        return 0;
}

int sessions_remember(struct jaild *d, const char *id)
{
        struct jr_err err = { 0 };
        int r = registry_session_add(d->reg, id, &err);
        if (r < 0)
                jlog_msg(d, LOG_WARNING, NULL, "session %s: %s", id, err.msg);
        return r;
}

void sessions_forget(struct jaild *d, const char *id)
{
        struct jr_err err = { 0 };
        if (registry_session_delete(d->reg, id, &err) < 0)
                jlog_msg(d, LOG_WARNING, NULL, "session %s: %s", id, err.msg);
}

int sessions_gone(struct jaild *d, const char *id)
{
        struct jr_err err = { 0 };
        int r = registry_session_lost(d->reg, id, &err);
        if (r < 0)
                jlog_msg(d, LOG_WARNING, NULL, "session %s: %s", id, err.msg);
        return r == 1;
}
