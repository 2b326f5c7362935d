/* The sanitizers' options of the jail programs (jailrun-jail,
 * jailrun-zygote) in a --enable-sanitizers build: compiled only there
 * (Makefile.am's "# Sanitizers" block). The jail's environment is a fixed
 * set (jail_set_env), so no ASAN_OPTIONS of the tests reaches it: the
 * options are compiled in, and are what a jail can live with:
 *
 * - detect_leaks=0: LeakSanitizer stops the world with ptrace from a
 *   cloned thread, which the seccomp filter refuses (ptrace is on its kill
 *   list); the process then spins in sched_yield until the supervisor
 *   kills it. The embedded interpreter leaks by design at exit anyway.
 * - a report goes to stderr (no file of the host is reachable) and the
 *   process exits with SAN_EXIT_STATUS, which the supervisor notes in its
 *   own report file (san_note_exit).
 * - handle_*=0: a signal the user's code causes (a SIGSEGV through ctypes,
 *   os.abort()) ends the jail as in the normal build, not as a report.
 * - a small quarantine: freed memory kept back counts against the jail's
 *   memory limit (256 MB by default, 64 MB for a strategy).
 * - allocator_may_return_null=1: an allocation over the limit is a
 *   MemoryError in Python, as in the normal build, not a report. */
#include "config.h"

#include "common/sanitizers.h"

#define STR_(x) #x
#define STR(x) STR_(x)

const char *__asan_default_options(void);
const char *__ubsan_default_options(void);

const char *__asan_default_options(void)
{
        return "detect_leaks=0:halt_on_error=1:exitcode=" STR(SAN_EXIT_STATUS)
               ":handle_segv=0:handle_sigbus=0:handle_sigfpe=0:handle_sigill=0:handle_abort=0"
               ":quarantine_size_mb=16:allocator_may_return_null=1";
}

const char *__ubsan_default_options(void)
{
        return "halt_on_error=1:print_stacktrace=1:exitcode=" STR(SAN_EXIT_STATUS);
}
