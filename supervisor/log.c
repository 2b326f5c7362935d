#include "config.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
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

/* Length of an escape-worthy sequence at p (0: an ordinary byte), and its
 * code point in *cp (for \u) or -1 (for \x). */
static size_t special(const unsigned char *p, const unsigned char *end, long *cp)
{
        *cp = -1;
        if (*p < 0x20 || *p == 0x7f || *p == '\\')
                return 1;
        if (*p == 0xc2 && p + 1 < end && p[1] >= 0x80 && p[1] <= 0x9f) {
                *cp = p[1];  /* C1 control U+0080..U+009F */
                return 2;
        }
        if (*p == 0xe2 && p + 2 < end) {
                long c = ((long)(p[0] & 0x0f) << 12) | ((long)(p[1] & 0x3f) << 6) | (p[2] & 0x3f);
                /* LRM RLM, LS PS, LRE RLE PDF LRO RLO, LRI RLI FSI PDI */
                if (c == 0x200e || c == 0x200f || (c >= 0x2028 && c <= 0x202e) ||
                    (c >= 0x2066 && c <= 0x2069)) {
                        *cp = c;
                        return 3;
                }
        }
        return 0;
}

void log_escapedn(struct outq *q, const char *text, size_t len)
{
        const unsigned char *p = (const unsigned char *)text, *end = p + len, *run = p;
        while (p < end) {
                long cp;
                size_t n = special(p, end, &cp);
                if (!n) {
                        p++;
                        continue;
                }
                outq_put(q, run, (size_t)(p - run));
                char esc[16];
                if (cp >= 0)
                        snprintf(esc, sizeof esc, "\\u%04lx", cp);
                else if (*p == '\\')
                        snprintf(esc, sizeof esc, "\\\\");
                else if (*p == '\n')
                        snprintf(esc, sizeof esc, "\\n");
                else if (*p == '\t')
                        snprintf(esc, sizeof esc, "\t");
                else
                        snprintf(esc, sizeof esc, "\\x%02x", *p);
                outq_puts(q, esc);
                p += n;
                run = p;
        }
        outq_put(q, run, (size_t)(p - run));
}

void log_escaped(struct outq *q, const char *text)
{
        log_escapedn(q, text, strlen(text));
}

static void json_line(struct outq *q, json_t *j)
{
        if (!j)
                return;
        size_t n = json_dumpb(j, NULL, 0, JSON_COMPACT);
        char *s = n ? malloc(n + 1) : NULL;
        if (s && json_dumpb(j, s, n, JSON_COMPACT) == n) {
                s[n] = '\n';
                outq_put(q, s, n + 1);
        }
        free(s);
        json_decref(j);
}

void log_jail(struct outq *q, int json, enum log_level level, const char *text, size_t len)
{
        static const char *const upper[LOG_LEVEL__MAX] = { "DEBUG", "INFO", "WARN", "ERROR" };
        if (json)
                return json_line(q, json_pack("{s:s, s:s, s:s%}", "type", "log", "level",
                                              msg_log_level_names[level], "message", text, len));
        outq_puts(q, upper[level]);
        outq_put(q, " ", 1);
        log_escapedn(q, text, len);
        outq_put(q, "\n", 1);
}

void log_output(struct outq *q, int json, int fd, const char *text, size_t len)
{
        if (json) {
                /* Native output is bytes: what is not UTF-8 becomes U+FFFD. */
                json_t *s = json_stringn(text, len);
                if (!s) {
                        char *fixed = malloc(len * 3 + 1);
                        size_t o = 0;
                        for (size_t i = 0; fixed && i < len; i++) {
                                unsigned char c = (unsigned char)text[i];
                                if (c < 0x80) {
                                        fixed[o++] = (char)c;
                                } else {
                                        memcpy(fixed + o, "\xef\xbf\xbd", 3);
                                        o += 3;
                                }
                        }
                        s = fixed ? json_stringn(fixed, o) : NULL;
                        free(fixed);
                }
                return json_line(q, json_pack("{s:s, s:s, s:o}", "type", "output", "stream",
                                              fd == 1 ? "stdout" : "stderr", "message", s));
        }
        outq_puts(q, "OUTPUT ");
        log_escapedn(q, text, len);
        outq_put(q, "\n", 1);
}
