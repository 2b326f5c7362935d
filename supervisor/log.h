/* Output of the supervisor: its own diagnostics, and the jail's log lines
 * (untrusted text: escaped before it reaches a terminal). */
#ifndef JR_LOG_H
#define JR_LOG_H

#include <stddef.h>
#include <stdio.h>

#include "common/proto.h"

/* "jailrun: ..." on stderr. Returns r (a negative errno), systemd style. */
int log_errno(int r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Writes text with every control character (C0, DEL, C1) and backslash
 * escaped, so hostile text cannot drive the operator's terminal. */
void log_escaped(FILE *f, const char *text);
void log_escapedn(FILE *f, const char *text, size_t len);  /* NUL shown as \x00 */

/* One jail log entry: "LEVEL message" or, with json, one JSON line
 * {"type":"log","level":...,"message":...}. */
void log_jail(FILE *f, int json, enum log_level level, const char *text, size_t len);

#endif
