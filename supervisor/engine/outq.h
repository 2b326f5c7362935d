/* Output queues for jailrun's own stdout and stderr. Nothing the jail
 * sends is ever written with a call that can block the event loop: bytes
 * are queued, written while the descriptor takes them, and when a queue
 * backs up (a slow or stopped reader) the loop stops reading from the jail
 * instead, so timeouts and signals are still served. */
#ifndef JR_OUTQ_H
#define JR_OUTQ_H

#include <stddef.h>

/* A consumer of queued bytes instead of a descriptor (jaild's per-worker
 * log): called with what is queued, which it must take whole. */
typedef void (*outq_fn)(void *data, const char *buf, size_t len);

struct outq {
        int fd;                /* -1 with a consumer */
        outq_fn fn;
        void *data;
        char *buf;
        size_t len, cap;
        size_t limit;   /* at or above this, outq_full() */
        int broken;     /* the reader went away: drop what comes */
};

void outq_init(struct outq *q, int fd, size_t limit);
/* A queue whose bytes go to fn at each flush; never full. */
void outq_init_fn(struct outq *q, outq_fn fn, void *data);
void outq_free(struct outq *q);

/* Appends (never blocks, never fails the caller: on ENOMEM the bytes are
 * dropped and the queue says so once). */
void outq_put(struct outq *q, const void *data, size_t len);
void outq_puts(struct outq *q, const char *s);
void outq_printf(struct outq *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes as much as the descriptor takes right now, in pieces no larger
 * than PIPE_BUF after poll() said it is writable, so a write never
 * blocks. Returns the bytes still queued. */
size_t outq_flush_some(struct outq *q);

/* Writes everything, waiting for the reader (the job is over by then),
 * unless SIGINT, SIGTERM or SIGQUIT comes while the reader takes nothing:
 * then what is left is dropped. */
void outq_flush_all(struct outq *q);

/* The same, unless stopfd becomes readable first (a signal): then what is
 * left is dropped. 0, or -1 when stopped. */
int outq_flush_all_until(struct outq *q, int stopfd);

static inline int outq_full(const struct outq *q)
{
        return q->len >= q->limit;
}

#endif
