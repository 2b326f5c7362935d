#include "config.h"

#include <ctype.h>
#include <strings.h>

#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "supervisor/engine/log.h"
#include "supervisor/engine/msg.h"

/* Through an output queue: a stalled reader does not hold a stop signal off. */
static void vlog(const char *fmt, va_list ap)
{
        char line[1024];
        vsnprintf(line, sizeof line, fmt, ap);
        struct outq q;
        outq_init(&q, STDERR_FILENO, SIZE_MAX);
        outq_puts(&q, "jailrun: ");
        outq_puts(&q, line);
        outq_put(&q, "\n", 1);
        outq_flush_all(&q);
        outq_free(&q);
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

/* Decodes one UTF-8 sequence at p: its length and code point, or 0 when
 * the bytes there are not valid UTF-8 (truncated, overlong, a surrogate,
 * beyond U+10FFFF). */
static size_t utf8_decode(const unsigned char *p, const unsigned char *end, long *cp)
{
        static const long min[] = { 0, 0, 0x80, 0x800, 0x10000 };
        size_t n = *p >= 0xf0 && *p <= 0xf4 ? 4 : *p >= 0xe0 ? 3 : *p >= 0xc2 && *p < 0xe0 ? 2 : 0;
        if (n == 0 || (size_t)(end - p) < n)
                return 0;
        long c = *p & (0x7f >> n);
        for (size_t i = 1; i < n; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                c = (c << 6) | (p[i] & 0x3f);
        }
        if (c < min[n] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
                return 0;
        *cp = c;
        return n;
}

/* Code points that could drive or mislead a terminal: C1 controls, the
 * line and paragraph separators, and the bidirectional marks, embeddings,
 * overrides and isolates. */
static int special_cp(long c)
{
        return (c >= 0x80 && c <= 0x9f) || c == 0x061c || c == 0x200e || c == 0x200f ||
               (c >= 0x2028 && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069);
}

/* Length of an escape-worthy sequence at p (0: an ordinary character,
 * whose length is in *plain), and its code point in *cp (for \u) or -1
 * (for \x: C0 controls, DEL, backslash, and bytes that are not UTF-8). */
static size_t special(const unsigned char *p, const unsigned char *end, long *cp, size_t *plain)
{
        *cp = -1;
        *plain = 1;
        if (*p < 0x20 || *p == 0x7f || *p == '\\')
                return 1;
        if (*p < 0x80)
                return 0;
        long c;
        size_t n = utf8_decode(p, end, &c);
        if (n == 0)
                return 1;  /* not UTF-8: this byte as \xNN */
        if (special_cp(c)) {
                *cp = c;
                return n;
        }
        *plain = n;
        return 0;
}

void log_escapedn(struct outq *q, const char *text, size_t len)
{
        const unsigned char *p = (const unsigned char *)text, *end = p + len, *run = p;
        while (p < end) {
                long cp;
                size_t plain;
                size_t n = special(p, end, &cp, &plain);
                if (!n) {
                        p += plain;
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
        /* ASCII: no C1 control, bidi override or line separator reaches a
         * terminal raw */
        const size_t flags = JSON_COMPACT | JSON_ENSURE_ASCII;
        size_t n = json_dumpb(j, NULL, 0, flags);
        char *s = n ? malloc(n + 1) : NULL;
        if (s && json_dumpb(j, s, n, flags) == n) {
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

void log_note(struct outq *q, int json, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        log_vnote(q, json, fmt, ap);
        va_end(ap);
}

void log_vnote(struct outq *q, int json, const char *fmt, va_list ap)
{
        char text[2048];
        vsnprintf(text, sizeof text, fmt, ap);
        if (json) {
                json_t *s = json_string(text);
                if (!s) {  /* not UTF-8: what the jail sent, cut or raw */
                        for (char *p = text; *p; p++)
                                if ((unsigned char)*p >= 0x80)
                                        *p = '?';
                        s = json_string(text);
                }
                return json_line(q, json_pack("{s:s, s:o}", "type", "note", "message", s));
        }
        outq_puts(q, "jailrun: ");
        log_escaped(q, text);
        outq_put(q, "\n", 1);
}

/* Queues untrusted multi-line text, each line escaped and indented, so
 * none of it can pass for a line of jailrun's own. */
void log_block(struct outq *q, const char *text)
{
        for (const char *p = text; *p;) {
                size_t n = strcspn(p, "\n");
                if (n && p[0] != ' ')
                        outq_puts(q, "  ");
                log_escapedn(q, p, n);
                outq_put(q, "\n", 1);
                p += n + (p[n] == '\n');
        }
}

/* An error type that starts a line of its own: a dotted ASCII name that
 * cannot pass for our notes ("jailrun: ..."), or it is indented. */
int log_plain_type(const char *t)
{
        if (strncasecmp(t, "jailrun", 7) == 0 || !*t)
                return 0;
        for (; *t; t++)
                if (!(isalnum((unsigned char)*t) || *t == '_' || *t == '.') || (unsigned char)*t >= 0x80)
                        return 0;
        return 1;
}
