/* Adapters: named endpoints a policy declares (jailrun-policy(5),
 * "adapters"), whose credentials live in a secrets file that only the
 * supervisor reads, and only after the jail exists, so they are in no
 * memory the jail was cloned from. The supervisor puts them in the
 * request (a messenger's token in its URL) or signs with them (HMAC-SHA256
 * of a REST exchange's requests) and scrubs them from everything that goes
 * back: the reply, its headers, its body, its errors. */
#ifndef JR_ADAPTERS_H
#define JR_ADAPTERS_H

#include <jansson.h>
#include <stdint.h>

#include "common/err.h"
#include "supervisor/broker/http.h"

#define SECRETS_MAX_FILE (64 * 1024)

/* At start-up: the secrets file is a regular file owned by root, with no
 * group or other permission bits. Its content is not read. */
int secrets_check(const char *path, struct jr_err *err);

struct adapters {
        const json_t *decl;     /* the policy's "adapters" object */
        const char *secrets_path;
        json_t *secrets;        /* name -> value, read on first use */
};

/* Reads the secrets file (once; 0 or -errno with err). */
int secrets_load(struct adapters *a, struct jr_err *err);

/* Every secret value (loading the file first when given), as a new
 * array: what every response the worker gets is scrubbed of. */
json_t *adapter_secrets(struct adapters *a);

/* Builds and starts the request of an adapter call (ops adapter.send and
 * adapter.request). Ends like http_start (BROKER_PENDING under way, or
 * BROKER_DONE with *result, -EPROTO, -ENOMEM). */
int adapter_start(struct adapters *a, struct http *h, const char *op, int64_t id, json_t *args, json_t **result,
                  struct jr_err *err);

#endif
