/* Secrets kept out of what a worker gets back from ctx.http and the
 * adapters: every credential is replaced by "[secret]" wherever it appears
 * as text, and a body whose text cannot be known with certainty is
 * withheld (an error) rather than handed over unchecked.
 *
 * A credential is found in any letter case and with any of its characters
 * written as an escape a service's encoder would use, mixed as it likes:
 * percent (%41), backslash (\u0041, \x41, \U00000041, \/ and the like),
 * or an HTML character reference (&#65;, &#x41;, &colon;). Escapes of
 * escapes (%2541) and deliberate transforms (base64, a charset other than
 * the declared one) are out of reach of any scrubbing. */
#ifndef JR_SCRUB_H
#define JR_SCRUB_H

#include <jansson.h>
#include <stddef.h>

#define SCRUB_MARK "[secret]"

/* The secrets worth looking for: the strings of `secrets` (an array) at
 * least 4 characters long, as a new array; NULL when out of memory. */
json_t *scrub_needles(json_t *secrets);

/* Whether secret[0..m) occurs in t[0..n) at or after `from`, read with any
 * mix of escapes: 1 and its first occurrence's span in *start, *end; 0;
 * -1 when *budget (steps, decremented) ran out first. */
int scrub_find(const char *t, size_t n, size_t from, const char *secret, size_t m, size_t *start, size_t *end,
               size_t *budget);

/* buf[0..*len) (malloc'd, consumed) with every needle replaced by
 * SCRUB_MARK, NUL-terminated; NULL when out of memory, when the search
 * takes more than a fixed number of steps a byte (a periodic secret against
 * text that repeats it), or when a needle remains even so (the marks and
 * their neighbours spelling one). */
char *scrub_text(char *buf, size_t *len, json_t *needles);

/* The same on every string of a JSON value, object keys included (a
 * string that cannot be cleaned becomes SCRUB_MARK). Consumes v; NULL
 * when out of memory (never a value left partly unscrubbed). */
json_t *scrub_json(json_t *v, json_t *needles);

/* A finished response's body made the text the worker gets: the charset
 * decided from the Content-Type in result's headers (`doubtful`: that
 * header arrived folded or not as UTF-8), the body decoded to UTF-8 and,
 * when there are needles, checked and scrubbed. On success *body and *len hold
 * the text and result gains "charset": "utf-8" and "json" (whether the
 * media type is JSON); else *body is freed and *result replaced by an
 * error dict saying why the body was withheld. 0, or -ENOMEM (*result
 * and *body gone). */
int scrub_body(json_t **result, int doubtful, json_t *needles, void **body, size_t *len);

#endif
