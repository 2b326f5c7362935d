/* The engine's state machine against a fake jail: a forked process that
 * speaks the channel from a script of steps, no namespaces, no clone.
 * Runs as root (the job still takes a uid lock and a cgroup). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/proto.h"
#include "supervisor/engine/job.h"
#include "supervisor/engine/spawn.h"
#include "tests/unit/unit.h"

/* What a fake jail does, jail after jail of one job. */
enum fake_kind {
        FAKE_EXEC_EXIT,    /* jailed, a line on stdout, exit 3 */
        FAKE_TICKS,        /* jailed, ready, answers every run, exits on shutdown */
        FAKE_EARLY,        /* ready before jailed: a protocol violation */
        FAKE_HANG_FIRST,   /* the first jail hangs in its first tick; later ones answer */
        FAKE_CRASH,        /* jailed, ready, exits 1 at its first tick */
        FAKE_HANG,         /* jailed, then nothing */
        FAKE_SLOW,         /* as FAKE_TICKS, each answer 0.2 s late */
};

struct fake {
        enum fake_kind kind;
        int spawned;
};

static void say(int fd, const char *s)
{
        if (send(fd, s, strlen(s), MSG_NOSIGNAL) < 0)
                _exit(90);
}

/* Answers runs until asked to stop; hang_first: the first run is never answered. */
static void serve_runs(int fd, int hang_first, int crash, int slow)
{
        char buf[65536];
        for (int n = 0;; n++) {
                ssize_t len = recv(fd, buf, sizeof buf - 1, 0);
                if (len <= 0)
                        _exit(0);
                buf[len] = '\0';
                if (strstr(buf, "\"shutdown\""))
                        _exit(0);
                if (crash)
                        _exit(1);
                if (hang_first && n == 0)
                        for (;;)
                                pause();
                if (slow)
                        usleep(200000);
                const char *id = strstr(buf, "\"id\":");
                char reply[128];
                snprintf(reply, sizeof reply, "{\"type\":\"result\",\"id\":%ld,\"ok\":true}", id ? atol(id + 5) : 0L);
                say(fd, reply);
        }
}

static void fake_main(const struct fake *f, const struct jail_cfg *cfg)
{
        int fd = cfg->channel_fd;
        switch (f->kind) {
        case FAKE_EXEC_EXIT:
                say(fd, "{\"type\":\"jailed\"}");
                if (write(cfg->stdout_fd, "hello\n", 6) != 6)
                        _exit(91);
                _exit(3);
        case FAKE_EARLY:
                say(fd, "{\"type\":\"ready\"}");
                for (;;)
                        pause();
        case FAKE_HANG:
                say(fd, "{\"type\":\"jailed\"}");
                for (;;)
                        pause();
        default:
                say(fd, "{\"type\":\"jailed\"}");
                say(fd, "{\"type\":\"ready\"}");
                serve_runs(fd, f->kind == FAKE_HANG_FIRST && f->spawned == 1, f->kind == FAKE_CRASH,
                           f->kind == FAKE_SLOW);
        }
        _exit(0);
}

static int fake_spawn(void *ctx, const struct jail_cfg *cfg, int sync_wr, struct cg_job *cg, struct spawn *out,
                      struct jr_err *err)
{
        (void)cg;
        struct fake *f = ctx;
        f->spawned++;
        pid_t pid = fork();
        if (pid < 0) {
                close(sync_wr);
                return jr_fail(err, errno, "fork");
        }
        if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);  /* a failed check must leave no fake behind */
                fake_main(f, cfg);
        }
        close(sync_wr);
        out->pid = pid;
        out->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (out->pidfd < 0) {
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
                return jr_fail(err, errno, "pidfd_open");
        }
        return 0;
}

/* One job on a loop of the test's own, with a signal for it at signal_at. */
struct harness {
        struct loop loop;
        struct sink sink;
        struct job *job;
        int done;
        int sig;
        struct timer sigtimer;
        char script[64];
};

static void ended(struct job *j, void *data)
{
        (void)j;
        ((struct harness *)data)->done++;
}

static void send_sig(struct timer *t)
{
        struct harness *h = t->data;
        if (!h->done)
                job_signal(h->job, h->sig);
}

static struct job_opts opts(struct fake *f, enum jail_entry entry, const char *script, const char *id)
{
        return (struct job_opts){
                .profile = entry == JAIL_ENTRY_SCRIPT ? JAIL_PROFILE_EXEC : JAIL_PROFILE_WORKER,
                .entry = entry, .profile_name = "worker", .policy_json = "{}", .script_path = script,
                .ticks = 3, .tick_timeout_s = 60, .tick_grace_s = 5, .uid_lo = 100000, .uid_hi = 165535,
                .memory = 256u << 20, .cpus = 1, .pids = 16, .cgroup_parent = "jailrun", .job_id = id,
                .spawn = fake_spawn, .spawn_ctx = f,
        };
}

static void harness_init(struct harness *h)
{
        memset(h, 0, sizeof *h);
        ck_assert_int_eq(loop_init(&h->loop), 0);
        outq_init(&h->sink.out, memfd_create("out", MFD_CLOEXEC), SINK_LIMIT);
        outq_init(&h->sink.err, memfd_create("err", MFD_CLOEXEC), SINK_LIMIT);
        snprintf(h->script, sizeof h->script, "/tmp/jr-engine-XXXXXX");
        int fd = mkstemp(h->script);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, "pass\n", 5), 5);
        close(fd);
        h->sigtimer = (struct timer)TIMER_INIT;
}

/* Runs until every job started on h ended (at most 20 s). */
static void harness_run(struct harness *h, int jobs)
{
        struct timespec t0, now;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        while (h->done < jobs) {
                ck_assert_int_eq(loop_run_once(&h->loop, 100), 0);
                clock_gettime(CLOCK_MONOTONIC, &now);
                ck_assert_msg(now.tv_sec - t0.tv_sec < 20, "the job did not end");
        }
}

/* What the sink's queue q wrote to its memfd. */
static char *sink_text(struct outq *q)
{
        outq_flush_all(q);
        static char buf[65536];
        ssize_t n = pread(q->fd, buf, sizeof buf - 1, 0);
        buf[n < 0 ? 0 : n] = '\0';
        return buf;
}

static void harness_free(struct harness *h)
{
        timer_close(&h->sigtimer);
        close(h->sink.out.fd);
        close(h->sink.err.fd);
        outq_free(&h->sink.out);
        outq_free(&h->sink.err);
        loop_close(&h->loop);
        unlink(h->script);
}

static void run_one(struct harness *h, struct job_opts *o, struct job_result *res, int sig, double at)
{
        ck_assert_int_eq(job_start(&h->loop, o, &h->sink, res, ended, h, &h->job), 0);
        if (sig) {
                h->sig = sig;
                ck_assert_int_eq(timer_init(&h->loop, &h->sigtimer, 1, send_sig, h), 0);
                ck_assert_int_eq(timer_arm(&h->sigtimer, at, 0), 0);
        }
        ck_assert_int_eq(h->done, 0);  /* on_end never runs inside job_start */
        harness_run(h, 1);
        job_free(h->job);
}

START_TEST(exec_status_and_output)
{
        struct harness h;
        struct fake f = { FAKE_EXEC_EXIT, 0 };
        struct job_result res;
        harness_init(&h);
        struct job_opts o = opts(&f, JAIL_ENTRY_SCRIPT, h.script, "unit-exec");
        run_one(&h, &o, &res, 0, 0);
        ck_assert_int_eq(res.status, JOB_ERROR);
        ck_assert_int_eq(res.exit_code, 3);
        ck_assert_str_eq(sink_text(&h.sink.out), "hello\n");
        harness_free(&h);
}
END_TEST

START_TEST(worker_ticks)
{
        struct harness h;
        struct fake f = { FAKE_TICKS, 0 };
        struct job_result res;
        harness_init(&h);
        struct job_opts o = opts(&f, JAIL_ENTRY_TICKS, h.script, "unit-ticks");
        run_one(&h, &o, &res, 0, 0);
        ck_assert_msg(res.status == JOB_OK, "%s: %s", res.etype, res.emsg);
        ck_assert_int_eq(res.exit_code, 0);
        ck_assert_uint_eq(res.ticks_done, 3);
        ck_assert_uint_eq(res.restarts, 0);
        harness_free(&h);
}
END_TEST

START_TEST(protocol_before_jailed)
{
        struct harness h;
        struct fake f = { FAKE_EARLY, 0 };
        struct job_result res;
        harness_init(&h);
        struct job_opts o = opts(&f, JAIL_ENTRY_TICKS, h.script, "unit-early");
        run_one(&h, &o, &res, 0, 0);
        ck_assert_int_eq(res.status, JOB_PROTOCOL);
        ck_assert_str_eq(res.emsg, "message before the jail was set up");
        harness_free(&h);
}
END_TEST

/* A tick past its hard limit: the jail is killed, a new one runs on_error
 * first, then the remaining tick. */
START_TEST(tick_limit_restarts)
{
        struct harness h;
        struct fake f = { FAKE_HANG_FIRST, 0 };
        struct job_result res;
        harness_init(&h);
        struct job_opts o = opts(&f, JAIL_ENTRY_TICKS, h.script, "unit-limit");
        o.ticks = 2;
        o.tick_timeout_s = 0.3;  /* the answering jail's ticks need far less, even on a loaded host */
        o.tick_grace_s = 0.3;
        run_one(&h, &o, &res, 0, 0);
        ck_assert_int_eq(f.spawned, 2);
        ck_assert_uint_eq(res.restarts, 1);
        ck_assert_uint_eq(res.ticks_done, 2);
        ck_assert_uint_eq(res.ticks_failed, 1);
        ck_assert_str_eq(res.etype, "TimeoutError");
        ck_assert_int_eq(res.status, JOB_ERROR);
        ck_assert_ptr_nonnull(strstr(sink_text(&h.sink.err), "a new jail for the worker (restart 1)"));
        harness_free(&h);
}
END_TEST

/* SIGTERM with an interval: the tick in flight (each takes 0.2 s) ends,
 * then the job. */
START_TEST(sigterm_stops_gently)
{
        struct harness h;
        struct fake f = { FAKE_SLOW, 0 };
        struct job_result res;
        harness_init(&h);
        struct job_opts o = opts(&f, JAIL_ENTRY_TICKS, h.script, "unit-term");
        o.forever = 1;
        o.interval_s = 0.02;
        run_one(&h, &o, &res, SIGTERM, 0.3);  /* inside the second tick */
        ck_assert_msg(res.status == JOB_OK, "%s: %s", res.etype, res.emsg);
        ck_assert_int_eq(res.exit_code, 0);
        ck_assert_uint_ge(res.ticks_done, 2);  /* the one in flight finished */
        ck_assert_uint_eq(res.ticks_failed, 0);
        ck_assert_ptr_nonnull(strstr(sink_text(&h.sink.err), "SIGTERM: stopping"));
        harness_free(&h);
}
END_TEST

/* Jails that die young back off on a timer; a signal ends the wait at
 * once, the loop serving it meanwhile. */
START_TEST(signal_during_backoff)
{
        struct harness h;
        struct fake f = { FAKE_CRASH, 0 };
        struct job_result res;
        harness_init(&h);
        struct job_opts o = opts(&f, JAIL_ENTRY_TICKS, h.script, "unit-backoff");
        o.forever = 1;
        o.interval_s = 0.01;
        run_one(&h, &o, &res, SIGINT, 0.5);  /* the second restart waits 1 s */
        ck_assert_int_eq(res.status, JOB_SIGNAL);
        ck_assert_int_eq(res.exit_code, 128 + SIGINT);
        ck_assert_str_eq(res.etype, "Interrupted");
        ck_assert_uint_eq(res.restarts, 2);
        ck_assert_int_lt(res.wall_ms, 1000);
        ck_assert_ptr_nonnull(strstr(sink_text(&h.sink.err), "in 1 s (restart 2, 2 failures in a row)"));
        harness_free(&h);
}
END_TEST

START_TEST(wall_clock_limit)
{
        struct harness h;
        struct fake f = { FAKE_HANG, 0 };
        struct job_result res;
        harness_init(&h);
        struct job_opts o = opts(&f, JAIL_ENTRY_SCRIPT, h.script, "unit-deadline");
        o.timeout_s = 0.2;
        run_one(&h, &o, &res, 0, 0);
        ck_assert_int_eq(res.status, JOB_TIMEOUT);
        ck_assert_str_eq(res.etype, "TimeoutError");
        harness_free(&h);
}
END_TEST

/* Two jobs on one loop, at once: nothing of one is the other's. */
START_TEST(two_jobs_one_loop)
{
        struct harness h;
        struct fake f1 = { FAKE_TICKS, 0 }, f2 = { FAKE_HANG, 0 };
        struct job_result r1, r2;
        struct sink s2;
        struct job *j2;
        harness_init(&h);
        outq_init(&s2.out, memfd_create("out2", MFD_CLOEXEC), SINK_LIMIT);
        outq_init(&s2.err, memfd_create("err2", MFD_CLOEXEC), SINK_LIMIT);
        struct job_opts o1 = opts(&f1, JAIL_ENTRY_TICKS, h.script, "unit-two-a");
        struct job_opts o2 = opts(&f2, JAIL_ENTRY_SCRIPT, h.script, "unit-two-b");
        o1.ticks = 50;
        o2.timeout_s = 0.3;
        ck_assert_int_eq(job_start(&h.loop, &o1, &h.sink, &r1, ended, &h, &h.job), 0);
        ck_assert_int_eq(job_start(&h.loop, &o2, &s2, &r2, ended, &h, &j2), 0);
        harness_run(&h, 2);
        job_free(h.job);
        job_free(j2);
        ck_assert_msg(r1.status == JOB_OK, "%s: %s", r1.etype, r1.emsg);
        ck_assert_uint_eq(r1.ticks_done, 50);
        ck_assert_int_eq(r2.status, JOB_TIMEOUT);
        close(s2.out.fd);
        close(s2.err.fd);
        outq_free(&s2.out);
        outq_free(&s2.err);
        harness_free(&h);
}
END_TEST

int main(void)
{
        signal(SIGPIPE, SIG_IGN);
        if (geteuid() != 0) {
                fprintf(stderr, "test-engine: needs root (uid locks, cgroups); skipped\n");
                return 77;
        }
        Suite *s = suite_create("engine");
        TCase *tc = tcase_create("engine");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, exec_status_and_output);
        tcase_add_test(tc, worker_ticks);
        tcase_add_test(tc, protocol_before_jailed);
        tcase_add_test(tc, tick_limit_restarts);
        tcase_add_test(tc, sigterm_stops_gently);
        tcase_add_test(tc, signal_during_backoff);
        tcase_add_test(tc, wall_clock_limit);
        tcase_add_test(tc, two_jobs_one_loop);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
