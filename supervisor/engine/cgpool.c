#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "supervisor/engine/cgpool.h"

/* A group that could not be made or removed is tried again this much
 * later, REMOVE_TRIES times at most for a removal (what is still left
 * then goes at the next start's sweep). */
#define RETRY_MS 1000
#define REMOVE_TRIES 60

struct cg_slot {
        struct cg_job g;             /* the group; its descriptors are the pool's */
        struct cg_pool *pool;
        struct cg_slot *next;        /* in ready, returned or retired */
        unsigned jobs;               /* jobs it served */
        int reusable;                /* its memory peak can be reset */
        int busy;                    /* it did not empty when given back */
        unsigned tries;              /* removals that found it busy */
        struct timespec due;         /* retired: the next try */
};

struct cg_pool {
        struct cg_host h;
        char parent[PATH_MAX];
        unsigned size, max, next_id;
        void (*log)(void *data, const char *msg);
        void *log_data;
        struct loop *loop;
        struct hook hook;
        struct cg_slot *ready;       /* the last given back first: its pages are warm */
        struct cg_slot *returned;    /* given back, counters not read yet */
        struct cg_slot *retired;     /* to be removed */
        struct timespec make_due;    /* after a group could not be made */
        struct cg_pool_stats st;
};

static void note(struct cg_pool *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct cg_pool *p, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        if (p->log)
                p->log(p->log_data, msg);
}

static void push(struct cg_slot **list, struct cg_slot *s)
{
        s->next = *list;
        *list = s;
}

static struct cg_slot *pop(struct cg_slot **list)
{
        struct cg_slot *s = *list;
        if (s)
                *list = s->next;
        return s;
}

static void later(struct timespec *t, const struct timespec *now, long ms)
{
        t->tv_sec = now->tv_sec + ms / 1000;
        t->tv_nsec = now->tv_nsec + (ms % 1000) * 1000000L;
        if (t->tv_nsec >= 1000000000L) {
                t->tv_sec++;
                t->tv_nsec -= 1000000000L;
        }
}

/* Milliseconds from now until t (0 once it has passed). */
static long ms_until(const struct timespec *t, const struct timespec *now)
{
        long ms = (t->tv_sec - now->tv_sec) * 1000 + (t->tv_nsec - now->tv_nsec) / 1000000;
        return ms > 0 ? ms : 0;
}

/* A new group, pool-N, with no limits yet; NULL with the reason in err. */
static struct cg_slot *slot_new(struct cg_pool *p, struct jr_err *err)
{
        struct cg_slot *s = calloc(1, sizeof *s);
        if (!s) {
                jr_fail(err, ENOMEM, "a pool group");
                return NULL;
        }
        s->pool = p;
        int r;
        /* A name taken (a group the sweep could not remove) is skipped. */
        for (int tries = 0;; tries++) {
                char name[32];
                snprintf(name, sizeof name, "pool-%u", p->next_id++);
                r = cg_job_make(&s->g, &p->h, p->parent, name, err);
                if (r != -EEXIST || tries == 16)
                        break;
        }
        if (r == 0 && (r = cg_job_open_peak(&s->g)) < 0)
                jr_fail(err, -r, "open the memory peak of %s", s->g.rel);
        if (r < 0) {
                struct jr_err ignored;
                cg_job_destroy(&s->g, &ignored);
                free(s);
                return NULL;
        }
        s->reusable = r == 1;
        return s;
}

/* Removes a retired group: 0 (it is gone, or given up on), or -EBUSY
 * while something is still in it (tried again later). */
static int slot_remove(struct cg_pool *p, struct cg_slot *s)
{
        if (!cg_job_is_empty(&s->g) && ++s->tries < REMOVE_TRIES)
                return -EBUSY;
        struct jr_err err = { 0 };
        if (cg_job_destroy(&s->g, &err) < 0)
                note(p, "cgroup pool: %s (left for the next start's sweep)", err.msg);
        else
                p->st.removed++;
        free(s);
        return 0;
}

/* A group given back: ready for the next job, with its counters as they
 * are now, or retired when it cannot give a job exact figures. */
static void recycle(struct cg_pool *p, struct cg_slot *s)
{
        int keep = !s->busy && s->reusable;
        /* pids.peak cannot be reset: at 1, every later job's own peak is
         * what it reads (each job has at least its one task). */
        if (keep && cg_job_baseline(&s->g) > 1)
                keep = 0;
        if (!keep)
                p->st.retired++;
        if (!keep || p->st.ready >= p->max) {
                s->due = (struct timespec){ 0 };
                push(&p->retired, s);
                return;
        }
        push(&p->ready, s);
        p->st.ready++;
}

/* One group made ahead; on failure, the next try in RETRY_MS. */
static void replenish(struct cg_pool *p, const struct timespec *now)
{
        struct jr_err err = { 0 };
        struct cg_slot *s = slot_new(p, &err);
        if (!s) {
                note(p, "cgroup pool: %s; tried again in %d ms", err.msg, RETRY_MS);
                later(&p->make_due, now, RETRY_MS);
                return;
        }
        p->st.made_ahead++;
        push(&p->ready, s);
        p->st.ready++;
}

/* The first retired group whose time has come, removed. */
static void remove_due(struct cg_pool *p, const struct timespec *now)
{
        for (struct cg_slot **q = &p->retired; *q; q = &(*q)->next) {
                struct cg_slot *s = *q;
                if (ms_until(&s->due, now) > 0)
                        continue;
                *q = s->next;
                if (slot_remove(p, s) < 0) {
                        later(&s->due, now, RETRY_MS);
                        push(&p->retired, s);
                }
                return;
        }
}

/* How long the loop may sleep before the pool has work: 0 for now, -1
 * for none. */
static int next_wait(const struct cg_pool *p, const struct timespec *now)
{
        long wait = -1;
        if (p->returned)
                return 0;
        if (p->st.ready < p->size)
                wait = ms_until(&p->make_due, now);
        for (const struct cg_slot *s = p->retired; s && wait != 0; s = s->next) {
                long ms = ms_until(&s->due, now);
                if (wait < 0 || ms < wait)
                        wait = ms;
        }
        return (int)wait;
}

/* After each batch of the loop (so after the answer of a job that just
 * ended): one step of work, so that events are served between them. */
static int pool_hook(struct hook *hk)
{
        struct cg_pool *p = hk->data;
        if (!p->returned && !p->retired && p->st.ready >= p->size)
                return -1;  /* the common case, on every turn of the loop */
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (p->returned)
                recycle(p, pop(&p->returned));
        else if (p->st.ready < p->size && ms_until(&p->make_due, &now) == 0)
                replenish(p, &now);
        else
                remove_due(p, &now);
        return next_wait(p, &now);
}

int cg_pool_new(struct loop *l, const struct cg_pool_cfg *c, struct cg_pool **out, struct jr_err *err)
{
        *out = NULL;
        if (c->size < 1 || c->max < c->size || c->max > CG_POOL_MAX)
                return jr_fail(err, EINVAL, "cgroup pool: size %u, max %u (1 <= size <= max <= %d)", c->size, c->max,
                               CG_POOL_MAX);
        struct cg_pool *p = calloc(1, sizeof *p);
        if (!p)
                return jr_fail(err, ENOMEM, "cgroup pool");
        *p = (struct cg_pool){ .size = c->size, .max = c->max, .log = c->log, .log_data = c->log_data, .loop = l,
                               .hook = { .run = pool_hook, .data = p } };
        int r = cg_detect(&p->h, err);
        if (r == 0 && p->h.backend == CG_NONE)
                r = jr_fail(err, ENOTSUP, "cannot limit jobs: %s", p->h.why);
        if (r == 0 && jr_snprintf(p->parent, sizeof p->parent, "%s", c->parent) < 0)
                r = jr_fail(err, ENAMETOOLONG, "cgroup parent");
        while (r == 0 && p->st.ready < p->size) {
                struct cg_slot *s = slot_new(p, err);
                if (!s) {
                        r = -(err->errnum ? err->errnum : EIO);
                        break;
                }
                p->st.made_ahead++;
                push(&p->ready, s);
                p->st.ready++;
        }
        if (r < 0) {
                cg_pool_free(p);
                return r;
        }
        loop_hook_add(l, &p->hook);
        *out = p;
        return 0;
}

const struct cg_host *cg_pool_host(const struct cg_pool *p)
{
        return &p->h;
}

/* A ready group, or one made now; NULL with the reason in err. */
static struct cg_slot *next_slot(struct cg_pool *p, int fresh, struct jr_err *err)
{
        /* Reading a returned group's counters beats making one. */
        while (!fresh && !p->ready && p->returned)
                recycle(p, pop(&p->returned));
        struct cg_slot *s = fresh ? NULL : pop(&p->ready);
        if (s)
                p->st.ready--;
        else if ((s = slot_new(p, err)))
                p->st.made_on_start++;
        return s;
}

int cg_pool_take(struct cg_pool *p, const struct cg_limits *l, struct cg_job *out, struct jr_err *err)
{
        struct cg_slot *s = NULL;
        int r = 0;
        /* A used group whose limits cannot be written (v1: a cut below
         * what earlier jobs left charged, which will not reclaim) is
         * retired, and the job gets a new one. */
        for (int fresh = 0; fresh < 2; fresh++) {
                if (!(s = next_slot(p, fresh, err)))
                        return -(err->errnum ? err->errnum : EIO);
                r = cg_job_limits(&s->g, l, err);
                if (r == 0 && s->g.peak_fd >= 0)
                        r = cg_job_reset_peak(&s->g, err);
                if (r == 0)
                        break;
                p->st.retired++;
                push(&p->retired, s);
                if (!s->jobs)
                        return r;
        }
        if (r < 0)
                return r;
        p->st.taken++;
        p->st.in_use++;
        if (s->jobs++)
                p->st.reused++;
        *out = s->g;
        out->slot = s;
        return 0;
}

int cg_pool_give(struct cg_job *j, struct jr_err *err)
{
        struct cg_slot *s = j->slot;
        struct cg_pool *p = s->pool;
        int r = cg_job_empty(&s->g);
        s->busy = r < 0;
        *j = (struct cg_job)CG_JOB_INIT;  /* the descriptors were the pool's */
        p->st.in_use--;
        push(&p->returned, s);
        return r < 0 ? jr_fail(err, -r, "%s did not empty within 2 s", s->g.rel) : 0;
}

void cg_pool_stats(const struct cg_pool *p, struct cg_pool_stats *s)
{
        *s = p->st;
}

void cg_pool_free(struct cg_pool *p)
{
        if (!p)
                return;
        if (p->loop)
                loop_hook_remove(p->loop, &p->hook);
        struct cg_slot **lists[] = { &p->ready, &p->returned, &p->retired };
        for (size_t i = 0; i < sizeof lists / sizeof *lists; i++)
                for (struct cg_slot *s; (s = pop(lists[i]));) {
                        struct jr_err err = { 0 };
                        if (cg_job_destroy(&s->g, &err) < 0)
                                note(p, "cgroup pool: %s", err.msg);
                        free(s);
                }
        free(p);
}
