/* jaild's log (supervisor/jaild/jlog.c): the sink choice, the stderr
 * format, level filtering, escaping of hostile text, a stderr that does
 * not read, and the journal entries as journald receives them (a socket
 * of the test's own at /run/systemd/journal/socket, in a private mount
 * namespace: root). */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include "supervisor/jaild/jlog.h"
#include "tests/unit/unit.h"

#define JSOCK "/run/systemd/journal/socket"

struct sink {
        int rd, wr;
        struct jlog log;
};

static void sink_open(struct sink *s, enum jlog_target target, int level, int prefix)
{
        int p[2];
        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        s->rd = p[0];
        s->wr = p[1];
        struct jlog_cfg cfg = { .target = target, .level = level, .prefix = prefix, .fd = s->wr };
        jlog_init(&s->log, &cfg);
}

/* Everything written so far (the pipe's reader end made non-blocking). */
static char *sink_read(struct sink *s)
{
        static char buf[1 << 16];
        ck_assert_int_eq(fcntl(s->rd, F_SETFL, O_NONBLOCK), 0);
        ssize_t n = read(s->rd, buf, sizeof buf - 1);
        buf[n > 0 ? n : 0] = '\0';
        return buf;
}

static void sink_close(struct sink *s)
{
        jlog_free(&s->log, 0);
        close(s->rd);
        close(s->wr);
}

static void stream_of(int fd, char *buf, size_t size, int dev_delta)
{
        struct stat st;
        ck_assert_int_eq(fstat(fd, &st), 0);
        snprintf(buf, size, "%llu:%llu", (unsigned long long)st.st_dev + (unsigned)dev_delta,
                 (unsigned long long)st.st_ino);
}

START_TEST(stream_detection)
{
        int p[2];
        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        char ok[64], other[64];
        stream_of(p[1], ok, sizeof ok, 0);
        stream_of(p[1], other, sizeof other, 1);
        ck_assert_int_eq(jlog_stream_is_journal(ok, p[1]), 1);
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        ck_assert_int_ge(null, 0);
        ck_assert_int_eq(jlog_stream_is_journal(ok, null), 0);  /* another file */
        close(null);
        ck_assert_int_eq(jlog_stream_is_journal(other, p[1]), 0);
        ck_assert_int_eq(jlog_stream_is_journal(NULL, p[1]), 0);
        ck_assert_int_eq(jlog_stream_is_journal(ok, 12345), 0);  /* not open */
        static const char *const bad[] = { "", ":", "1:", ":1", "a:b", "1:2:3", " 1:2", "-1:2", "+1:2",
                                           "1: 2", "1:2 ", "99999999999999999999999:1", "1;2" };
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
                ck_assert_msg(jlog_stream_is_journal(bad[i], p[1]) == 0, "'%s' taken", bad[i]);
        close(p[0]);
        close(p[1]);
}
END_TEST

START_TEST(auto_target)
{
        struct sink s;
        sink_open(&s, JLOG_AUTO, LOG_INFO, 0);
        ck_assert_int_eq(s.log.journal, 0);  /* no JOURNAL_STREAM */
        jlog_free(&s.log, 0);
        char v[64];
        stream_of(s.wr, v, sizeof v, 0);
        ck_assert_int_eq(setenv("JOURNAL_STREAM", v, 1), 0);
        struct jlog_cfg cfg = { .target = JLOG_AUTO, .level = LOG_INFO, .fd = s.wr };
        jlog_init(&s.log, &cfg);
        ck_assert_int_eq(s.log.journal, 1);
        jlog_free(&s.log, 0);
        cfg.target = JLOG_STDERR;  /* asked for: stderr whatever the stream */
        jlog_init(&s.log, &cfg);
        ck_assert_int_eq(s.log.journal, 0);
        jlog_free(&s.log, 0);
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        ck_assert_int_ge(null, 0);
        cfg = (struct jlog_cfg){ .target = JLOG_AUTO, .level = LOG_INFO, .fd = null };
        jlog_init(&s.log, &cfg);
        ck_assert_int_eq(s.log.journal, 0);  /* JOURNAL_STREAM names another file */
        sink_close(&s);
        close(null);
}
END_TEST

START_TEST(stderr_format)
{
        struct sink s;
        sink_open(&s, JLOG_STDERR, LOG_DEBUG, 0);
        jlog(&s.log, LOG_INFO, "w1", "j7", "started in %d ms", 12);
        jlog(&s.log, LOG_WARNING, "w1", NULL, "restart %s", "backoff");
        jlog(&s.log, LOG_ERR, NULL, "j9", "gone");
        jlog(&s.log, LOG_NOTICE, NULL, NULL, "listening on %s", "/run/jaild/jaild.sock");
        ck_assert_str_eq(sink_read(&s), "jaild: [worker w1] [job j7] started in 12 ms\n"
                                        "jaild: [worker w1] restart backoff\n"
                                        "jaild: [job j9] gone\n"
                                        "jaild: listening on /run/jaild/jaild.sock\n");
        ck_assert_int_eq(jlog_errno(&s.log, -ENOENT, "w2", NULL, "open %s", "x.py"), -ENOENT);
        ck_assert_str_eq(sink_read(&s), "jaild: [worker w2] open x.py: No such file or directory\n");
        sink_close(&s);

        sink_open(&s, JLOG_STDERR, LOG_DEBUG, 1);
        jlog(&s.log, LOG_ERR, "w1", NULL, "a");
        jlog(&s.log, LOG_DEBUG, NULL, NULL, "b");
        ck_assert_str_eq(sink_read(&s), "<3>jaild: [worker w1] a\n<7>jaild: b\n");
        sink_close(&s);
}
END_TEST

START_TEST(level_filter)
{
        struct sink s;
        sink_open(&s, JLOG_STDERR, LOG_NOTICE, 1);
        for (int p = LOG_EMERG; p <= LOG_DEBUG; p++)
                jlog(&s.log, p, NULL, NULL, "p%d", p);
        ck_assert_str_eq(sink_read(&s), "<0>jaild: p0\n<1>jaild: p1\n<2>jaild: p2\n<3>jaild: p3\n"
                                        "<4>jaild: p4\n<5>jaild: p5\n");
        ck_assert(jlog_enabled(&s.log, LOG_NOTICE));
        ck_assert(!jlog_enabled(&s.log, LOG_INFO));
        jlog_errno(&s.log, -EIO, NULL, NULL, "x");  /* LOG_ERR: kept */
        ck_assert_str_eq(sink_read(&s), "<3>jaild: x: Input/output error\n");
        /* a priority out of range is taken as LOG_ERR, never dropped as noise */
        jlog(&s.log, 42, NULL, NULL, "odd");
        jlog(&s.log, -1, NULL, NULL, "neg");
        ck_assert_str_eq(sink_read(&s), "<3>jaild: odd\n<3>jaild: neg\n");
        jlog_set_level(&s.log, LOG_ERR);
        jlog(&s.log, LOG_WARNING, NULL, NULL, "dropped");
        jlog(&s.log, LOG_CRIT, NULL, NULL, "kept");
        jlog_set_level(&s.log, LOG_DEBUG);
        jlog(&s.log, LOG_DEBUG, NULL, NULL, "debug");
        ck_assert_str_eq(sink_read(&s), "<2>jaild: kept\n<7>jaild: debug\n");
        sink_close(&s);
}
END_TEST

/* What a worker could send in a log line to forge a second line, move
 * the cursor, clear the screen or reorder text, and what it becomes. */
static const char hostile[] = "ok\njaild: [worker admin] forged\r\x1b[2J\x1b]0;t\x07"
                              "\xc2\x9b" "31m\xe2\x80\xa8\xe2\x80\xae\\x\xff\x7f";
static const char hostile_esc[] = "ok\\njaild: [worker admin] forged\\x0d\\x1b[2J\\x1b]0;t\\x07"
                                  "\\u009b31m\\u2028\\u202e\\\\x\\xff\\x7f";

START_TEST(escaping)
{
        struct sink s;
        sink_open(&s, JLOG_STDERR, LOG_DEBUG, 0);
        jlog(&s.log, LOG_INFO, "w\n1", "j\x1b", "log: %s", hostile);
        char want[512];
        snprintf(want, sizeof want, "jaild: [worker w\\n1] [job j\\x1b] log: %s\n", hostile_esc);
        const char *got = sink_read(&s);
        ck_assert_str_eq(got, want);
        /* one line, and nothing a terminal acts on */
        ck_assert_ptr_eq(strchr(got, '\n'), got + strlen(got) - 1);
        for (const char *p = got; *p; p++)
                ck_assert_msg(((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f) || *p == '\n',
                              "byte 0x%02x left raw", (unsigned char)*p);
        sink_close(&s);
}
END_TEST

START_TEST(cut_long)
{
        static char big[3 * JLOG_MAX_MESSAGE];
        memset(big, 'a', sizeof big - 1);
        struct sink s;
        sink_open(&s, JLOG_STDERR, LOG_DEBUG, 0);
        jlog(&s.log, LOG_INFO, NULL, NULL, "%s", big);
        const char *got = sink_read(&s);
        size_t head = strlen("jaild: ");
        ck_assert_uint_eq(strlen(got), head + JLOG_MAX_MESSAGE - 1 + strlen(" [cut]\n"));
        ck_assert_str_eq(got + strlen(got) - strlen("a [cut]\n"), "a [cut]\n");
        sink_close(&s);
}
END_TEST

/* A stderr that reads nothing: jlog returns at once, holds at most
 * JLOG_QUEUE_LIMIT bytes, drops the rest, and says so once it drains. */
START_TEST(stalled_stderr)
{
        struct sink s;
        sink_open(&s, JLOG_STDERR, LOG_DEBUG, 0);
        static char line[4000];
        memset(line, 'x', sizeof line - 1);
        size_t entries = 2 * JLOG_QUEUE_LIMIT / sizeof line;
        for (size_t i = 0; i < entries; i++)
                jlog(&s.log, LOG_INFO, NULL, NULL, "%s", line);  /* the test times out if one blocks */
        ck_assert_uint_gt(jlog_pending(&s.log), 0);
        ck_assert_uint_le(jlog_pending(&s.log), JLOG_QUEUE_LIMIT);
        ck_assert_uint_gt(s.log.dropped, 0);
        ck_assert_int_eq(fcntl(s.rd, F_SETFL, O_NONBLOCK), 0);
        static char buf[1 << 16];
        size_t lines = 0, dropped_note = 0;
        for (int round = 0; round < 100000 && (jlog_pending(&s.log) || !dropped_note); round++) {
                ssize_t n = read(s.rd, buf, sizeof buf - 1);
                if (n <= 0) {
                        jlog_flush(&s.log);
                        continue;
                }
                buf[n] = '\0';
                for (ssize_t i = 0; i < n; i++)
                        lines += buf[i] == '\n';
                if (strstr(buf, "log entries dropped: stderr did not take them"))
                        dropped_note++;
                jlog_flush(&s.log);
        }
        ck_assert_uint_eq(dropped_note, 1);
        ck_assert_uint_lt(lines, entries + 1);
        ck_assert_uint_eq(s.log.dropped, 0);
        sink_close(&s);
}
END_TEST

START_TEST(fields)
{
        struct sink s;
        sink_open(&s, JLOG_JOURNAL, LOG_DEBUG, 0);
        struct iovec iov[JLOG_FIELDS_MAX];
        size_t n = jlog_fields(&s.log, LOG_WARNING, "w1", "j\n2", hostile, iov);
        ck_assert_uint_eq(n, 5);
        char want[512];
        snprintf(want, sizeof want, "MESSAGE=%s", hostile_esc);
        static const char *const rest[] = { "PRIORITY=4", "SYSLOG_IDENTIFIER=jaild", "WORKER=w1", "JOB=j\\n2" };
        ck_assert_uint_eq(iov[0].iov_len, strlen(want));
        ck_assert(memcmp(iov[0].iov_base, want, strlen(want)) == 0);
        for (size_t i = 1; i < n; i++) {
                ck_assert_uint_eq(iov[i].iov_len, strlen(rest[i - 1]));
                ck_assert(memcmp(iov[i].iov_base, rest[i - 1], iov[i].iov_len) == 0);
        }
        n = jlog_fields(&s.log, 99, NULL, NULL, "m", iov);
        ck_assert_uint_eq(n, 3);
        ck_assert(memcmp(iov[1].iov_base, "PRIORITY=3", iov[1].iov_len) == 0);
        sink_close(&s);
}
END_TEST

/* A private /run with a datagram socket where journald's would be. */
static int fake_journald(void)
{
        if (geteuid() != 0)
                return -EPERM;
        ck_assert_int_eq(unshare(CLONE_NEWNS), 0);
        ck_assert_int_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
        ck_assert_int_eq(mount("tmpfs", "/run", "tmpfs", 0, "mode=0755"), 0);
        ck_assert_int_eq(mkdir("/run/systemd", 0755), 0);
        ck_assert_int_eq(mkdir("/run/systemd/journal", 0755), 0);
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(fd, 0);
        struct sockaddr_un a = { .sun_family = AF_UNIX, .sun_path = JSOCK };
        ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
        return fd;
}

/* The next datagram, in journald's native format; fields with newlines
 * come as NAME\n<le64 length><value>\n, which ours never need. */
static char *recv_entry(int fd, char *buf, size_t size)
{
        ssize_t n = recv(fd, buf, size - 1, MSG_DONTWAIT);
        ck_assert_int_gt(n, 0);
        buf[n] = '\0';
        ck_assert_uint_eq(strlen(buf), (size_t)n);  /* text only: every value escaped */
        return buf;
}

START_TEST(journal_entries)
{
        int j = fake_journald();
        ck_assert_msg(j >= 0, "needs root (a private mount namespace for the journal's socket)");
        struct sink s;
        char v[64];
        int p[2];
        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        stream_of(p[1], v, sizeof v, 0);
        ck_assert_int_eq(setenv("JOURNAL_STREAM", v, 1), 0);
        s.rd = p[0];
        s.wr = p[1];
        struct jlog_cfg cfg = { .target = JLOG_AUTO, .level = LOG_INFO, .fd = s.wr };
        jlog_init(&s.log, &cfg);
        ck_assert_int_eq(s.log.journal, 1);
        jlog(&s.log, LOG_WARNING, "w1", "j2", "log: %s", hostile);
        jlog(&s.log, LOG_DEBUG, "w1", NULL, "below the level");
        jlog(&s.log, LOG_INFO, NULL, NULL, "plain");
        char buf[4096], want[1024];
        snprintf(want, sizeof want,
                 "MESSAGE=log: %s\nPRIORITY=4\nSYSLOG_IDENTIFIER=jaild\nWORKER=w1\nJOB=j2\n", hostile_esc);
        ck_assert_str_eq(recv_entry(j, buf, sizeof buf), want);
        ck_assert_str_eq(recv_entry(j, buf, sizeof buf), "MESSAGE=plain\nPRIORITY=6\nSYSLOG_IDENTIFIER=jaild\n");
        ck_assert_int_lt(recv(j, buf, sizeof buf, MSG_DONTWAIT), 0);  /* the debug entry: dropped */
        ck_assert_str_eq(sink_read(&s), "");                           /* nothing on stderr */

        /* journald gone, its socket left behind: the line goes to the
         * journal's stream instead, with its priority as "<N>" */
        close(j);
        jlog(&s.log, LOG_ERR, "w1", NULL, "after journald");
        ck_assert_str_eq(sink_read(&s), "<3>jaild: [worker w1] after journald\n");
        sink_close(&s);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("jlog");
        TCase *tc = tcase_create("jlog");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, stream_detection);
        tcase_add_test(tc, auto_target);
        tcase_add_test(tc, stderr_format);
        tcase_add_test(tc, level_filter);
        tcase_add_test(tc, escaping);
        tcase_add_test(tc, cut_long);
        tcase_add_test(tc, stalled_stderr);
        tcase_add_test(tc, fields);
        tcase_add_test(tc, journal_entries);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
