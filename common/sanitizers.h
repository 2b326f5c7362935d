/* What a --enable-sanitizers build (ASan and UBSan, for the tests:
 * tests/sanitizers/README) shares between its two sides. In the normal
 * build nothing here compiles to anything. */
#ifndef JR_SANITIZERS_H
#define JR_SANITIZERS_H

#include <sys/types.h>

/* The exit status of a process a sanitizer stopped: the jail programs'
 * compiled-in option (jail/sanopts.c) and the test harness's
 * (tests/sanitizers/check). No status jailrun itself uses. */
#define SAN_EXIT_STATUS 86

#ifdef JR_SANITIZERS
/* A jail program's report goes to its stderr (the jail has nowhere else
 * to write): when a process of the jail's side ends with SAN_EXIT_STATUS,
 * this says so in the supervisor's own sanitizer report file, where the
 * test harness finds it whatever became of the job. */
void san_note_exit(const char *what, pid_t pid, int wstatus);
#else
static inline void san_note_exit(const char *what, pid_t pid, int wstatus)
{
        (void)what;
        (void)pid;
        (void)wstatus;
}
#endif

#endif
