#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "supervisor/jaild/notify.h"

/* sd_notify()'s result in our contract: >0 sent, 0 no manager, -errno. */
static int send_state(const char *state)
{
        int r = sd_notify(0, state);
        return r > 0 ? 1 : r;
}

/* Appends "\nSTATUS=text" to buf (at *len), text cut and its control
 * characters made spaces; nothing when text is NULL. */
static void put_status(char *buf, size_t size, size_t *len, const char *text)
{
        if (!text)
                return;
        int n = snprintf(buf + *len, size - *len, "\nSTATUS=");
        if (n < 0 || (size_t)n >= size - *len)
                return;
        *len += (size_t)n;
        for (size_t i = 0; text[i] && i < NOTIFY_STATUS_MAX && *len + 1 < size; i++) {
                unsigned char c = (unsigned char)text[i];
                buf[(*len)++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
        }
        buf[*len] = '\0';
}

/* "FIRST" plus the status line, sent. */
static int send_with_status(const char *first, const char *status)
{
        char buf[128 + NOTIFY_STATUS_MAX];
        int n = snprintf(buf, sizeof buf, "%s", first);
        if (n < 0 || (size_t)n >= sizeof buf)
                return -ENAMETOOLONG;  /* cannot happen: our own constants */
        size_t len = (size_t)n;
        put_status(buf, sizeof buf, &len, status);
        return send_state(buf);
}

int notify_ready(const char *status)
{
        return send_with_status("READY=1", status);
}

int notify_status(const char *fmt, ...)
{
        char text[NOTIFY_STATUS_MAX + 1];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(text, sizeof text, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        char buf[128 + NOTIFY_STATUS_MAX];
        size_t len = 0;
        buf[0] = '\0';
        put_status(buf, sizeof buf, &len, text);
        return send_state(buf + 1);  /* without the leading newline */
}

int notify_stopping(const char *status)
{
        return send_with_status("STOPPING=1", status);
}

int notify_reloading(const char *status)
{
        struct timespec ts;
        if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
                return -errno;
        char first[64];
        uint64_t usec = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
        int n = snprintf(first, sizeof first, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, usec);
        if (n < 0 || (size_t)n >= sizeof first)
                return -ENAMETOOLONG;
        return send_with_status(first, status);
}

int notify_watchdog(void)
{
        return send_state("WATCHDOG=1");
}

int notify_watchdog_interval(uint64_t *usec)
{
        uint64_t timeout = 0;
        int r = sd_watchdog_enabled(0, &timeout);
        if (r <= 0)
                return r;
        *usec = timeout / 2;
        return 1;
}
