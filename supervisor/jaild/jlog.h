/* jaild's own log (jaild(8) LOGGING): its diagnostics and the lines its
 * workers log, tagged with the worker and job they concern.
 *
 * Two sinks. Under systemd with stderr connected to the journal (the
 * documented test: JOURNAL_STREAM's "DEVICE:INODE" equals fstat(2) of
 * stderr, systemd.exec(5)), each entry is one sd_journal_sendv() datagram
 * with the fields MESSAGE, PRIORITY, SYSLOG_IDENTIFIER=jaild, and WORKER and
 * JOB when given, so `journalctl -u jaild WORKER=w1` selects one worker.
 * Otherwise one line per entry on stderr:
 *
 *     jaild: [worker W] [job J] message
 *
 * optionally preceded by "<N>", N the syslog priority (sd-daemon(3)'s
 * prefix: a stream that systemd or a log collector reads takes it as the
 * line's priority). Entries of a priority above the configured level
 * (less severe) are dropped.
 *
 * Every entry's text, the worker and the job are escaped as the engine
 * escapes a jail's log lines (log_escapedn: controls, DEL, C1 controls,
 * line and bidi separators, invalid UTF-8 shown as \xNN or \uXXXX), since a
 * worker's message is written by hostile code: no entry can end early,
 * start a forged line or entry, or drive a terminal. A formatted message
 * longer than JLOG_MAX_MESSAGE bytes is cut and marked " [cut]".
 *
 * Blocking: stderr lines are queued and written only while the descriptor
 * takes them without blocking (outq_flush_some); what it does not take
 * waits for the next entry or jlog_flush() (the loop may watch the fd for
 * EPOLLOUT while jlog_pending() is non-zero). Past JLOG_QUEUE_LIMIT queued
 * bytes entries are dropped and counted, and the count is reported once
 * the queue drains. A journal entry is one datagram to journald's socket:
 * it waits only when journald has stopped reading its socket, which stalls
 * every logging service on the host alike; libsystemd's socket is its own,
 * so jaild cannot make that send non-blocking.
 *
 * Not thread-safe; one struct jlog per loop. */
#ifndef JR_JAILD_JLOG_H
#define JR_JAILD_JLOG_H

#include <stdarg.h>
#include <stddef.h>
#include <sys/uio.h>

#include "supervisor/engine/outq.h"

#define JLOG_MAX_MESSAGE 8192           /* bytes of one formatted message */
#define JLOG_QUEUE_LIMIT (1024 * 1024)  /* stderr bytes queued at most */
#define JLOG_FIELDS_MAX 5
#define JLOG_IDENTIFIER "jaild"

enum jlog_target {
        JLOG_AUTO,      /* the journal when stderr is connected to it, else stderr */
        JLOG_STDERR,
        JLOG_JOURNAL,
};

struct jlog_cfg {
        enum jlog_target target;
        int level;      /* syslog priority (LOG_ERR .. LOG_DEBUG, as
                         * enum jaild_log_level): above it, dropped */
        int prefix;     /* stderr lines start with "<N>" */
        int fd;         /* where stderr lines go (STDERR_FILENO; a test's pipe) */
};

struct jlog {
        int level;
        int journal;           /* 1: entries go to the journal */
        int prefix;
        struct outq out;       /* stderr lines waiting for the fd */
        struct outq scratch;   /* one entry being escaped (reused) */
        unsigned long dropped; /* entries dropped on a full queue, unreported */
};

/* Sets l up (nothing to fail: buffers grow on first use). With JLOG_AUTO
 * the sink is chosen once, here, from JOURNAL_STREAM and cfg->fd. */
void jlog_init(struct jlog *l, const struct jlog_cfg *cfg);

/* Writes what is queued, waiting for the reader for at most timeout_ms
 * (the daemon is exiting), then frees l. */
void jlog_free(struct jlog *l, int timeout_ms);

/* Logs one entry. priority: LOG_EMERG .. LOG_DEBUG (others are taken as
 * LOG_ERR); worker, job: their ids or NULL. Never fails the caller: an
 * entry that cannot be written is dropped. */
void jlog(struct jlog *l, int priority, const char *worker, const char *job, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));
void jlogv(struct jlog *l, int priority, const char *worker, const char *job, const char *fmt,
           va_list ap) __attribute__((format(printf, 5, 0)));

/* jlog() at LOG_ERR with ": strerror(-r)" appended; returns r (a negative
 * errno), so `return jlog_errno(l, r, ...)` logs and propagates. */
int jlog_errno(struct jlog *l, int r, const char *worker, const char *job, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));

/* Whether an entry of this priority would be logged. */
int jlog_enabled(const struct jlog *l, int priority);

/* A new level (a reload). */
void jlog_set_level(struct jlog *l, int level);

/* Stderr bytes still queued; jlog_flush writes what the fd takes now
 * without blocking and returns what is left. */
size_t jlog_pending(const struct jlog *l);
size_t jlog_flush(struct jlog *l);

/* --- seams, for the tests and for jaild(8)'s start-up report --- */

/* 1 when fd is the stream JOURNAL_STREAM names ("DEVICE:INODE", decimal,
 * as systemd sets it); 0 when it is not, when journal_stream is NULL or
 * malformed, or fstat fails. */
int jlog_stream_is_journal(const char *journal_stream, int fd);

/* The journal fields of one entry, as jlog sends them: iov[] gets
 * MESSAGE=, PRIORITY=, SYSLOG_IDENTIFIER=jaild, then WORKER= and JOB= when
 * not NULL, each value escaped. They point into l's scratch buffer, valid
 * until l's next call. Returns how many (at most JLOG_FIELDS_MAX), or 0
 * when memory ran out. */
size_t jlog_fields(struct jlog *l, int priority, const char *worker, const char *job,
                   const char *msg, struct iovec iov[JLOG_FIELDS_MAX]);

#endif
