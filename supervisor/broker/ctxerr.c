#include "config.h"

#include <stdarg.h>
#include <stdio.h>

#include "common/err.h"
#include "supervisor/broker/ctxerr.h"

json_t *ctx_error(const char *fmt, ...)
{
        char msg[600];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        return json_pack("{s:s}", "error", jr_utf8_clean(msg));
}
