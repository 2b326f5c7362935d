#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "supervisor/engine/job.h"
#include "common/proto.h"
#include "supervisor/engine/jailio.h"

void format_size(uint64_t bytes, char *out, size_t size)
{
        if (bytes >= (1ULL << 30) && bytes % (1ULL << 30) == 0)
                snprintf(out, size, "%llu GiB", (unsigned long long)(bytes >> 30));
        else if (bytes >= (1ULL << 20) && bytes % (1ULL << 20) == 0)
                snprintf(out, size, "%llu MiB", (unsigned long long)(bytes >> 20));
        else if (bytes >= (1ULL << 20))
                snprintf(out, size, "%.1f MiB", (double)bytes / (1 << 20));
        else
                snprintf(out, size, "%llu bytes", (unsigned long long)bytes);
}

/* Reads the script whole; the jail gets its text, never its host path. */
int read_script(const char *path, char **out, size_t *len, struct jr_err *err)
{
        /* O_NONBLOCK: a FIFO must not hang us before it is refused. */
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return jr_fail(err, errno, "cannot open script '%s'", path);
        struct stat st;
        if (fstat(fd, &st) < 0)
                return jr_fail(err, errno, "stat '%s'", path);
        if (!S_ISREG(st.st_mode))
                return jr_fail(err, EINVAL, "script '%s' is not a regular file", path);
        if (st.st_size > JOB_MAX_SCRIPT)
                return jr_fail(err, EFBIG, "script '%s' is larger than %d bytes", path, JOB_MAX_SCRIPT);
        _cleanup_free_ char *buf = malloc((size_t)st.st_size + 1);
        if (!buf)
                return jr_fail(err, ENOMEM, "read '%s'", path);
        size_t got = 0;
        while (got < (size_t)st.st_size) {
                ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return jr_fail(err, errno, "read '%s'", path);
                if (n == 0)
                        break;
                got += (size_t)n;
        }
        buf[got] = '\0';
        *len = got;
        *out = TAKE_PTR(buf);
        return 0;
}

void fds_close(struct fds *f)
{
        int *all[] = { &f->chan[0], &f->chan[1], &f->out[0], &f->out[1], &f->err[0],
                       &f->err[1], &f->sync[0], &f->sync[1], &f->devnull };
        for (size_t i = 0; i < ELEMENTSOF(all); i++)
                closep(all[i]);
}

int fds_open(struct fds *f, struct jr_err *err)
{
        *f = (struct fds){ { -1, -1 }, { -1, -1 }, { -1, -1 }, { -1, -1 }, -1 };
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, f->chan) < 0)
                return jr_fail(err, errno, "socketpair");
        /* Room for the largest datagram either way: FORCE passes
         * net.core.wmem_max, which root in the host's network namespace
         * may; elsewhere (jailrun itself in a container) the plain option
         * gets what the host allows, and only the largest state values
         * may not fit. */
        int buf = CHAN_SOCKBUF;
        for (int i = 0; i < 2; i++) {
                int opt[2][2] = { { SO_SNDBUFFORCE, SO_SNDBUF }, { SO_RCVBUFFORCE, SO_RCVBUF } };
                for (int k = 0; k < 2; k++)
                        if (setsockopt(f->chan[i], SOL_SOCKET, opt[k][0], &buf, sizeof buf) < 0 &&
                            (errno != EPERM || setsockopt(f->chan[i], SOL_SOCKET, opt[k][1], &buf, sizeof buf) < 0))
                                return jr_fail(err, errno, "channel socket buffers");
        }
        if (pipe2(f->out, O_CLOEXEC) < 0 || pipe2(f->err, O_CLOEXEC) < 0 || pipe2(f->sync, O_CLOEXEC) < 0)
                return jr_fail(err, errno, "pipe2");
        if ((f->devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
                return jr_fail(err, errno, "open /dev/null");
        /* Our ends never block the loop. */
        int ours[] = { f->chan[0], f->out[0], f->err[0] };
        for (size_t i = 0; i < ELEMENTSOF(ours); i++)
                if (fcntl(ours[i], F_SETFL, O_NONBLOCK) < 0)
                        return jr_fail(err, errno, "O_NONBLOCK");
        return 0;
}

