#include "config.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "supervisor/engine/loop.h"

void loop_block_signals(sigset_t *set)
{
        sigemptyset(set);
        int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
        for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
                sigaddset(set, sigs[i]);
        sigprocmask(SIG_BLOCK, set, NULL);
        signal(SIGPIPE, SIG_IGN);
}

int loop_init(struct loop *l)
{
        *l = (struct loop){ .epfd = epoll_create1(EPOLL_CLOEXEC) };
        return l->epfd < 0 ? -errno : 0;
}

void loop_close(struct loop *l)
{
        closep(&l->epfd);
        l->epfd = -1;
}

static uint32_t epoll_events(uint32_t events)
{
        return events & EPOLLIN ? events | EPOLLRDHUP : events;
}

int loop_watch(struct loop *l, struct watch *w, int fd, uint32_t events, int control, watch_fn fn, void *data)
{
        *w = (struct watch){ .loop = l, .fd = -1, .events = events, .control = control, .fn = fn, .data = data };
        if (fd < 0)
                return 0;
        struct epoll_event ev = { .events = epoll_events(events), .data.ptr = w };
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
                return -errno;
        w->fd = fd;
        return 0;
}

int loop_rewatch(struct watch *w, uint32_t events)
{
        if (w->fd < 0 || events == w->events)
                return 0;
        struct epoll_event ev = { .events = epoll_events(events), .data.ptr = w };
        if (epoll_ctl(w->loop->epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0)
                return -errno;
        w->events = events;
        return 0;
}

void loop_unwatch(struct watch *w)
{
        if (w->fd < 0)
                return;
        struct loop *l = w->loop;
        /* Fails only if the fd was closed first, which removed it anyway. */
        (void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
        w->fd = -1;
        for (int i = 0; i < l->nev; i++)
                if (l->evs[i].data.ptr == w)
                        l->evs[i].data.ptr = NULL;
}

static void timer_ready(struct watch *w, uint32_t events)
{
        (void)events;
        struct timer *t = w->data;
        uint64_t n;
        ssize_t r;
        while ((r = read(w->fd, &n, sizeof n)) < 0 && errno == EINTR)
                ;
        if (r == sizeof n)  /* EAGAIN: re-armed meanwhile, not due */
                t->fire(t);
}

int timer_init(struct loop *l, struct timer *t, int control, void (*fire)(struct timer *), void *data)
{
        t->fire = fire;
        t->data = data;
        int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (fd < 0)
                return -errno;
        int r = loop_watch(l, &t->w, fd, EPOLLIN, control, timer_ready, t);
        if (r < 0)
                close(fd);
        return r;
}

static struct timespec to_ts(double s)
{
        if (s <= 0)
                return (struct timespec){ 0, 0 };
        double whole = floor(s);
        struct timespec ts = { .tv_sec = (time_t)whole, .tv_nsec = (long)((s - whole) * 1e9) };
        if (ts.tv_sec == 0 && ts.tv_nsec == 0)
                ts.tv_nsec = 1;  /* an all-zero value disarms */
        return ts;
}

int timer_arm(struct timer *t, double first, double every)
{
        struct itimerspec its = { .it_value = to_ts(first > 0 ? first : 1e-9), .it_interval = to_ts(every) };
        if (t->w.fd < 0)
                return -EBADF;
        return timerfd_settime(t->w.fd, 0, &its, NULL) < 0 ? -errno : 0;
}

int timer_disarm(struct timer *t)
{
        struct itimerspec its = { 0 };
        if (t->w.fd < 0)
                return 0;
        return timerfd_settime(t->w.fd, 0, &its, NULL) < 0 ? -errno : 0;
}

void timer_close(struct timer *t)
{
        int fd = t->w.fd;
        loop_unwatch(&t->w);
        closep(&fd);
}

void loop_hook_add(struct loop *l, struct hook *h)
{
        h->next = l->hooks;
        l->hooks = h;
}

void loop_hook_remove(struct loop *l, struct hook *h)
{
        for (struct hook **p = &l->hooks; *p; p = &(*p)->next)
                if (*p == h) {
                        *p = h->next;
                        break;
                }
}

void loop_defer(struct loop *l, struct defer *d)
{
        if (d->queued)
                return;
        d->queued = 1;
        d->next = l->deferred;
        l->deferred = d;
}

void loop_undefer(struct loop *l, struct defer *d)
{
        for (struct defer **p = &l->deferred; *p; p = &(*p)->next)
                if (*p == d) {
                        *p = d->next;
                        break;
                }
        d->queued = 0;
}

/* Serves the batch: control watches (timers, pidfds, signals) first, so a
 * child's exit or a deadline is seen before more of its data. */
static void serve(struct loop *l)
{
        for (int pass = 0; pass < 2; pass++)
                for (int i = 0; i < l->nev; i++) {
                        struct watch *w = l->evs[i].data.ptr;
                        if (w && w->control == (pass == 0)) {
                                l->evs[i].data.ptr = NULL;
                                w->fn(w, l->evs[i].events);
                        }
                }
        l->nev = 0;
}

static void run_deferred(struct loop *l)
{
        while (l->deferred) {
                struct defer *d = l->deferred;
                l->deferred = d->next;
                d->queued = 0;
                d->run(d);
        }
}

static int run_hooks(struct loop *l)
{
        int wait = -1;
        for (struct hook *h = l->hooks, *next; h; h = next) {
                next = h->next;  /* a hook may remove itself */
                int ms = h->run(h);
                if (ms >= 0 && (wait < 0 || ms < wait))
                        wait = ms;
        }
        return wait;
}

int loop_run_once(struct loop *l, int timeout_ms)
{
        int wait = run_hooks(l);
        if (l->deferred)
                wait = 0;
        if (wait < 0 || (timeout_ms >= 0 && timeout_ms < wait))
                wait = timeout_ms;
        int n = epoll_wait(l->epfd, l->evs, LOOP_BATCH, wait);
        if (n < 0)
                return errno == EINTR ? 0 : -errno;
        l->nev = n;
        serve(l);
        run_deferred(l);
        return 0;
}
