/* Policies: JSON documents (jailrun-policy(5)). A built-in profile
 * (policy/profiles.json: worker, strategy, exec) with an operator's policy
 * file laid over it key by key. Every document is checked against one
 * schema: unknown keys, wrong types and numbers out of range are refused
 * with the JSON path and the reason. */
#ifndef JR_POLICY_H
#define JR_POLICY_H

#include <jansson.h>

#include "common/err.h"

/* Policy files larger than this are refused unread. */
#define POLICY_MAX_FILE (1024 * 1024)

/* The effective policy of `profile` (NULL: the file's "profile" key, else
 * "worker") with the file at `path` (NULL: none) over it. Returns 0 and a
 * new reference in *out, or -EINVAL with "path: $.key: reason" in err. */
int policy_load(const char *profile, const char *path, json_t **out, struct jr_err *err);

/* The same, from a document already in memory (`what` names it in errors). */
int policy_apply(const char *profile, json_t *over, const char *what, json_t **out, struct jr_err *err);

/* Checks a document against the schema; `complete` also demands every key
 * (built-in profiles) and consistent limits. 0 or -EINVAL. */
int policy_check(const json_t *doc, int complete, const char *what, struct jr_err *err);

/* Values of a checked policy, by dotted path ("limits.memory"). */
const char *policy_str(const json_t *p, const char *path);
json_int_t policy_int(const json_t *p, const char *path);
double policy_real(const json_t *p, const char *path);
int policy_bool(const json_t *p, const char *path);
/* Sets a number (a command-line override); the caller re-checks. */
int policy_set(json_t *p, const char *path, json_t *value);

#endif
