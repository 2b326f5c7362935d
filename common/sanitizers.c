/* The supervisor's side of a --enable-sanitizers build: compiled only
 * there (Makefile.am's "# Sanitizers" block). */
#include "config.h"

#include <sanitizer/common_interface_defs.h>
#include <stdio.h>
#include <sys/wait.h>

#include "common/sanitizers.h"

void san_note_exit(const char *what, pid_t pid, int wstatus)
{
        if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != SAN_EXIT_STATUS)
                return;
        char line[256];
        /* Cut, it still says enough to fail the test. */
        if (snprintf(line, sizeof line,
                     "SUMMARY: jailrun: %s (pid %d) exited with status %d, a sanitizer's: "
                     "its report is in that process's stderr",
                     what, (int)pid, SAN_EXIT_STATUS) < 0)
                return;
        /* Printed to the report file of this process's sanitizers (their
         * log_path), as their own summaries are. */
        __sanitizer_report_error_summary(line);
}
