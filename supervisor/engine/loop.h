/* The event loop a front-end owns and every job registers on: one epoll
 * set for all of them, timers on timerfds, and hooks run after each batch
 * of events. The loop has no state outside its struct, handles no signal
 * itself (a front-end watches its own signalfd) and never blocks but in
 * loop_run_once's wait. */
#ifndef JR_LOOP_H
#define JR_LOOP_H

#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>

struct loop;
struct watch;

/* Called with the events epoll reported for the watch's fd. */
typedef void (*watch_fn)(struct watch *w, uint32_t events);

/* A descriptor on the loop; the caller owns the struct (embedded in its
 * own object) and keeps it alive while it is watched. */
struct watch {
        struct loop *loop;
        int fd;            /* -1: not watched */
        uint32_t events;
        int control;       /* served before data fds of the same batch */
        watch_fn fn;
        void *data;
};

/* A timer: a timerfd on the loop. fire() runs once per expiry batch. */
struct timer {
        struct watch w;
        void (*fire)(struct timer *t);
        void *data;
};

/* Runs after every batch of events (and after a wait that timed out);
 * returns the most milliseconds the loop may wait before it runs again, or
 * -1 for no limit. */
struct hook {
        int (*run)(struct hook *h);
        void *data;
        struct hook *next;
};

/* Runs once, after the batch it was queued in: for work that must not run
 * inside an event's own callback (freeing the object a watch lives in). */
struct defer {
        void (*run)(struct defer *d);
        void *data;
        struct defer *next;
        int queued;
};

#define LOOP_BATCH 16

struct loop {
        int epfd;
        struct hook *hooks;
        struct defer *deferred;
        /* The batch being served: a watch removed meanwhile is struck out. */
        struct epoll_event evs[LOOP_BATCH];
        int nev;
};

/* A front-end's signals: SIGINT, SIGTERM, SIGHUP and SIGQUIT blocked (to
 * be read from a signalfd of set on the loop; blocked before any clone, so
 * none ends the process half-way through a set-up), SIGPIPE ignored. */
void loop_block_signals(sigset_t *set);

int loop_init(struct loop *l);
void loop_close(struct loop *l);

/* Watches fd for events (EPOLLIN, EPOLLOUT ...; EPOLLRDHUP is added to
 * EPOLLIN). Returns 0 or -errno. fd < 0 is accepted and watches nothing. */
int loop_watch(struct loop *l, struct watch *w, int fd, uint32_t events, int control, watch_fn fn, void *data);
/* New events for a watched fd (0: none for now). Returns 0 or -errno. */
int loop_rewatch(struct watch *w, uint32_t events);
/* Stops watching; the fd stays open (the caller's). Safe on a watch that
 * is not watched, and inside any callback of the same batch. */
void loop_unwatch(struct watch *w);

/* A timer on the loop (a CLOCK_MONOTONIC timerfd). */
int timer_init(struct loop *l, struct timer *t, int control, void (*fire)(struct timer *), void *data);
/* Fires first seconds from now (> 0), then every seconds (0: once). */
int timer_arm(struct timer *t, double first, double every);
int timer_disarm(struct timer *t);
/* Removes and closes the timer; safe on one never initialised if it was
 * zeroed with .w.fd = -1 (TIMER_INIT). */
void timer_close(struct timer *t);
#define TIMER_INIT { .w = { .fd = -1 } }
#define WATCH_INIT { .fd = -1 }

void loop_hook_add(struct loop *l, struct hook *h);
void loop_hook_remove(struct loop *l, struct hook *h);

/* Queues d to run after this batch (once, however often it is queued). */
void loop_defer(struct loop *l, struct defer *d);
/* Takes a queued d back (its object is going away). */
void loop_undefer(struct loop *l, struct defer *d);

/* Waits up to timeout_ms (-1: no limit, shortened by the hooks) for
 * events, serves them (control watches first), then the deferred work and
 * the hooks. Returns 0, or -errno when epoll_wait fails (EINTR is 0). */
int loop_run_once(struct loop *l, int timeout_ms);

#endif
