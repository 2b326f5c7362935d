/* sanbug KIND: commits one bug of KIND for the sanitizers to report, so
 * that tests/sanitizers/harness.test can see each report fail a test
 * (built only by ./configure --enable-sanitizers).
 *   heap     a heap buffer overflow (ASan)
 *   ub       a signed integer overflow (UBSan)
 *   leak     memory lost at exit (LeakSanitizer)
 *   unchecked  a child that overflows the heap, whose parent exits with
 *              status 0 whatever the child's: a jail's or a daemon's report
 *              nobody's exit status carries */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* volatile: no compile-time warning to hide the bug, and no size UBSan's
 * object-size check could see first (heap is ASan's to find) */
static volatile int past = 4;

static int heap(void)
{
        char *p = malloc(past);
        if (!p)
                return 1;
        ((volatile char *)p)[past] = 1;  /* volatile: a store the compiler keeps */
        free(p);
        return 0;
}

static int ub(void)
{
        int x = INT_MAX - 1 + past;
        printf("%d\n", x);
        return 0;
}

static int leak(void)
{
        static char *volatile lost;
        lost = malloc(100);
        if (!lost)
                return 1;
        lost[0] = 1;
        lost = NULL;
        return 0;
}

static int unchecked(void)
{
        pid_t pid = fork();
        if (pid < 0)
                return 1;
        if (pid == 0)
                _exit(heap());
        while (waitpid(pid, NULL, 0) < 0)  /* its status is not looked at */
                if (errno != EINTR)
                        return 1;
        return 0;
}

int main(int argc, char **argv)
{
        const char *kind = argc == 2 ? argv[1] : "";
        if (!strcmp(kind, "heap"))
                return heap();
        if (!strcmp(kind, "ub"))
                return ub();
        if (!strcmp(kind, "leak"))
                return leak();
        if (!strcmp(kind, "unchecked"))
                return unchecked();
        fprintf(stderr, "usage: sanbug heap|ub|leak|unchecked\n");
        return 2;
}
