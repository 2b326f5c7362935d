#include "config.h"

#include <jansson.h>
#include <stdarg.h>
#include <string.h>

#include "supervisor/log.h"
#include "supervisor/msg.h"

static void vlog(const char *fmt, va_list ap)
{
        char line[1024];
        vsnprintf(line, sizeof line, fmt, ap);
        fprintf(stderr, "jailrun: %s\n", line);
}

int log_errno(int r, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vlog(fmt, ap);
        va_end(ap);
        return r;
}

void log_msg(const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vlog(fmt, ap);
        va_end(ap);
}

void log_escaped(FILE *f, const char *text)
{
        log_escapedn(f, text, strlen(text));
}

void log_escapedn(FILE *f, const char *text, size_t len)
{
        const unsigned char *end = (const unsigned char *)text + len;
        for (const unsigned char *p = (const unsigned char *)text; p < end; p++) {
                if (*p == '\\')
                        fputs("\\\\", f);
                else if (*p == '\n')
                        fputs("\\n", f);
                else if (*p == '\t')
                        fputc('\t', f);
                else if (*p < 0x20 || *p == 0x7f)
                        fprintf(f, "\\x%02x", *p);
                else if (*p == 0xc2 && p + 1 < end && p[1] >= 0x80 && p[1] <= 0x9f)
                        fprintf(f, "\\u%04x", *++p);  /* C1 control, U+0080..U+009F */
                else
                        fputc(*p, f);
        }
}

void log_jail(FILE *f, int json, enum log_level level, const char *text, size_t len)
{
        static const char *const upper[LOG_LEVEL__MAX] = { "DEBUG", "INFO", "WARN", "ERROR" };
        if (json) {
                json_t *j = json_pack("{s:s, s:s, s:s%}", "type", "log", "level",
                                      msg_log_level_names[level], "message", text, len);
                if (j) {
                        json_dumpf(j, f, JSON_COMPACT);
                        fputc('\n', f);
                        json_decref(j);
                }
                return;
        }
        fputs(upper[level], f);
        fputc(' ', f);
        log_escapedn(f, text, len);
        fputc('\n', f);
}
