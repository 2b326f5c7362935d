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
#include "supervisor/jaild/sfiles.h"

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

/* --- files (GET, PUT, DELETE /v1/sessions/{id}/files/{path}) ------------- */

/* The live session's directory, or -1 answered. */
static int session_dir(struct jaild *d, struct api_call *c, const char *id)
{
        struct session *s = session_live_or_answer(d, c, id);
        if (!s)
                return -1;
        if (!s->ready) {
                api_reply_error(c, 409, "ConflictError", "session %s is still starting", s->id);
                return -1;
        }
        if (s->dirfd < 0 && session_open_dir(s) < 0) {
                api_reply_error(c, 503, "UnavailableError", "session %s: its directory cannot be reached: %s", s->id,
                                strerror(errno));
                return -1;
        }
        session_touch(s);
        return s->dirfd;
}

void api_session_file_get(void *data, struct api_call *c, const char *id, const char *path)
{
        struct jaild *d = data;
        int fd = session_dir(d, c, id);
        if (fd >= 0)
                sfiles_reply_get(c, fd, path, (size_t)d->cfg->sessions.file_max);
}

void api_session_file_put(void *data, struct api_call *c, const char *id, const char *path, const char *body,
                          size_t len)
{
        struct jaild *d = data;
        int fd = session_dir(d, c, id);
        if (fd >= 0)
                sfiles_reply_put(c, fd, path, body, len);
}

void api_session_file_delete(void *data, struct api_call *c, const char *id, const char *path)
{
        struct jaild *d = data;
        int fd = session_dir(d, c, id);
        if (fd >= 0)
                sfiles_reply_delete(c, fd, path);
}
