/* ctx.state's store: JSON values under (namespace, key), durable once a
 * set returns. One backend today, SQLite in WAL mode with one writer
 * connection in the supervisor; the operations table leaves room for more
 * (Redis, issue 6). Values cross this interface as JSON text. */
#ifndef JR_STATE_H
#define JR_STATE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Most keys one page of keys() holds (its default STATE_PAGE_KEYS), and
 * most bytes of key text (each key's length plus one): even with JSON's
 * six-byte escapes a page fits one reply. A page costs the store a range
 * read of the index, never a scan of the namespace. */
#define STATE_MAX_KEYS 10000
#define STATE_PAGE_KEYS 1000
#define STATE_PAGE_BYTES (128 * 1024)
/* Longest key, in bytes. */
#define STATE_MAX_KEY 1024

struct state_store;

/* One page of keys: those starting with prefix, after `after` (NULL: from
 * the first), at most `limit` (1 to STATE_MAX_KEYS) of them and
 * STATE_PAGE_BYTES of text. */
struct state_page {
        const char *prefix;
        const char *after;
        unsigned limit;
};

/* A backend: the same contract as the functions below, on its own handle. */
struct state_backend {
        const char *name;
        int (*open)(void **impl, const char *url, uint64_t max_total, struct jr_err *err);
        void (*close)(void *impl);
        int (*get)(void *impl, const char *ns, const char *key, char **json, struct jr_err *err);
        int (*set)(void *impl, const char *ns, const char *key, const char *json, struct jr_err *err);
        int (*del)(void *impl, const char *ns, const char *key, int *deleted, struct jr_err *err);
        int (*keys)(void *impl, const char *ns, const struct state_page *page, json_t **keys, int *more,
                    struct jr_err *err);
};

/* Redis (supervisor/broker/state_redis.c): redis://HOST[:PORT][/DB] or
 * unix:///PATH[?db=N]. */
extern const struct state_backend state_redis_backend;
int state_is_redis(const char *url);
/* Whether a Redis URL is well formed (any other text names a file). */
int state_url_ok(const char *url);

/* Opens the store at `url`: a Redis URL, else a SQLite file path (created
 * with its directory when missing). 0, or -errno with err. */
int state_open(struct state_store **out, const char *url, uint64_t max_total, struct jr_err *err);
void state_close(struct state_store *s);

/* The value's JSON text in *json (malloc'd; NULL when the key is absent). */
int state_get(struct state_store *s, const char *ns, const char *key, char **json, struct jr_err *err);
/* Stores the JSON text; returns once it is durable. -EDQUOT when the
 * namespace's values would pass max_total bytes (state_open). */
int state_set(struct state_store *s, const char *ns, const char *key, const char *json, struct jr_err *err);
/* *deleted: whether the key was there. */
int state_delete(struct state_store *s, const char *ns, const char *key, int *deleted, struct jr_err *err);
/* A page of the namespace's keys (in byte order) as a JSON array in
 * *keys; *more says whether keys after its last one start with the
 * prefix. Costs the store O(log n + page), whatever the namespace holds. */
int state_keys(struct state_store *s, const char *ns, const struct state_page *page, json_t **keys, int *more,
               struct jr_err *err);

#endif
