#include "config.h"

#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cleanup.h"
#include "supervisor/broker/ctype.h"

/* --- Content-Type (RFC 9110 5.6.2, 5.6.4, 5.6.6, 8.3.1) -------------------- */

static int tchar(unsigned char c)
{
        return c > 0x20 && c < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", c);
}

static void skip_ows(const char **p)
{
        while (**p == ' ' || **p == '\t')
                (*p)++;
}

/* A token at *p into out (lower case when asked); 0 when there is none or
 * it does not fit. */
static int token(const char **p, char *out, int lower)
{
        size_t n = 0;
        while (tchar((unsigned char)(*p)[n])) {
                if (n + 1 >= CTYPE_MAX_TOKEN)
                        return 0;
                char c = (*p)[n];
                out[n++] = lower && c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
        }
        out[n] = '\0';
        *p += n;
        return n > 0;
}

/* A quoted-string at *p (its opening quote), escapes undone, into out. */
static int quoted(const char **p, char *out)
{
        const unsigned char *s = (const unsigned char *)*p + 1;
        size_t n = 0;
        for (;; s++) {
                unsigned char c = *s;
                if (c == '"')
                        break;
                if (c == '\\') {  /* quoted-pair: HTAB, SP, VCHAR, obs-text */
                        c = *++s;
                        if (!(c == '\t' || c >= 0x20) || c == 0x7f)
                                return 0;
                } else if (!(c == '\t' || c >= 0x20) || c == 0x7f) {  /* qdtext; NUL ends the value unclosed */
                        return 0;
                }
                if (n + 1 >= CTYPE_MAX_TOKEN)
                        return 0;
                out[n++] = (char)c;
        }
        out[n] = '\0';
        *p = (const char *)s + 1;
        return 1;
}

int ctype_parse(const char *value, struct ctype *ct)
{
        *ct = (struct ctype){ 0 };
        const char *p = value;
        skip_ows(&p);
        if (!token(&p, ct->type, 1) || *p++ != '/' || !token(&p, ct->subtype, 1))
                return CTYPE_MALFORMED;
        int repeated = 0;
        for (;;) {
                skip_ows(&p);
                if (!*p)
                        break;
                if (*p++ != ';')
                        return CTYPE_MALFORMED;
                skip_ows(&p);
                if (!*p || *p == ';')  /* an empty parameter */
                        continue;
                char name[CTYPE_MAX_TOKEN], val[CTYPE_MAX_TOKEN];
                /* No whitespace around "=": the grammar has none there. */
                if (!token(&p, name, 1) || *p++ != '=' || !(*p == '"' ? quoted(&p, val) : token(&p, val, 0)))
                        return CTYPE_MALFORMED;
                if (strcmp(name, "charset") != 0)
                        continue;
                repeated |= ct->has_charset;
                snprintf(ct->charset, sizeof ct->charset, "%s", val);
                ct->has_charset = 1;
        }
        return repeated ? CTYPE_REPEATED : CTYPE_OK;
}

int ctype_is_json(const struct ctype *ct)
{
        size_t n = strlen(ct->subtype);
        return strcmp(ct->subtype, "json") == 0 || strcmp(ct->subtype, "x-json") == 0 ||
               (n > 5 && strcmp(ct->subtype + n - 5, "+json") == 0);
}

/* --- charsets ------------------------------------------------------------------- */

enum cs_how { CS_UTF8, CS_ASCII, CS_LATIN1, CS_ICONV };

struct charset {
        const char *name;     /* canonical, and iconv's */
        const char *aliases;  /* space-separated, each followed by a space */
        enum cs_how how;
        int checkable;
        int raw_search;
};

#define SINGLE(n, a) { n, a, CS_ICONV, 1, 0 }
#define MULTI(n, a) { n, a, CS_ICONV, 1, 1 }
#define UNCHECKABLE(n, a) { n, a, CS_ICONV, 0, 0 }

static const struct charset charsets[] = {
        { "utf-8", "utf8 ", CS_UTF8, 1, 0 },
        { "us-ascii", "ascii ", CS_ASCII, 1, 0 },
        { "iso-8859-1", "iso8859-1 iso_8859-1 latin1 latin-1 l1 ", CS_LATIN1, 1, 0 },
        SINGLE("windows-1250", "cp1250 "), SINGLE("windows-1251", "cp1251 "), SINGLE("windows-1252", "cp1252 "),
        SINGLE("windows-1253", "cp1253 "), SINGLE("windows-1254", "cp1254 "), SINGLE("windows-1255", "cp1255 "),
        SINGLE("windows-1256", "cp1256 "), SINGLE("windows-1257", "cp1257 "), SINGLE("windows-1258", "cp1258 "),
        SINGLE("iso-8859-2", "iso8859-2 iso_8859-2 latin2 "), SINGLE("iso-8859-3", "iso8859-3 iso_8859-3 "),
        SINGLE("iso-8859-4", "iso8859-4 iso_8859-4 "), SINGLE("iso-8859-5", "iso8859-5 iso_8859-5 "),
        SINGLE("iso-8859-6", "iso8859-6 iso_8859-6 "), SINGLE("iso-8859-7", "iso8859-7 iso_8859-7 "),
        SINGLE("iso-8859-8", "iso8859-8 iso_8859-8 "), SINGLE("iso-8859-9", "iso8859-9 iso_8859-9 latin5 "),
        SINGLE("iso-8859-10", "iso8859-10 iso_8859-10 "), SINGLE("iso-8859-13", "iso8859-13 iso_8859-13 "),
        SINGLE("iso-8859-14", "iso8859-14 iso_8859-14 "), SINGLE("iso-8859-15", "iso8859-15 iso_8859-15 latin-9 "),
        SINGLE("iso-8859-16", "iso8859-16 iso_8859-16 "), SINGLE("koi8-r", ""), SINGLE("koi8-u", ""),
        /* Multibyte: an ASCII byte may be the second of a pair (Shift_JIS
         * 0x5C is YEN SIGN), so the bytes are searched too. */
        MULTI("shift_jis", "shift-jis sjis x-sjis "), MULTI("euc-jp", "eucjp "), MULTI("gbk", "cp936 "),
        MULTI("gb2312", ""), MULTI("gb18030", ""), MULTI("big5", ""), MULTI("euc-kr", "euckr "),
        /* Decoded when no secret is at stake, never checked: */
        UNCHECKABLE("utf-16", ""), UNCHECKABLE("utf-16le", ""), UNCHECKABLE("utf-16be", ""),
        UNCHECKABLE("utf-32", ""), UNCHECKABLE("utf-32le", ""), UNCHECKABLE("utf-32be", ""),
        UNCHECKABLE("ibm037", "cp037 ebcdic-cp-us "),
};

const struct charset *charset_find(const char *name)
{
        size_t n = strlen(name);
        for (size_t i = 0; i < ELEMENTSOF(charsets); i++) {
                if (strcasecmp(charsets[i].name, name) == 0)
                        return &charsets[i];
                for (const char *a = charsets[i].aliases; *a; a = strchr(a, ' ') + 1)
                        if (strncasecmp(a, name, n) == 0 && a[n] == ' ')
                                return &charsets[i];
        }
        return NULL;
}

const struct charset *charset_utf8(void)
{
        return &charsets[0];
}

const char *charset_name(const struct charset *cs)
{
        return cs->name;
}

int charset_checkable(const struct charset *cs)
{
        return cs->checkable;
}

int charset_raw_search(const struct charset *cs)
{
        return cs->raw_search;
}

size_t utf8_seq(const unsigned char *s, size_t n)
{
        size_t k = s[0] < 0x80 ? 1 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : s[0] >= 0xe0 && s[0] < 0xf0 ? 3
                 : s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : 0;
        if (k > n)
                return 0;
        for (size_t i = 1; i < k; i++)
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
        if (k == 3 && ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0)))
                return 0;  /* overlong, surrogate */
        if (k == 4 && ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90)))
                return 0;  /* overlong, past U+10FFFF */
        return k;
}

const char *bom_of(const char *body, size_t n)
{
        static const struct { const char *name; const char *bytes; size_t len; } boms[] = {
                /* UTF-32LE first: its mark begins with UTF-16LE's. */
                { "UTF-32LE", "\xff\xfe\0\0", 4 }, { "UTF-32BE", "\0\0\xfe\xff", 4 },
                { "UTF-8", "\xef\xbb\xbf", 3 },    { "UTF-16LE", "\xff\xfe", 2 },
                { "UTF-16BE", "\xfe\xff", 2 },
        };
        for (size_t i = 0; i < ELEMENTSOF(boms); i++)
                if (n >= boms[i].len && memcmp(body, boms[i].bytes, boms[i].len) == 0)
                        return boms[i].name;
        return NULL;
}

/* Room for `more` bytes at *o in the growing buffer *buf of *cap. */
static int reserve(char **buf, size_t *cap, char **o, size_t more)
{
        size_t used = (size_t)(*o - *buf);
        if (*cap - used >= more)
                return 0;
        size_t ncap = *cap * 2 + more;
        char *g = realloc(*buf, ncap);
        if (!g)
                return -ENOMEM;
        *buf = g;
        *o = g + used;
        *cap = ncap;
        return 0;
}

static const char replacement[] = "\xef\xbf\xbd";  /* U+FFFD */

/* The end of the run of valid text at in[i..n): ASCII, or UTF-8 too. */
static size_t valid_run(enum cs_how how, const unsigned char *in, size_t i, size_t n)
{
        while (i < n) {
                size_t k = in[i] < 0x80 ? 1 : how == CS_UTF8 ? utf8_seq(in + i, n - i) : 0;
                if (!k)
                        break;
                i += k;
        }
        return i;
}

/* UTF-8, US-ASCII and ISO-8859-1: by hand; valid runs copied whole. What
 * comes out is UTF-8 by construction. */
static int decode_direct(enum cs_how how, int strict, const unsigned char *in, size_t n, char *o, char **end,
                         size_t *bad)
{
        for (size_t i = 0; i < n;) {
                if (how == CS_LATIN1) {
                        if (in[i] < 0x80) {
                                *o++ = (char)in[i++];
                        } else {
                                *o++ = (char)(0xc0 | in[i] >> 6);
                                *o++ = (char)(0x80 | (in[i++] & 0x3f));
                        }
                        continue;
                }
                size_t run = valid_run(how, in, i, n);
                memcpy(o, in + i, run - i);
                o += run - i;
                if ((i = run) == n)
                        break;
                if (strict) {
                        *bad = i;
                        return -EILSEQ;
                }
                memcpy(o, replacement, 3);
                o += 3;
                i++;
        }
        *end = o;
        return 0;
}

static int decode_iconv(const char *name, int strict, const char *in, size_t n, char **buf, size_t *cap, char **o,
                        size_t *bad)
{
        iconv_t cd = iconv_open("UTF-8", name);
        if (cd == (iconv_t)-1)
                return -errno;
        char *ip = (char *)in;
        size_t il = n;
        int r = 0;
        while (il > 0 && r == 0) {
                size_t ol = *cap - (size_t)(*o - *buf);
                if (iconv(cd, &ip, &il, o, &ol) != (size_t)-1)
                        break;
                if (errno == E2BIG) {
                        r = reserve(buf, cap, o, 64);
                } else if (errno == EILSEQ || errno == EINVAL) {  /* invalid, or cut short at the end */
                        if (strict) {
                                *bad = n - il;
                                r = -EILSEQ;
                        } else if ((r = reserve(buf, cap, o, 3)) == 0) {
                                memcpy(*o, replacement, 3);
                                *o += 3;
                                ip++;
                                il--;
                                iconv(cd, NULL, NULL, NULL, NULL);  /* a stateful decoder starts afresh */
                        }
                } else {
                        r = -errno;
                }
        }
        iconv_close(cd);
        return r;
}

int charset_decode(const struct charset *cs, int strict, const char *in, size_t n, char **out, size_t *olen,
                   size_t *bad)
{
        *bad = 0;
        size_t skipped = 0;
        if (cs->how == CS_UTF8 && n >= 3 && memcmp(in, "\xef\xbb\xbf", 3) == 0)
                skipped = 3;  /* the mark says UTF-8, as the charset does: not text */
        in += skipped;
        n -= skipped;
        if (n > (SIZE_MAX - 16) / 3)
                return -ENOMEM;
        size_t cap = 3 * n + 16;  /* every byte gives at most 3, U+FFFD included (iconv may ask more) */
        _cleanup_free_ char *buf = malloc(cap);
        if (!buf)
                return -ENOMEM;
        char *o = buf;
        int r = cs->how == CS_ICONV ? decode_iconv(cs->name, strict, in, n, &buf, &cap, &o, bad)
                                    : decode_direct(cs->how, strict, (const unsigned char *)in, n, buf, &o, bad);
        if (r < 0) {
                *bad += skipped;  /* where in the body as it came */
                return r;
        }
        size_t len = (size_t)(o - buf);
        if (reserve(&buf, &cap, &o, 1) < 0)
                return -ENOMEM;
        *o = '\0';
        *olen = len;
        *out = TAKE_PTR(buf);
        return 0;
}
