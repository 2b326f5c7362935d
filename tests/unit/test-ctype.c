/* The one reading of Content-Type (ctype_parse), the charsets decoded
 * (charset_find, charset_decode) and the search for a secret under escapes
 * (scrub_find, scrub_text, scrub_body). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor/broker/ctype.h"
#include "supervisor/broker/scrub.h"
#include "tests/unit/unit.h"

static const struct {
        const char *value;
        int verdict;
        const char *type, *subtype, *charset;  /* charset NULL: none */
} cases[] = {
        { "text/plain", CTYPE_OK, "text", "plain", NULL },
        { "Text/HTML; Charset=UTF-8", CTYPE_OK, "text", "html", "UTF-8" },
        { "text/plain;charset=utf-16", CTYPE_OK, "text", "plain", "utf-16" },
        { "text/plain; charset=\"utf-16\"", CTYPE_OK, "text", "plain", "utf-16" },
        { "text/plain; charset=\"utf\\-16\"", CTYPE_OK, "text", "plain", "utf-16" },
        { "text/plain; x=charset=utf-8; charset=utf-16", CTYPE_MALFORMED, "text", "plain", NULL },
        { "text/plain; x=\"charset=utf-8\"; charset=utf-16", CTYPE_OK, "text", "plain", "utf-16" },
        { "text/plain; x=\"a;charset=utf-8\"", CTYPE_OK, "text", "plain", NULL },
        { "application/json ; charset=utf-8 ;", CTYPE_OK, "application", "json", "utf-8" },
        { "application/json;;; charset=utf-8", CTYPE_OK, "application", "json", "utf-8" },
        { "text/plain; charset=utf-8; CHARSET=utf-16", CTYPE_REPEATED, "text", "plain", "utf-16" },
        { "text/plain; charset=utf-8; charset=utf-8", CTYPE_REPEATED, "text", "plain", "utf-8" },
        { "text/plain; charset=utf-8, text/plain; charset=utf-16", CTYPE_MALFORMED, "text", "plain", NULL },
        { "text/plain; charset = utf-8", CTYPE_MALFORMED, "text", "plain", NULL },
        { "text/plain; charset=\"utf-8", CTYPE_MALFORMED, "text", "plain", NULL },
        { "text/plain; charset=", CTYPE_MALFORMED, "text", "plain", NULL },
        { "text/plain; charset", CTYPE_MALFORMED, "text", "plain", NULL },
        { "text/plain charset=utf-8", CTYPE_MALFORMED, "text", "plain", NULL },
        { "text", CTYPE_MALFORMED, "text", "", NULL },
        { "/plain", CTYPE_MALFORMED, "", "", NULL },
        { "", CTYPE_MALFORMED, "", "", NULL },
        { "text/plain; charset=utf-8\"", CTYPE_MALFORMED, "text", "plain", NULL },
        { "text/plain; charset=\"\"", CTYPE_OK, "text", "plain", "" },
        { "text/plain; charset=\"utf-8\\\"", CTYPE_MALFORMED, "text", "plain", NULL },
        { "text/plain; charset=\"a\x01\"", CTYPE_MALFORMED, "text", "plain", NULL },
        { "text/plain; ch\xe9rset=utf-8", CTYPE_MALFORMED, "text", "plain", NULL },
        { "\ttext/plain\t;\tcharset=latin1\t", CTYPE_OK, "text", "plain", "latin1" },
};

START_TEST(parses)
{
        struct ctype ct;
        int v = ctype_parse(cases[_i].value, &ct);
        ck_assert_msg(v == cases[_i].verdict, "'%s': verdict %d, want %d", cases[_i].value, v, cases[_i].verdict);
        ck_assert_str_eq(ct.type, cases[_i].type);
        ck_assert_str_eq(ct.subtype, cases[_i].subtype);
        if (cases[_i].charset && v != CTYPE_MALFORMED) {
                ck_assert_int_eq(ct.has_charset, 1);
                ck_assert_str_eq(ct.charset, cases[_i].charset);
        } else if (v == CTYPE_OK) {
                ck_assert_int_eq(ct.has_charset, 0);
        }
}
END_TEST

START_TEST(long_values_are_malformed)
{
        char v[600];
        struct ctype ct;
        snprintf(v, sizeof v, "text/plain; charset=%0300d", 7);
        ck_assert_int_eq(ctype_parse(v, &ct), CTYPE_MALFORMED);
        snprintf(v, sizeof v, "text/%0300d", 7);
        ck_assert_int_eq(ctype_parse(v, &ct), CTYPE_MALFORMED);
}
END_TEST

START_TEST(json_media_types)
{
        static const char *const yes[] = { "application/json", "text/json", "application/x-json",
                                           "application/problem+json; charset=utf-8" };
        static const char *const no[] = { "text/plain; x=json", "application/jsonl", "application/json-seq",
                                          "text/html" };
        struct ctype ct;
        for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
                ck_assert_msg(ctype_parse(yes[i], &ct) == CTYPE_OK && ctype_is_json(&ct), "%s", yes[i]);
        for (size_t i = 0; i < sizeof no / sizeof *no; i++)
                ck_assert_msg(ctype_parse(no[i], &ct) == CTYPE_OK && !ctype_is_json(&ct), "%s", no[i]);
}
END_TEST

START_TEST(charsets)
{
        ck_assert_str_eq(charset_name(charset_find("UTF8")), "utf-8");
        ck_assert_str_eq(charset_name(charset_find("Latin1")), "iso-8859-1");
        ck_assert_str_eq(charset_name(charset_find("cp1252")), "windows-1252");
        ck_assert_ptr_null(charset_find("utf-7"));
        ck_assert_ptr_null(charset_find("utf"));
        ck_assert_ptr_null(charset_find("utf8 "));
        ck_assert_ptr_null(charset_find(""));
        ck_assert_ptr_null(charset_find("x-user-defined"));
        ck_assert_int_eq(charset_checkable(charset_find("us-ascii")), 1);
        ck_assert_int_eq(charset_checkable(charset_find("UTF-16")), 0);
        ck_assert_int_eq(charset_checkable(charset_find("utf-32le")), 0);
        ck_assert_int_eq(charset_checkable(charset_find("cp037")), 0);
        ck_assert_int_eq(charset_raw_search(charset_find("shift_jis")), 1);
}
END_TEST

static char *dec(const char *cs, int strict, const char *in, size_t n, int *r, size_t *bad)
{
        char *out = NULL;
        size_t olen = 0;
        *r = charset_decode(charset_find(cs), strict, in, n, &out, &olen, bad);
        if (*r == 0)
                ck_assert_uint_eq(strlen(out), olen);
        return out;
}

START_TEST(decodes)
{
        int r;
        size_t bad;
        char *o = dec("iso-8859-1", 1, "caf\xe9", 4, &r, &bad);
        ck_assert_str_eq(o, "caf\xc3\xa9");
        free(o);
        o = dec("utf-8", 1, "\xef\xbb\xbf{}", 5, &r, &bad);  /* its mark dropped */
        ck_assert_str_eq(o, "{}");
        free(o);
        o = dec("windows-1252", 1, "\x80", 1, &r, &bad);
        ck_assert_str_eq(o, "\xe2\x82\xac");
        free(o);
        /* invalid: strict says where; else U+FFFD */
        static const char *const invalid[] = { "ab\xc1\x81", "ab\xed\xa0\x80", "ab\xf4\x90\x80\x80", "ab\xc3" };
        for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++) {
                ck_assert_ptr_null(dec("utf-8", 1, invalid[i], strlen(invalid[i]), &r, &bad));
                ck_assert_int_eq(r, -EILSEQ);
                ck_assert_uint_eq(bad, 2);
                o = dec("utf-8", 0, invalid[i], strlen(invalid[i]), &r, &bad);
                ck_assert_int_eq(strncmp(o, "ab\xef\xbf\xbd", 5), 0);
                free(o);
        }
        ck_assert_ptr_null(dec("us-ascii", 1, "a\x80", 2, &r, &bad));
        ck_assert_ptr_null(dec("shift_jis", 1, "a\x81", 2, &r, &bad));
        ck_assert_int_eq(r, -EILSEQ);
        o = dec("utf-16le", 0, "A\0B\0", 4, &r, &bad);
        ck_assert_str_eq(o, "AB");
        free(o);
}
END_TEST

static int found(const char *text, const char *secret)
{
        size_t s, e, budget = 1000;
        return scrub_find(text, strlen(text), 0, secret, strlen(secret), &s, &e, &budget);
}

START_TEST(finds_under_escapes)
{
        static const char *const hits[] = {
                "x 123456:AAtok y", "123456:aaTOK", "123456%3AAAtok", "123456%3aAAtok", "%31%32%33%34%35%36%3A%41%41tok",
                "123456\\u003AAAtok", "\\u0031\\u0032\\u0033456:AAtok", "123456&#58;AAtok", "123456&#x3a;AAtok",
                "123456&colon;AAtok", "1&#50%33456:AAt\\x6fk", "123456&#0000058AAtok", "123456\\:AAtok",
        };
        static const char *const misses[] = { "123456:AAto", "123456%253AAAtok", "123456 :AAtok", "12345\\n6:AAtok",
                                              "123456&#5;8AAtok" };
        for (size_t i = 0; i < sizeof hits / sizeof *hits; i++)
                ck_assert_msg(found(hits[i], "123456:AAtok"), "not found in %s", hits[i]);
        for (size_t i = 0; i < sizeof misses / sizeof *misses; i++)
                ck_assert_msg(!found(misses[i], "123456:AAtok"), "found in %s", misses[i]);
        /* a reader that decodes some escapes and not others */
        ck_assert(found("&#65;%42C", "65;BC"));
        ck_assert(found("x&#65;%42C", "#65;BC"));
        ck_assert(found("ab\\\\cd", "ab\\cd"));
        ck_assert(found("a%25b", "a%b"));
}
END_TEST

START_TEST(replaces)
{
        json_t *needles = json_pack("[s, s, s]", "SECRETtok", "abc", "k3y/+=");
        json_t *only = scrub_needles(needles);  /* "abc": too short to be a credential */
        ck_assert_uint_eq(json_array_size(only), 2);
        char *t = strdup("a SECRETtok, SECRET%74ok and k3y%2F%2B%3D, abc");
        size_t len = strlen(t);
        t = scrub_text(t, &len, only);
        ck_assert_str_eq(t, "a [secret], [secret] and [secret], abc");
        ck_assert_uint_eq(len, strlen(t));
        free(t);
        /* the mark and what follows it would spell a secret: nothing is given */
        json_t *odd = json_pack("[s]", "t]abc");
        t = strdup("t]abcabc");
        len = strlen(t);
        ck_assert_ptr_null(scrub_text(t, &len, odd));
        json_decref(odd);
        /* a periodic secret against text that repeats it: bounded, withheld */
        char periodic[202];
        memset(periodic, '%', 200);
        periodic[200] = 'X';
        periodic[201] = '\0';
        odd = json_pack("[s]", periodic);
        len = 3 * 20000;
        t = malloc(len + 1);
        for (size_t i = 0; i < len; i++)
                t[i] = "%25"[i % 3];
        ck_assert_ptr_null(scrub_text(t, &len, odd));
        json_decref(odd);
        json_decref(only);
        json_decref(needles);
}
END_TEST

static json_t *body_of(const char *ctype, const char *body, size_t n, int secrets, char **text)
{
        json_t *result = json_pack("{s:i, s:{}, s:s}", "status", 200, "headers", "url", "http://x/");
        if (ctype)
                json_object_set_new(json_object_get(result, "headers"), "content-type", json_string(ctype));
        json_t *needles = secrets ? json_pack("[s]", "TOKENabc:123") : NULL;
        n = n == (size_t)-1 ? strlen(body) : n;
        void *b = malloc(n + 1);
        memcpy(b, body, n);
        size_t len = n;
        scrub_body(&result, 0, needles, &b, &len);
        json_decref(needles);
        *text = b;
        return result;
}

START_TEST(bodies)
{
        char *text;
        json_t *r = body_of("text/plain; charset=\"iso-8859-1\"", "caf\xe9 TOKENabc:123", (size_t)-1, 1, &text);
        ck_assert_str_eq(text, "caf\xc3\xa9 [secret]");
        ck_assert_str_eq(json_string_value(json_object_get(r, "charset")), "utf-8");
        ck_assert(json_is_false(json_object_get(r, "json")));
        json_decref(r);
        free(text);
        r = body_of("application/json", "{\"a\": \"TOKEN\\u0061bc%3A123\"}", (size_t)-1, 1, &text);
        ck_assert_str_eq(text, "{\"a\": \"[secret]\"}");
        ck_assert(json_is_true(json_object_get(r, "json")));
        json_decref(r);
        free(text);
        static const struct { const char *ctype, *body; size_t n; const char *why; } withheld[] = {
                { "text/plain; charset=utf-16", "T\0O\0", 4, "charset utf-16 cannot be checked" },
                { "text/plain; x=charset=utf-8; charset=utf-16", "T\0O\0", 4, "Content-Type cannot be read" },
                { "text/plain; charset=utf-8; charset=utf-8", "TO", 2, "names its charset more than once" },
                { "text/plain; charset=klingon", "TO", 2, "charset klingon cannot be checked" },
                { "application/json", "{\0\"\0", 4, "NUL characters" },
                { "text/plain", "\xff\xfeT\0", 4, "UTF-16LE byte order mark while its charset is utf-8" },
                { "text/plain; charset=latin1", "\xef\xbb\xbfTO", 5, "UTF-8 byte order mark" },
                { "text/plain", "TO\xc0\x80KEN", 7, "not valid utf-8 text (at byte 2)" },
                { "text/plain; charset=shift_jis", "\x81TOKENabc:123", 13, "bytes hold a credential" },
        };
        for (size_t i = 0; i < sizeof withheld / sizeof *withheld; i++) {
                r = body_of(withheld[i].ctype, withheld[i].body, withheld[i].n, 1, &text);
                const char *e = json_string_value(json_object_get(r, "error"));
                ck_assert_msg(e && strstr(e, withheld[i].why), "%s: %s", withheld[i].ctype, e ? e : "(given)");
                ck_assert_ptr_null(text);
                json_decref(r);
        }
        /* no secret at stake: decoded as well as can be */
        r = body_of("text/plain; charset=utf-16le", "h\0i\0", 4, 0, &text);
        ck_assert_str_eq(text, "hi");
        json_decref(r);
        free(text);
        r = body_of("text/plain; charset=klingon", "h\xffi", 3, 0, &text);
        ck_assert_str_eq(text, "h\xef\xbf\xbdi");
        json_decref(r);
        free(text);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("ctype");
        TCase *tc = tcase_create("core");
        tcase_add_loop_test(tc, parses, 0, sizeof cases / sizeof *cases);
        tcase_add_test(tc, long_values_are_malformed);
        tcase_add_test(tc, json_media_types);
        tcase_add_test(tc, charsets);
        tcase_add_test(tc, decodes);
        tcase_add_test(tc, finds_under_escapes);
        tcase_add_test(tc, replaces);
        tcase_add_test(tc, bodies);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
