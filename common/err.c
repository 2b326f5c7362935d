#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/err.h"

int jr_fail(struct jr_err *err, int errnum, const char *fmt, ...)
{
        if (err) {
                va_list ap;
                va_start(ap, fmt);
                int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
                va_end(ap);
                size_t used = n < 0 ? 0 : (size_t)n;
                if (used < sizeof err->msg && errnum > 0)
                        snprintf(err->msg + used, sizeof err->msg - used, ": %s",
                                 strerror(errnum));
                err->errnum = errnum;
        }
        return errnum > 0 ? -errnum : -EINVAL;
}

int jr_snprintf(char *buf, size_t size, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(buf, size, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= size)
                return -ENAMETOOLONG;
        return 0;
}

void jr_utf8_copy(char *dst, size_t size, const char *src)
{
        if (!size)
                return;
        snprintf(dst, size, "%s", src ? src : "");
        jr_utf8_clean(dst);
}

char *jr_utf8_clean(char *s)
{
        unsigned char *p = (unsigned char *)s;
        while (*p) {
                size_t n = *p < 0x80 ? 1 : *p >= 0xc2 && *p < 0xe0 ? 2 : *p >= 0xe0 && *p < 0xf0 ? 3
                         : *p >= 0xf0 && *p <= 0xf4 ? 4 : 0;
                size_t ok = n;
                for (size_t i = 1; i < n && ok; i++)
                        if ((p[i] & 0xc0) != 0x80)
                                ok = 0;
                if (ok == 3 && ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0)))
                        ok = 0;  /* overlong, surrogate */
                if (ok == 4 && ((p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90)))
                        ok = 0;
                if (!ok) {
                        *p++ = '?';
                        continue;
                }
                p += n;
        }
        return s;
}
