#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "supervisor/engine/backtest.h"
#include "supervisor/broker/broker.h"
#include "supervisor/engine/job.h"
#include "supervisor/engine/jailio.h"
#include "supervisor/engine/log.h"
#include "supervisor/engine/msg.h"
#include "supervisor/engine/outq.h"
#include "supervisor/engine/spawn.h"
#include "supervisor/engine/uidlock.h"
#include "supervisor/engine/zygote.h"


/* Raw output of a worker (native writes to fd 1/2; print() goes to the
 * log) is relayed up to this many bytes per job. */
#define WORKER_RAW_OUTPUT_MAX (1024 * 1024)
/* Bytes the supervisor reads from one jail per second (channel and pipes
 * together), and the burst it allows. Decoding and relaying them is work
 * done on the job's behalf outside the job's cgroup: this bounds it. */
#define READ_RATE (4.0 * 1024 * 1024)
#define READ_BURST (8.0 * 1024 * 1024)
/* A backtest's batches are its report, parsed, checked and encoded again
 * at ~65 ns a byte (bench/RESULTS.md): at this rate up to about one core
 * of the supervisor's, ~290 000 small signals a second (jailrun-backtest(7)). */
#define BT_READ_RATE (16.0 * 1024 * 1024)

/* What a log message or a line of raw output costs on top of its text,
 * against the log and output budgets: about its printed frame, so empty
 * lines cannot print without end. */
#define LOG_ENTRY_COST 48

/* Queued output beyond which the jail is no longer read. */
#define OUTQ_LIMIT (256 * 1024)

enum { EV_CHAN, EV_OUT, EV_ERR, EV_PIDFD, EV_SIGNAL, EV_TIMER, EV_GRACE, EV_OOM, EV_CPU, EV_THROTTLE, EV_HTTP,
       EV_HTTP_TIMER, EV_BAR, EV_SLOT, EV_TICK };

/* Consecutive failed jails of a worker wait 0, 1, 2, 4, ... seconds, at
 * most this long, before the next one starts; a jail that lived this long
 * before it failed starts the count again. */
#define BACKOFF_MAX_S 60
#define BACKOFF_RESET_S 30

/* A backtest's jail reports at least this often while bars run. */
#define BAR_REPORT_S 0.25
/* How often the progress line is redrawn. */
#define PROGRESS_S 0.5

/* A worker's script text, shared by the next jail, the current one and
 * the last that loaded. */
struct script {
        char *text;
        size_t len;
        unsigned refs;
        int reload;  /* read again on SIGHUP */
};

static struct script *script_new(char *text, size_t len, int reload)
{
        struct script *sc = calloc(1, sizeof *sc);
        if (!sc) {
                free(text);
                return NULL;
        }
        *sc = (struct script){ .text = text, .len = len, .refs = 1, .reload = reload };
        return sc;
}

static struct script *script_ref(struct script *sc)
{
        if (sc)
                sc->refs++;
        return sc;
}

static void script_unref(struct script **sc)
{
        if (*sc && !--(*sc)->refs) {
                free((*sc)->text);
                free(*sc);
        }
        *sc = NULL;
}

struct job {
        const struct job_opts *o;
        struct job_result *res;
        struct spawn sp;
        int chan, out, err, sigfd, timerfd, epfd, gracefd, cpufd, throttlefd;
        double tokens;            /* read budget, in bytes (READ_RATE, READ_BURST) */
        struct timespec refilled;
        int throttled;            /* out of budget: the jail is not read until the timer */
        struct cg_host cgh;
        struct cg_job cg;
        char *buf;
        int jailed;         /* the jail's C code reported every check passed */
        int ready;          /* worker: module loaded */
        int fatal;          /* the child reported a set-up failure */
        int inflight;       /* worker: a tick (id `sent`) awaits its result */
        int final_result;   /* a load error (worker) or the script's error (exec) came */
        int dropped_noted;  /* the worker-output cap was reported */
        uint64_t log_bytes;  /* message text logged so far */
        uint64_t log_dropped;  /* messages dropped past the log cap */
        unsigned cpu_noted;    /* said that its supervisor CPU budget is spent */
        int cpu_waiting;       /* the throttle is that budget's (not the read budget's) */
        struct timespec cloned;  /* when the jail was cloned */
        int have_error;
        int ended;          /* a terminal status is set; the child is being killed */
        int exited;
        unsigned sent;      /* id of the tick in flight */
        size_t raw_bytes;
        struct outq outq;   /* our stdout */
        struct outq errq;   /* our stderr */
        int paused;         /* the queues backed up: the jail is not read */
        struct line_buf { char text[LOG_MAX_CHARS]; size_t len; int cut; } raw[2];  /* worker fd 1, 2 */
        struct broker broker;     /* ctx calls */
        int http_watched;         /* the broker's http fds are in our epoll set */
        struct backtest bt;
        int barfd;                /* backtest: fires when the jail has been silent too long */
        struct timespec progress_at;
        int progress_shown;
        struct timespec run_sent;  /* backtest: when the run began */
        /* Worker lifecycle (across jails). */
        struct zygote zyg;        /* clones every jail after the first */
        struct timespec started;  /* the job's start, for --timeout across jails */
        struct script *next;      /* what the next jail runs (SIGHUP: the text read again) */
        struct script *cur;       /* what this jail runs; next != cur: a reload waits */
        struct script *good;      /* the last that loaded (reached ready) */
        char reload_error[256];   /* why a reloaded script did not load */
        int scheduled;            /* the first tick ran: sched0 and slot hold */
        struct timespec sched0;   /* slot k starts at sched0 + k * interval */
        uint64_t slot;            /* the slot of the last tick sent */
        int slotfd, tickfd;       /* the next slot; the tick's hard limit */
        int shutdown_sent;        /* we asked the jail to stop */
        int shutdown_killed;      /* ... and killed it when it did not, limits.tick_grace later */
        int stopping;             /* SIGTERM: stop after the tick in flight */
        int restarting;           /* we killed this jail: it is being replaced (or the job stops) */
        int restart_now;          /* ... for a reload: no back-off */
        int on_error_pending;     /* a restarted jail's first task: on_error */
        int on_error_inflight;
        json_t *pending_error;    /* {type, message, line, tick} for it */
        unsigned fails;           /* failed jails in a row, for the back-off */
        double tick_waited;       /* seconds the tick's hard limit waited for our reader */
        int tick_held;            /* our output held the jail back during this tick */
        struct first_error {      /* the first failure, kept while an end of ours overwrites it */
                char etype[sizeof ((struct job_result *)0)->etype];
                char emsg[sizeof ((struct job_result *)0)->emsg];
                char traceback[sizeof ((struct job_result *)0)->traceback];
                long line;
        } *first;
        int64_t oom_seen;         /* the group's OOM kills before this jail */
        int jail_oom;             /* this jail's processes were killed at the memory limit */
};

/* A SIGHUP's text waits for a jail to run it. */
static int reload_waiting(const struct job *j)
{
        return j->next != j->cur;
}

static long ms_since(const struct timespec *t0)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

static long us_since(const struct timespec *t0)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (t.tv_sec - t0->tv_sec) * 1000000 + (t.tv_nsec - t0->tv_nsec) / 1000;
}

static void kill_jail(struct job *j)
{
        /* The child is the pid namespace's init: its death takes every
         * process in the jail with it. */
        if (!j->exited && syscall(SYS_pidfd_send_signal, j->sp.pidfd, SIGKILL, NULL, 0) < 0 &&
            errno != ESRCH)
                log_errno(-errno, "kill jail: %m");
}

/* Sets a terminal status (first one wins) and kills the jail. */
static void end_job(struct job *j, enum job_status st, const char *etype, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void end_job(struct job *j, enum job_status st, const char *etype, const char *fmt, ...)
{
        if (!j->ended) {
                j->ended = 1;
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

static int send_json(struct job *j, json_t *m)
{
        _cleanup_free_ char *s = json_dumps(m, JSON_COMPACT);
        json_decref(m);
        if (!s)
                return -ENOMEM;
        if (send(j->chan, s, strlen(s), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
                return -errno;
        return 0;
}

static void sent_or_end(struct job *j, int r)
{
        if (r < 0 && r != -EPIPE && r != -ECONNRESET)
                end_job(j, JOB_PROTOCOL, "ProtocolError", "worker does not read its channel (%s)",
                        strerror(-r));
}

static int timer_arm(struct job *j, int *fd, double first, double every, uint64_t tag);

static void send_shutdown(struct job *j)
{
        j->shutdown_sent = 1;
        if (j->slotfd >= 0)
                timer_arm(j, &j->slotfd, 0, 0, EV_SLOT);  /* disarmed */
        /* A jail that does not exit (a thread of its own keeps it) is
         * killed a grace later: every tick is done, so the job is not
         * failed for it. */
        if (timer_arm(j, &j->tickfd, j->o->tick_grace_s, 0, EV_TICK) < 0)
                return end_job(j, JOB_INTERNAL, "InternalError", "arm the shutdown timer: %s", strerror(errno));
        sent_or_end(j, send_json(j, json_pack("{s:s}", "type", "shutdown")));
}

/* The hard limit (EV_TICK) of what the jail runs now: a tick, or on_error. */
static void send_run_timer(struct job *j)
{
        j->inflight = 1;
        j->tick_waited = 0;
        j->tick_held = 0;
        clock_gettime(CLOCK_MONOTONIC, &j->run_sent);
        if (j->o->entry == JAIL_ENTRY_TICKS &&
            timer_arm(j, &j->tickfd, j->o->tick_timeout_s + j->o->tick_grace_s, 0, EV_TICK) < 0)
                end_job(j, JOB_INTERNAL, "InternalError", "arm the tick timer: %s", strerror(errno));
}

/* A run message for the jail: tick `id`, or on_error for it, under the
 * tick's hard limit. */
static void send_run(struct job *j, json_t *msg)
{
        send_run_timer(j);
        if (j->ended) {
                json_decref(msg);
                return;
        }
        sent_or_end(j, send_json(j, msg));
}

static void send_tick(struct job *j)
{
        j->sent++;
        send_run(j, j->o->entry == JAIL_ENTRY_BACKTEST
                            ? json_pack("{s:s, s:I, s:s, s:O}", "type", "run", "id", (json_int_t)j->sent, "op",
                                        "backtest", "params", j->o->params)
                            : json_pack("{s:s, s:I, s:s}", "type", "run", "id", (json_int_t)j->sent, "op", "tick"));
}

static double secs_since(const struct timespec *t0)
{
        return (double)us_since(t0) / 1e6;
}

/* --interval: the next tick at the start of its slot, or now if that slot
 * has begun (a tick that overran its slot); slots that passed with no tick
 * are skipped and said so. */
static void schedule_tick(struct job *j)
{
        double iv = j->o->interval_s;
        if (!j->scheduled) {
                j->scheduled = 1;
                clock_gettime(CLOCK_MONOTONIC, &j->sched0);
                j->slot = 0;
                return send_tick(j);
        }
        uint64_t cur = (uint64_t)(secs_since(&j->sched0) / iv);
        if (cur > j->slot) {
                uint64_t skipped = cur - j->slot - 1;
                if (skipped) {
                        j->res->slots_skipped += skipped;
                        log_note(&j->errq, j->o->json, "%llu slot%s of %g s skipped; tick %u starts late",
                                    (unsigned long long)skipped, skipped == 1 ? "" : "s", iv, j->sent + 1);
                }
                j->slot = cur;
                return send_tick(j);
        }
        double wait = (double)(j->slot + 1) * iv - secs_since(&j->sched0);
        if (timer_arm(j, &j->slotfd, wait > 0 ? wait : 1e-6, 0, EV_SLOT) < 0)
                end_job(j, JOB_INTERNAL, "InternalError", "arm the slot timer: %s", strerror(errno));
}

/* After ready or a result: on_error owed by a restart, the next tick,
 * a restart for a reload, or the end. */
static void next_tick_or_stop(struct job *j)
{
        if (j->on_error_pending) {
                j->on_error_pending = 0;
                j->on_error_inflight = 1;
                return send_run(j, json_pack("{s:s, s:I, s:s, s:O}", "type", "run", "id", (json_int_t)j->sent, "op",
                                             "on_error", "error", j->pending_error));
        }
        if (reload_waiting(j) && !j->stopping) {  /* SIGHUP: this jail goes, the next runs the new script */
                j->restarting = j->restart_now = 1;
                return kill_jail(j);
        }
        if (j->stopping || (!j->o->forever && j->sent >= j->o->ticks))
                return send_shutdown(j);
        if (j->o->interval_s > 0)
                return schedule_tick(j);
        send_tick(j);
}

/* Queues untrusted multi-line text, each line escaped and indented, so
 * none of it can pass for a line of jailrun's own. */
static void print_block(struct outq *q, const char *text)
{
        for (const char *p = text; *p;) {
                size_t n = strcspn(p, "\n");
                if (n && p[0] != ' ')
                        outq_puts(q, "  ");
                log_escapedn(q, p, n);
                outq_put(q, "\n", 1);
                p += n + (p[n] == '\n');
        }
}

/* An error type that starts a line of its own: a dotted ASCII name that
 * cannot pass for our notes ("jailrun: ..."), or it is indented. */
static int plain_type(const char *t)
{
        if (strncasecmp(t, "jailrun", 7) == 0 || !*t)
                return 0;
        for (; *t; t++)
                if (!(isalnum((unsigned char)*t) || *t == '_' || *t == '.') || (unsigned char)*t >= 0x80)
                        return 0;
        return 1;
}

/* A reloaded script that did not load: the job goes on with the one
 * before, so its error is not the job's. */
static int rejected_reload(const struct job *j)
{
        return !j->ready && j->good && j->cur != j->good;
}

/* Charges `cost` bytes of what the jail has printed to the policy's log
 * total (log.max_bytes): 1 to print it; 0 past the total, where it is
 * counted and dropped, said once now and once at the end. */
static int log_charge(struct job *j, uint64_t cost)
{
        uint64_t max = j->o->log_max_bytes;
        if (max && j->log_bytes + cost > max) {
                if (!j->log_dropped++)
                        log_note(&j->errq, j->o->json, "log messages beyond %llu bytes dropped",
                                 (unsigned long long)max);
                return 0;
        }
        j->log_bytes += cost;
        return 1;
}

/* What of a tick's error is printed, as the jail's runtime cuts it (a
 * forged report is not): the message's head, the traceback's tail. */
#define PRINT_MAX_MESSAGE 4000
#define PRINT_MAX_TRACEBACK 16000

/* A failed tick's report in text mode (traceback, then Type: message),
 * charged to the log budget like the messages it stands among. */
static void print_error_report(struct job *j, const struct msg *m)
{
        const char *tb = m->result.traceback;
        size_t tlen = strlen(tb), mlen = strlen(m->result.emsg);
        if (tlen > PRINT_MAX_TRACEBACK)
                tb += tlen - PRINT_MAX_TRACEBACK, tlen = PRINT_MAX_TRACEBACK;
        if (mlen > PRINT_MAX_MESSAGE)
                mlen = PRINT_MAX_MESSAGE;
        if (!log_charge(j, tlen + mlen + strlen(m->result.etype) + LOG_ENTRY_COST))
                return;
        if (tlen) {
                outq_puts(&j->errq, "Traceback (most recent call last):\n");
                print_block(&j->errq, tb);
        }
        if (!plain_type(m->result.etype))  /* a type of the jail's naming must not pass for our note */
                outq_puts(&j->errq, "  ");
        log_escaped(&j->errq, m->result.etype);
        outq_puts(&j->errq, ": ");
        log_escapedn(&j->errq, m->result.emsg, mlen);
        outq_put(&j->errq, "\n", 1);
}

static void on_error_result(struct job *j, const struct msg *m)
{
        /* In profile exec the script's own stderr already carried it. */
        if (!j->o->json && j->o->entry != JAIL_ENTRY_SCRIPT)
                print_error_report(j, m);
        if (rejected_reload(j)) {  /* said when the next jail starts */
                char line[32] = "";
                if (m->result.line > 0)
                        snprintf(line, sizeof line, "line %lld", (long long)m->result.line);
                if (line[0] && !strstr(m->result.emsg, line))  /* the message may say it already */
                        snprintf(line, sizeof line, " (line %lld)", (long long)m->result.line);
                else
                        line[0] = '\0';
                size_t room = sizeof j->reload_error - strlen(line);
                snprintf(j->reload_error, room, "%s: %s", m->result.etype, m->result.emsg);
                jr_utf8_clean(j->reload_error);
                strcat(j->reload_error, line);
        } else if (!j->have_error) {  /* report the first failure */
                j->have_error = 1;
                jr_utf8_copy(j->res->etype, sizeof j->res->etype, m->result.etype);
                jr_utf8_copy(j->res->emsg, sizeof j->res->emsg, m->result.emsg);
                jr_utf8_copy(j->res->traceback, sizeof j->res->traceback, m->result.traceback);
                j->res->line = (long)m->result.line;
        }
}

static int timer_arm(struct job *j, int *fd, double first, double every, uint64_t tag);

/* The jail must report within this long, or a bar is stuck where its own
 * timer cannot reach it (native code, signals blocked). */
static void arm_bar_watch(struct job *j)
{
        double s = j->o->bar_timeout_s + j->o->bar_grace_s + BAR_REPORT_S;
        if (timer_arm(j, &j->barfd, s, 0, EV_BAR) < 0)
                end_job(j, JOB_INTERNAL, "InternalError", "arm the bar timer: %s", strerror(errno));
}

static void progress(struct job *j)
{
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!j->o->progress || (j->progress_shown && ms_since(&j->progress_at) < PROGRESS_S * 1000))
                return;
        double s = (double)us_since(&j->cloned) / 1e6;
        outq_printf(&j->errq, "\rjailrun: %llu/%llu bars, %.0f bars/s\033[K", (unsigned long long)j->bt.done,
                    (unsigned long long)j->bt.total, s > 0 ? (double)j->bt.done / s : 0.0);
        j->progress_at = now;
        j->progress_shown = 1;
}

static void on_bars(struct job *j, const struct msg *m)
{
        struct jr_err err = { 0 };
        if (j->o->entry != JAIL_ENTRY_BACKTEST || !j->inflight)
                return end_job(j, JOB_PROTOCOL, "ProtocolError", "unexpected bars report");
        int r = bt_add(&j->bt, m, &err);
        if (r == -EPROTO)
                return end_job(j, JOB_PROTOCOL, "ProtocolError", "%s", err.msg);
        if (r < 0)  /* --report-max, or the report could not be written */
                return end_job(j, JOB_ERROR, "ReportError", "%s", err.msg);
        if (bt_over(&j->bt))
                return end_job(j, JOB_ERROR, "BacktestAborted",
                               "%llu of %llu bars failed by bar %llu (the run stops once more than %g%% of "
                               "the bars and at least %u have failed)",
                               (unsigned long long)j->bt.failed, (unsigned long long)j->bt.total,
                               (unsigned long long)j->bt.done - 1, j->o->abort_percent, j->o->abort_min);
        arm_bar_watch(j);
        progress(j);
}

/* The bar a silent jail is in: the name it gave itself (BAR_COMM_PREFIX),
 * kept within the bars not yet reported; the first of them if unreadable. */
static uint64_t stuck_bar(struct job *j)
{
        char path[64], comm[32] = "";
        snprintf(path, sizeof path, "/proc/%d/comm", (int)j->sp.pid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? -1 : read(fd, comm, sizeof comm - 1);
        size_t plen = strlen(BAR_COMM_PREFIX);
        if (n <= (ssize_t)plen || strncmp(comm, BAR_COMM_PREFIX, plen) != 0)
                return j->bt.done;
        comm[n] = '\0';
        unsigned long long bar = strtoull(comm + plen, NULL, 10);
        return bar >= j->bt.done && bar < j->bt.total ? bar : j->bt.done;
}

/* The end of a backtest, as the jail tells it, against what it reported. */
static int backtest_result(struct job *j, const struct msg *m)
{
        if (m->result.ok && j->bt.done != j->bt.total) {
                end_job(j, JOB_PROTOCOL, "ProtocolError", "the run ended after %llu of %llu bars",
                        (unsigned long long)j->bt.done, (unsigned long long)j->bt.total);
                return -1;
        }
        if (!m->result.ok && strcmp(m->result.etype, "BacktestAborted") == 0 && !bt_over(&j->bt)) {
                end_job(j, JOB_PROTOCOL, "ProtocolError", "the jail stopped the run without cause");
                return -1;
        }
        return 0;
}

static void on_result(struct job *j, const struct msg *m)
{
        /* A tick's result is due only while that tick runs; an error result
         * with id 0 comes at most once, before ready (worker: loading
         * failed) or at the end (exec: the script raised). */
        int tick = j->ready && j->inflight && m->result.id == (json_int_t)j->sent;
        int last = !j->inflight && !j->final_result && !m->result.ok && m->result.id == 0 &&
                   (j->o->entry == JAIL_ENTRY_SCRIPT || !j->ready);
        if (!tick && !last)
                return end_job(j, JOB_PROTOCOL, "ProtocolError", "unexpected result (id %lld)",
                               (long long)m->result.id);
        if (tick && j->o->entry == JAIL_ENTRY_BACKTEST) {
                j->res->run_us = us_since(&j->run_sent);
                if (backtest_result(j, m) < 0)
                        return;
        }
        if (tick && j->tickfd >= 0)
                timer_arm(j, &j->tickfd, 0, 0, EV_TICK);  /* disarmed */
        if (tick && j->on_error_inflight) {  /* on_error ran in the new jail */
                j->on_error_inflight = 0;
                json_decref(j->pending_error);
                j->pending_error = NULL;
                j->inflight = 0;
                return next_tick_or_stop(j);
        }
        if (!m->result.ok)
                on_error_result(j, m);
        if (last) {
                j->final_result = 1;
                return;
        }
        j->res->ticks_done++;
        if (!m->result.ok)
                j->res->ticks_failed++;
        if (!m->result.ok && m->result.on_error && j->o->entry == JAIL_ENTRY_TICKS) {
                /* on_error runs now, in this jail, under the tick's limits;
                 * should it not return, it is not handed its own failure. */
                j->on_error_inflight = 1;
                return send_run_timer(j);
        }
        j->inflight = 0;
        next_tick_or_stop(j);
}

/* The jail's log messages, up to the policy's total (log_charge). */
static void on_log(struct job *j, const struct msg *m)
{
        size_t i;
        json_t *e;
        json_array_foreach(m->log.entries, i, e) {
                json_t *text = json_object_get(e, "msg");
                if (!log_charge(j, json_string_length(text) + LOG_ENTRY_COST))
                        continue;
                log_jail(&j->errq, j->o->json,
                         (enum log_level)msg_log_level(json_string_value(json_object_get(e, "level"))),
                         json_string_value(text), json_string_length(text));
        }
}

/* The job's CPU so far, in seconds (its cgroup's count; -1 when unknown),
 * for the broker's CPU budget. */
static double job_cpu_s(void *ctx)
{
        struct job *j = ctx;
        uint64_t us;
        return j->cg.h && cg_job_cpu_us(&j->cg, &us) == 0 ? (double)us / 1e6 : -1;
}

/* A ctx call: performed now, answered at once. A jail that calls without
 * reading its answers fills its own socket and is ended. */
static int watch(struct job *j, int fd, uint64_t tag);
static void send_reply(struct job *j, json_int_t id, json_t *result);

static void on_call(struct job *j, const struct msg *m)
{
        struct jr_err err = { 0 };
        json_t *result = NULL;
        int r = broker_call(&j->broker, m->call.op, m->call.id, m->call.args, &result, &err);
        if (r == -EPROTO)
                return end_job(j, JOB_PROTOCOL, "ProtocolError", "%s", err.msg);
        if (r < 0)  /* the supervisor's own failure (out of memory): never left unanswered */
                return end_job(j, JOB_INTERNAL, "InternalError", "%s", err.msg[0] ? err.msg : "ctx call failed");
        if (r == BROKER_PENDING) {  /* under way: answered from http_replies */
                if (!j->http_watched && j->broker.http) {
                        if (watch(j, http_epoll_fd(j->broker.http), EV_HTTP) < 0 ||
                            watch(j, http_timer_fd(j->broker.http), EV_HTTP_TIMER) < 0)
                                return end_job(j, JOB_INTERNAL, "InternalError", "epoll_ctl: %s", strerror(errno));
                        j->http_watched = 1;
                }
                return;
        }
        send_reply(j, m->call.id, result);
}

/* Finished http requests: their replies, body after each. */
static void http_replies(struct job *j)
{
        int64_t id;
        json_t *result;
        int r;
        while ((r = broker_http_done(&j->broker, &id, &result)) != BROKER_PENDING) {
                if (r == BROKER_DONE && !j->ended) {
                        send_reply(j, id, result);
                        continue;
                }
                json_decref(result);
                broker_payload_done(&j->broker);
                if (r < 0 && !j->ended)  /* no answer could be made: never a call left unanswered */
                        end_job(j, JOB_INTERNAL, "InternalError", "http reply: %s", strerror(-r));
        }
}

static void send_reply(struct job *j, json_int_t id, json_t *result)
{
        _cleanup_free_ char *reply = NULL;
        int r = broker_reply(&j->broker, id, result, &reply);  /* one too long is its error */
        if (r == 0 && send(j->chan, reply, strlen(reply), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
                r = -errno;
        /* The payload (a file's bytes) follows as raw datagrams. */
        const char *p = j->broker.payload;
        for (size_t left = r == 0 && p ? j->broker.payload_len : 0; r == 0 && left;) {
                size_t n = left < CHAN_MAX_MSG ? left : CHAN_MAX_MSG;
                if (send(j->chan, p, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
                        r = -errno;
                p += n;
                left -= n;
        }
        broker_payload_done(&j->broker);
        if (r < 0 && r != -EPIPE && r != -ECONNRESET)
                end_job(j, JOB_PROTOCOL, "ProtocolError", "worker does not read its channel (%s)", strerror(-r));
}

static void on_message(struct job *j, struct msg *m)
{
        /* Until the jail says it is jailed only a set-up report may come;
         * after it, user code runs and nothing can be one. */
        if (j->fatal)
                return end_job(j, JOB_PROTOCOL, "ProtocolError", "message after a set-up failure");
        if (!j->jailed && m->type != MSG_JAILED && m->type != MSG_FATAL)
                return end_job(j, JOB_PROTOCOL, "ProtocolError", "message before the jail was set up");
        switch (m->type) {
        case MSG_JAILED:
                if (j->jailed)
                        return end_job(j, JOB_PROTOCOL, "ProtocolError", "unexpected jailed");
                j->jailed = 1;
                j->res->setup_us = us_since(&j->cloned);
                return;
        case MSG_FATAL:
                if (j->jailed)
                        return end_job(j, JOB_PROTOCOL, "ProtocolError", "set-up report after set-up");
                j->fatal = 1;
                j->res->status = JOB_SETUP;
                snprintf(j->res->etype, sizeof j->res->etype, "SetupError");
                snprintf(j->res->emsg, sizeof j->res->emsg, "jail set-up failed at %s: %s",
                         m->fatal.step, m->fatal.message);
                return;
        case MSG_READY: {
                int bt = j->o->entry == JAIL_ENTRY_BACKTEST;
                struct jr_err err = { 0 };
                if (j->ready || j->final_result || j->o->entry == JAIL_ENTRY_SCRIPT ||
                    j->o->entry == JAIL_ENTRY_CHECK || bt != (m->ready.bars > 0))
                        return end_job(j, JOB_PROTOCOL, "ProtocolError", "unexpected ready");
                if (bt && bt_start(&j->bt, (uint64_t)m->ready.bars, &err) < 0)
                        return end_job(j, JOB_PROTOCOL, "ProtocolError", "%s", err.msg);
                j->ready = 1;
                if (j->good != j->cur) {  /* this text loads: the one to go back to */
                        if (j->cur->reload) {
                                j->res->reloads++;
                                log_note(&j->errq, j->o->json, "reloaded %s", j->o->script_path);
                        }
                        script_unref(&j->good);
                        j->good = script_ref(j->cur);
                }
                if (bt)
                        arm_bar_watch(j);
                return next_tick_or_stop(j);
        }
        case MSG_BARS:
                return on_bars(j, m);
        case MSG_LOG:
                return on_log(j, m);
        case MSG_RESULT:
                return on_result(j, m);
        case MSG_CALL:
                if (j->o->entry == JAIL_ENTRY_CHECK || j->o->entry == JAIL_ENTRY_SCRIPT)
                        return end_job(j, JOB_PROTOCOL, "ProtocolError", "unexpected call");
                return on_call(j, m);
        case MSG_CHECK:
                if (j->o->entry != JAIL_ENTRY_CHECK || j->res->violations || j->final_result)
                        return end_job(j, JOB_PROTOCOL, "ProtocolError", "unexpected check report");
                j->res->violations = json_incref(m->check.violations);
                return;
        case MSG__MAX:
                break;
        }
}

/* recv() returns 0 both for an empty datagram and at the end of the
 * channel; only a hang-up tells them apart. The events in hand may predate
 * the child's exit, so ask the socket now. */
static int peer_closed(int fd)
{
        struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };
        int n;
        while ((n = poll(&p, 1, 0)) < 0 && errno == EINTR)
                ;
        return n > 0 && (p.revents & (POLLHUP | POLLRDHUP));
}

/* A worker's channel closed: the jail gets this long to exit before the
 * job ends as a ProtocolError (closing it is part of exiting). */
#define CHAN_CLOSE_GRACE_MS 1000

/* Seconds as a timespec; a positive time never rounds to zero (which
 * would disarm a timer instead of arming it). */
static struct timespec to_ts(double s)
{
        struct timespec t = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
        if (s > 0 && t.tv_sec == 0 && t.tv_nsec == 0)
                t.tv_nsec = 1;
        return t;
}

/* Arms *fd to fire after `first` seconds, then every `every` (0: once);
 * the timerfd is made and watched under `tag` on first use. 0 or -errno. */
static int timer_arm(struct job *j, int *fd, double first, double every, uint64_t tag)
{
        if (*fd < 0) {
                struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag };
                if ((*fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK)) < 0 ||
                    epoll_ctl(j->epfd, EPOLL_CTL_ADD, *fd, &ev) < 0)
                        return -errno;
        }
        struct itimerspec its = { .it_value = to_ts(first), .it_interval = to_ts(every) };
        return timerfd_settime(*fd, 0, &its, NULL) < 0 ? -errno : 0;
}

static void arm_grace(struct job *j)
{
        if (j->gracefd < 0 && timer_arm(j, &j->gracefd, CHAN_CLOSE_GRACE_MS / 1000.0, 0, EV_GRACE) < 0)
                end_job(j, JOB_PROTOCOL, "ProtocolError", "worker closed its channel");
}

static void set_paused(struct job *j, int pause);

/* Takes n bytes from the read budget; when it runs out, stops reading the
 * jail until it has refilled (the jail then blocks on its writes). */
static void charge(struct job *j, size_t n)
{
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double dt = (double)(now.tv_sec - j->refilled.tv_sec) + (now.tv_nsec - j->refilled.tv_nsec) / 1e9;
        j->refilled = now;
        double rate = j->o->entry == JAIL_ENTRY_BACKTEST ? BT_READ_RATE : READ_RATE;
        j->tokens += dt * rate;
        if (j->tokens > READ_BURST)
                j->tokens = READ_BURST;
        j->tokens -= (double)n;
        if (j->tokens >= 0 || j->throttled || j->exited)
                return;
        /* On failure the jail stays unthrottled rather than stuck. */
        if (timer_arm(j, &j->throttlefd, -j->tokens / rate, 0, EV_THROTTLE) == 0) {
                j->throttled = 1;
                set_paused(j, 1);
        }
}

/* One datagram of n bytes in j->buf: decoded and acted on. */
static void handle_datagram(struct job *j, size_t n)
{
        struct msg m;
        struct jr_err e = { 0 };
        if (msg_decode(j->buf, n, &m, &e) < 0) {
                end_job(j, JOB_PROTOCOL, "ProtocolError", "%s", e.msg);
                return;
        }
        if (!j->ended && !j->restarting)  /* a jail we killed has had its say */
                on_message(j, &m);
        else if (m.type == MSG_LOG)  /* ... but its log still shows */
                on_log(j, &m);
        msg_free(&m);
}

/* A message that spent the job's supervisor CPU budget (broker.h) is the
 * last read until the budget allows: looked at again when it would have
 * refilled with the job idle, or CPU_RECHECK_S sooner (the job's own work
 * refills it too), a delay of its own making. A call read while it is
 * spent all the same (the job's transfers spent it meanwhile) gets the
 * budget's error at once (broker.c). */
#define CPU_RECHECK_S 0.25
static void cpu_throttle(struct job *j)
{
        if (j->throttled || j->exited)
                return;
        double left = broker_cpu_left(&j->broker);
        if (left >= 0)
                return;
        double wait = -left / BROKER_CPU_TRICKLE;
        if (timer_arm(j, &j->throttlefd, wait < CPU_RECHECK_S ? wait : CPU_RECHECK_S, 0, EV_THROTTLE) == 0) {
                j->throttled = 1;
                j->cpu_waiting = 1;
                set_paused(j, 1);
                if (!j->cpu_noted++)
                        log_note(&j->errq, j->o->json, "the jail's messages wait: the supervisor CPU it may use "
                                 "(as much as it used itself, plus %.0f ms a second and %g s in reserve) is spent",
                                 BROKER_CPU_TRICKLE * 1000, BROKER_CPU_RESERVE);
        }
}

/* Datagrams or pipe reads handled per wake-up: a flooding jail must not
 * keep the loop from its timers and signals. */
#define BATCH 64

/* Reads the datagrams waiting on the channel, at most `max`. */
static void drain_chan(struct job *j, uint32_t events, int max)
{
        for (int k = 0; j->chan >= 0 && k < max && (!j->throttled || j->exited); k++) {
                ssize_t n = recv(j->chan, j->buf, CHAN_MAX_MSG, MSG_DONTWAIT | MSG_TRUNC);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                if (n == 0 && !(events & (EPOLLHUP | EPOLLRDHUP)) && !peer_closed(j->chan)) {
                        end_job(j, JOB_PROTOCOL, "ProtocolError", "empty message");
                        n = -1;
                }
                if (n <= 0) {  /* end of channel, or an error: stop reading it */
                        epoll_ctl(j->epfd, EPOLL_CTL_DEL, j->chan, NULL);
                        close(j->chan);
                        j->chan = -1;
                        /* A worker without its channel can never report
                         * again: unless it is on its way out, end it. An
                         * exec script may close its fds. */
                        if (j->o->profile == JAIL_PROFILE_WORKER && !j->exited)
                                arm_grace(j);
                        return;
                }
                charge(j, (size_t)n);
                struct timespec t0;
                broker_cpu_mark(&t0);
                handle_datagram(j, (size_t)n);
                broker_cpu_charge(&j->broker, &t0);
                cpu_throttle(j);
        }
}

/* A worker's native output, one escaped line at a time (a line longer
 * than the log limit is cut there), up to WORKER_RAW_OUTPUT_MAX bytes. */
static void worker_output(struct job *j, int fd, const char *buf, size_t n)
{
        struct line_buf *lb = &j->raw[fd - 1];
        for (size_t i = 0; i < n; i++) {
                /* Each byte counts, and each line printed its frame too. */
                if (j->raw_bytes >= WORKER_RAW_OUTPUT_MAX) {
                        if (!j->dropped_noted)
                                log_note(&j->errq, j->o->json, "worker output beyond %d bytes dropped",
                                         WORKER_RAW_OUTPUT_MAX);
                        j->dropped_noted = 1;
                        return;
                }
                j->raw_bytes++;
                if (buf[i] == '\n') {
                        if (!lb->cut) {
                                log_output(&j->errq, j->o->json, fd, lb->text, lb->len);
                                j->raw_bytes += LOG_ENTRY_COST;
                        }
                        lb->len = 0;
                        lb->cut = 0;
                } else if (lb->len < sizeof lb->text) {
                        lb->text[lb->len++] = buf[i];
                } else if (!lb->cut) {
                        log_output(&j->errq, j->o->json, fd, lb->text, lb->len);
                        j->raw_bytes += LOG_ENTRY_COST;
                        lb->cut = 1;
                }
        }
}

/* Relays one of the jail's output pipes, at most `max` reads: exec output
 * passes through as it is; a worker's goes to stderr (see worker_output),
 * leaving stdout to the --json result. */
static void drain_pipe(struct job *j, int *fd, int which, int max)
{
        char buf[65536];
        for (int k = 0; *fd >= 0 && k < max && (!j->throttled || j->exited); k++) {
                ssize_t n = read(*fd, buf, sizeof buf);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                if (n <= 0) {
                        epoll_ctl(j->epfd, EPOLL_CTL_DEL, *fd, NULL);
                        close(*fd);
                        *fd = -1;
                        struct line_buf *lb = &j->raw[which - 1];
                        if (j->o->profile == JAIL_PROFILE_WORKER && lb->len && !lb->cut)
                                log_output(&j->errq, j->o->json, which, lb->text, lb->len);
                        return;
                }
                charge(j, (size_t)n);
                if (j->o->profile == JAIL_PROFILE_WORKER) {
                        worker_output(j, which, buf, (size_t)n);
                } else {
                        outq_put(which == 1 ? &j->outq : &j->errq, buf, (size_t)n);
                        if (which == 1)
                                j->res->stdout_mid_line = buf[n - 1] != '\n';
                }
        }
}

/* An end of ours the worker goes on from (or stops gently after): the
 * job's error is still its first failure. */
static void keep_first_error(struct job *j)
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

/* The tick in flight died with its jail: it failed. */
static void fail_in_flight(struct job *j, const char *type, const char *msg)
{
        if (!j->inflight || j->on_error_inflight)
                return;
        j->res->ticks_done++;
        j->res->ticks_failed++;
        if (!j->have_error) {
                j->have_error = 1;
                jr_utf8_copy(j->res->etype, sizeof j->res->etype, type);
                jr_utf8_copy(j->res->emsg, sizeof j->res->emsg, msg);
                j->res->traceback[0] = '\0';
                j->res->line = 0;
        }
}

/* Replaces the jail: killed now, a fresh one started by job_run, which
 * first calls on_error(ctx, {type, message, line, tick}) in it, unless it
 * was on_error that failed (it is never handed its own failure). */
static void restart_jail(struct job *j, const char *type, const char *msg)
{
        if (j->restarting || j->ended)
                return;
        json_decref(j->pending_error);
        j->pending_error = NULL;
        if (j->on_error_inflight)
                log_note(&j->errq, j->o->json, "on_error did not return; it is not called for this failure again");
        else
                j->pending_error = json_pack("{s:s, s:s, s:n, s:I}", "type", type, "message", msg, "line", "tick",
                                             (json_int_t)j->sent);
        j->restarting = 1;
        fail_in_flight(j, type, msg);
        kill_jail(j);
}

/* 1 when the channel holds messages not read yet. */
static int chan_unread(int fd)
{
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int n;
        while ((n = poll(&p, 1, 0)) < 0 && errno == EINTR)
                ;
        return n > 0 && (p.revents & POLLIN);
}

/* A tick past its hard limit whose result may be waiting unread: our own
 * output is backed up (a slow reader), or it held the jail back during
 * this tick and the channel still holds what we have not read yet (the
 * result comes after the logs it held back; a jail's own unread chatter
 * alone buys nothing). It waits, at most one more tick limit, so a flood
 * cannot keep a tick stuck in C alive; and never while the jail is over a
 * budget of its own, a delay of its own making. */
static int held_back(const struct job *j)
{
        return j->inflight && !j->restarting && !j->throttled && j->tick_waited < j->o->tick_timeout_s &&
               (outq_full(&j->outq) || outq_full(&j->errq) ||
                (j->tick_held && j->chan >= 0 && chan_unread(j->chan)));
}

/* The tick (or on_error) did not return by its time limit and grace. */
static void on_tick_limit(struct job *j)
{
        char msg[256];
        int last = j->on_error_inflight && !j->o->forever && j->sent >= j->o->ticks;  /* nothing follows */
        snprintf(msg, sizeof msg, "%s %u did not return within its time limit of %g s and %g s of grace; "
                 "its jail was killed%s", j->on_error_inflight ? "on_error for tick" : "tick", j->sent,
                 j->o->tick_timeout_s, j->o->tick_grace_s, last ? "" : " and a fresh one started");
        log_note(&j->errq, j->o->json, "%s", msg);
        restart_jail(j, "TimeoutError", msg);
}

/* SIGHUP: the script read again, for the next jail. 0, or -1 (said why). */
static int reload_script(struct job *j, const char *when)
{
        struct jr_err err = { 0 };
        char *text = NULL;
        size_t len = 0;
        if (read_script(j->o->script_path, &text, &len, &err) < 0) {
                log_note(&j->errq, j->o->json, "SIGHUP: %s; the script running goes on", err.msg);
                return -1;
        }
        struct script *sc = script_new(text, len, 1);
        if (!sc) {
                log_note(&j->errq, j->o->json, "SIGHUP: out of memory; the script running goes on");
                return -1;
        }
        script_unref(&j->next);  /* a text read earlier and not run yet goes */
        j->next = sc;
        log_note(&j->errq, j->o->json, "SIGHUP: reloading %s%s", j->o->script_path, when);
        return 0;
}

/* --interval: SIGTERM lets the tick in flight end, then stops; SIGHUP
 * starts a jail with the script read again once no tick runs. A jail
 * still loading has nothing to finish: it goes at once. 1 when served so. */
static int gentle_signal(struct job *j, int sig)
{
        if (j->o->interval_s <= 0 || (sig != SIGTERM && sig != SIGHUP) || (sig == SIGTERM && j->stopping))
                return 0;
        const char *when = j->inflight                   ? " after the tick in flight"
                           : !j->ready && (sig == SIGTERM || j->good) ? " (the jail loading goes)"
                           : !j->ready                  ? " once the script running has loaded"
                                                        : "";
        if (sig == SIGHUP) {
                if (j->stopping || j->shutdown_sent) {
                        log_note(&j->errq, j->o->json, "SIGHUP: the worker is stopping; not reloaded");
                        return 1;
                }
                if (reload_script(j, when) < 0)
                        return 1;
        } else {
                j->stopping = 1;
                log_note(&j->errq, j->o->json, "SIGTERM: stopping%s", when);
        }
        /* A jail loading has no tick to finish: it goes now, unless the
         * text it loads is the only one that may (the first jail's). */
        if (!j->ready && (sig == SIGTERM || j->good)) {
                j->restarting = 1;
                j->restart_now = sig == SIGHUP;
                kill_jail(j);
        } else if (!j->inflight && !j->shutdown_sent && !j->restarting) {
                next_tick_or_stop(j);
        }
        return 1;
}

static void on_signal(struct job *j)
{
        struct signalfd_siginfo si;
        while (read(j->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
                if (j->ended || gentle_signal(j, (int)si.ssi_signo))
                        continue;
                end_job(j, JOB_SIGNAL, "Interrupted", "jailrun received signal %u (%s)",
                        si.ssi_signo, strsignal((int)si.ssi_signo));
                j->res->exit_code = 128 + (int)si.ssi_signo;
        }
}

static int watch(struct job *j, int fd, uint64_t tag)
{
        struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.u64 = tag };
        if (fd >= 0 && epoll_ctl(j->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
                return -errno;
        return 0;
}

/* Stops or resumes reading the jail while our own output is backed up:
 * the jail then blocks on its writes, and the loop still serves timers
 * and signals. */
static void set_paused(struct job *j, int pause)
{
        if (pause == j->paused)
                return;
        j->paused = pause;
        int fds[] = { j->chan, j->out, j->err };
        uint64_t tags[] = { EV_CHAN, EV_OUT, EV_ERR };
        for (size_t i = 0; i < ELEMENTSOF(fds); i++) {
                struct epoll_event ev = { .events = pause ? 0 : EPOLLIN | EPOLLRDHUP, .data.u64 = tags[i] };
                if (fds[i] >= 0)
                        epoll_ctl(j->epfd, EPOLL_CTL_MOD, fds[i], &ev);
        }
}

static void end_memory(struct job *j)
{
        char size[64];
        format_size(j->o->memory, size, sizeof size);
        end_job(j, JOB_MEMORY, "MemoryError", "memory limit of %s exceeded", size);
}

/* The CPU-time limit, checked on the group's own clock every tick of a
 * periodic timer. */
static void check_cpu_time(struct job *j)
{
        uint64_t expirations, us;
        while (read(j->cpufd, &expirations, sizeof expirations) < 0 && errno == EINTR)
                ;
        if (cg_job_cpu_us(&j->cg, &us) == 0 && (double)us >= j->o->cpu_time_s * 1e6)
                end_job(j, JOB_CPU_TIME, "TimeoutError", "CPU-time limit of %g s exceeded", j->o->cpu_time_s);
}

/* Writes what our stdout and stderr take now; 1 while something waits. */
static int flush_queues(struct job *j)
{
        size_t left = outq_flush_some(&j->outq) + outq_flush_some(&j->errq);
        int full = outq_full(&j->outq) || outq_full(&j->errq);
        j->tick_held |= full && j->inflight;
        set_paused(j, full || j->throttled);
        return left > 0;
}

static void handle(struct job *j, const struct epoll_event *ev)
{
        switch (ev->data.u64) {
        case EV_CHAN: drain_chan(j, ev->events, BATCH); break;
        case EV_OUT: drain_pipe(j, &j->out, 1, BATCH / 4); break;
        case EV_ERR: drain_pipe(j, &j->err, 2, BATCH / 4); break;
        case EV_PIDFD: j->exited = 1; break;
        case EV_SIGNAL: on_signal(j); break;
        case EV_GRACE:
                end_job(j, JOB_PROTOCOL, "ProtocolError", "worker closed its channel");
                break;
        case EV_OOM: {  /* v1: the memory controller hit the limit */
                uint64_t x;  /* read, or it fires for every later jail of the job */
                while (read(j->cg.oom_fd, &x, sizeof x) < 0 && errno == EINTR)
                        ;
                end_memory(j);
                break;
        }
        case EV_CPU:
                check_cpu_time(j);
                break;
        case EV_THROTTLE: {
                uint64_t x;
                while (read(j->throttlefd, &x, sizeof x) < 0 && errno == EINTR)
                        ;
                j->throttled = 0;  /* flush_queues resumes reading ... */
                if (j->cpu_waiting) {
                        j->cpu_waiting = 0;
                        cpu_throttle(j);  /* ... unless the CPU budget it waits for is still spent */
                }
                break;
        }
        case EV_HTTP:
        case EV_HTTP_TIMER: {  /* the job's transfers: their CPU is charged to its budget */
                struct timespec t0;
                broker_cpu_mark(&t0);
                if (ev->data.u64 == EV_HTTP)
                        http_on_ready(j->broker.http);
                else
                        http_on_timer(j->broker.http);
                http_replies(j);
                broker_cpu_charge(&j->broker, &t0);  /* the next call is refused if it is spent */
                break;
        }
        case EV_TIMER:
                end_job(j, JOB_TIMEOUT, "TimeoutError", "wall-clock limit of %g s exceeded",
                        j->o->timeout_s);
                break;
        case EV_SLOT: {
                uint64_t x;
                while (read(j->slotfd, &x, sizeof x) < 0 && errno == EINTR)
                        ;
                if (!j->inflight && !j->shutdown_sent && !j->restarting && !j->ended) {
                        j->slot++;
                        send_tick(j);
                }
                break;
        }
        case EV_TICK:
                if (held_back(j)) {  /* the delay is our reader's: the result may wait unread */
                        j->tick_waited += BAR_REPORT_S;
                        if (timer_arm(j, &j->tickfd, BAR_REPORT_S, 0, EV_TICK) < 0)
                                end_job(j, JOB_INTERNAL, "InternalError", "arm the tick timer: %s", strerror(errno));
                } else if (j->inflight && !j->restarting)
                        on_tick_limit(j);
                else if (j->shutdown_sent && !j->ended && !j->shutdown_killed) {
                        j->shutdown_killed = 1;
                        log_note(&j->errq, j->o->json, "the jail did not exit within %g s of being asked to stop; "
                                 "it was killed", j->o->tick_grace_s);
                        kill_jail(j);
                }
                break;
        case EV_BAR:
                if (j->throttled || j->paused) {  /* the delay is ours: its reports wait unread */
                        arm_bar_watch(j);
                        break;
                }
                end_job(j, JOB_TIMEOUT, "TimeoutError",
                        "bar %llu did not return within its budget of %g s and %g s of grace; the jail was "
                        "killed (a bar stuck where its own timer cannot stop it, such as native code)",
                        (unsigned long long)stuck_bar(j), j->o->bar_timeout_s, j->o->bar_grace_s);
                break;
        }
}

static int loop(struct job *j)
{
        int waiting = 0;
        while (!j->exited) {
                struct epoll_event evs[8];
                /* With output waiting on a slow reader, look again soon. */
                int n = epoll_wait(j->epfd, evs, 8, waiting ? 10 : -1);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return log_errno(-errno, "epoll_wait: %m");
                /* Timers, signals and the child's exit before any data. */
                for (int pass = 0; pass < 2; pass++)
                        for (int i = 0; i < n; i++) {
                                uint64_t t = evs[i].data.u64;
                                int control = t != EV_CHAN && t != EV_OUT && t != EV_ERR && t != EV_HTTP &&
                                              t != EV_HTTP_TIMER;
                                if (control == (pass == 0))
                                        handle(j, &evs[i]);
                        }
                waiting = flush_queues(j);
        }
        /* Everything in the jail is dead now; take what it left behind. */
        drain_chan(j, EPOLLHUP, INT_MAX);
        drain_pipe(j, &j->out, 1, INT_MAX);
        drain_pipe(j, &j->err, 2, INT_MAX);
        return 0;
}

static void finish_exit(struct job *j, int wstatus);

/* A job that failed after forks were refused at its task limit ended
 * because of the limit: say so, keeping its exit status. */
static void note_pids(struct job *j)
{
        struct job_result *res = j->res;
        if (res->status == JOB_OK || res->status == JOB_SETUP || j->ended || res->cg.pids_max_hits <= 0)
                return;
        res->status = JOB_PIDS;
        snprintf(res->etype, sizeof res->etype, "ProcessLimitError");
        snprintf(res->emsg, sizeof res->emsg, "task limit of %u reached (%lld forks refused)", j->o->pids,
                 (long long)res->cg.pids_max_hits);
}

static void finish_status(struct job *j, int wstatus)
{
        finish_exit(j, wstatus);
        note_pids(j);
}

static void finish_exit(struct job *j, int wstatus)
{
        struct job_result *res = j->res;
        int exec = j->o->entry == JAIL_ENTRY_SCRIPT;
        if (!j->ended && j->jail_oom)
                end_memory(j);  /* v2: the whole group was killed at the limit */
        if (j->ended) {
                if (res->status == JOB_TIMEOUT || res->status == JOB_CPU_TIME)
                        res->exit_code = EXIT_TIMEOUT;
                else if (res->status == JOB_MEMORY)
                        res->exit_code = EXIT_OOM;
                else if (res->status == JOB_PROTOCOL || res->status == JOB_ERROR)
                        res->exit_code = EXIT_USER_ERROR;
                return;  /* JOB_SIGNAL set its own code */
        }
        if (WIFSIGNALED(wstatus) && !j->shutdown_killed) {
                int sig = WTERMSIG(wstatus);
                res->status = JOB_SIGNAL;
                res->exit_code = 128 + sig;
                snprintf(res->etype, sizeof res->etype, "Killed");
                snprintf(res->emsg, sizeof res->emsg, "jail killed by signal %d (%s)%s", sig,
                         strsignal(sig), sig == SIGSYS ? ": a forbidden system call" : "");
                return;
        }
        int code = WIFSIGNALED(wstatus) ? 0 : WEXITSTATUS(wstatus);  /* killed after the stop: as an exit */
        if (j->fatal) {
                res->exit_code = EXIT_SETUP;
                return;
        }
        if (j->o->entry == JAIL_ENTRY_CHECK && !j->have_error) {
                int clean = res->violations && json_array_size(res->violations) == 0;
                res->status = res->violations && code == 0 ? JOB_OK : JOB_ERROR;
                res->exit_code = res->status == JOB_OK && clean ? 0 : EXIT_USER_ERROR;
                if (res->status != JOB_OK) {
                        snprintf(res->etype, sizeof res->etype, "RuntimeError");
                        snprintf(res->emsg, sizeof res->emsg, "the check ended with status %d and no report", code);
                }
                return;
        }
        if (exec) {
                res->exit_code = code;
                res->status = code == 0 ? JOB_OK : JOB_ERROR;
                if (code && !j->have_error) {
                        snprintf(res->etype, sizeof res->etype, "SystemExit");
                        snprintf(res->emsg, sizeof res->emsg, "exit status %d", code);
                }
                return;
        }
        if (j->have_error) {
                res->status = JOB_ERROR;
                /* A bars file the jail could not use is the caller's error. */
                res->exit_code = !j->ready && j->o->entry == JAIL_ENTRY_BACKTEST &&
                                 strcmp(res->etype, "BarsError") == 0 ? EXIT_USAGE : EXIT_USER_ERROR;
        } else if (code == 0 && j->ready && j->shutdown_sent) {
                res->status = JOB_OK;
                res->exit_code = 0;
        } else {
                res->status = JOB_ERROR;
                res->exit_code = EXIT_USER_ERROR;
                snprintf(res->etype, sizeof res->etype, "RuntimeError");
                snprintf(res->emsg, sizeof res->emsg,
                         "worker exited with status %d after %u of %u ticks", code, res->ticks_done,
                         j->o->ticks);
        }
}

static int loop_fds(struct job *j, struct jr_err *err)
{
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGHUP);
        sigaddset(&set, SIGQUIT);
        if ((j->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK)) < 0)
                return jr_fail(err, errno, "signalfd");
        if ((j->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
                return jr_fail(err, errno, "epoll_create1");
        /* The CPU-time limit is read every 100 ms, or at once if shorter. */
        double every = j->o->cpu_time_s < 0.1 ? j->o->cpu_time_s : 0.1;
        int r = j->o->cpu_time_s > 0 ? timer_arm(j, &j->cpufd, every, every, EV_CPU) : 0;
        if (r == 0 && j->o->timeout_s > 0) {  /* what is left of it, after earlier jails */
                double left = j->o->timeout_s - secs_since(&j->started);
                r = timer_arm(j, &j->timerfd, left > 0 ? left : 1e-6, 0, EV_TIMER);
        }
        if (r < 0)
                return jr_fail(err, -r, "arm the job's timers");
        if (watch(j, j->chan, EV_CHAN) < 0 || watch(j, j->out, EV_OUT) < 0 ||
            watch(j, j->err, EV_ERR) < 0 || watch(j, j->sp.pidfd, EV_PIDFD) < 0 ||
            watch(j, j->sigfd, EV_SIGNAL) < 0 || watch(j, j->cg.oom_fd, EV_OOM) < 0)
                return jr_fail(err, errno, "epoll_ctl");
        return 0;
}

/* The report and figures of a backtest that started, however it ended. */
static void backtest_outcome(struct job *j)
{
        struct job_result *res = j->res;
        const char *outcome = res->status == JOB_OK ? "completed"
                              : res->status == JOB_TIMEOUT ? "timeout"
                              : res->status == JOB_MEMORY ? "memory"
                              : res->status == JOB_CPU_TIME ? "cpu-time"
                              : res->status == JOB_SIGNAL ? "interrupted"
                              : strcmp(res->etype, "BacktestAborted") == 0 ? "aborted" : "error";
        char reason[sizeof res->etype + sizeof res->emsg + 2];
        snprintf(reason, sizeof reason, "%s: %s", res->etype, res->emsg);
        res->report = bt_report(&j->bt, outcome, res->status == JOB_OK ? NULL : reason);
        struct jr_err err = { 0 };
        if (!res->report || bt_report_finish(&j->bt, res->report, &err) < 0) {
                log_msg("%s", res->report ? err.msg : "--report: out of memory");
                res->report_failed = 1;
        }
        res->bars = j->bt.total;
        res->bars_run = j->bt.done;
        res->bars_failed = j->bt.failed;
        res->signals = j->bt.signals;
        res->orders = j->bt.orders;
        bt_times(&j->bt, &res->bar_us_p50, &res->bar_us_p99, &res->bar_us_max);
}

/* What one jail's life used: its fds and the event loop's. */
static void jail_fds_close(struct job *j)
{
        int *all[] = { &j->chan, &j->out, &j->err, &j->sigfd, &j->timerfd, &j->epfd, &j->gracefd,
                       &j->cpufd, &j->throttlefd, &j->barfd, &j->slotfd, &j->tickfd, &j->sp.pidfd };
        for (size_t i = 0; i < ELEMENTSOF(all); i++) {
                closep(all[i]);
                *all[i] = -1;
        }
}

static void job_close(struct job *j)
{
        /* The job is over: the reader now gets all of it, however slowly,
         * unless a signal comes meanwhile (outq_flush_all); after a stop at
         * once, what it takes now. */
        if (j->res->status == JOB_SIGNAL && strcmp(j->res->etype, "Interrupted") == 0) {
                outq_flush_some(&j->outq);
                outq_flush_some(&j->errq);
        } else {
                outq_flush_all(&j->outq);
                outq_flush_all(&j->errq);
        }
        outq_free(&j->outq);
        outq_free(&j->errq);
        jail_fds_close(j);
        free(j->buf);
        bt_free(&j->bt);
        zygote_stop(&j->zyg);
        json_decref(j->pending_error);
        free(j->first);
        script_unref(&j->next);
        script_unref(&j->cur);
        script_unref(&j->good);
}

/* Between two jails of a worker: the next starts from a clean slate; the
 * job's counts, schedule, queues and broker (less its transfers, which
 * were the old jail's) go on. */
static void jail_reset(struct job *j)
{
        jail_fds_close(j);
        if (j->broker.http) {
                http_free(j->broker.http);
                j->broker.http = NULL;
        }
        j->http_watched = 0;
        j->jailed = j->ready = j->fatal = j->inflight = j->final_result = j->exited = 0;
        j->ended = j->paused = j->throttled = j->restarting = j->shutdown_sent = j->shutdown_killed = 0;
        j->on_error_inflight = j->jail_oom = 0;
        j->reload_error[0] = '\0';
        j->tokens = READ_BURST;
        memset(j->raw, 0, sizeof j->raw);
        j->sp = (struct spawn){ .pidfd = -1 };
}

static int wants_restart(struct job *j, int ws);

/* Clones the jail and serves it until it is gone; 1 when a worker's jail
 * is to be replaced. */
static int run_jail(struct job *j, struct jail_cfg *cfg, struct jr_err *err)
{
        struct fds f;
        int r = fds_open(&f, err);
        if (r == 0) {
                cfg->stdin_fd = f.devnull;
                cfg->stdout_fd = f.out[1];
                cfg->stderr_fd = f.err[1];
                cfg->channel_fd = f.chan[1];
                cfg->sync_fd = f.sync[0];
                cfg->close_fd = f.sync[1];
                clock_gettime(CLOCK_MONOTONIC, &j->cloned);
                j->refilled = j->cloned;
                r = j->zyg.pid > 0 ? zygote_spawn(&j->zyg, cfg, TAKE_FD(f.sync[1]), &j->cg, &j->sp, err)
                                   : spawn_jail(cfg, TAKE_FD(f.sync[1]), &j->cg, &j->sp, err);
        }
        if (r < 0) {
                fds_close(&f);
                return r;
        }
        j->chan = TAKE_FD(f.chan[0]);
        j->out = TAKE_FD(f.out[0]);
        j->err = TAKE_FD(f.err[0]);
        fds_close(&f);  /* the child's ends: only the child holds them now */
        /* A worker's later jails come from a copy of us made now, before
         * any of its calls is served: it never holds what they return. */
        struct jr_err zerr = { 0 };
        if (j->o->entry == JAIL_ENTRY_TICKS && j->zyg.pid <= 0 &&
            zygote_start(&j->zyg, cfg, j->cg.dirfd, &zerr) < 0)
                log_note(&j->errq, j->o->json, "%s: the worker cannot be restarted", zerr.msg);
        r = loop_fds(j, err);
        if (r < 0)
                end_job(j, JOB_INTERNAL, "InternalError", "%s", err->msg);
        else if (loop(j) < 0)
                end_job(j, JOB_INTERNAL, "InternalError", "event loop failed");
        int ws = 0;
        struct rusage ru = { 0 };
        while (wait4(j->sp.pid, &ws, 0, &ru) < 0 && errno == EINTR)
                ;
        j->res->cpu_ms = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
                         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
        /* Accounting before the group goes; the job's processes are dead
         * or dying (its init is reaped), their charge is in. */
        cg_job_stats(&j->cg, &j->res->cg);
        /* The group's own count includes processes killed rather than
         * reaped, which getrusage misses. */
        if (j->res->cg.cpu_user_us >= 0 && j->res->cg.cpu_system_us >= 0)
                j->res->cpu_ms = (j->res->cg.cpu_user_us + j->res->cg.cpu_system_us) / 1000;
        /* The group's OOM count is the job's: this jail's are the new ones. */
        j->jail_oom = j->res->cg.oom_kills > j->oom_seen;
        if (j->jail_oom)
                j->oom_seen = j->res->cg.oom_kills;
        int w = wants_restart(j, ws);
        if (w == 0)
                finish_status(j, ws);
        return w == 1;
}

/* Ends the job between two jails (nothing runs): a signal, or the job's
 * time limit. */
static void end_between(struct job *j, int sig)
{
        struct job_result *res = j->res;
        if (sig == SIGTERM && j->o->interval_s > 0) {  /* the gentle stop, with nothing in flight */
                res->status = j->have_error ? JOB_ERROR : JOB_OK;
                res->exit_code = j->have_error ? EXIT_USER_ERROR : 0;
        } else if (sig) {
                res->status = JOB_SIGNAL;
                res->exit_code = 128 + sig;
                snprintf(res->etype, sizeof res->etype, "Interrupted");
                snprintf(res->emsg, sizeof res->emsg, "jailrun received signal %d (%s)", sig, strsignal(sig));
        } else {
                res->status = JOB_TIMEOUT;
                res->exit_code = EXIT_TIMEOUT;
                snprintf(res->etype, sizeof res->etype, "TimeoutError");
                snprintf(res->emsg, sizeof res->emsg, "wall-clock limit of %g s exceeded", j->o->timeout_s);
        }
}

/* The back-off before the next jail, serving signals: 0 to go on, -1 when
 * the job ended (its status set). SIGHUP reloads and goes on at once. */
static int wait_backoff(struct job *j, double delay)
{
        double limit = j->o->timeout_s > 0 ? j->o->timeout_s - secs_since(&j->started) : -1;
        int deadline = limit >= 0 && limit < delay;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        double end = (double)until.tv_sec + until.tv_nsec / 1e9 + (deadline ? (limit > 0 ? limit : 0) : delay);
        sigset_t set;
        sigemptyset(&set);
        int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
        for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
                sigaddset(&set, sigs[i]);
        for (;;) {
                struct timespec now;
                clock_gettime(CLOCK_MONOTONIC, &now);
                double left = end - ((double)now.tv_sec + now.tv_nsec / 1e9);
                if (left <= 0)
                        break;
                struct timespec ts = to_ts(left);
                int sig = sigtimedwait(&set, NULL, &ts);
                if (sig < 0 && errno == EINTR)
                        continue;
                if (sig < 0)
                        break;
                if (sig != SIGHUP) {
                        end_between(j, sig);
                        return -1;
                }
                int r = reload_script(j, " (the back-off ends)");
                outq_flush_some(&j->errq);
                if (r == 0)
                        return 0;
        }
        if (deadline) {
                end_between(j, 0);
                return -1;
        }
        return 0;
}

/* Between two jails of a worker: what the next one runs, and when. */
static int between_jails(struct job *j)
{
        double delay = 0;
        if (j->restart_now) {  /* a reload, or back to the script before it */
                j->restart_now = 0;
        } else {
                /* A loop is jails failing young, whatever their ticks did
                 * before: one that returns a tick, then dies, is one. */
                j->fails = secs_since(&j->cloned) >= BACKOFF_RESET_S ? 1 : j->fails + 1;
                unsigned shift = j->fails < 2 ? 0 : j->fails - 2 > 6 ? 6 : j->fails - 2;
                delay = j->fails < 2 ? 0 : (double)(1u << shift) > BACKOFF_MAX_S ? BACKOFF_MAX_S : (double)(1u << shift);
        }
        /* on_error first in the new jail: owed by a failure, also when a
         * reload replaces the jail that failed. */
        j->on_error_pending = j->pending_error != NULL;
        j->res->restarts++;
        if (delay > 0)
                log_note(&j->errq, j->o->json, "a new jail for the worker in %g s (restart %u, %u failures in a row)",
                            delay, j->res->restarts, j->fails);
        else
                log_note(&j->errq, j->o->json, "a new jail for the worker (restart %u)", j->res->restarts);
        outq_flush_some(&j->errq);  /* the rest goes with the next jail's loop */
        return delay > 0 ? wait_backoff(j, delay) : 0;
}

/* A worker's jail that died on its own (--interval): why, as a tick error. */
static void crash_reason(struct job *j, int ws, char *type, size_t tsize, char *msg, size_t msize)
{
        if (!j->ended && j->jail_oom)
                end_memory(j);  /* v2: the kernel killed the group at the limit */
        if (j->ended) {  /* ended by us: memory, a protocol violation, the task limit */
                jr_utf8_copy(type, tsize, j->res->etype);
                jr_utf8_copy(msg, msize, j->res->emsg);
        } else if (WIFSIGNALED(ws)) {
                snprintf(type, tsize, "Killed");
                snprintf(msg, msize, "the worker's jail was killed by signal %d (%s)%s", WTERMSIG(ws),
                         strsignal(WTERMSIG(ws)), WTERMSIG(ws) == SIGSYS ? ": a forbidden system call" : "");
        } else {
                snprintf(type, tsize, "RuntimeError");
                snprintf(msg, msize, "the worker's jail exited with status %d", WEXITSTATUS(ws));
        }
}

/* The job ends with this jail, as a gentle stop: its status is its
 * ticks' and its error their first failure. 2, as wants_restart says it. */
static int stop_after_jail(struct job *j)
{
        keep_first_error(j);
        end_between(j, SIGTERM);
        return 2;
}

/* A jail's end the worker survives with --interval: one it died of. */
static int restartable_end(const struct job *j)
{
        return j->res->status == JOB_MEMORY || j->res->status == JOB_PROTOCOL || j->res->status == JOB_PIDS;
}

/* A jail whose script never loaded: the next runs a newer SIGHUP's text,
 * or the last that loaded; 1, or 0 when none did (the job ends so). */
static int after_failed_load(struct job *j, int ws)
{
        if (reload_waiting(j)) {
                keep_first_error(j);
                return j->restart_now = 1;
        }
        if (!j->good)
                return 0;
        if (!j->reload_error[0]) {  /* it died without a word: why, as for a crash */
                char type[sizeof j->res->etype];
                crash_reason(j, ws, type, sizeof type, j->reload_error, sizeof j->reload_error);
        }
        log_note(&j->errq, j->o->json, "the reloaded script did not load (%s); the previous one runs on",
                 j->reload_error);
        j->res->reloads_failed++;
        keep_first_error(j);
        script_unref(&j->next);
        j->next = script_ref(j->good);
        return j->restart_now = 1;
}

/* After a worker's jail is gone: 1 if another is to replace it (a tick
 * past its hard limit, a reload, or with --interval a jail that died), 2
 * if the job stopped with no tick to finish (its status set), 0 for the
 * status the jail's end gives. */
static int wants_restart(struct job *j, int ws)
{
        if (j->o->entry != JAIL_ENTRY_TICKS || j->shutdown_sent)
                return 0;
        if (j->ended && !restartable_end(j))
                return 0;  /* our own end: a signal, the job's time or CPU limit */
        if (j->stopping && j->o->interval_s > 0) {  /* SIGTERM: nothing runs any more */
                if (!j->restarting && j->ready) {  /* the jail died on its own, maybe in a tick */
                        char type[sizeof j->res->etype], msg[sizeof j->res->emsg];
                        crash_reason(j, ws, type, sizeof type, msg, sizeof msg);
                        log_note(&j->errq, j->o->json, "%s", msg);
                        fail_in_flight(j, type, msg);
                }
                return stop_after_jail(j);
        }
        if (j->zyg.pid <= 0)
                return 0;
        if (!j->ready && j->cur != j->good)
                return after_failed_load(j, ws);
        if (j->restarting && !reload_waiting(j) && !j->pending_error && !j->o->forever &&
            j->sent >= j->o->ticks)  /* on_error went past its limit after the last tick */
                return stop_after_jail(j);
        if (j->restarting) {
                keep_first_error(j);
                return 1;
        }
        if (j->o->interval_s <= 0)
                return 0;
        char type[sizeof j->res->etype], msg[sizeof j->res->emsg];
        crash_reason(j, ws, type, sizeof type, msg, sizeof msg);
        if (!j->o->forever && j->sent >= j->o->ticks && (!j->inflight || j->on_error_inflight)) {
                /* every tick ran and none is owed its on_error: no new jail */
                log_note(&j->errq, j->o->json, "%s", msg);
                if (j->on_error_inflight)
                        log_note(&j->errq, j->o->json, "on_error did not return");
                return stop_after_jail(j);
        }
        j->ended = 0;
        j->res->status = JOB_INTERNAL;
        keep_first_error(j);
        log_note(&j->errq, j->o->json, "%s", msg);
        restart_jail(j, type, msg);
        return 1;
}

/* The job's cgroup with the limits asked for, after removing what a killed
 * predecessor left. */
static int make_cgroup(struct job *j, struct jr_err *err)
{
        int r = cg_detect(&j->cgh, err);
        if (r < 0)
                return r;
        if (j->cgh.backend == CG_NONE)
                return jr_fail(err, ENOTSUP, "cannot limit the job: %s", j->cgh.why);
        j->res->backend = cg_backend_name(j->cgh.backend);
        cg_sweep_stale(&j->cgh, j->o->cgroup_parent);
        char name[64];
        snprintf(name, sizeof name, "job-%d", (int)getpid());
        struct cg_limits l = {
                .memory = j->o->memory,
                .pids = j->o->pids,
                .cpu_period_us = 100000,
                .cpu_quota_us = (uint64_t)(j->o->cpus * 100000 + 0.5),
        };
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

int job_run(const struct job_opts *o, struct job_result *res)
{
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        *res = (struct job_result){ .status = JOB_INTERNAL };
        struct jr_err err = { 0 };
        char *script = NULL;
        size_t len = 0;
        int r = read_script(o->script_path, &script, &len, &err);
        if (r < 0) {
                res->exit_code = EXIT_USAGE;
                return log_errno(r, "%s", err.msg);
        }
        struct job j = { .o = o, .res = res, .chan = -1, .out = -1, .err = -1, .sigfd = -1,
                         .timerfd = -1, .epfd = -1, .gracefd = -1, .cpufd = -1, .throttlefd = -1, .barfd = -1,
                         .slotfd = -1, .tickfd = -1, .tokens = READ_BURST, .sp = { .pidfd = -1 },
                         .cg = { .dirfd = -1, .oom_fd = -1 }, .started = t0 };
        j.next = script_new(script, len, 0);
        j.cur = script_ref(j.next);
        res->cg = (struct cg_stats){ -1, -1, -1, -1, -1, -1 };
        struct uidlock lock = { .fd = -1 };
        broker_init(&j.broker, &o->broker, job_cpu_s, &j);
        outq_init(&j.outq, STDOUT_FILENO, OUTQ_LIMIT);
        outq_init(&j.errq, STDERR_FILENO, OUTQ_LIMIT);
        bt_init(&j.bt, o->abort_percent, o->abort_min);
        _cleanup_close_ int bars_fd = -1;
        if (!j.next || !(j.buf = malloc(CHAN_MAX_MSG)))
                r = jr_fail(&err, ENOMEM, "channel buffer");
        if (r == 0 && o->entry == JAIL_ENTRY_BACKTEST && ((r = bt_bars_memfd(o->bars_path, &bars_fd, &j.bt.max_total, &err)) < 0 ||
            (o->report_path && (r = bt_report_to(&j.bt, o->report_path, o->report_format, o->report_max, &err)) < 0))) {
                res->exit_code = EXIT_USAGE;
                job_close(&j);
                broker_close(&j.broker);
                return log_errno(r, "%s", err.msg);
        }
        char program[PATH_MAX];
        if (r == 0)
                r = jail_program_find(program, sizeof program, &err);
        if (r == 0)
                r = uidlock_acquire(&lock, o->uid_lo, o->uid_hi, (unsigned)getpid(), &err);
        struct timespec tc;
        clock_gettime(CLOCK_MONOTONIC, &tc);
        if (r == 0)
                r = make_cgroup(&j, &err);
        res->cg_setup_us = us_since(&tc);
        const char *name = strrchr(o->script_path, '/');
        struct jail_cfg cfg = {
                .profile = o->profile,
                .entry = o->entry,
                .policy_json = o->policy_json,
                .host_uid = lock.uid,
                .host_gid = (gid_t)lock.uid,
                .script = j.next ? j.next->text : NULL,
                .script_len = len,
                .script_name = name ? name + 1 : o->script_path,
                .argc = o->argc,
                .argv = o->argv,
                .scratch_bytes = o->scratch_bytes,
                .max_tasks = o->pids,
                .data_fd = bars_fd,
                .program = program,
                .data_name = o->bars_path ? (strrchr(o->bars_path, '/') ? strrchr(o->bars_path, '/') + 1
                                                                        : o->bars_path) : NULL,
        };
        if (r == 0)
                r = run_jail(&j, &cfg, &err);
        while (r == 1) {  /* a worker's jail is replaced */
                r = between_jails(&j);
                if (r < 0) {  /* the job ended while waiting */
                        r = 0;
                        break;
                }
                jail_reset(&j);
                script_unref(&j.cur);
                j.cur = script_ref(j.next);
                cfg.script = j.cur->text;
                cfg.script_len = j.cur->len;
                r = run_jail(&j, &cfg, &err);
        }
        struct jr_err cg_err = { 0 };
        clock_gettime(CLOCK_MONOTONIC, &tc);
        if (j.cg.h && cg_job_destroy(&j.cg, &cg_err) < 0)
                log_msg("cgroup clean-up: %s", cg_err.msg);
        res->cg_teardown_us = us_since(&tc);
        uidlock_release(&lock);
        res->ctx_cpu_us = (int64_t)(j.broker.cpu.used_ns / 1000);
        res->ctx_refused = (int64_t)j.broker.cpu.refused;
        broker_close(&j.broker);
        res->log_dropped = j.log_dropped;
        if (j.progress_shown)
                outq_puts(&j.errq, "\r\033[K");
        if (j.bt.started)
                backtest_outcome(&j);
        if (j.log_dropped)
                log_note(&j.errq, o->json, "%llu log messages dropped in all (log limit of %llu bytes)",
                            (unsigned long long)j.log_dropped, (unsigned long long)o->log_max_bytes);
        job_close(&j);
        res->peak_rss_kib = self_peak_rss_kib();
        res->wall_ms = ms_since(&t0);
        struct rusage self;  /* jailrun's own CPU, its children's not counted */
        if (getrusage(RUSAGE_SELF, &self) == 0)
                res->supervisor_cpu_us = (int64_t)(self.ru_utime.tv_sec + self.ru_stime.tv_sec) * 1000000 +
                                         self.ru_utime.tv_usec + self.ru_stime.tv_usec;
        if (r < 0) {
                res->status = JOB_SETUP;
                res->exit_code = EXIT_SETUP;
                snprintf(res->etype, sizeof res->etype, "SetupError");
                snprintf(res->emsg, sizeof res->emsg, "jail set-up failed: %s", err.msg);
        }
        return 0;
}
