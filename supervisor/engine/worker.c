#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor/engine/jailio.h"
#include "supervisor/engine/jobint.h"

/* A worker's life across jails: its ticks on a schedule and their limits,
 * on_error, restarts with their back-off, reloads and the signals that
 * stop or reload it. */

/* Consecutive failed jails of a worker wait 0, 1, 2, 4, ... seconds, at
 * most this long, before the next one starts; a jail that lived this long
 * before it failed starts the count again. */
#define BACKOFF_MAX_S 60
#define BACKOFF_RESET_S 30

struct script *script_new(char *text, size_t len, int reload)
{
        struct script *sc = calloc(1, sizeof *sc);
        if (!sc) {
                free(text);
                return NULL;
        }
        *sc = (struct script){ .text = text, .len = len, .refs = 1, .reload = reload };
        return sc;
}

struct script *script_ref(struct script *sc)
{
        if (sc)
                sc->refs++;
        return sc;
}

void script_unref(struct script **sc)
{
        if (*sc && !--(*sc)->refs) {
                free((*sc)->text);
                free(*sc);
        }
        *sc = NULL;
}

/* A SIGHUP's text waits for a jail to run it. */
int reload_waiting(const struct job *j)
{
        return j->next != j->cur;
}

static void send_shutdown(struct job *j)
{
        j->run->shutdown_sent = 1;
        (void)timer_disarm(&j->next_slot);
        /* A jail that does not exit (a thread of its own keeps it) is
         * killed a grace later: every tick is done, so the job is not
         * failed for it. */
        arm_or_end(j, &j->tick, j->o->tick_grace_s, 0, "the shutdown timer");
        sent_or_end(j, send_json(j, json_pack("{s:s}", "type", "shutdown")));
}

/* The hard limit (the tick timer) of what the jail runs now: a tick, or on_error. */
void send_run_timer(struct job *j)
{
        j->run->inflight = 1;
        j->run->tick_waited = 0;
        j->run->tick_held = 0;
        clock_gettime(CLOCK_MONOTONIC, &j->run_sent);
        if (j->o->entry == JAIL_ENTRY_TICKS)
                arm_or_end(j, &j->tick, j->o->tick_timeout_s + j->o->tick_grace_s, 0, "the tick timer");
        else if (j->o->entry == JAIL_ENTRY_SESSION)
                arm_or_end(j, &j->tick, j->cell_timeout + j->o->tick_grace_s, 0, "the cell timer");
}

/* A run message for the jail: tick `id`, or on_error for it, under the
 * tick's hard limit. */
static void send_run(struct job *j, json_t *msg)
{
        send_run_timer(j);
        if (j->run->ended) {
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
                        job_note(j, "%llu slot%s of %g s skipped; tick %u starts late",
                                    (unsigned long long)skipped, skipped == 1 ? "" : "s", iv, j->sent + 1);
                }
                j->slot = cur;
                return send_tick(j);
        }
        double wait = (double)(j->slot + 1) * iv - secs_since(&j->sched0);
        arm_or_end(j, &j->next_slot, wait > 0 ? wait : 1e-6, 0, "the slot timer");
}

/* After ready or a result: on_error owed by a restart, the next tick,
 * a restart for a reload, or the end. */
void next_tick_or_stop(struct job *j)
{
        if (j->on_error_pending) {
                j->on_error_pending = 0;
                j->run->on_error_inflight = 1;
                return send_run(j, json_pack("{s:s, s:I, s:s, s:O}", "type", "run", "id", (json_int_t)j->sent, "op",
                                             "on_error", "error", j->pending_error));
        }
        if (reload_waiting(j) && !j->stopping) {  /* SIGHUP: this jail goes, the next runs the new script */
                j->run->restarting = j->restart_now = 1;
                return kill_jail(j);
        }
        if (j->stopping || (!j->o->forever && j->sent >= j->o->ticks))
                return send_shutdown(j);
        if (j->o->manual)  /* idle until job_tick */
                return;
        if (j->o->interval_s > 0)
                return schedule_tick(j);
        send_tick(j);
}

/* A session's cell answered: what it printed first, then its end. */
static void cell_result(struct job *j, const struct msg *m)
{
        drain_pipes_now(j);
        j->run->inflight = 0;
        j->res->ticks_done++;
        j->res->ticks_failed += !m->result.ok;
        struct job_exec_result r = {
                .id = j->sent, .ok = m->result.ok, .etype = m->result.ok ? "" : m->result.etype,
                .emsg = m->result.ok ? "" : m->result.emsg, .traceback = m->result.ok ? "" : m->result.traceback,
                .value = m->result.value, .line = m->result.ok ? 0 : (long)m->result.line,
                .seconds = secs_since(&j->run_sent),
        };
        if (j->o->on_exec)
                j->o->on_exec(j->o->tick_data, &r);
        if (!j->run->ended)
                next_tick_or_stop(j);
}

void on_result(struct job *j, const struct msg *m)
{
        /* A tick's result is due only while that tick runs; an error result
         * with id 0 comes at most once, before ready (worker: loading
         * failed) or at the end (exec: the script raised). */
        int tick = j->run->phase == PH_READY && j->run->inflight && m->result.id == (json_int_t)j->sent;
        int last = !j->run->inflight && !j->run->final_result && !m->result.ok && m->result.id == 0 &&
                   (j->o->entry == JAIL_ENTRY_SCRIPT || j->run->phase != PH_READY);
        if (!tick && !last)
                return end_job(j, JOB_PROTOCOL, "ProtocolError", "unexpected result (id %lld)",
                               (long long)m->result.id);
        if (tick && j->o->entry == JAIL_ENTRY_BACKTEST) {
                j->res->run_us = us_since(&j->run_sent);
                if (backtest_result(j, m) < 0)
                        return;
        }
        if (tick && j->tick.w.fd >= 0)
                (void)timer_disarm(&j->tick);
        if (tick && j->o->entry == JAIL_ENTRY_SESSION)
                return cell_result(j, m);
        if (tick && j->run->on_error_inflight) {  /* on_error ran in the new jail */
                j->run->on_error_inflight = 0;
                json_decref(j->pending_error);
                j->pending_error = NULL;
                j->run->inflight = 0;
                return next_tick_or_stop(j);
        }
        if (!m->result.ok)
                on_error_result(j, m);
        if (last) {
                j->run->final_result = 1;
                return;
        }
        j->res->ticks_done++;
        if (!m->result.ok)
                j->res->ticks_failed++;
        if (j->o->on_tick)
                j->o->on_tick(j->o->tick_data, j->sent, m->result.ok, m->result.etype, m->result.emsg,
                              secs_since(&j->run_sent));
        if (!m->result.ok && m->result.on_error && j->o->entry == JAIL_ENTRY_TICKS) {
                /* on_error runs now, in this jail, under the tick's limits;
                 * should it not return, it is not handed its own failure. */
                j->run->on_error_inflight = 1;
                return send_run_timer(j);
        }
        j->run->inflight = 0;
        next_tick_or_stop(j);
}

/* The tick in flight died with its jail: it failed. */
void fail_in_flight(struct job *j, const char *type, const char *msg)
{
        if (!j->run->inflight || j->run->on_error_inflight)
                return;
        if (j->o->entry == JAIL_ENTRY_SESSION) {
                j->run->inflight = 0;
                j->res->ticks_done++;
                j->res->ticks_failed++;
                struct job_exec_result r = { .id = j->sent, .etype = type, .emsg = msg, .traceback = "",
                                             .seconds = secs_since(&j->run_sent), .jail_gone = 1 };
                if (j->o->on_exec)
                        j->o->on_exec(j->o->tick_data, &r);
                return;
        }
        j->res->ticks_done++;
        j->res->ticks_failed++;
        if (j->o->on_tick)
                j->o->on_tick(j->o->tick_data, j->sent, 0, type, msg, secs_since(&j->run_sent));
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
        if (j->run->restarting || j->run->ended)
                return;
        json_decref(j->pending_error);
        j->pending_error = NULL;
        if (j->run->on_error_inflight)
                job_note(j, "on_error did not return; it is not called for this failure again");
        else
                j->pending_error = json_pack("{s:s, s:s, s:n, s:I}", "type", type, "message", msg, "line", "tick",
                                             (json_int_t)j->sent);
        j->run->restarting = 1;
        fail_in_flight(j, type, msg);
        kill_jail(j);
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
        return j->run->inflight && !j->run->restarting && !j->run->throttled && j->run->tick_waited < j->o->tick_timeout_s &&
               (outq_full(&j->sink->out) || outq_full(&j->sink->err) ||
                (j->run->tick_held && j->run->chan.fd >= 0 && chan_unread(j->run->chan.fd)));
}

/* The tick (or on_error) did not return by its time limit and grace. */
static void on_tick_limit(struct job *j)
{
        if (j->o->entry == JAIL_ENTRY_SESSION) {  /* the session ends: its state cannot be trusted */
                char msg[256];
                snprintf(msg, sizeof msg, "execution %u did not stop within its time limit of %g s and %g s of "
                         "grace; the session was killed", j->sent, j->cell_timeout, j->o->tick_grace_s);
                job_note(j, "%s", msg);
                fail_in_flight(j, "TimeoutError", msg);
                return end_job(j, JOB_TIMEOUT, "TimeoutError", "%s", msg);
        }
        char msg[256];
        int last = j->run->on_error_inflight && !j->o->forever && j->sent >= j->o->ticks;  /* nothing follows */
        snprintf(msg, sizeof msg, "%s %u did not return within its time limit of %g s and %g s of grace; "
                 "its jail was killed%s", j->run->on_error_inflight ? "on_error for tick" : "tick", j->sent,
                 j->o->tick_timeout_s, j->o->tick_grace_s, last ? "" : " and a fresh one started");
        job_note(j, "%s", msg);
        restart_jail(j, "TimeoutError", msg);
}

/* SIGHUP: the script read again, for the next jail. 0, or -1 (said why). */
static int reload_script(struct job *j, const char *when)
{
        struct jr_err err = { 0 };
        char *text = NULL;
        size_t len = 0;
        if (read_script(j->o->script_path, &text, &len, &err) < 0) {
                job_note(j, "SIGHUP: %s; the script running goes on", err.msg);
                return -1;
        }
        struct script *sc = script_new(text, len, 1);
        if (!sc) {
                job_note(j, "SIGHUP: out of memory; the script running goes on");
                return -1;
        }
        script_unref(&j->next);  /* a text read earlier and not run yet goes */
        j->next = sc;
        job_note(j, "SIGHUP: reloading %s%s", j->o->script_path, when);
        return 0;
}

/* --interval: SIGTERM lets the tick in flight end, then stops; SIGHUP
 * starts a jail with the script read again once no tick runs. A jail
 * still loading has nothing to finish: it goes at once. 1 when served so. */
int gentle_signal(struct job *j, int sig)
{
        if (j->o->interval_s <= 0 || (sig != SIGTERM && sig != SIGHUP) || (sig == SIGTERM && j->stopping))
                return 0;
        const char *when = j->run->inflight                   ? " after the tick in flight"
                           : j->run->phase != PH_READY && (sig == SIGTERM || j->good) ? " (the jail loading goes)"
                           : j->run->phase != PH_READY                  ? " once the script running has loaded"
                                                        : "";
        if (sig == SIGHUP) {
                if (j->stopping || j->run->shutdown_sent) {
                        job_note(j, "SIGHUP: the worker is stopping; not reloaded");
                        return 1;
                }
                if (reload_script(j, when) < 0)
                        return 1;
        } else {
                j->stopping = 1;
                job_note(j, "SIGTERM: stopping%s", when);
        }
        /* A jail loading has no tick to finish: it goes now, unless the
         * text it loads is the only one that may (the first jail's). */
        if (j->run->phase != PH_READY && (sig == SIGTERM || j->good)) {
                j->run->restarting = 1;
                j->restart_now = sig == SIGHUP;
                kill_jail(j);
        } else if (!j->run->inflight && !j->run->shutdown_sent && !j->run->restarting) {
                next_tick_or_stop(j);
        }
        return 1;
}

/* Ends the job between two jails (nothing runs): a signal, or the job's
 * time limit. */
void end_between(struct job *j, int sig)
{
        struct job_result *res = j->res;
        if (sig == SIGTERM && j->o->interval_s > 0) {  /* the gentle stop, with nothing in flight */
                res->status = j->have_error ? JOB_ERROR : JOB_OK;
                res->exit_code = j->have_error ? EXIT_USER_ERROR : 0;
        } else if (sig) {
                res->status = JOB_SIGNAL;
                res->exit_code = 128 + sig;
                snprintf(res->etype, sizeof res->etype, "Interrupted");
                snprintf(res->emsg, sizeof res->emsg, "%s received signal %d (%s)",
                         j->o->who ? j->o->who : "jailrun", sig, strsignal(sig));
        } else {
                res->status = JOB_TIMEOUT;
                res->exit_code = EXIT_TIMEOUT;
                snprintf(res->etype, sizeof res->etype, "TimeoutError");
                snprintf(res->emsg, sizeof res->emsg, "wall-clock limit of %g s exceeded", j->o->timeout_s);
        }
}

/* Between two jails of a worker: what the next one runs, and when; the
 * back-off is a timer, and the job's own time limit may end it. */
void between_jails(struct job *j)
{
        double delay = 0;
        if (j->restart_now) {  /* a reload, or back to the script before it */
                j->restart_now = 0;
        } else {
                /* A loop is jails failing young, whatever their ticks did
                 * before: one that returns a tick, then dies, is one. */
                j->fails = secs_since(&j->run->cloned) >= BACKOFF_RESET_S ? 1 : j->fails + 1;
                unsigned shift = j->fails < 2 ? 0 : j->fails - 2 > 6 ? 6 : j->fails - 2;
                delay = j->fails < 2 ? 0 : (double)(1u << shift) > BACKOFF_MAX_S ? BACKOFF_MAX_S : (double)(1u << shift);
        }
        /* on_error first in the new jail: owed by a failure, also when a
         * reload replaces the jail that failed. */
        j->on_error_pending = j->pending_error != NULL;
        j->res->restarts++;
        if (delay > 0)
                job_note(j, "a new jail for the worker in %g s (restart %u, %u failures in a row)",
                            delay, j->res->restarts, j->fails);
        else
                job_note(j, "a new jail for the worker (restart %u)", j->res->restarts);
        if (delay > 0 && j->o->timeout_s > 0 && secs_since(&j->started) >= j->o->timeout_s)
                return end_waiting(j, 0);  /* the job's time is up: no wait */
        if (delay <= 0)
                return next_jail(j);
        j->in_backoff = 1;
        if (timer_arm(&j->backoff, delay, 0) < 0) {
                j->in_backoff = 0;
                next_jail(j);  /* rather than wait for ever */
        }
}

/* The back-off is over. */
void on_backoff(struct timer *t)
{
        struct job *j = t->data;
        if (!j->in_backoff)
                return;
        j->in_backoff = 0;
        next_jail(j);
}

/* Ends the job during a back-off: a signal, or (0) its time limit. */
void end_waiting(struct job *j, int sig)
{
        j->in_backoff = 0;
        (void)timer_disarm(&j->backoff);
        end_between(j, sig);
        job_finish(j);
}

/* A signal during the back-off: SIGHUP reloads and goes on at once, the
 * others end the job. */
void backoff_signal(struct job *j, int sig)
{
        if (sig != SIGHUP)
                return end_waiting(j, sig);
        if (reload_script(j, " (the back-off ends)") < 0)
                return;
        j->in_backoff = 0;
        (void)timer_disarm(&j->backoff);
        next_jail(j);
}

/* A worker's jail that died on its own (--interval): why, as a tick error. */
void crash_reason(struct job *j, int ws, char *type, size_t tsize, char *msg, size_t msize)
{
        if (!j->run->ended && j->run->jail_oom)
                end_memory(j);  /* v2: the kernel killed the group at the limit */
        if (j->run->ended) {  /* ended by us: memory, a protocol violation, the task limit */
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
        if (!j->run->reload_error[0]) {  /* it died without a word: why, as for a crash */
                char type[sizeof j->res->etype];
                crash_reason(j, ws, type, sizeof type, j->run->reload_error, sizeof j->run->reload_error);
        }
        job_note(j, "the reloaded script did not load (%s); the previous one runs on",
                 j->run->reload_error);
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
int wants_restart(struct job *j, int ws)
{
        if (j->o->entry != JAIL_ENTRY_TICKS || j->run->shutdown_sent)
                return 0;
        if (j->run->ended && !restartable_end(j))
                return 0;  /* our own end: a signal, the job's time or CPU limit */
        if (j->stopping && j->o->interval_s > 0) {  /* SIGTERM: nothing runs any more */
                if (!j->run->restarting && j->run->phase == PH_READY) {  /* the jail died on its own, maybe in a tick */
                        char type[sizeof j->res->etype], msg[sizeof j->res->emsg];
                        crash_reason(j, ws, type, sizeof type, msg, sizeof msg);
                        job_note(j, "%s", msg);
                        fail_in_flight(j, type, msg);
                }
                return stop_after_jail(j);
        }
        if (j->zyg.pid <= 0 && !j->o->spawn && !j->o->no_zygote && !j->o->warm)  /* no clean process to clone the next from */
                return 0;
        if (j->run->phase != PH_READY && j->cur != j->good)
                return after_failed_load(j, ws);
        if (j->run->restarting && !reload_waiting(j) && !j->pending_error && !j->o->forever &&
            j->sent >= j->o->ticks)  /* on_error went past its limit after the last tick */
                return stop_after_jail(j);
        if (j->run->restarting) {
                keep_first_error(j);
                return 1;
        }
        if (j->o->interval_s <= 0)
                return 0;
        char type[sizeof j->res->etype], msg[sizeof j->res->emsg];
        crash_reason(j, ws, type, sizeof type, msg, sizeof msg);
        if (!j->o->forever && j->sent >= j->o->ticks && (!j->run->inflight || j->run->on_error_inflight)) {
                /* every tick ran and none is owed its on_error: no new jail */
                job_note(j, "%s", msg);
                if (j->run->on_error_inflight)
                        job_note(j, "on_error did not return");
                return stop_after_jail(j);
        }
        j->run->ended = 0;
        j->res->status = JOB_INTERNAL;
        keep_first_error(j);
        job_note(j, "%s", msg);
        restart_jail(j, type, msg);
        return 1;
}

/* The next slot of --interval began. */
void on_slot(struct timer *t)
{
        struct job *j = t->data;
        struct run *r = j->run;
        if (r && !r->inflight && !r->shutdown_sent && !r->restarting && !r->ended && !r->exited) {
                j->slot++;
                send_tick(j);
        }
}

/* The hard limit of the tick or on_error in flight, or the grace of a jail
 * asked to stop. */
void on_tick_timer(struct timer *t)
{
        struct job *j = t->data;
        struct run *r = j->run;
        if (!r || r->exited)
                return;
        if (held_back(j)) {  /* the delay is our reader's: the result may wait unread */
                r->tick_waited += BAR_REPORT_S;
                arm_or_end(j, &j->tick, BAR_REPORT_S, 0, "the tick timer");
        } else if (r->inflight && !r->restarting) {
                on_tick_limit(j);
        } else if (r->shutdown_sent && !r->ended && !r->shutdown_killed) {
                r->shutdown_killed = 1;
                job_note(j, "the jail did not exit within %g s of being asked to stop; it was killed",
                         j->o->tick_grace_s);
                kill_jail(j);
        }
}

int job_tick(struct job *j)
{
        struct run *r = j->run;
        if (j->finished || !r || r->exited)
                return -ESRCH;
        if (r->phase != PH_READY || r->inflight || r->shutdown_sent || r->restarting || r->ended || j->stopping ||
            j->on_error_pending || j->in_backoff)
                return -EBUSY;
        send_tick(j);
        return r->ended ? -EIO : (int)j->sent;
}

int job_execute(struct job *j, const char *code, size_t len, double timeout_s)
{
        struct run *r = j->run;
        if (j->o->entry != JAIL_ENTRY_SESSION)
                return -EINVAL;
        if (j->finished || !r || r->exited || r->ended)
                return -ESRCH;
        if (r->phase != PH_READY || r->inflight || r->shutdown_sent || r->restarting || j->stopping)
                return -EBUSY;
        if (len > JOB_MAX_CELL || !(timeout_s > 0))
                return len > JOB_MAX_CELL ? -EMSGSIZE : -EINVAL;
        json_t *m = json_pack("{s:s, s:I, s:s, s:s%, s:f}", "type", "run", "id", (json_int_t)j->sent + 1, "op",
                              "execute", "code", code, len, "timeout", timeout_s);
        if (!m)
                return -ENOMEM;  /* code that is not UTF-8 is the front-end's to refuse */
        int e = send_json(j, m);
        if (e == -EMSGSIZE || e == -ENOMEM)  /* escapes grew it past one message: nothing was sent */
                return e;
        j->sent++;
        j->cell_timeout = timeout_s;
        send_run_timer(j);
        sent_or_end(j, e);
        return (int)j->sent;
}

enum job_phase job_phase(const struct job *j)
{
        const struct run *r = j->run;
        if (j->finished)
                return JOB_ENDED;
        if (j->in_backoff)
                return JOB_WAITING;
        if (!r || r->phase != PH_READY)
                return JOB_STARTING;
        return r->inflight ? JOB_BUSY : JOB_IDLE;
}
