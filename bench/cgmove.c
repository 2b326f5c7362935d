/* bench/cgmove: what placing a process in its cgroup v1 groups costs, and
 * what making and removing the groups costs. Root only; works in groups
 * "cgmove-bench/g" below each v1 controller mount (memory, pids, cpu,
 * cpuacct, freezer) and removes them at the end. One JSON line per case
 * with the median, p90 and max in microseconds over N trials:
 *   create   mkdir in the five hierarchies and write the limits a job gets
 *   destroy  rmdir in the five hierarchies (empty groups)
 *   move     write a new child's pid to the five cgroup.procs (what
 *            jailrun does after the clone on v1), trials apart (IDLE_MS
 *            of sleep between them) or back to back
 *   selfmove a process moves itself into the five groups through
 *            cgroup.procs, then forks (the child is born there); the time
 *            of the move and of the fork
 *   selfjoin a new child writes 0 to the five groups' `tasks` files its
 *            parent opened before the fork (what the jail child does): a
 *            task moving itself skips the global lock
 *   inborn   fork by a process that already sits in the groups (no
 *            migration at all), against a fork at the root
 *   cc -O2 -o cgmove cgmove.c && ./cgmove 40 100 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NCTL 5
static const char *const ctl[NCTL] = { "memory", "pids", "cpu", "cpuacct", "freezer" };

static double now_us(void)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void die(const char *what)
{
        perror(what);
        exit(1);
}

static void put(const char *path, const char *val)
{
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, val, strlen(val)) != (ssize_t)strlen(val))
                die(path);
        close(fd);
}

static void path_of(char *out, size_t n, int c, const char *tail)
{
        snprintf(out, n, "/sys/fs/cgroup/%s/cgmove-bench%s", ctl[c], tail);
}

static void make_groups(void)
{
        char p[256];
        for (int c = 0; c < NCTL; c++) {
                path_of(p, sizeof p, c, "/g");
                if (mkdir(p, 0755) < 0)
                        die(p);
        }
        path_of(p, sizeof p, 0, "/g/memory.limit_in_bytes");
        put(p, "268435456");
        path_of(p, sizeof p, 1, "/g/pids.max");
        put(p, "64");
        path_of(p, sizeof p, 2, "/g/cpu.cfs_period_us");
        put(p, "100000");
        path_of(p, sizeof p, 2, "/g/cpu.cfs_quota_us");
        put(p, "100000");
}

static void remove_groups(void)
{
        char p[256];
        for (int c = 0; c < NCTL; c++) {
                path_of(p, sizeof p, c, "/g");
                if (rmdir(p) < 0 && errno != ENOENT)
                        die(p);
        }
}

/* Writes pid to the five groups' cgroup.procs ("" tail: the parent). */
static void move(pid_t pid, const char *tail)
{
        char p[256], v[32];
        snprintf(v, sizeof v, "%d", (int)pid);
        for (int c = 0; c < NCTL; c++) {
                char t[64];
                snprintf(t, sizeof t, "%s/cgroup.procs", tail);
                path_of(p, sizeof p, c, t);
                put(p, v);
        }
}

/* A child that waits for its pipe to close, then exits. */
static pid_t child(int *wr)
{
        int pp[2];
        if (pipe2(pp, O_CLOEXEC) < 0)
                die("pipe2");
        pid_t pid = fork();
        if (pid < 0)
                die("fork");
        if (pid == 0) {
                char b;
                close(pp[1]);
                while (read(pp[0], &b, 1) < 0 && errno == EINTR)
                        ;
                _exit(0);
        }
        close(pp[0]);
        *wr = pp[1];
        return pid;
}

static void reap(pid_t pid, int wr)
{
        close(wr);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
}

static int cmp(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static void report(const char *name, double *v, int n)
{
        qsort(v, (size_t)n, sizeof *v, cmp);
        printf("{\"case\": \"%s\", \"n\": %d, \"p50_us\": %.1f, \"p90_us\": %.1f, \"max_us\": %.1f}\n", name, n,
               v[n / 2], v[(n * 9) / 10], v[n - 1]);
        fflush(stdout);
}

static void nap(int ms)
{
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static void bench_create(int n, int idle_ms)
{
        double mk[n], rm[n];
        for (int i = 0; i < n; i++) {
                double t = now_us();
                make_groups();
                mk[i] = now_us() - t;
                t = now_us();
                remove_groups();
                rm[i] = now_us() - t;
                nap(idle_ms);
        }
        report("create", mk, n);
        report("destroy", rm, n);
}

static void bench_move(int n, int idle_ms, const char *name)
{
        double v[n];
        make_groups();
        for (int i = 0; i < n; i++) {
                int wr;
                pid_t pid = child(&wr);
                double t = now_us();
                move(pid, "/g");
                v[i] = now_us() - t;
                reap(pid, wr);
                nap(idle_ms);
        }
        remove_groups();
        report(name, v, n);
}

/* Moves itself in, forks (the child is born in the groups), moves back. */
static void bench_selfmove(int n, int idle_ms)
{
        double in[n], fk[n], out[n];
        make_groups();
        for (int i = 0; i < n; i++) {
                double t = now_us();
                move(getpid(), "/g");
                in[i] = now_us() - t;
                int wr;
                t = now_us();
                pid_t pid = child(&wr);
                fk[i] = now_us() - t;
                t = now_us();
                move(getpid(), "");
                out[i] = now_us() - t;
                reap(pid, wr);
                nap(idle_ms);
        }
        remove_groups();
        report("selfmove_in", in, n);
        report("selfmove_fork", fk, n);
        report("selfmove_out", out, n);
}

/* A child joins through tasks files opened by its parent; its own time. */
static void bench_selfjoin(int n, int idle_ms)
{
        double v[n];
        int fds[NCTL], pp[2];
        char p[256];
        make_groups();
        for (int c = 0; c < NCTL; c++) {
                path_of(p, sizeof p, c, "/g/tasks");
                if ((fds[c] = open(p, O_WRONLY | O_CLOEXEC)) < 0)
                        die(p);
        }
        for (int i = 0; i < n; i++) {
                if (pipe2(pp, O_CLOEXEC) < 0)
                        die("pipe2");
                pid_t pid = fork();
                if (pid < 0)
                        die("fork");
                if (pid == 0) {
                        double t = now_us();
                        for (int c = 0; c < NCTL; c++)
                                if (write(fds[c], "0", 1) != 1)
                                        _exit(1);
                        double took = now_us() - t;
                        _exit(write(pp[1], &took, sizeof took) == sizeof took ? 0 : 1);
                }
                close(pp[1]);
                if (read(pp[0], &v[i], sizeof v[i]) != sizeof v[i])
                        die("selfjoin child");
                close(pp[0]);
                while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                        ;
                nap(idle_ms);
        }
        for (int c = 0; c < NCTL; c++)
                close(fds[c]);
        remove_groups();
        report("selfjoin_isolated", v, n);
}

/* Forks from inside the groups (a holder placed once) and from the root. */
static void bench_inborn(int n, int idle_ms)
{
        double inside[n], root[n];
        make_groups();
        for (int i = 0; i < n; i++) {
                int wr;
                double t = now_us();
                pid_t pid = child(&wr);
                root[i] = now_us() - t;
                reap(pid, wr);
        }
        move(getpid(), "/g");
        for (int i = 0; i < n; i++) {
                int wr;
                double t = now_us();
                pid_t pid = child(&wr);
                inside[i] = now_us() - t;
                reap(pid, wr);
                nap(idle_ms);
        }
        move(getpid(), "");
        remove_groups();
        report("fork_at_root", root, n);
        report("fork_inborn", inside, n);
}

int main(int argc, char **argv)
{
        int n = argc > 1 ? atoi(argv[1]) : 40;
        int idle = argc > 2 ? atoi(argv[2]) : 100;
        if (n < 2 || n > 10000)
                return fprintf(stderr, "usage: cgmove [N] [IDLE_MS]\n"), 2;
        char p[256];
        for (int c = 0; c < NCTL; c++) {
                path_of(p, sizeof p, c, "");
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        die(p);
        }
        remove_groups();  /* a run killed before */
        bench_create(n, idle);
        bench_move(n, idle, "move_isolated");
        bench_move(n, 0, "move_back_to_back");
        bench_selfmove(n, idle);
        bench_selfjoin(n, idle);
        bench_inborn(n, idle);
        for (int c = 0; c < NCTL; c++) {
                path_of(p, sizeof p, c, "");
                rmdir(p);
        }
        return 0;
}
