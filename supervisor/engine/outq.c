#include "config.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "supervisor/engine/outq.h"

void outq_init(struct outq *q, int fd, size_t limit)
{
        *q = (struct outq){ .fd = fd, .limit = limit };
}

void outq_init_fn(struct outq *q, outq_fn fn, void *data)
{
        *q = (struct outq){ .fd = -1, .limit = SIZE_MAX, .fn = fn, .data = data };
}

void outq_free(struct outq *q)
{
        free(q->buf);
        q->buf = NULL;
        q->len = q->cap = 0;
}

void outq_put(struct outq *q, const void *data, size_t len)
{
        if (q->broken || len == 0)
                return;
        if (q->len + len > q->cap) {
                size_t cap = q->cap ? q->cap : 65536;
                while (cap < q->len + len)
                        cap *= 2;
                char *b = realloc(q->buf, cap);
                if (!b)
                        return;  /* dropped: a queue is output, not state */
                q->buf = b;
                q->cap = cap;
        }
        memcpy(q->buf + q->len, data, len);
        q->len += len;
}

void outq_puts(struct outq *q, const char *s)
{
        outq_put(q, s, strlen(s));
}

void outq_printf(struct outq *q, const char *fmt, ...)
{
        char line[2048];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        if (n > 0)
                outq_put(q, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* Writes one piece; 1 when written, 0 when the fd would block, -1 when
 * the reader is gone. `wait` allows blocking in poll. */
static int write_piece(struct outq *q, size_t *done, int wait)
{
        struct pollfd p = { .fd = q->fd, .events = POLLOUT };
        int n;
        while ((n = poll(&p, 1, wait ? -1 : 0)) < 0 && errno == EINTR)
                ;
        if (n == 0)
                return 0;
        if (n < 0 || (p.revents & (POLLERR | POLLNVAL)))
                return -1;
        size_t want = q->len - *done;
        if (want > PIPE_BUF)
                want = PIPE_BUF;
        ssize_t w;
        while ((w = write(q->fd, q->buf + *done, want)) < 0 && errno == EINTR)
                ;
        if (w < 0)
                return errno == EAGAIN ? 0 : -1;
        *done += (size_t)w;
        return 1;
}

static size_t flush(struct outq *q, int wait)
{
        size_t done = 0;
        int r = 1;
        while (done < q->len && (r = write_piece(q, &done, wait)) > 0)
                ;
        if (r < 0) {
                q->broken = 1;  /* EPIPE and friends: nobody will read it */
                done = q->len;
        }
        memmove(q->buf, q->buf + done, q->len - done);
        q->len -= done;
        return q->len;
}

/* A queue with a consumer hands it everything, at once. */
static void hand_over(struct outq *q)
{
        q->fn(q->data, q->buf, q->len);
        q->len = 0;
}

size_t outq_flush_some(struct outq *q)
{
        if (q->fn && q->len)
                hand_over(q);
        return q->len ? flush(q, 0) : 0;
}

int outq_flush_all_until(struct outq *q, int stopfd)
{
        if (q->fn && q->len)
                hand_over(q);
        while (q->len && !q->broken) {
                struct pollfd p[2] = { { .fd = q->fd, .events = POLLOUT }, { .fd = stopfd, .events = POLLIN } };
                int n;
                while ((n = poll(p, stopfd >= 0 ? 2 : 1, -1)) < 0 && errno == EINTR)
                        ;
                if (n > 0 && !p[0].revents && (p[1].revents & POLLIN)) {
                        q->len = 0;  /* the reader takes nothing, and we are asked to stop */
                        return -1;
                }
                flush(q, 0);
        }
        return 0;
}

/* SIGINT, SIGTERM and SIGQUIT are blocked in jailrun (served by its
 * loops): one that comes while a reader holds us up is seen here. */
void outq_flush_all(struct outq *q)
{
        if (!q->len)
                return;
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGQUIT);
        int stop = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
        outq_flush_all_until(q, stop);
        if (stop >= 0)
                close(stop);
}
