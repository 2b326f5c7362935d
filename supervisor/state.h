/* ctx.state's store: JSON values under (namespace, key), durable once a
 * set returns. One backend today, SQLite in WAL mode with one writer
 * connection in the supervisor; the operations table leaves room for more
 * (Redis, issue 6). Values cross this interface as JSON text. */
#ifndef JR_STATE_H
#define JR_STATE_H

#include <jansson.h>
#include <stddef.h>

#include "common/err.h"

/* Most keys one keys() call returns; more is an error naming the limit. */
#define STATE_MAX_KEYS 10000
/* Longest key, in bytes. */
#define STATE_MAX_KEY 1024

struct state_store;

/* Opens (creating it and its directory when missing) the store at `url`:
 * a file path for SQLite. 0, or -errno with err. */
int state_open(struct state_store **out, const char *url, struct jr_err *err);
void state_close(struct state_store *s);

/* The value's JSON text in *json (malloc'd; NULL when the key is absent). */
int state_get(struct state_store *s, const char *ns, const char *key, char **json, struct jr_err *err);
/* Stores the JSON text; returns once it is durable. */
int state_set(struct state_store *s, const char *ns, const char *key, const char *json, struct jr_err *err);
/* *deleted: whether the key was there. */
int state_delete(struct state_store *s, const char *ns, const char *key, int *deleted, struct jr_err *err);
/* The namespace's keys starting with prefix, sorted, as a JSON array in
 * *keys; -E2BIG when there are more than STATE_MAX_KEYS. */
int state_keys(struct state_store *s, const char *ns, const char *prefix, json_t **keys, struct jr_err *err);

#endif
