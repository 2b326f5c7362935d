#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <syslog.h>
#include <unistd.h>

/* CODE_FILE/CODE_LINE would name this file for every entry: nothing */
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "supervisor/engine/log.h"
#include "supervisor/jaild/jlog.h"

#define CUT_MARK " [cut]"

/* Parses one decimal number of s up to `stop`; 0 or -EINVAL. */
static int parse_u64(const char *s, char stop, uint64_t *out, const char **end)
{
        if (*s < '0' || *s > '9')
                return -EINVAL;  /* strtoull would take a sign or spaces */
        errno = 0;
        char *e = NULL;
        unsigned long long v = strtoull(s, &e, 10);
        if (errno || *e != stop)
                return -EINVAL;
        *out = v;
        *end = e;
        return 0;
}

int jlog_stream_is_journal(const char *journal_stream, int fd)
{
        if (!journal_stream)
                return 0;
        uint64_t dev, ino;
        const char *e = NULL;
        if (parse_u64(journal_stream, ':', &dev, &e) < 0 || parse_u64(e + 1, '\0', &ino, &e) < 0)
                return 0;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return 0;
        return (uint64_t)st.st_dev == dev && (uint64_t)st.st_ino == ino;
}

void jlog_init(struct jlog *l, const struct jlog_cfg *cfg)
{
        *l = (struct jlog){ .level = cfg->level, .prefix = cfg->prefix };
        outq_init(&l->out, cfg->fd, JLOG_QUEUE_LIMIT);
        outq_init(&l->scratch, -1, SIZE_MAX);
        switch (cfg->target) {
        case JLOG_AUTO:
                l->journal = jlog_stream_is_journal(getenv("JOURNAL_STREAM"), cfg->fd);
                break;
        case JLOG_JOURNAL:
                l->journal = 1;
                break;
        case JLOG_STDERR:
                break;
        }
}

void jlog_free(struct jlog *l, int timeout_ms)
{
        if (l->out.len && timeout_ms > 0) {
                /* a timer as the stop signal: a reader that takes nothing
                 * does not hold the daemon's exit up */
                int t = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
                struct itimerspec its = { .it_value = { .tv_sec = timeout_ms / 1000,
                                                        .tv_nsec = (timeout_ms % 1000) * 1000000L } };
                if (t >= 0 && timerfd_settime(t, 0, &its, NULL) == 0)
                        outq_flush_all_until(&l->out, t);
                else
                        outq_flush_some(&l->out);
                if (t >= 0)
                        close(t);
        }
        outq_free(&l->out);
        outq_free(&l->scratch);
}

static int clamp_priority(int priority)
{
        return priority < LOG_EMERG || priority > LOG_DEBUG ? LOG_ERR : priority;
}

int jlog_enabled(const struct jlog *l, int priority)
{
        return clamp_priority(priority) <= l->level;
}

void jlog_set_level(struct jlog *l, int level)
{
        l->level = level;
}

size_t jlog_pending(const struct jlog *l)
{
        return l->out.len;
}

/* Appends "NAME=" and the escaped value to the scratch buffer and records
 * where it starts (offsets: the buffer may move as it grows). */
static void put_field(struct jlog *l, const char *name, const char *value, size_t *start)
{
        *start = l->scratch.len;
        outq_puts(&l->scratch, name);
        log_escaped(&l->scratch, value);
}

size_t jlog_fields(struct jlog *l, int priority, const char *worker, const char *job,
                   const char *msg, struct iovec iov[JLOG_FIELDS_MAX])
{
        char prio[2] = { (char)('0' + clamp_priority(priority)), '\0' };
        size_t at[JLOG_FIELDS_MAX + 1], n = 0;
        l->scratch.len = 0;
        put_field(l, "MESSAGE=", msg, &at[n++]);
        put_field(l, "PRIORITY=", prio, &at[n++]);
        put_field(l, "SYSLOG_IDENTIFIER=", JLOG_IDENTIFIER, &at[n++]);
        if (worker)
                put_field(l, "WORKER=", worker, &at[n++]);
        if (job)
                put_field(l, "JOB=", job, &at[n++]);
        at[n] = l->scratch.len;
        if (!l->scratch.buf)
                return 0;
        for (size_t i = 0; i < n; i++)
                iov[i] = (struct iovec){ .iov_base = l->scratch.buf + at[i], .iov_len = at[i + 1] - at[i] };
        return n;
}

/* Queues "[<N>]jaild: [worker W] [job J] message\n" on the stderr queue. */
static void put_line(struct jlog *l, int priority, int prefix, const char *worker, const char *job,
                     const char *msg)
{
        struct outq *s = &l->scratch;
        s->len = 0;
        if (prefix)
                outq_printf(s, "<%d>", priority);
        outq_puts(s, JLOG_IDENTIFIER ": ");
        if (worker) {
                outq_puts(s, "[worker ");
                log_escaped(s, worker);
                outq_puts(s, "] ");
        }
        if (job) {
                outq_puts(s, "[job ");
                log_escaped(s, job);
                outq_puts(s, "] ");
        }
        log_escaped(s, msg);
        outq_put(s, "\n", 1);
        if (!s->buf)
                return;
        if (l->out.len + s->len > JLOG_QUEUE_LIMIT) {
                l->dropped++;
                return;
        }
        outq_put(&l->out, s->buf, s->len);
}

size_t jlog_flush(struct jlog *l)
{
        size_t left = outq_flush_some(&l->out);
        if (l->dropped && !left) {
                unsigned long n = l->dropped;
                l->dropped = 0;
                char note[96];
                snprintf(note, sizeof note, "%lu log entries dropped: stderr did not take them", n);
                put_line(l, LOG_WARNING, l->prefix, NULL, NULL, note);
                left = outq_flush_some(&l->out);
        }
        return left;
}

/* One entry to the journal; when journald refuses it (its socket there
 * but dead), the line goes to stderr with the "<N>" prefix: stderr is
 * the journal's stream, which reads the prefix as the priority. */
static void to_journal(struct jlog *l, int priority, const char *worker, const char *job, const char *msg)
{
        struct iovec iov[JLOG_FIELDS_MAX];
        size_t n = jlog_fields(l, priority, worker, job, msg, iov);
        if (n && sd_journal_sendv(iov, (int)n) >= 0)
                return;
        put_line(l, priority, 1, worker, job, msg);
        jlog_flush(l);
}

void jlogv(struct jlog *l, int priority, const char *worker, const char *job, const char *fmt, va_list ap)
{
        priority = clamp_priority(priority);
        if (priority > l->level)
                return;
        char msg[JLOG_MAX_MESSAGE + sizeof CUT_MARK];
        int n = vsnprintf(msg, JLOG_MAX_MESSAGE, fmt, ap);
        if (n < 0)
                snprintf(msg, sizeof msg, "(unprintable log message: %s)", fmt);
        else if (n >= JLOG_MAX_MESSAGE)
                memcpy(msg + JLOG_MAX_MESSAGE - 1, CUT_MARK, sizeof CUT_MARK);  /* with its NUL */
        if (l->journal) {
                to_journal(l, priority, worker, job, msg);
                return;
        }
        put_line(l, priority, l->prefix, worker, job, msg);
        jlog_flush(l);
}

void jlog(struct jlog *l, int priority, const char *worker, const char *job, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        jlogv(l, priority, worker, job, fmt, ap);
        va_end(ap);
}

int jlog_errno(struct jlog *l, int r, const char *worker, const char *job, const char *fmt, ...)
{
        if (!jlog_enabled(l, LOG_ERR))
                return r;
        char what[JLOG_MAX_MESSAGE / 2];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        jlog(l, LOG_ERR, worker, job, "%s: %s", what, strerror(r < 0 ? -r : r));
        return r;
}
