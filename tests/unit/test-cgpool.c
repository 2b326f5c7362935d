/* The pool of job cgroups (supervisor/engine/cgpool.c) on this host's
 * real backend: groups taken, given back and reused with each job's own
 * accounting (memory peak, CPU, OOM kills, forks refused), retired when a
 * counter cannot be reset, kept under the cap, all removed at the end.
 * The "jobs" are forked processes that join the group as a jail does. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "supervisor/engine/cgpool.h"
#include "tests/unit/unit.h"

#define MiB (1024 * 1024L)

static char top[64];      /* the suite's, below each hierarchy's root */
static char parent[128];  /* the test's, below top: each test runs in a process of its own */

static const struct cg_limits lim = { .memory = 256 * MiB, .pids = 16, .cpu_quota_us = 100000, .cpu_period_us = 100000 };

/* What one test job does in its group. */
struct work {
        long bytes;                  /* touched */
        long cpu_ms;                 /* of its own CPU, spun */
        int forks;                   /* children kept alive until it exits */
};

static long own_cpu_ms(void)
{
        struct timespec t;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
        return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Into the group as the jail child goes: through the join fds on v1,
 * cgroup.procs on v2 (born there by clone3 in the real thing). */
static void join(const struct cg_job *j)
{
        int fds[CG_V1_N];
        int n = cg_job_join_fds(j, fds, NULL);
        if (n < 0)
                _exit(89);
        for (int i = 0; i < n; i++)
                if (fds[i] >= 0 && write(fds[i], "0", 1) != 1)
                        _exit(90);
        if (j->h->backend == CG_V2) {
                char path[PATH_MAX];
                snprintf(path, sizeof path, "%s/%s/cgroup.procs", j->h->v2, j->rel);
                int fd = open(path, O_WRONLY | O_CLOEXEC);
                if (fd < 0 || write(fd, "0", 1) != 1)
                        _exit(91);
                close(fd);
        }
}

/* Runs w in the group; the job's wait status. */
static int run(const struct cg_job *j, const struct work *w)
{
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                join(j);
                for (int i = 0; i < w->forks; i++) {
                        pid_t c = fork();
                        if (c == 0) {
                                pause();
                                _exit(0);
                        }
                }
                if (w->bytes) {
                        char *m = mmap(NULL, (size_t)w->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                        if (m == MAP_FAILED)
                                _exit(92);
                        for (long o = 0; o < w->bytes; o += 4096)
                                m[o] = 1;
                }
                for (volatile unsigned long x = 0; own_cpu_ms() < w->cpu_ms; x++)
                        ;
                _exit(0);
        }
        int ws;
        while (waitpid(pid, &ws, 0) < 0)
                ck_assert_int_eq(errno, EINTR);
        return ws;
}

/* The loop's hooks run until the pool has nothing left to do now. */
static void settle(struct loop *l)
{
        for (int i = 0; i < 200; i++)
                ck_assert_int_eq(loop_run_once(l, 0), 0);
}

static struct cg_pool *pool(struct loop *l, unsigned size, unsigned max)
{
        snprintf(parent, sizeof parent, "%s/t%d", top, (int)getpid());
        struct cg_pool_cfg c = { .parent = parent, .size = size, .max = max };
        struct cg_pool *p = NULL;
        struct jr_err err = { 0 };
        ck_assert_int_eq(loop_init(l), 0);
        ck_assert_msg(cg_pool_new(l, &c, &p, &err) == 0, "%s", err.msg);
        return p;
}

static void take(struct cg_pool *p, const struct cg_limits *l, struct cg_job *j)
{
        struct jr_err err = { 0 };
        ck_assert_msg(cg_pool_take(p, l, j, &err) == 0, "%s", err.msg);
}

static void give(struct cg_job *j)
{
        struct jr_err err = { 0 };
        ck_assert_msg(cg_pool_give(j, &err) == 0, "%s", err.msg);
        ck_assert_ptr_null(j->slot);
}

/* Groups named pool-* under the parent, in the memory (v1) or unified
 * (v2) hierarchy. */
static int pool_dirs(const struct cg_host *h)
{
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s/%s", h->backend == CG_V2 ? h->v2 : h->v1[CG_MEMORY], parent);
        DIR *d = opendir(dir);
        int n = 0;
        for (struct dirent *e; d && (e = readdir(d));)
                n += strncmp(e->d_name, "pool-", 5) == 0;
        if (d)
                closedir(d);
        return n;
}

static void done(struct loop *l, struct cg_pool *p)
{
        struct cg_host h = *cg_pool_host(p);
        cg_pool_free(p);
        loop_close(l);
        ck_assert_int_eq(pool_dirs(&h), 0);
}

START_TEST(reuse_keeps_accounting_exact)
{
        struct loop l;
        struct cg_pool *p = pool(&l, 1, 4);
        struct cg_job j;
        struct cg_stats s;
        take(p, &lim, &j);
        char first[PATH_MAX];
        snprintf(first, sizeof first, "%s", j.rel);
        ck_assert_int_eq(run(&j, &(struct work){ .bytes = 96 * MiB, .cpu_ms = 300 }), 0);
        cg_job_stats(&j, &s);
        ck_assert_int_ge(s.peak_memory_bytes, 96 * MiB);
        int64_t first_cpu = s.cpu_user_us + s.cpu_system_us;
        ck_assert_int_ge(first_cpu, 250000);
        give(&j);
        settle(&l);

        take(p, &lim, &j);
        struct cg_pool_stats ps;
        cg_pool_stats(p, &ps);
        ck_assert_uint_eq(ps.made_on_start, 0);
        if (ps.reused)  /* the peak could be reset: the same group, again */
                ck_assert_str_eq(j.rel, first);
        else  /* v2 before 6.12: that group was retired, this one is new */
                ck_assert_uint_eq(ps.retired, 1);
        uint64_t us;
        ck_assert_int_eq(cg_job_cpu_us(&j, &us), 0);
        ck_assert_uint_lt(us, 50000);  /* the first job's 300 ms are not this one's */
        ck_assert_int_eq(run(&j, &(struct work){ .bytes = 8 * MiB, .cpu_ms = 20 }), 0);
        cg_job_stats(&j, &s);
        /* Its own 8 MiB, give or take the charges the kernel batches per
         * CPU (64 pages each) that the first job's end left to drain. */
        ck_assert_int_ge(s.peak_memory_bytes, 6 * MiB);
        ck_assert_int_lt(s.peak_memory_bytes, 48 * MiB);
        /* 20 ms and a fork and exit, not the 300 ms before it too */
        ck_assert_int_lt(s.cpu_user_us + s.cpu_system_us + 150000, first_cpu);
        ck_assert_int_eq(s.oom_kills <= 0, 1);
        give(&j);
        settle(&l);
        done(&l, p);
}
END_TEST

START_TEST(oom_counted_per_job)
{
        struct loop l;
        struct cg_pool *p = pool(&l, 1, 4);
        struct cg_job j;
        struct cg_stats s;
        struct cg_limits small = lim;
        small.memory = 32 * MiB;
        take(p, &small, &j);
        int ws = run(&j, &(struct work){ .bytes = 128 * MiB });
        ck_assert_msg(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL, "status %d", ws);
        cg_job_stats(&j, &s);
        ck_assert_int_ge(s.oom_kills, 1);  /* a slow exit can take a second kill */
        give(&j);
        settle(&l);
        take(p, &lim, &j);
        ck_assert_int_eq(run(&j, &(struct work){ .bytes = 8 * MiB }), 0);
        cg_job_stats(&j, &s);
        ck_assert_int_eq(s.oom_kills, 0);
        give(&j);
        settle(&l);
        done(&l, p);
}
END_TEST

START_TEST(task_limit_counted_per_job)
{
        struct loop l;
        struct cg_pool *p = pool(&l, 1, 4);
        struct cg_job j;
        struct cg_stats s;
        struct cg_limits few = lim;
        few.pids = 3;
        take(p, &few, &j);
        ck_assert_int_eq(run(&j, &(struct work){ .forks = 6 }), 0);
        cg_job_stats(&j, &s);
        ck_assert_int_ge(s.pids_max_hits, 1);
        int peak_known = s.pids_peak >= 0;
        give(&j);
        settle(&l);
        struct cg_pool_stats ps;
        cg_pool_stats(p, &ps);
        if (peak_known)  /* pids.peak 3 cannot be reset: the group went */
                ck_assert_uint_ge(ps.retired, 1);
        take(p, &lim, &j);
        ck_assert_int_eq(run(&j, &(struct work){ 0 }), 0);
        cg_job_stats(&j, &s);
        ck_assert_int_eq(s.pids_max_hits, 0);
        if (peak_known)
                ck_assert_int_eq(s.pids_peak, 1);
        give(&j);
        settle(&l);
        done(&l, p);
}
END_TEST

static long long read_limit(const struct cg_job *j)
{
        char path[PATH_MAX], buf[64] = "";
        if (j->h->backend == CG_V2)
                snprintf(path, sizeof path, "%s/%s/memory.max", j->h->v2, j->rel);
        else
                snprintf(path, sizeof path, "%s/%s/memory.limit_in_bytes", j->h->v1[CG_MEMORY], j->rel);
        FILE *f = fopen(path, "re");
        ck_assert_ptr_nonnull(f);
        ck_assert_ptr_nonnull(fgets(buf, sizeof buf, f));
        fclose(f);
        return atoll(buf);
}

/* Each take writes its job's limits, up or down (v1 keeps memory below
 * memory+swap at every step). */
START_TEST(limits_written_on_take)
{
        struct loop l;
        struct cg_pool *p = pool(&l, 1, 4);
        const long sizes[] = { 64 * MiB, 512 * MiB, 32 * MiB, 32 * MiB };
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
                struct cg_limits x = lim;
                x.memory = (uint64_t)sizes[i];
                struct cg_job j;
                take(p, &x, &j);
                ck_assert_int_eq(read_limit(&j), sizes[i]);
                give(&j);
                settle(&l);
        }
        done(&l, p);
}
END_TEST

/* None ready: one is made on the start (counted); the hook makes them
 * ahead again; groups beyond max coming back are removed. */
START_TEST(low_water_and_cap)
{
        struct loop l;
        struct cg_pool *p = pool(&l, 1, 2);
        struct cg_job j[4];
        for (int i = 0; i < 4; i++)
                take(p, &lim, &j[i]);
        struct cg_pool_stats ps;
        cg_pool_stats(p, &ps);
        ck_assert_uint_eq(ps.made_ahead, 1);
        ck_assert_uint_eq(ps.made_on_start, 3);
        ck_assert_uint_eq(ps.in_use, 4);
        settle(&l);
        cg_pool_stats(p, &ps);
        ck_assert_uint_eq(ps.ready, 1);
        for (int i = 0; i < 4; i++)
                give(&j[i]);
        settle(&l);
        cg_pool_stats(p, &ps);
        ck_assert_uint_eq(ps.in_use, 0);
        if (ps.retired == 0) {  /* reusable: two kept, the rest removed */
                ck_assert_uint_eq(ps.ready, 2);
                ck_assert_uint_eq(ps.removed, 3);
        } else {  /* v2 before 6.12: all four retired, one made ahead again */
                ck_assert_uint_eq(ps.retired, 4);
                ck_assert_uint_eq(ps.ready, 1);
                ck_assert_uint_eq(ps.removed, 4);
        }
        ck_assert_int_eq(pool_dirs(cg_pool_host(p)), (int)ps.ready);
        done(&l, p);
}
END_TEST

/* A start-up sweep removes the groups a killed daemon's pool left. */
START_TEST(sweep_removes_pool_groups)
{
        struct loop l;
        struct cg_pool *p = pool(&l, 3, 3);
        struct cg_host h = *cg_pool_host(p);
        ck_assert_int_eq(pool_dirs(&h), 3);
        cg_sweep(&h, parent, 0);  /* a jailrun's sweep leaves them */
        ck_assert_int_eq(pool_dirs(&h), 3);
        cg_sweep(&h, parent, 1);
        ck_assert_int_eq(pool_dirs(&h), 0);
        cg_pool_free(p);  /* gone already: nothing to complain of */
        loop_close(&l);
}
END_TEST

/* rmdir of rel in every hierarchy. */
static void remove_everywhere(const struct cg_host *h, const char *rel)
{
        char dir[PATH_MAX];
        for (int c = 0; c <= CG_V1_N; c++) {
                const char *root = c == CG_V1_N ? (h->backend == CG_V2 ? h->v2 : "") : h->v1[c];
                if (root[0] && snprintf(dir, sizeof dir, "%s/%s", root, rel) < (int)sizeof dir)
                        rmdir(dir);
        }
}

/* What the tests left, failed ones too: the groups, then the parents. */
static void remove_top(const struct cg_host *h)
{
        char dir[PATH_MAX], sub[PATH_MAX];
        snprintf(dir, sizeof dir, "%s/%s", h->backend == CG_V2 ? h->v2 : h->v1[CG_MEMORY], top);
        DIR *d = opendir(dir);
        for (struct dirent *e; d && (e = readdir(d));)
                if (e->d_name[0] == 't') {
                        snprintf(sub, sizeof sub, "%s/%s", top, e->d_name);
                        cg_sweep(h, sub, 1);
                        remove_everywhere(h, sub);
                }
        if (d)
                closedir(d);
        remove_everywhere(h, top);
}

int main(void)
{
        if (geteuid() != 0) {
                fprintf(stderr, "test-cgpool: needs root (cgroups); skipped\n");
                return 77;
        }
        struct cg_host h;
        if (cg_detect(&h, NULL) < 0 || h.backend == CG_NONE) {
                fprintf(stderr, "test-cgpool: no cgroup backend (%s); skipped\n", h.why);
                return 77;
        }
        snprintf(top, sizeof top, "jailrun-unit-cgpool-%d", (int)getpid());
        Suite *s = suite_create("cgpool");
        TCase *tc = tcase_create("cgpool");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, reuse_keeps_accounting_exact);
        tcase_add_test(tc, oom_counted_per_job);
        tcase_add_test(tc, task_limit_counted_per_job);
        tcase_add_test(tc, limits_written_on_take);
        tcase_add_test(tc, low_water_and_cap);
        tcase_add_test(tc, sweep_removes_pool_groups);
        suite_add_tcase(s, tc);
        int r = unit_run(s);
        remove_top(&h);
        return r;
}
