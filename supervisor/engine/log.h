/* Output of the supervisor: its own diagnostics, and the jail's log lines
 * (untrusted text: escaped before it reaches a terminal). */
#ifndef JR_LOG_H
#define JR_LOG_H

#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>

#include "common/proto.h"
#include "supervisor/engine/outq.h"

/* "jailrun: ..." on stderr. Returns r (a negative errno), systemd style. */
int log_errno(int r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Queues text with every character that could drive or mislead the
 * operator's terminal escaped: C0 controls and DEL as \xNN (newline as \n),
 * backslash as \\, C1 controls and the Unicode line separators and
 * bidirectional controls as \uXXXX, bytes that are not UTF-8 as \xNN. NUL
 * bytes within len are shown. */
void log_escapedn(struct outq *q, const char *text, size_t len);
void log_escaped(struct outq *q, const char *text);

/* One jail log entry: "LEVEL message" or, with json, one JSON line
 * {"type":"log","level":...,"message":...}. */
void log_jail(struct outq *q, int json, enum log_level level, const char *text, size_t len);

/* One line of a worker's native output (fd 1 or 2): "OUTPUT text" or
 * {"type":"output","stream":"stdout"|"stderr","message":...}. */
void log_output(struct outq *q, int json, int fd, const char *text, size_t len);

/* A note of jailrun's own during a job (a restart, a skipped slot): the
 * line "jailrun: TEXT", or with --json {"type":"note","message":TEXT}.
 * TEXT may quote what the jail sent: it is escaped either way. */
void log_note(struct outq *q, int json, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void log_vnote(struct outq *q, int json, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));

/* Untrusted multi-line text, each line escaped and indented, so none of
 * it can pass for a line of jailrun's own. */
void log_block(struct outq *q, const char *text);

/* An error type that may start a line of its own: a dotted ASCII name
 * that cannot pass for our notes ("jailrun: ..."); others are indented. */
int log_plain_type(const char *t);

/* A line of a jail's raw output being gathered (cut at LOG_MAX_CHARS). */
struct line_buf {
        char text[LOG_MAX_CHARS];
        size_t len;
        int cut;
};

#endif
