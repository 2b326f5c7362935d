#include "config.h"

#include <errno.h>
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

int ctx_protocol(struct jr_err *err, const char *op, const json_error_t *je)
{
        if (je && json_error_code(je) == json_error_out_of_memory)
                return jr_fail(err, ENOMEM, "%s call", op);
        jr_fail(err, 0, "%s call: %s", op, je ? je->text : "malformed");
        err->errnum = EPROTO;
        return -EPROTO;
}
