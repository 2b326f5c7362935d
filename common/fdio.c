#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdio.h"

int jr_write_all(int fd, const void *buf, size_t len)
{
        const char *p = buf;
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : -ENOSPC;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

int jr_read_all(int fd, void *buf, size_t len)
{
        char *p = buf;
        while (len > 0) {
                ssize_t n = read(fd, p, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : -EIO;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

int jr_send_fds(int sock, const void *buf, size_t len, const int *fds, size_t n)
{
        union {
                char buf[CMSG_SPACE(JR_MAX_PASSED_FDS * sizeof(int))];
                struct cmsghdr align;
        } u = { 0 };
        struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        if (n > JR_MAX_PASSED_FDS)
                return -EINVAL;
        if (n) {
                mh.msg_control = u.buf;
                mh.msg_controllen = CMSG_SPACE(n * sizeof(int));
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(n * sizeof(int));
                memcpy(CMSG_DATA(c), fds, n * sizeof(int));
        }
        ssize_t r;
        while ((r = sendmsg(sock, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR)
                ;
        return r < 0 ? -errno : (size_t)r == len ? 0 : -EIO;
}

ssize_t jr_recv_fds(int sock, void *buf, size_t len, int *fds, size_t n, size_t *got_out)
{
        union {
                char buf[CMSG_SPACE(JR_MAX_PASSED_FDS * sizeof(int))];
                struct cmsghdr align;
        } u;
        struct iovec iov = { .iov_base = buf, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
        ssize_t r;
        while ((r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
                ;
        if (r <= 0)
                return r < 0 ? -errno : 0;
        size_t got = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        int tmp[JR_MAX_PASSED_FDS * 2];
                        if (k > ELEMENTSOF(tmp))
                                k = ELEMENTSOF(tmp);
                        memcpy(tmp, CMSG_DATA(c), k * sizeof(int));
                        for (size_t i = 0; i < k; i++) {
                                if (got < n)
                                        fds[got] = tmp[i];
                                else
                                        close(tmp[i]);
                                got++;
                        }
                }
        if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || (size_t)r != len || got > n) {
                for (size_t i = 0; i < got && i < n; i++)
                        close(fds[i]);
                return -EPROTO;
        }
        *got_out = got;
        return r;
}

