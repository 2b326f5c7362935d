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
