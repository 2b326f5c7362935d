/* A response's Content-Type, read once, here (RFC 9110 8.3: type "/"
 * subtype, then ";"-separated parameters whose names ignore case and whose
 * values are a token or a quoted-string with backslash escapes), and its
 * body turned into UTF-8 text. The supervisor decides the charset; the
 * jail is told the decision and never reads the header itself, so the text
 * the secrets were looked for in is the text the worker gets. */
#ifndef JR_CTYPE_H
#define JR_CTYPE_H

#include <stddef.h>

#define CTYPE_MAX_TOKEN 128

enum ctype_verdict {
        CTYPE_OK = 0,
        CTYPE_MALFORMED = -1,  /* not the grammar, or a token or value longer than CTYPE_MAX_TOKEN - 1 */
        CTYPE_REPEATED = -2,   /* a charset parameter more than once */
};

struct ctype {
        char type[CTYPE_MAX_TOKEN];     /* lower case */
        char subtype[CTYPE_MAX_TOKEN];  /* lower case */
        char charset[CTYPE_MAX_TOKEN];  /* the value, quotes and escapes undone; "" when absent */
        int has_charset;
};

/* Parses a Content-Type field value (NUL-terminated; a repeated field
 * arrives joined by ", ", which the grammar refuses). Returns a verdict;
 * *ct is filled as far as the parse went. */
int ctype_parse(const char *value, struct ctype *ct);

/* Whether the media type is JSON: a subtype json, x-json or ending in +json. */
int ctype_is_json(const struct ctype *ct);

struct charset;

/* The charset jailrun decodes under this name (ASCII case ignored;
 * the aliases are a fixed list), or NULL. */
const struct charset *charset_find(const char *name);
const struct charset *charset_utf8(void);

/* Its canonical name ("utf-8", "windows-1252", ...). */
const char *charset_name(const struct charset *cs);

/* Whether text in it can be checked for secrets with certainty: decoded
 * by one fixed table, ASCII text in it stays ASCII text (so no credential
 * hides in NULs or in another byte order), no state carried between
 * characters. UTF-16, UTF-32 and EBCDIC cannot. */
int charset_checkable(const struct charset *cs);

/* Whether its bytes must be searched too: a multibyte charset whose
 * sequences may hold ASCII bytes that decode to something else. */
int charset_raw_search(const struct charset *cs);

/* Decodes in[0..n) to UTF-8 (*out malloc'd and NUL-terminated, *olen
 * without the NUL). strict: the first invalid or truncated sequence fails
 * with -EILSEQ and its byte offset in *bad; else each is replaced by
 * U+FFFD. A leading UTF-8 byte order mark of a UTF-8 body is dropped.
 * Returns 0, -EILSEQ, -ENOMEM, or -errno of iconv_open. */
int charset_decode(const struct charset *cs, int strict, const char *in, size_t n, char **out, size_t *olen,
                   size_t *bad);

/* The length of the valid UTF-8 sequence at s (n bytes left), or 0. */
size_t utf8_seq(const unsigned char *s, size_t n);

/* The byte order mark body[0..n) begins with ("UTF-8", "UTF-16LE", ...),
 * or NULL. */
const char *bom_of(const char *body, size_t n);

#endif
