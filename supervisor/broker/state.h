/* ctx.state's store: JSON values under (namespace, key), durable once a
 * set returns: SQLite in WAL mode with one writer connection in the
 * supervisor, called here and answering at once; or Redis, for many nodes
 * sharing state, driven from the job's loop (state_redis.h). Values cross
 * both interfaces as JSON text. */
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

/* One operation, as the broker asks it of either store, and its outcome. */
enum state_op { STATE_GET, STATE_SET, STATE_DELETE, STATE_KEYS };

struct state_req {
        enum state_op op;
        const char *ns;
        const char *key;               /* get, set, delete */
        const char *json;              /* set: the value's JSON text */
        struct state_page page;        /* keys */
};

struct state_out {
        int rc;                        /* 0, or -errno with err (-EDQUOT: past max_total) */
        struct jr_err err;
        char *json;                    /* get: the value's text (malloc'd); NULL when absent */
        int deleted;                   /* delete: whether the key was there */
        json_t *keys;                  /* keys: the page (a reference) */
        int more;
};

/* Frees what out holds and zeroes it. */
void state_out_clear(struct state_out *out);

/* SQLite's operations as one request: *out filled, never left unset. */
void state_do(struct state_store *s, const struct state_req *req, struct state_out *out);

/* Redis (supervisor/broker/state_redis.h, asynchronous: not opened by
 * state_open): redis://HOST[:PORT][/DB] or unix:///PATH[?db=N]. */
int state_is_redis(const char *url);
/* url with a Redis host name resolved to its IPv4 address (once, by a
 * front-end as it starts: a connection made from the loop must not wait
 * on DNS), in out; any other url copied as it is. One that cannot be
 * resolved now is kept, logged, and never looked up again: the store
 * refuses to connect to a name. 0, or -ENAMETOOLONG. */
int state_url_resolve(const char *url, char *out, size_t size);
/* Whether a Redis URL is well formed (any other text names a file). */
int state_url_ok(const char *url);

/* Opens the SQLite store at the file path `url` (created with its
 * directory when missing). 0, or -errno with err. */
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
