/* The answer a ctx call gets when it fails in the user's terms. */
#pragma once

#include <jansson.h>

/* A new {"error": message} dict, the message formatted, cut at 600 bytes
 * and made valid UTF-8 (a cut never leaves half a character); NULL only
 * when out of memory. */
__attribute__((format(printf, 1, 2)))
json_t *ctx_error(const char *fmt, ...);

struct jr_err;

/* A call that breaks the protocol (`je`: jansson's unpacking error, or
 * NULL): -EPROTO with err saying "OP call: why". When `je` says jansson
 * ran out of memory, the call was not malformed: -ENOMEM instead (so
 * `je` starts zeroed: a passed unpacking leaves its code as it was). */
int ctx_protocol(struct jr_err *err, const char *op, const json_error_t *je);
