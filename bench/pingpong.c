/* bench/pingpong: the floor under a ctx call. Two processes bounce a small
 * datagram over a SOCK_SEQPACKET socket pair, as jail and supervisor do,
 * N times; prints p50/p99/mean of the round trip in microseconds as one
 * JSON line. Placement: "same" pins both to CPU 0, "cross" the parent to
 * CPU 0 and the child to CPU 1.
 *   cc -O2 -o pingpong pingpong.c && ./pingpong same 20000 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void pin(int cpu)
{
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) < 0) {
                perror("sched_setaffinity");
                exit(1);
        }
}

static int cmp(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
        if (argc != 3 || (strcmp(argv[1], "same") != 0 && strcmp(argv[1], "cross") != 0)) {
                fprintf(stderr, "usage: pingpong same|cross N\n");
                return 2;
        }
        int cross = strcmp(argv[1], "cross") == 0, n = atoi(argv[2]);
        if (n < 100) {
                fprintf(stderr, "pingpong: N must be at least 100\n");
                return 2;
        }
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
                perror("socketpair");
                return 1;
        }
        /* a state.get and its reply, roughly */
        const char msg[] = "{\"type\":\"call\",\"id\":1,\"op\":\"state.get\",\"args\":{\"key\":\"counter\"}}";
        char buf[4096];
        pid_t pid = fork();
        if (pid < 0) {
                perror("fork");
                return 1;
        }
        if (pid == 0) {
                close(sv[0]);  /* or recv never sees the parent go */
                pin(cross ? 1 : 0);
                ssize_t r;
                while ((r = recv(sv[1], buf, sizeof buf, 0)) > 0)
                        if (send(sv[1], buf, (size_t)r, 0) < 0)
                                _exit(1);
                _exit(0);
        }
        close(sv[1]);
        pin(0);
        double *t = malloc(sizeof *t * (size_t)n);
        if (!t)
                return 1;
        for (int i = -1000; i < n; i++) {  /* 1000 warm-up trips */
                struct timespec a, b;
                clock_gettime(CLOCK_MONOTONIC, &a);
                if (send(sv[0], msg, sizeof msg - 1, 0) < 0 || recv(sv[0], buf, sizeof buf, 0) <= 0) {
                        perror("pingpong");
                        return 1;
                }
                clock_gettime(CLOCK_MONOTONIC, &b);
                if (i >= 0)
                        t[i] = (double)(b.tv_sec - a.tv_sec) * 1e6 + (double)(b.tv_nsec - a.tv_nsec) / 1e3;
        }
        close(sv[0]);
        waitpid(pid, NULL, 0);
        double sum = 0;
        for (int i = 0; i < n; i++)
                sum += t[i];
        qsort(t, (size_t)n, sizeof *t, cmp);
        printf("{\"placement\":\"%s\",\"n\":%d,\"p50_us\":%.2f,\"p99_us\":%.2f,\"mean_us\":%.2f}\n", argv[1], n,
               t[n / 2], t[n * 99 / 100], sum / n);
        free(t);
        return 0;
}
