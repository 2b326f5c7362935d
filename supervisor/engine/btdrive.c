#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "supervisor/engine/jobint.h"

/* Driving a backtest: its reports against the bars, the watch on a stuck
 * bar, the progress line and the report at the end (backtest.c keeps the
 * figures and writes the report). */

/* How often the progress line is redrawn. */
#define PROGRESS_S 0.5

/* The jail must report within this long, or a bar is stuck where its own
 * timer cannot reach it (native code, signals blocked). */
void arm_bar_watch(struct job *j)
{
        double s = j->o->bar_timeout_s + j->o->bar_grace_s + BAR_REPORT_S;
        arm_or_end(j, &j->bar, s, 0, "the bar timer");
}

static void progress(struct job *j)
{
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!j->o->progress || (j->progress_shown && ms_since(&j->progress_at) < PROGRESS_S * 1000))
                return;
        double s = (double)us_since(&j->run->cloned) / 1e6;
        outq_printf(&j->sink->err, "\rjailrun: %llu/%llu bars, %.0f bars/s\033[K", (unsigned long long)j->bt.done,
                    (unsigned long long)j->bt.total, s > 0 ? (double)j->bt.done / s : 0.0);
        j->progress_at = now;
        j->progress_shown = 1;
}

void on_bars(struct job *j, const struct msg *m)
{
        struct jr_err err = { 0 };
        if (j->o->entry != JAIL_ENTRY_BACKTEST || !j->run->inflight)
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
        snprintf(path, sizeof path, "/proc/%d/comm", (int)j->run->sp.pid);
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
int backtest_result(struct job *j, const struct msg *m)
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

/* The report and figures of a backtest that started, however it ended. */
void backtest_outcome(struct job *j)
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

/* The jail has been silent past a bar's budget and grace. */
void on_bar_timer(struct timer *t)
{
        struct job *j = t->data;
        if (!j->run || j->run->exited)
                return;
        if (j->run->throttled || j->run->paused)  /* the delay is ours: its reports wait unread */
                return arm_bar_watch(j);
        end_job(j, JOB_TIMEOUT, "TimeoutError",
                "bar %llu did not return within its budget of %g s and %g s of grace; the jail was "
                "killed (a bar stuck where its own timer cannot stop it, such as native code)",
                (unsigned long long)stuck_bar(j), j->o->bar_timeout_s, j->o->bar_grace_s);
}
