/* The answer a ctx call gets when it fails in the user's terms. */
#pragma once

#include <jansson.h>

/* A new {"error": message} dict, the message formatted, cut at 600 bytes
 * and made valid UTF-8 (a cut never leaves half a character); NULL only
 * when out of memory. */
__attribute__((format(printf, 1, 2)))
json_t *ctx_error(const char *fmt, ...);
