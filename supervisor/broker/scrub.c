#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "supervisor/broker/ctxerr.h"
#include "supervisor/broker/ctype.h"
#include "supervisor/broker/scrub.h"

/* --- finding a secret under escapes ---------------------------------------- */

#define SCRUB_STEPS_PER_BYTE 16

/* HTML's named references to printable ASCII (HTML's own list; those
 * without ';' are the legacy ones it reads without one). */
static const struct { const char *name; char ch; } entities[] = {
        { "excl;", '!' }, { "QUOT", '"' }, { "quot", '"' }, { "QUOT;", '"' }, { "quot;", '"' }, { "num;", '#' },
        { "dollar;", '$' }, { "percnt;", '%' }, { "AMP", '&' }, { "amp", '&' }, { "AMP;", '&' }, { "amp;", '&' },
        { "apos;", '\'' }, { "lpar;", '(' }, { "rpar;", ')' }, { "ast;", '*' }, { "midast;", '*' },
        { "plus;", '+' }, { "comma;", ',' }, { "period;", '.' }, { "sol;", '/' }, { "colon;", ':' },
        { "semi;", ';' }, { "LT", '<' }, { "lt", '<' }, { "LT;", '<' }, { "lt;", '<' }, { "equals;", '=' },
        { "GT", '>' }, { "gt", '>' }, { "GT;", '>' }, { "gt;", '>' }, { "quest;", '?' }, { "commat;", '@' },
        { "lbrack;", '[' }, { "lsqb;", '[' }, { "bsol;", '\\' }, { "rbrack;", ']' }, { "rsqb;", ']' },
        { "Hat;", '^' }, { "lowbar;", '_' }, { "UnderBar;", '_' }, { "DiacriticalGrave;", '`' },
        { "grave;", '`' }, { "lbrace;", '{' }, { "lcub;", '{' }, { "verbar;", '|' }, { "vert;", '|' },
        { "VerticalLine;", '|' }, { "rbrace;", '}' }, { "rcub;", '}' },
};

static int hexval(unsigned char c)
{
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Exactly k hex digits at t (n bytes left) into *v. */
static int hexn(const unsigned char *t, size_t n, size_t k, unsigned long *v)
{
        if (n < k)
                return 0;
        *v = 0;
        for (size_t i = 0; i < k; i++) {
                int h = hexval(t[i]);
                if (h < 0)
                        return 0;
                *v = *v * 16 + (unsigned long)h;
        }
        return 1;
}

/* &#65; &#x41; (';' optional, any number of digits, as HTML reads them). */
static size_t numeric_ref(const unsigned char *t, size_t n, unsigned long *ch)
{
        int hex = n > 2 && (t[2] == 'x' || t[2] == 'X');
        size_t i = hex ? 3 : 2, first = i;
        unsigned long v = 0;
        for (; i < n && (hex ? hexval(t[i]) >= 0 : t[i] >= '0' && t[i] <= '9'); i++)
                if (v < 0x110000)  /* past Unicode: no character of a secret, and no overflow */
                        v = v * (hex ? 16 : 10) + (unsigned long)hexval(t[i]);
        if (i == first)
                return 0;
        *ch = v;
        return i < n && t[i] == ';' ? i + 1 : i;
}

static size_t named_ref(const unsigned char *t, size_t n, unsigned long *ch)
{
        size_t best = 0;
        if (n < 3 || !((t[1] | 0x20) >= 'a' && (t[1] | 0x20) <= 'z'))
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(entities); i++) {
                size_t k = strlen(entities[i].name);
                if (entities[i].name[0] == (char)t[1] && k + 1 <= n && k + 1 > best &&
                    memcmp(t + 1, entities[i].name, k) == 0) {
                        best = k + 1;
                        *ch = (unsigned char)entities[i].ch;
                }
        }
        return best;
}

/* The escape at t (n > 0 bytes left): its length, the character it stands
 * for in *ch; 0 when there is none. */
static size_t escape_at(const unsigned char *t, size_t n, unsigned long *ch)
{
        if (t[0] == '%')
                return hexn(t + 1, n - 1, 2, ch) ? 3 : 0;
        if (t[0] == '\\' && n >= 2) {
                if (t[1] == 'u')
                        return hexn(t + 2, n - 2, 4, ch) ? 6 : 0;
                if (t[1] == 'U')
                        return hexn(t + 2, n - 2, 8, ch) ? 10 : 0;
                if (t[1] == 'x')
                        return hexn(t + 2, n - 2, 2, ch) ? 4 : 0;
                int punct = t[1] > 0x20 && t[1] < 0x7f && !(t[1] >= '0' && t[1] <= '9') &&
                            !((t[1] | 0x20) >= 'a' && (t[1] | 0x20) <= 'z');
                *ch = t[1];
                return punct ? 2 : 0;
        }
        if (t[0] == '&' && n >= 2)
                return t[1] == '#' ? numeric_ref(t, n, ch) : named_ref(t, n, ch);
        return 0;
}

static unsigned long lower(unsigned long c)
{
        return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* Whether secret s[i..m) starts at t[p] (1, its end in *end), each of its
 * characters written as itself or as an escape, in any mix (a reader may
 * decode one kind of escape and not another: "&#65;%42" is "A%42" to one,
 * "&#65;B" to another, so every reading is tried). A character that
 * matches both ways (a '%' written "%25") forks. -1 when the budget of
 * steps is spent. */
static int match_from(const unsigned char *t, size_t n, size_t p, const char *s, size_t i, size_t m, size_t *end,
                      size_t *budget)
{
        for (; i < m; i++) {
                if (p >= n)
                        return 0;
                if (*budget == 0)
                        return -1;
                (*budget)--;
                unsigned long ch = 0;
                size_t k = escape_at(t + p, n - p, &ch);
                unsigned long want = lower((unsigned char)s[i]);
                int esc = k && lower(ch) == want, lit = lower(t[p]) == want;
                int r = esc && lit ? match_from(t, n, p + k, s, i + 1, m, end, budget) : 0;
                if (r)
                        return r;
                if (!esc && !lit)
                        return 0;
                p += lit ? 1 : k;
        }
        *end = p;
        return 1;
}

/* Tried from every position: a reader's escapes start wherever the
 * previous one ended. */
int scrub_find(const char *text, size_t n, size_t from, const char *secret, size_t m, size_t *start, size_t *end,
               size_t *budget)
{
        const unsigned char *t = (const unsigned char *)text;
        unsigned char may[256] = { 0 };  /* the bytes a match can begin with */
        if (!m)
                return 0;
        may['%'] = may['\\'] = may['&'] = 1;
        may[(unsigned char)secret[0]] = may[lower((unsigned char)secret[0])] = 1;
        if (lower((unsigned char)secret[0]) >= 'a' && lower((unsigned char)secret[0]) <= 'z')
                may[lower((unsigned char)secret[0]) - 32] = 1;
        for (size_t p = from; p < n; p++) {
                int r = may[t[p]] ? match_from(t, n, p, secret, 0, m, end, budget) : 0;
                if (r) {
                        *start = p;
                        return r;
                }
        }
        return 0;
}

json_t *scrub_needles(json_t *secrets)
{
        json_t *all = json_array();
        size_t i;
        json_t *s;
        json_array_foreach(secrets, i, s) {
                /* shorter: no credential, and replacing it would garble */
                if (!all || !json_string_value(s) || strlen(json_string_value(s)) < 4)
                        continue;
                if (json_array_append(all, s) < 0) {  /* a secret left off would go unscrubbed */
                        json_decref(all);
                        return NULL;
                }
        }
        return all;
}

/* --- replacing ------------------------------------------------------------------ */

static char *replace_all(char *buf, size_t *len, const char *secret, size_t m, int *replaced, size_t *budget)
{
        size_t s, e, at = 0;
        int r = scrub_find(buf, *len, 0, secret, m, &s, &e, budget);
        if (r <= 0) {
                if (r < 0)
                        free(buf);
                return r < 0 ? NULL : buf;
        }
        *replaced = 1;
        char *out = NULL;
        size_t olen = 0;
        FILE *f = open_memstream(&out, &olen);
        if (!f) {
                free(buf);
                return NULL;
        }
        do {
                fwrite(buf + at, 1, s - at, f);
                fputs(SCRUB_MARK, f);
                at = e;
        } while ((r = scrub_find(buf, *len, at, secret, m, &s, &e, budget)) > 0);
        fwrite(buf + at, 1, *len - at, f);
        int bad = ferror(f) || r < 0;
        free(buf);
        if (fclose(f) != 0 || bad) {
                free(out);
                return NULL;
        }
        *len = olen;
        return out;
}

char *scrub_text(char *buf, size_t *len, json_t *needles)
{
        size_t i, s, e;
        json_t *v;
        int replaced = 0;
        /* Steps a search may take: a few a byte for any text; a periodic
         * secret against text repeating it would take its length times
         * more, and such a body is withheld rather than searched. */
        size_t budget = SCRUB_STEPS_PER_BYTE * (*len + 1024) * (json_array_size(needles) + 1);
        json_array_foreach(needles, i, v) {
                if (buf)
                        buf = replace_all(buf, len, json_string_value(v), json_string_length(v), &replaced, &budget);
        }
        json_array_foreach(needles, i, v) {  /* a mark and its neighbours may spell one anew */
                if (buf && replaced &&
                    scrub_find(buf, *len, 0, json_string_value(v), json_string_length(v), &s, &e, &budget)) {
                        free(buf);
                        buf = NULL;
                }
        }
        return buf;
}

json_t *scrub_json(json_t *v, json_t *needles)
{
        if (!v || !needles)
                return v;
        if (json_is_string(v)) {
                size_t len = json_string_length(v);
                char *copy = malloc(len + 1);
                if (copy)
                        memcpy(copy, json_string_value(v), len + 1);
                char *clean = copy ? scrub_text(copy, &len, needles) : NULL;
                json_t *out = clean ? json_stringn(clean, len) : NULL;
                free(clean);
                json_decref(v);
                return out ? out : json_string(SCRUB_MARK);
        }
        if (json_is_array(v)) {
                for (size_t i = 0; i < json_array_size(v); i++) {
                        json_t *c = scrub_json(json_incref(json_array_get(v, i)), needles);
                        if (!c || json_array_set_new(v, i, c) < 0) {  /* never the element as it was */
                                json_decref(v);
                                return NULL;
                        }
                }
                return v;
        }
        if (json_is_object(v)) {
                json_t *out = json_object();
                const char *k;
                json_t *e;
                json_object_foreach(v, k, e) {
                        size_t len = strlen(k);
                        char *copy = strdup(k);
                        char *ck = copy ? scrub_text(copy, &len, needles) : NULL;
                        json_t *c = out ? scrub_json(json_incref(e), needles) : NULL;
                        if (out && (!c || json_object_set_new(out, ck ? ck : SCRUB_MARK, c) < 0)) {
                                json_decref(out);
                                out = NULL;
                        }
                        free(ck);
                }
                json_decref(v);
                return out;
        }
        return v;
}

/* --- the body -------------------------------------------------------------------- */

__attribute__((format(printf, 2, 3)))
static void withhold(char *why, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, 400, fmt, ap);
        va_end(ap);
}

/* A charset name fit to quote: short and plain, or described. */
static const char *shown(const char *name, char *buf, size_t size)
{
        size_t n = strlen(name);
        if (n && n <= 40 && strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:+-") == n)
                return name;
        snprintf(buf, size, "(a name of %zu bytes)", n);
        return buf;
}

/* The charset the body is read in; NULL (and why) when, with secrets at
 * stake, it cannot be known or checked. */
static const struct charset *decide(int verdict, const struct ctype *ct, int doubtful, int strict, char *why)
{
        char b[40];
        if (strict && (doubtful || verdict == CTYPE_MALFORMED))
                return withhold(why, "the response's Content-Type cannot be read with certainty, so its body cannot "
                                "be checked for secrets"), NULL;
        if (strict && verdict == CTYPE_REPEATED)
                return withhold(why, "the response's Content-Type names its charset more than once, so its body "
                                "cannot be checked for secrets"), NULL;
        if (verdict != CTYPE_OK || !ct->has_charset)
                return charset_utf8();  /* HTTP's JSON and today's text: UTF-8 */
        const struct charset *cs = charset_find(ct->charset);
        if (strict && (!cs || !charset_checkable(cs)))
                return withhold(why, "the response's charset %s cannot be checked for secrets",
                                shown(ct->charset, b, sizeof b)), NULL;
        return cs ? cs : charset_utf8();
}

/* With secrets at stake: a mark of another charset than the one decided
 * (a reader that sniffs would follow it). */
static int contradicted(const struct charset *cs, const char *raw, size_t n, char *why)
{
        const char *bom = bom_of(raw, n);
        if (bom && !(strcmp(bom, "UTF-8") == 0 && cs == charset_utf8()))
                return withhold(why, "the response begins with a %s byte order mark while its charset is %s, so it "
                                "cannot be checked for secrets", bom, charset_name(cs)), 1;
        return 0;
}

/* ... and what the raw bytes and the decoded text must not show. */
static int doubtful_text(const struct charset *cs, const char *raw, size_t n, const char *text, size_t tlen,
                         json_t *needles, char *why)
{
        if (memchr(text, '\0', tlen))
                return withhold(why, "the response holds NUL characters (UTF-16 or UTF-32 text, or binary data), so "
                                "it cannot be checked for secrets"), 1;
        size_t i, s, e, budget = SCRUB_STEPS_PER_BYTE * (n + 1024) * (json_array_size(needles) + 1);
        json_t *v;
        json_array_foreach(needles, i, v) if (charset_raw_search(cs) &&
                                              scrub_find(raw, n, 0, json_string_value(v), json_string_length(v), &s, &e,
                                                         &budget) != 0)  /* found, or searched too long */
                return withhold(why, "the response's bytes hold a credential that its charset %s may decode to "
                                "other characters, so it cannot be checked for secrets", charset_name(cs)), 1;
        return 0;
}

int scrub_body(json_t **result, int doubtful, json_t *needles, void **body, size_t *len)
{
        const char *value = json_string_value(json_object_get(json_object_get(*result, "headers"), "content-type"));
        struct ctype ct = { 0 };
        int verdict = value ? ctype_parse(value, &ct) : CTYPE_OK;
        int strict = needles && json_array_size(needles);
        char why[400] = "";
        _cleanup_free_ char *raw = *body;
        size_t n = *len;
        *body = NULL;
        *len = 0;
        char *text = NULL;
        size_t tlen = 0, bad = 0;
        const struct charset *cs = decide(verdict, &ct, doubtful, strict, why);
        if (cs && strict && contradicted(cs, raw, n, why))
                cs = NULL;
        int r = cs ? charset_decode(cs, strict, raw, n, &text, &tlen, &bad) : 0;
        if (r == -EILSEQ)
                withhold(why, "the response is not valid %s text (at byte %zu), so it cannot be checked for "
                         "secrets", charset_name(cs), bad);
        else if (r < 0)
                withhold(why, "the response's charset %s cannot be decoded here: %s", charset_name(cs), strerror(-r));
        else if (cs && strict && !doubtful_text(cs, raw, n, text, tlen, needles, why) &&
                 !(text = scrub_text(text, &tlen, needles)))
                withhold(why, "the response's text could not be cleaned of its credentials (out of memory, a "
                         "search too long, or the marks spelling one), so it cannot be checked for secrets");
        if (why[0]) {
                free(text);
                json_decref(*result);
                *result = ctx_error("%s", why);
                return *result ? 0 : -ENOMEM;
        }
        if (json_object_set_new(*result, "charset", json_string("utf-8")) < 0 ||
            json_object_set_new(*result, "json", json_boolean(verdict == CTYPE_OK && ctype_is_json(&ct))) < 0) {
                free(text);
                json_decref(TAKE_PTR(*result));
                return -ENOMEM;
        }
        *body = text;
        *len = tlen;
        return 0;
}
