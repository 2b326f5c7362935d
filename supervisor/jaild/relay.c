/* A session's one way out, for a package install alone: a TCP listener on
 * 127.0.0.1 inside the jail's network namespace (which holds only lo),
 * served by jaild, whose every connection is relayed to the configured
 * package index's address and nowhere else. pip reaches it as its proxy:
 * "CONNECT host:port" (https) is answered when host:port is the index's;
 * a plain request (http, absolute form) is passed on as it is, to the
 * index's server. Bytes are copied, never parsed past that first line. */
#include "config.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "supervisor/jaild/relay.h"

#define RELAY_MAX_CONNS 16
#define RELAY_BUF (64 * 1024)
#define RELAY_HEAD_MAX 8192
#define RELAY_BATCH 16
/* Bytes one install may move through the relay, both ways together: the
 * copying is jaild's work, not charged to the session, and the session's
 * own code can take over the install (it runs in its interpreter). */
#define RELAY_MAX_BYTES (4ULL << 30)

struct rconn;

/* One direction: bytes read from src, waiting to be written to dst. */
struct pipe_dir {
        char *buf;
        size_t len, off;
        int eof;           /* src ended: dst was shut for writing */
};

struct rconn {
        struct relay *r;
        struct rconn *next;
        struct watch a, b;       /* the jail's side, the index's side */
        struct pipe_dir ab, ba;
        char head[RELAY_HEAD_MAX];
        size_t head_len;
        int connect_method;      /* CONNECT: answered once the index's side is up */
        int upstream;            /* connecting (1), connected (2) */
};

struct relay {
        struct loop *loop;
        struct watch listen;
        struct rconn *conns;
        unsigned n;
        char host[256];
        unsigned port;
        struct sockaddr_storage addr;
        socklen_t addrlen;
        uint64_t moved;          /* bytes relayed, both ways */
};

static void conn_close(struct rconn *c)
{
        struct relay *r = c->r;
        for (struct rconn **p = &r->conns; *p; p = &(*p)->next)
                if (*p == c) {
                        *p = c->next;
                        r->n--;
                        break;
                }
        int fa = c->a.fd, fb = c->b.fd;
        loop_unwatch(&c->a);
        loop_unwatch(&c->b);
        closep(&fa);
        closep(&fb);
        free(c->ab.buf);
        free(c->ba.buf);
        free(c);
}

/* Moves what it can one way, at most RELAY_BATCH buffers a wake-up (a
 * fast pair must not keep the loop from everything else); -1 when the
 * connection is over. */
static int pump(struct relay *r, int src, int dst, struct pipe_dir *d)
{
        for (int reads = 0;;) {
                if (d->off == d->len && !d->eof) {
                        if (reads++ == RELAY_BATCH)
                                return 0;  /* the rest at the next wake-up (level-triggered) */
                        ssize_t n = read(src, d->buf, RELAY_BUF);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n < 0 && errno == EAGAIN)
                                return 0;
                        if (n <= 0) {
                                d->eof = 1;
                                shutdown(dst, SHUT_WR);
                                return 0;
                        }
                        d->len = (size_t)n;
                        d->off = 0;
                }
                if (d->off == d->len)
                        return 0;
                ssize_t n = send(dst, d->buf + d->off, d->len - d->off, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return 0;
                if (n < 0)
                        return -1;
                d->off += (size_t)n;
                if ((r->moved += (uint64_t)n) > RELAY_MAX_BYTES)
                        return -1;
        }
}

/* Each side wants to read while its direction's buffer is empty, and to
 * write while the other's holds bytes. */
static void rearm(struct rconn *c)
{
        uint32_t ea = (c->ab.off == c->ab.len && !c->ab.eof ? EPOLLIN : 0) | (c->ba.off < c->ba.len ? EPOLLOUT : 0);
        uint32_t eb = (c->ba.off == c->ba.len && !c->ba.eof ? EPOLLIN : 0) | (c->ab.off < c->ab.len ? EPOLLOUT : 0);
        (void)loop_rewatch(&c->a, ea);
        (void)loop_rewatch(&c->b, eb);
}

static void relay_both(struct rconn *c)
{
        if (pump(c->r, c->a.fd, c->b.fd, &c->ab) < 0 || pump(c->r, c->b.fd, c->a.fd, &c->ba) < 0 ||
            (c->ab.eof && c->ba.eof && c->ab.off == c->ab.len && c->ba.off == c->ba.len))
                return conn_close(c);
        rearm(c);
}

static void on_b(struct watch *w, uint32_t events)
{
        struct rconn *c = w->data;
        if (c->upstream == 1) {
                int e = 0;
                socklen_t l = sizeof e;
                if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                        return;
                if (getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &e, &l) < 0 || e) {
                        if (c->connect_method) {
                                static const char no[] = "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";
                                (void)!send(c->a.fd, no, sizeof no - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
                        }
                        return conn_close(c);
                }
                c->upstream = 2;
                /* What the jail sent first goes on, or (CONNECT) is answered. */
                static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
                struct pipe_dir *d = c->connect_method ? &c->ba : &c->ab;
                const char *what = c->connect_method ? ok : c->head;
                size_t n = c->connect_method ? sizeof ok - 1 : c->head_len;
                memcpy(d->buf, what, n);
                d->len = n;
                d->off = 0;
        }
        relay_both(c);
}

static int start_upstream(struct rconn *c)
{
        struct relay *r = c->r;
        int fd = socket(r->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -1;
        if (connect(fd, (struct sockaddr *)&r->addr, r->addrlen) < 0 && errno != EINPROGRESS) {
                close(fd);
                return -1;
        }
        c->upstream = 1;
        if (loop_watch(r->loop, &c->b, fd, EPOLLOUT, 0, on_b, c) < 0) {
                close(fd);
                return -1;
        }
        (void)loop_rewatch(&c->a, 0);  /* nothing more is read until the index's side is up */
        return 0;
}

/* "CONNECT host:port HTTP/1.1": 1 for the index's host and port. */
static int connect_target_ok(const struct relay *r, const char *line, size_t len)
{
        char want[300];
        int n = snprintf(want, sizeof want, "CONNECT %s:%u ", r->host, r->port);
        return n > 0 && (size_t)n < len && strncasecmp(line, want, (size_t)n) == 0;
}

static void on_head(struct rconn *c)
{
        ssize_t n;
        while ((n = read(c->a.fd, c->head + c->head_len, sizeof c->head - c->head_len)) < 0 && errno == EINTR)
                ;
        if (n < 0 && errno == EAGAIN)
                return;
        if (n <= 0)
                return conn_close(c);
        c->head_len += (size_t)n;
        char *end = memmem(c->head, c->head_len, "\r\n\r\n", 4);
        if (!end && c->head_len < sizeof c->head)
                return;  /* more of the request's head to come */
        if (c->head_len >= 8 && strncmp(c->head, "CONNECT ", 8) == 0) {
                if (!end || !connect_target_ok(c->r, c->head, c->head_len)) {
                        static const char no[] = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
                        (void)!send(c->a.fd, no, sizeof no - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
                        return conn_close(c);
                }
                c->connect_method = 1;  /* the head is answered, not passed on */
                if (end + 4 != c->head + c->head_len)
                        return conn_close(c);  /* bytes before our answer: not a client we know */
        }
        if (start_upstream(c) < 0)
                conn_close(c);
}

static void on_a(struct watch *w, uint32_t events)
{
        (void)events;
        struct rconn *c = w->data;
        if (!c->upstream)
                return on_head(c);
        if (c->upstream == 2)
                relay_both(c);
}

static void on_accept(struct watch *w, uint32_t events)
{
        (void)events;
        struct relay *r = w->data;
        for (;;) {
                int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0)
                        return;  /* EAGAIN, or a connection that went: the next */
                struct rconn *c = r->n < RELAY_MAX_CONNS && r->moved <= RELAY_MAX_BYTES ? calloc(1, sizeof *c) : NULL;
                if (c && (!(c->ab.buf = malloc(RELAY_BUF)) || !(c->ba.buf = malloc(RELAY_BUF)))) {
                        free(c->ab.buf);
                        free(c);
                        c = NULL;
                }
                if (!c) {
                        close(fd);
                        continue;
                }
                c->r = r;
                c->b.fd = -1;
                c->next = r->conns;
                r->conns = c;
                r->n++;
                if (loop_watch(r->loop, &c->a, fd, EPOLLIN, 0, on_a, c) < 0) {
                        close(fd);
                        c->a.fd = -1;
                        conn_close(c);
                }
        }
}

/* --- the listener, made inside the jail's network namespace ------------- */

static __attribute__((noreturn)) void listener_child(int sock, int pidfd)
{
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        if (setns(pidfd, CLONE_NEWNET) < 0)
                _exit(10);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, RELAY_MAX_CONNS) < 0)
                _exit(11);
        char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
        struct iovec iov = { .iov_base = "L", .iov_len = 1 };
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
        struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof fd);
        _exit(sendmsg(sock, &m, MSG_NOSIGNAL) == 1 ? 0 : 12);
}

/* A listening socket on 127.0.0.1 (an ephemeral port) in the network
 * namespace of the process pidfd names; -errno. */
static int listener_in(int pidfd, struct jr_err *err)
{
        int sp[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
                return jr_fail(err, errno, "socketpair");
        pid_t pid = fork();
        if (pid < 0) {
                int e = errno;
                close(sp[0]);
                close(sp[1]);
                return jr_fail(err, e, "fork");
        }
        if (pid == 0) {
                close(sp[0]);
                listener_child(sp[1], pidfd);
        }
        close(sp[1]);
        char b, cbuf[CMSG_SPACE(sizeof(int))];
        struct iovec iov = { .iov_base = &b, .iov_len = 1 };
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
        ssize_t n;
        while ((n = recvmsg(sp[0], &m, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
                ;
        close(sp[0]);
        int ws = 0;
        while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
                ;
        struct cmsghdr *cm = n == 1 ? CMSG_FIRSTHDR(&m) : NULL;
        if (!cm || cm->cmsg_type != SCM_RIGHTS)
                return jr_fail(err, EIO, "a listener in the jail's network (helper status %d)",
                               WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
        int fd;
        memcpy(&fd, CMSG_DATA(cm), sizeof fd);
        return fd;
}

/* The index URL's host and port (curl's URL parser), resolved. */
static int index_address(struct relay *r, const char *url, struct jr_err *err)
{
        CURLU *u = curl_url();
        char *host = NULL, *port = NULL;
        int ok = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
                 curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
                 curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK;
        if (ok)
                ok = snprintf(r->host, sizeof r->host, "%s", host) < (int)sizeof r->host;
        if (ok)
                r->port = (unsigned)strtoul(port, NULL, 10);
        curl_free(host);
        curl_free(port);
        curl_url_cleanup(u);
        if (!ok)
                return jr_fail(err, EINVAL, "sessions.packages.index_url: not a URL jaild can use");
        char bare[256], ps[8];  /* "[::1]" is looked up as "::1" */
        size_t hl = strlen(r->host);
        snprintf(bare, sizeof bare, "%.*s", r->host[0] == '[' ? (int)hl - 2 : (int)hl, r->host + (r->host[0] == '['));
        snprintf(ps, sizeof ps, "%u", r->port);
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *ai = NULL;
        int e = getaddrinfo(bare, ps, &hints, &ai);
        if (e)
                return jr_fail(err, EHOSTUNREACH, "the package index %s: %s", bare, gai_strerror(e));
        memcpy(&r->addr, ai->ai_addr, ai->ai_addrlen);
        r->addrlen = ai->ai_addrlen;
        freeaddrinfo(ai);
        return 0;
}

int relay_open(struct relay **out, struct loop *l, int pidfd, const char *index_url, unsigned *port,
               struct jr_err *err)
{
        struct relay *r = calloc(1, sizeof *r);
        if (!r)
                return jr_fail(err, ENOMEM, "relay");
        r->loop = l;
        r->listen.fd = -1;
        int ret = index_address(r, index_url, err);
        int fd = ret < 0 ? ret : listener_in(pidfd, err);
        if (fd < 0) {
                free(r);
                return fd;
        }
        struct sockaddr_in a;
        socklen_t al = sizeof a;
        if (getsockname(fd, (struct sockaddr *)&a, &al) < 0 ||
            (ret = loop_watch(l, &r->listen, fd, EPOLLIN, 0, on_accept, r)) < 0) {
                ret = jr_fail(err, errno, "the relay's listener");
                close(fd);
                free(r);
                return ret;
        }
        *port = ntohs(a.sin_port);
        *out = r;
        return 0;
}

void relay_close(struct relay *r)
{
        if (!r)
                return;
        while (r->conns)
                conn_close(r->conns);
        int fd = r->listen.fd;
        loop_unwatch(&r->listen);
        closep(&fd);
        free(r);
}
