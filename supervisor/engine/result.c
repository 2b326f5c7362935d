#include "config.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>

#include "supervisor/engine/jobint.h"

/* How a job's end is told: the status and exit code its last jail's end
 * gives, and the result as both front-ends report it (jailrun --json
 * prints it, jaild answers POST /v1/jobs with it). */

const char *job_status_word(enum job_status s)
{
        static const char *const words[] = {
                [JOB_OK] = "ok",           [JOB_ERROR] = "error",   [JOB_TIMEOUT] = "timeout",
                [JOB_CPU_TIME] = "cpu-time", [JOB_MEMORY] = "memory", [JOB_PIDS] = "pids",
                [JOB_SIGNAL] = "signal",   [JOB_PROTOCOL] = "error", [JOB_SETUP] = "setup",
                [JOB_INTERNAL] = "internal",
        };
        return words[s];
}

/* s as a JSON string, made valid UTF-8 first if it is not: a result line
 * is never lost to a byte cut in the middle of a character. */
json_t *jr_json_text(const char *s)
{
        json_t *v = json_string(s ? s : "");
        if (v)
                return v;
        _cleanup_free_ char *copy = strdup(s);
        return copy ? json_string(jr_utf8_clean(copy)) : NULL;
}

/* The backtest's figures: in --json, an object; else a line or two. */
static json_t *backtest_json(const struct job_result *r)
{
        return json_pack("{s:I, s:O, s:I, s:I, s:I, s:I, s:I, s:{s:i, s:i, s:i}}", "run_us",
                         (json_int_t)r->run_us, "outcome",
                         json_object_get(r->report, "outcome"), "bars", (json_int_t)r->bars, "bars_run",
                         (json_int_t)r->bars_run, "bars_failed", (json_int_t)r->bars_failed, "signals",
                         (json_int_t)r->signals, "orders", (json_int_t)r->orders, "bar_us", "p50",
                         (int)r->bar_us_p50, "p99", (int)r->bar_us_p99, "max", (int)r->bar_us_max);
}

static void finish_exit(struct job *j, int wstatus);

/* A job that failed after forks were refused at its task limit ended
 * because of the limit: say so, keeping its exit status. */
static void note_pids(struct job *j)
{
        struct job_result *res = j->res;
        if (res->status == JOB_OK || res->status == JOB_SETUP || j->run->ended || res->cg.pids_max_hits <= 0)
                return;
        res->status = JOB_PIDS;
        snprintf(res->etype, sizeof res->etype, "ProcessLimitError");
        snprintf(res->emsg, sizeof res->emsg, "task limit of %u reached (%lld forks refused)", j->o->pids,
                 (long long)res->cg.pids_max_hits);
}

static void finish_exit(struct job *j, int wstatus)
{
        struct job_result *res = j->res;
        int exec = j->o->entry == JAIL_ENTRY_SCRIPT;
        if (!j->run->ended && j->run->jail_oom)
                end_memory(j);  /* v2: the whole group was killed at the limit */
        if (j->run->ended) {
                if (res->status == JOB_TIMEOUT || res->status == JOB_CPU_TIME)
                        res->exit_code = EXIT_TIMEOUT;
                else if (res->status == JOB_MEMORY)
                        res->exit_code = EXIT_OOM;
                else if (res->status == JOB_PROTOCOL || res->status == JOB_ERROR)
                        res->exit_code = EXIT_USER_ERROR;
                return;  /* JOB_SIGNAL set its own code */
        }
        if (WIFSIGNALED(wstatus) && !j->run->shutdown_killed) {
                int sig = WTERMSIG(wstatus);
                res->status = JOB_SIGNAL;
                res->exit_code = 128 + sig;
                snprintf(res->etype, sizeof res->etype, "Killed");
                snprintf(res->emsg, sizeof res->emsg, "jail killed by signal %d (%s)%s", sig,
                         strsignal(sig), sig == SIGSYS ? ": a forbidden system call" : "");
                return;
        }
        int code = WIFSIGNALED(wstatus) ? 0 : WEXITSTATUS(wstatus);  /* killed after the stop: as an exit */
        if (j->run->phase == PH_FATAL) {
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
                res->exit_code = j->run->phase != PH_READY && j->o->entry == JAIL_ENTRY_BACKTEST &&
                                 strcmp(res->etype, "BarsError") == 0 ? EXIT_USAGE : EXIT_USER_ERROR;
        } else if (code == 0 && j->run->phase == PH_READY && j->run->shutdown_sent) {
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

void finish_status(struct job *j, int wstatus)
{
        finish_exit(j, wstatus);
        note_pids(j);
}

json_t *job_result_json(const struct job_opts *o, const struct job_result *r)
{
        json_t *err = r->status == JOB_OK
                ? json_null()
                : json_pack("{s:o, s:o, s:o, s:o}", "type", jr_json_text(r->etype), "message",
                            jr_json_text(r->emsg), "line", r->line ? json_integer(r->line) : json_null(),
                            "traceback", jr_json_text(r->traceback));
        json_t *stats = json_pack("{s:I, s:I}", "wall_ms", (json_int_t)r->wall_ms, "cpu_ms",
                                  (json_int_t)r->cpu_ms);
        /* Kernel accounting, where the cgroup backend has it. */
        const struct { const char *key; int64_t v; } acct[] = {
                { "peak_memory_bytes", r->cg.peak_memory_bytes },
                { "cpu_user_us", r->cg.cpu_user_us },
                { "cpu_system_us", r->cg.cpu_system_us },
                { "pids_peak", r->cg.pids_peak },
                { "cgroup_setup_us", r->cg_setup_us },
                { "cgroup_teardown_us", r->cg_teardown_us },
                { "supervisor_cpu_us", r->supervisor_cpu_us },
                { "ctx_cpu_us", r->ctx_cpu_us },
                { "ctx_refused", r->ctx_refused },
        };
        for (size_t i = 0; stats && i < ELEMENTSOF(acct); i++)
                if (acct[i].v >= 0)
                        json_object_set_new(stats, acct[i].key, json_integer(acct[i].v));
        if (stats && o->entry == JAIL_ENTRY_TICKS) {
                json_object_set_new(stats, "ticks", json_integer(r->ticks_done));
                json_object_set_new(stats, "ticks_failed", json_integer(r->ticks_failed));
                json_object_set_new(stats, "restarts", json_integer(r->restarts));
                if (o->interval_s > 0) {
                        json_object_set_new(stats, "slots_skipped", json_integer((json_int_t)r->slots_skipped));
                        json_object_set_new(stats, "reloads", json_integer(r->reloads));
                        json_object_set_new(stats, "reloads_failed", json_integer(r->reloads_failed));
                }
        }
        if (stats && r->peak_rss_kib >= 0)
                json_object_set_new(stats, "supervisor_peak_rss_bytes", json_integer((json_int_t)r->peak_rss_kib * 1024));
        if (stats && r->log_dropped)
                json_object_set_new(stats, "log_dropped", json_integer((json_int_t)r->log_dropped));
        json_t *j = json_pack("{s:s, s:o, s:i, s:o}", "status", job_status_word(r->status), "error",
                              err, "exit_code", r->exit_code, "stats", stats);
        if (j && r->report)
                json_object_set_new(j, "backtest", backtest_json(r));
        return j;
}
