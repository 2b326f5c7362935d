#include "config.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/sanitizers.h"
#include "supervisor/engine/jailio.h"
#include "supervisor/engine/jobint.h"
#include "supervisor/engine/uidlock.h"

/* A job's life on the loop: its inputs, uid and cgroup, each jail's
 * start, end and accounting, and the job's end with its figures. */

long us_since(const struct timespec *t0)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (t.tv_sec - t0->tv_sec) * 1000000 + (t.tv_nsec - t0->tv_nsec) / 1000;
}

long ms_since(const struct timespec *t0)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

double secs_since(const struct timespec *t0)
{
        return (double)us_since(t0) / 1e6;
}

void kill_jail(struct job *j)
{
        /* The child is the pid namespace's init: its death takes every
         * process in the jail with it. */
        if (!j->run->exited && syscall(SYS_pidfd_send_signal, j->run->sp.pidfd, SIGKILL, NULL, 0) < 0 &&
            errno != ESRCH)
                log_errno(-errno, "kill jail: %m");
}

void end_job(struct job *j, enum job_status st, const char *etype, const char *fmt, ...)
{
        if (!j->run->ended) {
                j->run->ended = 1;
                if (j->have_error && !j->first && (j->first = malloc(sizeof *j->first))) {
                        memcpy(j->first->etype, j->res->etype, sizeof j->first->etype);
                        memcpy(j->first->emsg, j->res->emsg, sizeof j->first->emsg);
                        memcpy(j->first->traceback, j->res->traceback, sizeof j->first->traceback);
                        j->first->line = j->res->line;
                }
                j->res->status = st;
                jr_utf8_copy(j->res->etype, sizeof j->res->etype, etype);
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(j->res->emsg, sizeof j->res->emsg, fmt, ap);
                va_end(ap);
                jr_utf8_clean(j->res->emsg);
        }
        kill_jail(j);
}

/* An end of ours the worker goes on from (or stops gently after): the
 * job's error is still its first failure. */
void keep_first_error(struct job *j)
{
        if (!j->first)
                return;
        memcpy(j->res->etype, j->first->etype, sizeof j->first->etype);
        memcpy(j->res->emsg, j->first->emsg, sizeof j->first->emsg);
        memcpy(j->res->traceback, j->first->traceback, sizeof j->first->traceback);
        j->res->line = j->first->line;
        free(j->first);
        j->first = NULL;
}

void end_memory(struct job *j)
{
        char size[64];
        format_size(j->o->memory, size, sizeof size);
        end_job(j, JOB_MEMORY, "MemoryError", "memory limit of %s exceeded", size);
}

/* The CPU-time limit, checked on the group's own clock every tick of a
 * periodic timer. */
static void check_cpu_time(struct job *j)
{
        uint64_t us;
        if (cg_job_cpu_us(&j->cg, &us) == 0 && (double)us >= j->o->cpu_time_s * 1e6)
                end_job(j, JOB_CPU_TIME, "TimeoutError", "CPU-time limit of %g s exceeded", j->o->cpu_time_s);
}

/* The job's cgroup with the limits asked for, after removing what a killed
 * predecessor left. */
static int make_cgroup(struct job *j, struct jr_err *err)
{
        struct cg_limits l = {
                .memory = j->o->memory,
                .pids = j->o->pids,
                .cpu_period_us = 100000,
                .cpu_quota_us = (uint64_t)(j->o->cpus * 100000 + 0.5),
        };
        if (j->o->cgpool) {  /* a group made ahead (cgpool.h) */
                j->res->backend = cg_backend_name(cg_pool_host(j->o->cgpool)->backend);
                return cg_pool_take(j->o->cgpool, &l, &j->cg, err);
        }
        int r = cg_detect(&j->cgh, err);
        if (r < 0)
                return r;
        if (j->cgh.backend == CG_NONE)
                return jr_fail(err, ENOTSUP, "cannot limit the job: %s", j->cgh.why);
        j->res->backend = cg_backend_name(j->cgh.backend);
        if (j->o->sweep_stale)
                cg_sweep_stale(&j->cgh, j->o->cgroup_parent);
        char name[96];
        if (j->o->job_id)
                snprintf(name, sizeof name, "job-%s", j->o->job_id);
        else
                snprintf(name, sizeof name, "job-%d", (int)getpid());
        return cg_job_create(&j->cg, &j->cgh, j->o->cgroup_parent, name, &l, err);
}

/* jailrun's own peak resident memory, KiB (VmHWM), or -1. Not
 * getrusage(RUSAGE_SELF): its ru_maxrss keeps the peak of the process
 * image before execve, the parent's when it was vforked, so a large
 * caller would show as jailrun's. */
static long self_peak_rss_kib(void)
{
        _cleanup_fclose_ FILE *f = fopen("/proc/self/status", "re");
        char line[256];
        long kib = -1;
        while (f && fgets(line, sizeof line, f))
                if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
                        break;
        return kib;
}

/* The job's CPU so far, in seconds (its cgroup's count; -1 when unknown),
 * for the broker's CPU budget. */
static double job_cpu_s(void *ctx)
{
        struct job *j = ctx;
        uint64_t us;
        return j->cg.h && cg_job_cpu_us(&j->cg, &us) == 0 ? (double)us / 1e6 : -1;
}










void job_note(struct job *j, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        log_vnote(&j->sink->err, j->o->json, fmt, ap);
        va_end(ap);
}

/* Arms t, or ends the job when it cannot be (what says which timer). */
void arm_or_end(struct job *j, struct timer *t, double first, double every, const char *what)
{
        int r = timer_arm(t, first, every);
        if (r < 0)
                end_job(j, JOB_INTERNAL, "InternalError", "arm %s: %s", what, strerror(-r));
}

/* The job's wall-clock limit. */
static void on_deadline(struct timer *t)
{
        struct job *j = t->data;
        if (j->in_backoff)
                return end_waiting(j, 0);
        if (j->run && !j->run->exited)  /* else between_jails sees the time is up */
                end_job(j, JOB_TIMEOUT, "TimeoutError", "wall-clock limit of %g s exceeded", j->o->timeout_s);
}

static void on_cpu(struct timer *t)
{
        struct job *j = t->data;
        if (j->run && !j->run->exited)
                check_cpu_time(j);
}

static void on_grace(struct timer *t)
{
        struct job *j = t->data;
        if (j->run && !j->run->exited)
                end_job(j, JOB_PROTOCOL, "ProtocolError", "worker closed its channel");
}

/* v1: the memory controller hit the limit. */
static void on_oom(struct watch *w, uint32_t events)
{
        (void)events;
        struct job *j = w->data;
        uint64_t x;  /* read, or it fires for every later jail of the job */
        while (read(w->fd, &x, sizeof x) < 0 && errno == EINTR)
                ;
        if (j->run && !j->run->exited)
                end_memory(j);
}

static void on_pidfd(struct watch *w, uint32_t events)
{
        (void)events;
        struct job *j = w->data;
        j->run->exited = 1;
        loop_unwatch(w);
        loop_defer(j->loop, &j->gone);  /* after the data of this batch */
}

/* The timers every jail of the job shares; disarmed between two. */
static int timers_init(struct job *j)
{
        struct { struct timer *t; void (*fire)(struct timer *); int control; } ts[] = {
                { &j->deadline, on_deadline, 1 }, { &j->cpu, on_cpu, 1 },       { &j->grace, on_grace, 1 },
                { &j->throttle, on_throttle, 1 }, { &j->bar, on_bar_timer, 1 }, { &j->next_slot, on_slot, 1 },
                { &j->tick, on_tick_timer, 1 },   { &j->backoff, on_backoff, 1 },
        };
        for (size_t i = 0; i < ELEMENTSOF(ts); i++) {
                int r = timer_init(j->loop, ts[i].t, ts[i].control, ts[i].fire, j);
                if (r < 0)
                        return r;
        }
        /* The CPU-time limit is read every 100 ms, or at once if shorter. */
        double every = j->o->cpu_time_s < 0.1 ? j->o->cpu_time_s : 0.1;
        int r = j->o->cpu_time_s > 0 ? timer_arm(&j->cpu, every, every) : 0;
        if (r == 0 && j->o->timeout_s > 0)
                r = timer_arm(&j->deadline, j->o->timeout_s, 0);
        return r;
}

static void timers_close(struct job *j)
{
        struct timer *ts[] = { &j->deadline, &j->cpu, &j->grace, &j->throttle, &j->bar, &j->next_slot, &j->tick,
                               &j->backoff };
        for (size_t i = 0; i < ELEMENTSOF(ts); i++)
                timer_close(ts[i]);
}

/* What one jail's life used: its descriptors, its transfers. */
static void run_close(struct job *j)
{
        struct run *r = j->run;
        if (!r)
                return;
        struct watch *ws[] = { &r->chan, &r->out, &r->err, &r->pid };
        for (size_t i = 0; i < ELEMENTSOF(ws); i++) {
                int fd = ws[i]->fd;
                loop_unwatch(ws[i]);
                closep(&fd);
        }
        closep(&r->sp.pidfd);
        loop_unwatch(&r->http);
        loop_unwatch(&r->http_timer);
        loop_unwatch(&r->state);
        loop_unwatch(&r->state_timer);
        broker_state_orphan(&j->broker);  /* its state calls under way: answered to nobody */
        if (j->broker.http) {  /* the old jail's transfers */
                http_free(j->broker.http);
                j->broker.http = NULL;
        }
        free(r);
        j->run = NULL;
}

/* A new jail's slate: what the one before left goes whole. */
static int run_new(struct job *j)
{
        run_close(j);
        struct timer *ts[] = { &j->grace, &j->throttle, &j->bar, &j->next_slot, &j->tick };
        for (size_t i = 0; i < ELEMENTSOF(ts); i++)
                (void)timer_disarm(ts[i]);  /* an expiry not read yet goes too */
        struct run *r = calloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        *r = (struct run){ .sp = { .pidfd = -1 }, .chan = WATCH_INIT, .out = WATCH_INIT, .err = WATCH_INIT,
                           .pid = WATCH_INIT, .http = WATCH_INIT, .http_timer = WATCH_INIT, .state = WATCH_INIT,
                           .state_timer = WATCH_INIT, .tokens = READ_BURST };
        j->run = r;
        return 0;
}

/* The jail's descriptors on the loop: its exit and timers before its data. */
static int run_watch(struct job *j, int chan, int out, int err)
{
        struct run *r = j->run;
        int e = loop_watch(j->loop, &r->pid, r->sp.pidfd, EPOLLIN, 1, on_pidfd, j);
        if (e == 0 && (e = loop_watch(j->loop, &r->chan, chan, EPOLLIN, 0, on_chan, j)) < 0)
                close(chan);
        else if (e == 0 && (e = loop_watch(j->loop, &r->out, out, EPOLLIN, 0, on_out, j)) < 0)
                close(out);
        else if (e == 0 && (e = loop_watch(j->loop, &r->err, err, EPOLLIN, 0, on_err, j)) < 0)
                close(err);
        return e;
}

/* Clones a jail with f's child ends (f's go-ahead write end is taken):
 * from the front-end's warm zygote if `warm`, else as ever. */
static int spawn_from(struct job *j, struct fds *f, int warm, struct jr_err *err)
{
        struct jail_cfg *cfg = &j->cfg;
        cfg->stdin_fd = f->devnull;
        cfg->stdout_fd = f->out[1];
        cfg->stderr_fd = f->err[1];
        cfg->channel_fd = f->chan[1];
        cfg->sync_fd = f->sync[0];
        cfg->close_fd = f->sync[1];
        clock_gettime(CLOCK_MONOTONIC, &j->run->cloned);
        j->run->refilled = j->run->cloned;
        int sync = TAKE_FD(f->sync[1]);
        if (warm) {
                struct spawn s;
                int late = 1;
                int r = warm_ask(j->o->warm, cfg, &j->cg, &s, &late, err);
                if (r < 0) {
                        close(sync);
                        return r;
                }
                j->res->warm_starts++;
                return spawn_release(cfg, &s, late, sync, &j->cg, &j->run->sp, err);
        }
        return j->o->spawn ? j->o->spawn(j->o->spawn_ctx, cfg, sync, &j->cg, &j->run->sp, err)
               : j->zyg.pid > 0 ? zygote_spawn(&j->zyg, cfg, sync, &j->cg, &j->run->sp, err)
                                : spawn_jail(cfg, sync, &j->cg, &j->run->sp, err);
}

/* From the warm zygote, or cold when it cannot: then with descriptors of
 * its own, as a child the zygote may have made before it failed holds
 * copies of the first ones (it ends at their go-ahead pipe's EOF). */
static int spawn_any(struct job *j, struct fds *f, struct jr_err *err)
{
        if (j->o->spawn || j->o->cold || !warm_can(j->o->warm, &j->cfg))
                return spawn_from(j, f, 0, err);
        struct jr_err werr = { 0 };
        if (spawn_from(j, f, 1, &werr) == 0)
                return 0;
        job_note(j, "%s; this jail starts cold", werr.msg);
        warm_lost(j->o->warm);
        fds_close(f);
        int r = fds_open(f, err);
        return r < 0 ? r : spawn_from(j, f, 0, err);
}

/* Clones the next jail and puts it on the loop. 0 or -errno (no jail). */
int start_jail(struct job *j, struct jr_err *err)
{
        struct fds f;
        struct jail_cfg *cfg = &j->cfg;
        int r = run_new(j);
        if (r < 0)
                return jr_fail(err, -r, "a new jail");
        cfg->script = j->cur->text;
        cfg->script_len = j->cur->len;
        r = fds_open(&f, err);
        if (r == 0)
                r = spawn_any(j, &f, err);
        if (r < 0) {
                fds_close(&f);
                return r;
        }
        int chan = TAKE_FD(f.chan[0]), out = TAKE_FD(f.out[0]), errfd = TAKE_FD(f.err[0]);
        fds_close(&f);  /* the child's ends: only the child holds them now */
        /* A worker's later jails come from a copy of us made now, before
         * any of its calls is served: it never holds what they return. */
        struct jr_err zerr = { 0 };
        if (j->o->entry == JAIL_ENTRY_TICKS && !j->o->spawn && !j->o->no_zygote && !j->o->warm && j->zyg.pid <= 0 && zygote_start(&j->zyg, cfg, j->cg.dirfd, &zerr) < 0)
                job_note(j, "%s: the worker cannot be restarted", zerr.msg);
        r = run_watch(j, chan, out, errfd);
        if (r < 0) {  /* it is killed and reaped as if it had exited */
                end_job(j, JOB_INTERNAL, "InternalError", "epoll_ctl: %s", strerror(-r));
                j->run->exited = 1;
                loop_defer(j->loop, &j->gone);
        }
        return 0;
}

/* The next jail of a worker, with the script it is to run. */
void next_jail(struct job *j)
{
        struct jr_err err = { 0 };
        script_unref(&j->cur);
        j->cur = script_ref(j->next);
        if (start_jail(j, &err) < 0) {
                setup_failed(j, &err);
                job_finish(j);
        }
}

/* The jail is gone: what it left is read, it is reaped and accounted, and
 * the job goes on with another or ends. */
static void jail_gone(struct defer *d)
{
        struct job *j = d->data;
        struct run *r = j->run;
        /* Everything in the jail is dead now; take what it left behind. */
        drain_chan(j, EPOLLHUP, INT_MAX);
        drain_pipe(j, &r->out, 1, INT_MAX);
        drain_pipe(j, &r->err, 2, INT_MAX);
        int ws = 0;
        struct rusage ru = { 0 };
        while (wait4(r->sp.pid, &ws, 0, &ru) < 0 && errno == EINTR)
                ;
        san_note_exit("a jail", r->sp.pid, ws);
        j->res->cpu_ms = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
                         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
        /* Accounting before the group goes; the job's processes are dead
         * or dying (its init is reaped), their charge is in. */
        cg_job_stats(&j->cg, &j->res->cg);
        /* The group's own count includes processes killed rather than
         * reaped, which getrusage misses; its exact total is the one the
         * ctx CPU budget counts (v1's user/system split is in ticks, off
         * by a quarter second in a few seconds of short wake-ups). */
        if (j->res->cg.cpu_us >= 0)
                j->res->cpu_ms = j->res->cg.cpu_us / 1000;
        else if (j->res->cg.cpu_user_us >= 0 && j->res->cg.cpu_system_us >= 0)
                j->res->cpu_ms = (j->res->cg.cpu_user_us + j->res->cg.cpu_system_us) / 1000;
        /* The group's OOM count is the job's: this jail's are the new ones. */
        r->jail_oom = j->res->cg.oom_kills > j->oom_seen;
        if (r->jail_oom)
                j->oom_seen = j->res->cg.oom_kills;
        int w = wants_restart(j, ws);
        if (w == 1)
                return between_jails(j);
        if (w == 0)
                finish_status(j, ws);
        if (j->o->entry == JAIL_ENTRY_SESSION)  /* the cell in flight dies with the session */
                fail_in_flight(j, j->res->etype[0] ? j->res->etype : "SessionDied",
                               j->res->emsg[0] ? j->res->emsg : "the session's jail ended");
        job_finish(j);
}

/* A set-up failure before the jail ran: the job's status. */
void setup_failed(struct job *j, const struct jr_err *err)
{
        struct job_result *res = j->res;
        res->status = JOB_SETUP;
        res->exit_code = EXIT_SETUP;
        snprintf(res->etype, sizeof res->etype, "SetupError");
        snprintf(res->emsg, sizeof res->emsg, "jail set-up failed: %s", err->msg);
}

static void end_done(struct defer *d)
{
        struct job *j = d->data;
        j->on_end(j, j->end_data);
}

/* Everything after the last jail: the group and the uid go, the figures
 * are taken, and the front-end hears of the end after this batch. */
void job_finish(struct job *j)
{
        struct job_result *res = j->res;
        if (j->finished)
                return;
        j->finished = 1;
        struct jr_err cg_err = { 0 };
        struct timespec tc;
        clock_gettime(CLOCK_MONOTONIC, &tc);
        loop_unwatch(&j->oom);
        if (j->cg.h && (j->cg.slot ? cg_pool_give(&j->cg, &cg_err) : cg_job_destroy(&j->cg, &cg_err)) < 0) {
                log_msg("cgroup clean-up: %s", cg_err.msg);
                uidlock_abandon(&j->lock);  /* its processes may live on: the uid is not free */
        }
        res->cg_teardown_us = us_since(&tc);
        uidlock_release(&j->lock);
        if (j->lock.stale_busy)  /* a killed supervisor's jail was still dying when we started */
                uidlock_sweep();
        res->ctx_cpu_us = (int64_t)(j->broker.cpu.used_ns / 1000);
        res->ctx_refused = (int64_t)j->broker.cpu.refused;
        run_close(j);
        broker_close(&j->broker);
        res->log_dropped = j->log_dropped;
        if (j->progress_shown)
                outq_puts(&j->sink->err, "\r\033[K");
        if (j->bt.started)
                backtest_outcome(j);
        if (j->log_dropped)
                job_note(j, "%llu log messages dropped in all (log limit of %llu bytes)",
                         (unsigned long long)j->log_dropped, (unsigned long long)j->o->log_max_bytes);
        zygote_stop(&j->zyg);
        timers_close(j);
        res->peak_rss_kib = self_peak_rss_kib();
        res->wall_ms = ms_since(&j->started);
        struct rusage self;  /* the supervisor's own CPU, its children's not counted */
        if (getrusage(RUSAGE_SELF, &self) == 0)
                res->supervisor_cpu_us = (int64_t)(self.ru_utime.tv_sec + self.ru_stime.tv_sec) * 1000000 +
                                         self.ru_utime.tv_usec + self.ru_stime.tv_usec;
        loop_defer(j->loop, &j->done);
}

void job_free(struct job *j)
{
        if (!j)
                return;
        if (!j->finished) {  /* a front-end giving up: nothing may outlive it */
                if (j->run && !j->run->exited)
                        kill_jail(j);
                if (j->run && j->run->sp.pid > 0)
                        while (waitpid(j->run->sp.pid, NULL, __WALL) < 0 && errno == EINTR)
                                ;
                job_finish(j);
        }
        loop_undefer(j->loop, &j->gone);
        loop_undefer(j->loop, &j->done);
        loop_hook_remove(j->loop, &j->flush);
        closep(&j->bars_fd);
        free(j->buf);
        bt_free(&j->bt);
        json_decref(j->pending_error);
        free(j->first);
        script_unref(&j->next);
        script_unref(&j->cur);
        script_unref(&j->good);
        free(j);
}

void job_signal(struct job *j, int sig)
{
        if (j->finished)
                return;
        if (j->in_backoff)
                return backoff_signal(j, sig);
        if (!j->run || j->run->ended || gentle_signal(j, sig))
                return;
        end_job(j, JOB_SIGNAL, "Interrupted", "%s received signal %d (%s)", j->o->who ? j->o->who : "jailrun", sig,
                strsignal(sig));
        j->res->exit_code = 128 + sig;
}

/* What the job needs before its first jail: its script, and for a
 * backtest the bars and the report. -errno for the caller's mistake. */
static int job_inputs(struct job *j, struct jr_err *err)
{
        const struct job_opts *o = j->o;
        char *script = NULL;
        size_t len = o->script_len;
        int r = 0;
        if (o->script_text && o->script_len > JOB_MAX_SCRIPT)
                return jr_fail(err, EFBIG, "%s: the script is larger than %d bytes", o->script_path, JOB_MAX_SCRIPT);
        if (o->script_text && !(script = malloc(len + 1)))
                return jr_fail(err, ENOMEM, "the script");
        if (o->script_text) {
                memcpy(script, o->script_text, len);
                script[len] = '\0';
        } else if ((r = read_script(o->script_path, &script, &len, err)) < 0) {
                return r;
        }
        j->next = script_new(script, len, 0);
        j->cur = script_ref(j->next);
        if (!j->next || !(j->buf = malloc(CHAN_MAX_MSG)))
                return jr_fail(err, ENOMEM, "channel buffer");
        if (o->entry == JAIL_ENTRY_BACKTEST &&
            ((r = bt_bars_memfd(o->bars_path, &j->bars_fd, &j->bt.max_total, err)) < 0 ||
             (o->report_path && (r = bt_report_to(&j->bt, o->report_path, o->report_format, o->report_max, err)) < 0)))
                return r;
        return 0;
}

static const char *base_name(const char *path)
{
        const char *slash = path ? strrchr(path, '/') : NULL;
        return slash ? slash + 1 : path;
}

/* The uid and the group, then the first jail. */
static int job_jail(struct job *j, struct jr_err *err)
{
        const struct job_opts *o = j->o;
        int r = o->spawn ? 0 : jail_program_find(j->program, sizeof j->program, err);
        unsigned seed = (unsigned)getpid();
        for (const char *p = o->job_id; p && *p; p++)  /* jobs of one process start apart */
                seed = seed * 31 + (unsigned char)*p;
        if (r == 0)
                r = uidlock_acquire(&j->lock, o->uid_lo, o->uid_hi, seed, err);
        struct timespec tc;
        clock_gettime(CLOCK_MONOTONIC, &tc);
        if (r == 0)
                r = make_cgroup(j, err);
        j->res->cg_setup_us = us_since(&tc);
        j->cfg = (struct jail_cfg){
                .profile = o->profile,
                .entry = o->entry,
                .policy_json = o->policy_json,
                .host_uid = j->lock.uid,
                .host_gid = (gid_t)j->lock.uid,
                .script_name = base_name(o->script_path),
                .argc = o->argc,
                .argv = o->argv,
                .scratch_bytes = o->scratch_bytes,
                .inet = o->inet,
                .max_tasks = o->pids,
                .data_fd = j->bars_fd,
                .program = j->program,
                .data_name = base_name(o->bars_path),
                .cgroup_path = j->cg.h ? j->cg.rel : NULL,
        };
        if (r == 0)
                r = timers_init(j);
        if (r == 0 && j->cg.oom_fd >= 0)
                r = loop_watch(j->loop, &j->oom, j->cg.oom_fd, EPOLLIN, 1, on_oom, j);
        if (r < 0 && !err->msg[0])
                jr_fail(err, -r, "the job's timers");
        return r < 0 ? r : start_jail(j, err);
}

int job_start(struct loop *l, const struct job_opts *o, struct sink *s, struct job_result *res,
              job_end_fn on_end, void *data, struct job **out)
{
        *res = (struct job_result){ .status = JOB_INTERNAL };
        res->cg = (struct cg_stats){ -1, -1, -1, -1, -1, -1, -1 };
        struct job *j = calloc(1, sizeof *j);
        if (!j)
                return log_errno(-ENOMEM, "a new job: out of memory");
        *j = (struct job){ .o = o, .res = res, .loop = l, .sink = s, .on_end = on_end, .end_data = data,
                           .bars_fd = -1, .lock = { .fd = -1 }, .cg = CG_JOB_INIT,
                           .deadline = TIMER_INIT, .cpu = TIMER_INIT, .grace = TIMER_INIT, .throttle = TIMER_INIT,
                           .bar = TIMER_INIT, .next_slot = TIMER_INIT, .tick = TIMER_INIT, .backoff = TIMER_INIT,
                           .oom = WATCH_INIT, .flush = { .run = flush_sink, .data = j },
                           .gone = { .run = jail_gone, .data = j }, .done = { .run = end_done, .data = j } };
        clock_gettime(CLOCK_MONOTONIC, &j->started);
        broker_init(&j->broker, &o->broker, job_cpu_s, j);
        bt_init(&j->bt, o->abort_percent, o->abort_min);
        struct jr_err err = { 0 };
        int r = job_inputs(j, &err);
        if (r < 0) {
                res->exit_code = EXIT_USAGE;
                snprintf(res->etype, sizeof res->etype, "UsageError");
                jr_utf8_copy(res->emsg, sizeof res->emsg, err.msg);  /* for a front-end that does not print it */
                j->finished = 1;  /* nothing to finish */
                broker_close(&j->broker);
                job_free(j);
                return log_errno(r, "%s", err.msg);
        }
        loop_hook_add(l, &j->flush);
        if (job_jail(j, &err) < 0) {
                setup_failed(j, &err);
                job_finish(j);
        }
        *out = j;
        return 0;
}

pid_t job_pid(const struct job *j, int *pidfd)
{
        const struct run *r = j->run;
        if (j->finished || !r || r->exited || r->sp.pid <= 0)
                return -1;
        if (pidfd)
                *pidfd = r->sp.pidfd;
        return r->sp.pid;
}

int job_reset_peak(struct job *j)
{
        struct jr_err err = { 0 };
        if (!j->cg.h || j->finished)
                return -ESRCH;
        /* The peak stays measured from the job's baseline (its group's
         * charge when it began), not from the usage now. */
        int64_t base = j->cg.base.memory;
        int r = j->cg.peak_fd < 0 ? cg_job_open_peak(&j->cg)  /* opened is reset */
                                  : cg_job_reset_peak(&j->cg, &err) < 0 ? -EIO : 1;
        j->cg.base.memory = base;
        return r;
}

void job_usage(const struct job *j, struct cg_stats *out)
{
        *out = (struct cg_stats){ -1, -1, -1, -1, -1, -1, -1 };
        if (j->cg.h && !j->finished)
                cg_job_stats(&j->cg, out);
}
