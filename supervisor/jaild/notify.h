/* jaild and the service manager (sd_notify(3)), for Type=notify in
 * deploy/systemd/jaild.service (jaild(8) SYSTEMD):
 *
 *   start:   notify_ready("N workers")            READY=1, STATUS=
 *   running: notify_status("%u workers, %u jobs running", ...)
 *   SIGHUP:  notify_reloading(...), re-read the config, notify_ready(...)
 *   SIGTERM: notify_stopping(...)
 *   watchdog: when notify_watchdog_interval() gives an interval, arm a loop
 *            timer with it and call notify_watchdog() from the timer, so a
 *            stuck loop is what stops the pings.
 *
 * Type=notify-reload (the manager sends SIGHUP and waits for RELOADING=1
 * then READY=1) needs systemd 253; Debian 12 has 252, so the unit says
 * Type=notify with ExecReload=kill -HUP, and jaild sends RELOADING=1 (with
 * MONOTONIC_USEC, as 253 wants) and READY=1 around its reload all the same:
 * `systemctl status` shows "reloading", and a later systemd takes them as
 * they are.
 *
 * Each function returns 1 when the message was sent, 0 when jaild does not
 * run under a service manager (NOTIFY_SOCKET unset: nothing is done), and
 * -errno when sending failed (the caller logs it; a notification lost is
 * no reason to stop). NOTIFY_SOCKET stays set, since a reload notifies too;
 * jails never see it (they get an environment of their own, and no path to
 * the socket).
 *
 * A STATUS text is the caller's; it is cut at NOTIFY_STATUS_MAX bytes and
 * every control character in it becomes a space, so it cannot add a line
 * (another assignment such as READY=1 or MAINPID=) to the message. */
#ifndef JR_JAILD_NOTIFY_H
#define JR_JAILD_NOTIFY_H

#include <stdint.h>

#define NOTIFY_STATUS_MAX 512

/* READY=1, and STATUS=status unless status is NULL. Also the end of a
 * reload. */
int notify_ready(const char *status);

/* STATUS=... alone, formatted. */
int notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* STOPPING=1, and STATUS=status unless NULL: the manager shows
 * "deactivating" while jaild stops its jobs. */
int notify_stopping(const char *status);

/* RELOADING=1, MONOTONIC_USEC=now, and STATUS=status unless NULL. */
int notify_reloading(const char *status);

/* WATCHDOG=1: the loop is alive. */
int notify_watchdog(void);

/* Whether the manager wants watchdog pings (WatchdogSec=, passed as
 * WATCHDOG_USEC and WATCHDOG_PID, sd_watchdog_enabled(3)): 1 and *usec =
 * the interval to ping at (half the timeout, as sd_watchdog_enabled(3)
 * advises), 0 when not (unset, or meant for another process), -errno
 * when the variables are malformed. */
int notify_watchdog_interval(uint64_t *usec);

#endif
