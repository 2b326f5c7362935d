/* Policies: JSON documents (jailrun-policy(5)). A built-in profile
 * (policy/profiles.json: worker, strategy, exec) with an operator's policy
 * file laid over it key by key. Every document is checked against one
 * schema: unknown keys, wrong types and numbers out of range are refused
 * with the JSON path and the reason. The front-ends (jailrun, jaild) read
 * a checked policy through policy_decode's struct policy; the jail's
 * runtime reads the document's text. */
#ifndef JR_POLICY_H
#define JR_POLICY_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "common/netaddr.h"

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

/* Profiles worker and strategy: with python.guard on, refuses a policy that
 * drops a piece of the Python layer it cannot hold without (the validator,
 * its dunder rule, the attribute guard, the core names of the dunder and
 * attribute lists, eval/exec/compile as builtins). 0 or -EINVAL naming the
 * key. Every front-end calls it on the effective policy; jailrun's
 * --unsafe-python-layer alone skips it (testing one layer at a time). */
int policy_check_python_layer(const json_t *doc, const char *what, struct jr_err *err);

/* Values of a checked policy, by dotted path ("limits.memory"); the
 * front-ends use policy_decode instead. */
const char *policy_str(const json_t *p, const char *path);
json_int_t policy_int(const json_t *p, const char *path);
double policy_real(const json_t *p, const char *path);
int policy_bool(const json_t *p, const char *path);
/* Sets a number (a command-line override); the caller re-checks. */
int policy_set(json_t *p, const char *path, json_t *value);

/* The effective policy, typed: every key of the schema but the Python
 * layer's lists and maps (python.imports, .builtins, ... : the jail's
 * runtime reads those from the policy's text). Each front-end (jailrun,
 * jaild) decodes a policy once and reads it from here. */
enum policy_profile { POLICY_WORKER, POLICY_STRATEGY, POLICY_EXEC };
enum policy_import_error { POLICY_IMPORT_ERROR, POLICY_SECURITY_ERROR };
enum policy_dunder { POLICY_DUNDER_ALLOW_LIST, POLICY_DUNDER_DENY_LIST };
enum policy_open { POLICY_OPEN_READ_LIBRARY, POLICY_OPEN_DENY, POLICY_OPEN_ALLOW };
/* validator.forbid: bit (1u << rule) set for each rule listed. */
enum policy_rule {
        POLICY_RULE_IMPORTS, POLICY_RULE_LAMBDA, POLICY_RULE_DUNDER, POLICY_RULE_GLOBAL,
        POLICY_RULE_NONLOCAL, POLICY_RULE_WHILE_TRUE, POLICY_RULE_DEL, POLICY_RULE_DYNAMIC_CODE,
        POLICY_RULE_STRING_ATTRIBUTES, POLICY_RULE_METACLASS,
};

#define POLICY_MAX_NETS 64
#define POLICY_MAX_HOSTS 64
#define POLICY_MAX_PROGRAMS 16

struct policy_nets {
        size_t n;
        struct jr_net net[POLICY_MAX_NETS];
};

struct policy_hosts {
        size_t n;
        char host[POLICY_MAX_HOSTS][256];  /* "*." and 253 characters fit */
};

struct policy {
        enum policy_profile profile;
        struct {
                bool guard;
                enum policy_import_error import_error;
                bool attribute_guard;
                enum policy_dunder dunder_policy;
                enum policy_open open;
        } python;
        struct {
                bool enabled;
                uint64_t max_source_bytes;
                unsigned max_nesting;
                unsigned max_nodes;
                unsigned forbid;             /* bits of enum policy_rule */
        } validator;
        struct {
                uint64_t memory, memory_max;  /* bytes */
                double cpus, cpus_max;        /* cores */
                unsigned pids, pids_max;      /* tasks */
                double timeout;               /* seconds of wall clock for the job; 0 = none */
                double cpu_time;              /* seconds of CPU for the job; 0 = none */
                double tick_timeout;          /* worker: TimeoutError inside a tick past this ... */
                double tick_grace;            /* ... and the jail replaced this much later */
        } limits;
        struct {
                uint64_t max_value_bytes;
                uint64_t max_total_bytes;     /* 0 = no limit */
        } state;
        struct {
                uint64_t quota_bytes;
                uint64_t max_read_bytes;
        } files;
        struct {
                double timeout_max;           /* seconds */
                uint64_t max_response_bytes;
                unsigned max_in_flight;
                unsigned max_redirects;
                double rate_per_second;       /* 0 = no limit */
                struct policy_nets allow_addresses;
                struct policy_hosts allow_hosts, deny_hosts;
                char proxy[512];              /* "" or http://HOST:PORT */
        } http;
        json_t *adapters;                     /* a reference: policy_release drops it */
        struct {
                double bar_timeout;           /* seconds: the soft budget per bar */
                double grace;                 /* seconds past it before the jail is killed */
                uint64_t window;              /* bars */
                uint64_t memory;              /* bytes */
                double abort_percent;
                unsigned abort_min;
        } backtest;
        struct {
                unsigned max_chars;
                unsigned batch;
                uint64_t max_bytes;           /* 0 = no limit */
        } log;
        struct {
                bool shell;                   /* /bin/sh and the tools (profile exec only) */
                unsigned nprograms;           /* exec.programs named (they are in the text) */
        } exec;
};

/* Checks `doc` as a complete policy (policy_check, the same messages:
 * "what: $.key: reason") and decodes it into *out. Returns 0, -EINVAL
 * (err says which key and why) or -ENOMEM; on failure *out holds nothing
 * to release. Release a decoded policy with policy_release. */
int policy_decode(const json_t *doc, const char *what, struct policy *out, struct jr_err *err);
void policy_release(struct policy *p);

/* "worker", "strategy" or "exec" (a static string). */
const char *policy_profile_name(enum policy_profile profile);

#endif
