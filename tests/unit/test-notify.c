/* jaild's notifications (supervisor/jaild/notify.c): the exact datagrams
 * a service manager receives on NOTIFY_SOCKET (a socket the test binds),
 * nothing at all without one, and the watchdog interval. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "supervisor/jaild/notify.h"
#include "tests/unit/unit.h"

struct mgr {
        char dir[64];
        char path[128];
        int fd;
};

static void mgr_open(struct mgr *m)
{
        snprintf(m->dir, sizeof m->dir, "/tmp/test-notify.XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(m->dir));
        snprintf(m->path, sizeof m->path, "%s/notify", m->dir);
        m->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(m->fd, 0);
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        ck_assert_uint_lt(strlen(m->path), sizeof a.sun_path);
        memcpy(a.sun_path, m->path, strlen(m->path) + 1);
        ck_assert_int_eq(bind(m->fd, (struct sockaddr *)&a, sizeof a), 0);
        ck_assert_int_eq(setenv("NOTIFY_SOCKET", m->path, 1), 0);
}

static void mgr_close(struct mgr *m)
{
        close(m->fd);
        unlink(m->path);
        rmdir(m->dir);
}

/* The next datagram (none waiting fails the test). */
static const char *mgr_recv(struct mgr *m)
{
        static char buf[4096];
        ssize_t n = recv(m->fd, buf, sizeof buf - 1, MSG_DONTWAIT);
        ck_assert_msg(n >= 0, "no datagram: %s", strerror(errno));
        buf[n] = '\0';
        return buf;
}

static void mgr_empty(struct mgr *m)
{
        char c;
        ck_assert_int_lt(recv(m->fd, &c, 1, MSG_DONTWAIT), 0);
        ck_assert_int_eq(errno, EAGAIN);
}

START_TEST(lifecycle)
{
        struct mgr m;
        mgr_open(&m);
        ck_assert_int_eq(notify_ready("3 workers"), 1);
        ck_assert_str_eq(mgr_recv(&m), "READY=1\nSTATUS=3 workers");
        ck_assert_int_eq(notify_status("%u workers, %u jobs running", 12u, 3u), 1);
        ck_assert_str_eq(mgr_recv(&m), "STATUS=12 workers, 3 jobs running");
        ck_assert_int_eq(notify_watchdog(), 1);
        ck_assert_str_eq(mgr_recv(&m), "WATCHDOG=1");
        ck_assert_int_eq(notify_ready(NULL), 1);
        ck_assert_str_eq(mgr_recv(&m), "READY=1");
        ck_assert_int_eq(notify_stopping("stopping 3 jobs"), 1);
        ck_assert_str_eq(mgr_recv(&m), "STOPPING=1\nSTATUS=stopping 3 jobs");
        ck_assert_int_eq(notify_stopping(NULL), 1);
        ck_assert_str_eq(mgr_recv(&m), "STOPPING=1");
        mgr_empty(&m);
        mgr_close(&m);
}
END_TEST

static uint64_t now_usec(void)
{
        struct timespec ts;
        ck_assert_int_eq(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

START_TEST(reload)
{
        struct mgr m;
        mgr_open(&m);
        uint64_t before = now_usec();
        ck_assert_int_eq(notify_reloading("reloading /etc/jaild/jaild.json"), 1);
        uint64_t after = now_usec();
        const char *got = mgr_recv(&m);
        uint64_t usec = 0;
        int end = 0;
        ck_assert_int_eq(sscanf(got, "RELOADING=1\nMONOTONIC_USEC=%" SCNu64 "%n", &usec, &end), 1);
        ck_assert_str_eq(got + end, "\nSTATUS=reloading /etc/jaild/jaild.json");
        ck_assert(before <= usec && usec <= after);
        ck_assert_int_eq(notify_ready("12 workers"), 1);
        ck_assert_str_eq(mgr_recv(&m), "READY=1\nSTATUS=12 workers");
        mgr_close(&m);
}
END_TEST

/* A status cannot add an assignment of its own, nor grow without bound. */
START_TEST(hostile_status)
{
        struct mgr m;
        mgr_open(&m);
        ck_assert_int_eq(notify_status("worker %s", "x\nREADY=1\nMAINPID=1\r\t\x7f"), 1);
        ck_assert_str_eq(mgr_recv(&m), "STATUS=worker x READY=1 MAINPID=1   ");
        ck_assert_int_eq(notify_stopping("a\nERRNO=5"), 1);
        ck_assert_str_eq(mgr_recv(&m), "STOPPING=1\nSTATUS=a ERRNO=5");
        static char big[4 * NOTIFY_STATUS_MAX];
        memset(big, 'y', sizeof big - 1);
        ck_assert_int_eq(notify_ready(big), 1);
        const char *got = mgr_recv(&m);
        ck_assert_uint_eq(strlen(got), strlen("READY=1\nSTATUS=") + NOTIFY_STATUS_MAX);
        ck_assert_int_eq(notify_status("%s", big), 1);
        ck_assert_uint_eq(strlen(mgr_recv(&m)), strlen("STATUS=") + NOTIFY_STATUS_MAX);
        mgr_close(&m);
}
END_TEST

START_TEST(no_manager)
{
        ck_assert_int_eq(unsetenv("NOTIFY_SOCKET"), 0);
        ck_assert_int_eq(notify_ready("x"), 0);
        ck_assert_int_eq(notify_status("y"), 0);
        ck_assert_int_eq(notify_reloading(NULL), 0);
        ck_assert_int_eq(notify_stopping(NULL), 0);
        ck_assert_int_eq(notify_watchdog(), 0);
        /* a manager whose socket is gone: an error the caller can log */
        ck_assert_int_eq(setenv("NOTIFY_SOCKET", "/tmp/test-notify-no-such-dir/notify", 1), 0);
        ck_assert_int_eq(notify_ready("x"), -ENOENT);
}
END_TEST

START_TEST(watchdog_interval)
{
        char pid[32];
        snprintf(pid, sizeof pid, "%ld", (long)getpid());
        uint64_t usec = 7;
        unsetenv("WATCHDOG_USEC");
        unsetenv("WATCHDOG_PID");
        ck_assert_int_eq(notify_watchdog_interval(&usec), 0);
        ck_assert_uint_eq(usec, 7);
        setenv("WATCHDOG_USEC", "30000000", 1);
        ck_assert_int_eq(notify_watchdog_interval(&usec), 1);  /* no WATCHDOG_PID: ours */
        ck_assert_uint_eq(usec, 15000000);
        setenv("WATCHDOG_PID", pid, 1);
        usec = 0;
        ck_assert_int_eq(notify_watchdog_interval(&usec), 1);
        ck_assert_uint_eq(usec, 15000000);
        setenv("WATCHDOG_PID", "1", 1);  /* meant for another process */
        ck_assert_int_eq(notify_watchdog_interval(&usec), 0);
        setenv("WATCHDOG_PID", pid, 1);
        setenv("WATCHDOG_USEC", "soon", 1);
        ck_assert_int_lt(notify_watchdog_interval(&usec), 0);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("notify");
        TCase *tc = tcase_create("notify");
        tcase_add_test(tc, lifecycle);
        tcase_add_test(tc, reload);
        tcase_add_test(tc, hostile_status);
        tcase_add_test(tc, no_manager);
        tcase_add_test(tc, watchdog_interval);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
