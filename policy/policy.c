#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/netaddr.h"
#include "policy/policy.h"

extern const char jr_profiles_json[];

enum ptype {
        P_OBJECT,
        P_BOOL,
        P_INT,
        P_REAL,      /* any JSON number */
        P_CHOICE,    /* one string of `choices` */
        P_NAMES,     /* array of distinct dotted Python names */
        P_REASONS,   /* object: dotted name (or event prefix) -> one-line reason */
        P_MODULES,   /* object: identifier -> dotted module name */
        P_RULES,     /* array of distinct strings of `choices` */
        P_NETS,      /* array of addresses or prefixes: "127.0.0.1", "10.0.0.0/8" */
        P_HOSTS,     /* array of host names, "*.example.com" for subdomains */
        P_PATHS,     /* array of distinct absolute, plain paths (no "..", ".", "//", ":") */
        P_PROXY,     /* "" or http://HOST:PORT */
        P_ADAPTERS,  /* object: name -> declaration (check_adapter) */
};

struct pkey {
        const char *path;
        enum ptype type;
        double min, max;
        const char *const *choices;  /* indexed by the key's enum (policy.h) */
        size_t off, size;            /* its field in struct policy; size 0: not decoded */
};

static const char *const profiles[] = {
        [POLICY_WORKER] = "worker", [POLICY_STRATEGY] = "strategy", [POLICY_EXEC] = "exec", NULL,
};
static const char *const import_errors[] = {
        [POLICY_IMPORT_ERROR] = "ImportError", [POLICY_SECURITY_ERROR] = "SecurityError", NULL,
};
static const char *const dunder_policies[] = {
        [POLICY_DUNDER_ALLOW_LIST] = "allow-list", [POLICY_DUNDER_DENY_LIST] = "deny-list", NULL,
};
static const char *const open_rules[] = {
        [POLICY_OPEN_READ_LIBRARY] = "read-library", [POLICY_OPEN_DENY] = "deny", [POLICY_OPEN_ALLOW] = "allow", NULL,
};
static const char *const rules[] = {
        [POLICY_RULE_IMPORTS] = "imports",       [POLICY_RULE_LAMBDA] = "lambda",
        [POLICY_RULE_DUNDER] = "dunder",         [POLICY_RULE_GLOBAL] = "global",
        [POLICY_RULE_NONLOCAL] = "nonlocal",     [POLICY_RULE_WHILE_TRUE] = "while_true",
        [POLICY_RULE_DEL] = "del",               [POLICY_RULE_DYNAMIC_CODE] = "dynamic_code",
        [POLICY_RULE_STRING_ATTRIBUTES] = "string_attributes", [POLICY_RULE_METACLASS] = "metaclass",
        NULL,
};

#define GiB (1024.0 * 1024 * 1024)
/* The field a key decodes into (policy_decode). */
#define AT(field) offsetof(struct policy, field), sizeof(((struct policy *)0)->field)

/* The one schema (jailrun-policy(5) documents every key). */
static const struct pkey schema[] = {
        { "profile", P_CHOICE, 0, 0, profiles, AT(profile) },
        { "python", P_OBJECT, 0, 0, NULL },
        { "python.guard", P_BOOL, 0, 0, NULL, AT(python.guard) },
        { "python.imports", P_NAMES, 0, 4096, NULL },
        { "python.import_error", P_CHOICE, 0, 0, import_errors, AT(python.import_error) },
        { "python.builtins", P_NAMES, 0, 4096, NULL },
        { "python.blocked_builtins", P_REASONS, 0, 4096, NULL },
        { "python.absent_builtins", P_REASONS, 0, 4096, NULL },
        { "python.globals", P_MODULES, 0, 4096, NULL },
        { "python.attribute_guard", P_BOOL, 0, 0, NULL, AT(python.attribute_guard) },
        { "python.dunder_policy", P_CHOICE, 0, 0, dunder_policies, AT(python.dunder_policy) },
        { "python.dunder_allow", P_NAMES, 0, 4096, NULL },
        { "python.dunder_deny", P_NAMES, 0, 4096, NULL },
        { "python.denied_attributes", P_NAMES, 0, 4096, NULL },
        { "python.blocked_names", P_REASONS, 0, 4096, NULL },
        { "python.checked_names", P_NAMES, 0, 4096, NULL },
        { "python.denied_modules", P_NAMES, 0, 4096, NULL },
        { "python.audit_deny", P_REASONS, 0, 4096, NULL },
        { "python.audit_deny_user", P_REASONS, 0, 4096, NULL },
        { "python.open", P_CHOICE, 0, 0, open_rules, AT(python.open) },
        { "validator", P_OBJECT, 0, 0, NULL },
        { "validator.enabled", P_BOOL, 0, 0, NULL, AT(validator.enabled) },
        { "validator.max_source_bytes", P_INT, 1, 16 << 20, NULL, AT(validator.max_source_bytes) },
        { "validator.max_nesting", P_INT, 1, 1000, NULL, AT(validator.max_nesting) },
        { "validator.max_nodes", P_INT, 1, 1e8, NULL, AT(validator.max_nodes) },
        { "validator.forbid", P_RULES, 0, 0, rules, AT(validator.forbid) },
        { "limits", P_OBJECT, 0, 0, NULL },
        { "limits.memory", P_INT, 32 << 20, 1024 * GiB, NULL, AT(limits.memory) },
        { "limits.memory_max", P_INT, 32 << 20, 1024 * GiB, NULL, AT(limits.memory_max) },
        { "limits.cpus", P_REAL, 0.01, 1024, NULL, AT(limits.cpus) },
        { "limits.cpus_max", P_REAL, 0.01, 1024, NULL, AT(limits.cpus_max) },
        { "limits.pids", P_INT, 4, 1000000, NULL, AT(limits.pids) },
        { "limits.pids_max", P_INT, 4, 1000000, NULL, AT(limits.pids_max) },
        { "limits.timeout", P_REAL, 0, 31536000, NULL, AT(limits.timeout) },
        { "limits.cpu_time", P_REAL, 0, 31536000, NULL, AT(limits.cpu_time) },
        { "limits.tick_timeout", P_REAL, 0.001, 86400, NULL, AT(limits.tick_timeout) },
        { "limits.tick_grace", P_REAL, 0.1, 600, NULL, AT(limits.tick_grace) },
        { "state", P_OBJECT, 0, 0, NULL },
        { "state.max_value_bytes", P_INT, 1, 768 * 1024, NULL, AT(state.max_value_bytes) },
        { "state.max_total_bytes", P_INT, 0, 1024 * GiB, NULL, AT(state.max_total_bytes) },
        { "files", P_OBJECT, 0, 0, NULL },
        { "files.quota_bytes", P_INT, 0, 1024 * GiB, NULL, AT(files.quota_bytes) },
        { "files.max_read_bytes", P_INT, 1, 512 * 1024, NULL, AT(files.max_read_bytes) },
        { "http", P_OBJECT, 0, 0, NULL },
        { "http.timeout_max", P_REAL, 0.1, 300, NULL, AT(http.timeout_max) },
        /* A body goes to the jail as datagrams of 1 MiB that must all fit
         * its socket's queue at once (10 datagrams): 8 MiB at most. */
        { "http.max_response_bytes", P_INT, 1, 8 << 20, NULL, AT(http.max_response_bytes) },
        { "http.max_in_flight", P_INT, 1, 64, NULL, AT(http.max_in_flight) },
        { "http.max_redirects", P_INT, 0, 20, NULL, AT(http.max_redirects) },
        { "http.rate_per_second", P_REAL, 0, 10000, NULL, AT(http.rate_per_second) },
        { "http.allow_addresses", P_NETS, 0, POLICY_MAX_NETS, NULL, AT(http.allow_addresses) },
        { "http.allow_hosts", P_HOSTS, 0, POLICY_MAX_HOSTS, NULL, AT(http.allow_hosts) },
        { "http.deny_hosts", P_HOSTS, 0, POLICY_MAX_HOSTS, NULL, AT(http.deny_hosts) },
        { "http.proxy", P_PROXY, 0, 0, NULL, AT(http.proxy) },
        { "adapters", P_ADAPTERS, 0, 32, NULL, AT(adapters) },
        { "backtest", P_OBJECT, 0, 0, NULL },
        { "backtest.bar_timeout", P_REAL, 0.001, 3600, NULL, AT(backtest.bar_timeout) },
        { "backtest.grace", P_REAL, 0.1, 600, NULL, AT(backtest.grace) },
        { "backtest.window", P_INT, 0, 1e8, NULL, AT(backtest.window) },
        { "backtest.memory", P_INT, 1 << 20, 64 * GiB, NULL, AT(backtest.memory) },
        { "backtest.abort_percent", P_REAL, 0, 100, NULL, AT(backtest.abort_percent) },
        { "backtest.abort_min", P_INT, 1, 1e9, NULL, AT(backtest.abort_min) },
        { "log", P_OBJECT, 0, 0, NULL },
        { "log.max_chars", P_INT, 1, 4000, NULL, AT(log.max_chars) },
        { "log.batch", P_INT, 1, 20, NULL, AT(log.batch) },
        { "log.max_bytes", P_INT, 0, 1024 * GiB, NULL, AT(log.max_bytes) },
        { "exec", P_OBJECT, 0, 0, NULL },
        { "exec.shell", P_BOOL, 0, 0, NULL, AT(exec.shell) },
        { "exec.programs", P_PATHS, 0, POLICY_MAX_PROGRAMS, NULL, AT(exec.nprograms) },
};

static const struct pkey *find_key(const char *path)
{
        for (size_t i = 0; i < ELEMENTSOF(schema); i++)
                if (strcmp(schema[i].path, path) == 0)
                        return &schema[i];
        return NULL;
}

static const char *type_name(const json_t *j)
{
        switch (json_typeof(j)) {
        case JSON_OBJECT: return "an object";
        case JSON_ARRAY: return "an array";
        case JSON_STRING: return "a string";
        case JSON_INTEGER: return "an integer";
        case JSON_REAL: return "a number";
        case JSON_TRUE:
        case JSON_FALSE: return "a boolean";
        case JSON_NULL: return "null";
        }
        return "?";
}

static int is_choice(const char *s, const char *const *choices)
{
        for (; *choices; choices++)
                if (strcmp(s, *choices) == 0)
                        return 1;
        return 0;
}

/* A dotted Python name (or audit event prefix ending in '.'): letters,
 * digits, '_' and '.', at most 200 characters. */
static int is_name(const char *s, size_t len, int allow_trailing_dot)
{
        if (len == 0 || len > 200 || strlen(s) != len || s[0] == '.')
                return 0;
        for (size_t i = 0; i < len; i++) {
                char c = s[i];
                int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                         (c >= '0' && c <= '9' && i > 0 && s[i - 1] != '.') || c == '.';
                if (!ok || (c == '.' && i + 1 < len && s[i + 1] == '.'))
                        return 0;
        }
        return allow_trailing_dot || s[len - 1] != '.';
}

__attribute__((format(printf, 4, 5)))
static int bad(struct jr_err *err, const char *what, const char *path, const char *fmt, ...)
{
        char reason[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(reason, sizeof reason, fmt, ap);
        va_end(ap);
        return jr_fail(err, 0, "%s: $%s%s: %s", what, *path ? "." : "", path, reason);
}

/* An absolute path with no empty, "." or ".." part, no trailing slash and
 * no ':' (the jail's path lists are ':'-separated). */
static int plain_path(const char *s, size_t len)
{
        if (len < 2 || len >= 256 || strlen(s) != len || s[0] != '/' || s[len - 1] == '/' || strchr(s, ':'))
                return 0;
        for (const char *p = s; p; p = strchr(p + 1, '/')) {
                size_t n = strcspn(p + 1, "/");
                if (n == 0 || (n == 1 && p[1] == '.') || (n == 2 && p[1] == '.' && p[2] == '.'))
                        return 0;
        }
        return 1;
}

/* What an entry of a list of k's type must be, when `e` is not that. */
static const char *not_an_entry(const struct pkey *k, const json_t *e)
{
        const char *s = json_string_value(e);
        switch (k->type) {
        case P_RULES: return is_choice(s, k->choices) ? NULL : "a known rule";
        case P_PATHS: return plain_path(s, json_string_length(e)) ? NULL : "a plain absolute path";
        default: return is_name(s, json_string_length(e), 0) ? NULL : "a Python name";
        }
}

static int check_array(const struct pkey *k, const json_t *v, const char *what, struct jr_err *err)
{
        if (!json_is_array(v))
                return bad(err, what, k->path, "expected an array of strings, got %s", type_name(v));
        if (k->type != P_RULES && json_array_size(v) > (size_t)k->max)
                return bad(err, what, k->path, "more than %.0f entries", k->max);
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
                const char *s = json_string_value(e), *want;
                if (!s)
                        return bad(err, what, k->path, "[%zu]: expected a string, got %s", i, type_name(e));
                if ((want = not_an_entry(k, e)))
                        return bad(err, what, k->path, "[%zu]: '%.64s' is not %s", i, s, want);
                for (size_t d = 0; d < i; d++)
                        if (strcmp(s, json_string_value(json_array_get(v, d))) == 0)
                                return bad(err, what, k->path, "[%zu]: '%.64s' is listed twice", i, s);
        }
        return 0;
}

static int check_map(const struct pkey *k, const json_t *v, const char *what, struct jr_err *err)
{
        if (!json_is_object(v))
                return bad(err, what, k->path, "expected an object, got %s", type_name(v));
        if (json_object_size(v) > (size_t)k->max)
                return bad(err, what, k->path, "more than %.0f entries", k->max);
        const char *key;
        json_t *e;
        json_object_foreach((json_t *)v, key, e) {
                const char *s = json_string_value(e);
                if (!is_name(key, strlen(key), k->type == P_REASONS))
                        return bad(err, what, k->path, "key '%.64s' is not a Python name", key);
                if (k->type == P_MODULES && strchr(key, '.'))
                        return bad(err, what, k->path, "key '%.64s' is not an identifier", key);
                if (!s)
                        return bad(err, what, k->path, ".%s: expected a string, got %s", key, type_name(e));
                size_t len = json_string_length(e);
                if (k->type == P_MODULES ? !is_name(s, len, 0)
                                         : (len == 0 || len > 200 || strlen(s) != len || strchr(s, '\n')))
                        return bad(err, what, k->path, ".%s: '%.64s' is not %s", key, s,
                                   k->type == P_MODULES ? "a module name" : "a one-line reason (1 to 200 characters)");
        }
        return 0;
}

/* One adapter: {"kind": "messenger", "base_url", "token_secret"} or
 * {"kind": "signed_rest", "base_url", "key_secret", "sign_secret",
 *  "key_header", "sign_header", "timestamp_header"}. */
static int check_adapter(const char *name, const json_t *d, const char *what, struct jr_err *err)
{
        static const char *const reserved[] = { "log", "state", "files", "http", NULL };
        static const char *const messenger[] = { "kind", "base_url", "token_secret", NULL };
        static const char *const rest[] = { "kind", "base_url", "key_secret", "sign_secret", "key_header",
                                            "sign_header", "timestamp_header", NULL };
        char path[128];
        snprintf(path, sizeof path, "adapters.%.64s", name);
        if (!is_name(name, strlen(name), 0) || strchr(name, '.') || name[0] == '_' || is_choice(name, reserved))
                return bad(err, what, "adapters", "'%.64s' is not a free identifier for ctx", name);
        if (!json_is_object(d))
                return bad(err, what, path, "expected an object, got %s", type_name(d));
        const char *kind = json_string_value(json_object_get(d, "kind"));
        const char *const *keys = kind && strcmp(kind, "messenger") == 0 ? messenger
                                : kind && strcmp(kind, "signed_rest") == 0 ? rest : NULL;
        if (!keys)
                return bad(err, what, path, "kind must be messenger or signed_rest");
        for (const char *const *k = keys; *k; k++) {
                const char *v = json_string_value(json_object_get(d, *k));
                if (!v || strlen(v) > 200 || strlen(v) != json_string_length(json_object_get(d, *k)))
                        return bad(err, what, path, "%s: expected a string", *k);
                if (strcmp(*k, "base_url") == 0 &&
                    ((strncmp(v, "https://", 8) != 0 && strncmp(v, "http://", 7) != 0) || v[strlen(v) - 1] == '/' ||
                     strpbrk(v, " ?#")))
                        return bad(err, what, path, "base_url: an http(s) URL without a trailing /, ? or #");
                if (strstr(*k, "_secret") && !is_name(v, strlen(v), 0))
                        return bad(err, what, path, "%s: the name of a secret (an identifier)", *k);
                if (strstr(*k, "_header") && strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-") !=
                                                 strlen(v))
                        return bad(err, what, path, "%s: not a header name", *k);
        }
        if (json_object_size(d) != (size_t)(keys == messenger ? 3 : 7))
                return bad(err, what, path, "unknown or missing keys (a %s takes exactly its own)", kind);
        return 0;
}

static int check_value(const struct pkey *k, const json_t *v, const char *what, struct jr_err *err)
{
        switch (k->type) {
        case P_OBJECT:
                return 0;  /* its keys are checked on their own */
        case P_BOOL:
                return json_is_boolean(v) ? 0 : bad(err, what, k->path, "expected a boolean, got %s", type_name(v));
        case P_INT:
        case P_REAL: {
                if (k->type == P_INT ? !json_is_integer(v) : !json_is_number(v))
                        return bad(err, what, k->path, "expected %s, got %s",
                                   k->type == P_INT ? "an integer" : "a number", type_name(v));
                double d = json_number_value(v);
                if (!isfinite(d) || d < k->min || d > k->max)
                        return bad(err, what, k->path, "%g is out of range (%g to %g)", d, k->min, k->max);
                return 0;
        }
        case P_CHOICE: {
                const char *s = json_string_value(v);
                if (!s)
                        return bad(err, what, k->path, "expected a string, got %s", type_name(v));
                if (strlen(s) != json_string_length(v) || !is_choice(s, k->choices))
                        return bad(err, what, k->path, "'%.64s' is not one of the known values", s);
                return 0;
        }
        case P_NAMES:
        case P_RULES:
        case P_PATHS:
                return check_array(k, v, what, err);
        case P_ADAPTERS: {
                if (!json_is_object(v) || json_object_size(v) > (size_t)k->max)
                        return bad(err, what, k->path, "expected an object of at most %.0f adapters", k->max);
                const char *name;
                json_t *d;
                json_object_foreach((json_t *)v, name, d) {
                        int r = check_adapter(name, d, what, err);
                        if (r < 0)
                                return r;
                }
                return 0;
        }
        case P_PROXY: {
                const char *u = json_string_value(v);
                if (!u)
                        return bad(err, what, k->path, "expected a string, got %s", type_name(v));
                if (*u && (strncmp(u, "http://", 7) != 0 || strlen(u) >= 512 || strlen(u) != json_string_length(v) ||
                           strpbrk(u, " \t\r\n")))
                        return bad(err, what, k->path, "'%.64s' is not \"\" or http://HOST:PORT", u);
                return 0;
        }
        case P_HOSTS: {
                if (!json_is_array(v) || json_array_size(v) > (size_t)k->max)
                        return bad(err, what, k->path, "expected an array of at most %.0f host names", k->max);
                size_t i;
                json_t *e;
                json_array_foreach(v, i, e) {
                        const char *h = json_string_value(e);
                        const char *body = h && strncmp(h, "*.", 2) == 0 ? h + 2 : h;
                        size_t n = body ? strlen(body) : 0;
                        if (!h || strlen(h) != json_string_length(e) || n == 0 || n > 253 ||
                            strspn(body, "abcdefghijklmnopqrstuvwxyz0123456789.-") != n || body[0] == '.')
                                return bad(err, what, k->path, "[%zu]: not a lower-case host name or *.name", i);
                }
                return 0;
        }
        case P_NETS: {
                if (!json_is_array(v) || json_array_size(v) > (size_t)k->max)
                        return bad(err, what, k->path, "expected an array of at most %.0f addresses", k->max);
                size_t i;
                json_t *e;
                struct jr_net n;
                json_array_foreach(v, i, e)
                        if (!json_is_string(e) || jr_net_parse(json_string_value(e), &n) < 0)
                                return bad(err, what, k->path, "[%zu]: not an address or ADDRESS/BITS", i);
                return 0;
        }
        case P_REASONS:
        case P_MODULES:
                return check_map(k, v, what, err);
        }
        return bad(err, what, k->path, "unknown type");
}

/* Every key of object `obj` at `prefix` (and below) against the schema. */
static int check_object(const json_t *obj, const char *prefix, const char *what, struct jr_err *err)
{
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)obj, key, v) {
                char path[128];
                if (strlen(key) != strcspn(key, ".") ||
                    jr_snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", key) < 0)
                        return bad(err, what, prefix, "unknown key '%.64s'", key);
                const struct pkey *k = find_key(path);
                if (!k)
                        return bad(err, what, prefix, "unknown key '%.64s'", key);
                if (k->type == P_OBJECT && !json_is_object(v))
                        return bad(err, what, path, "expected an object, got %s", type_name(v));
                int r = k->type == P_OBJECT ? check_object(v, path, what, err) : check_value(k, v, what, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static json_t *lookup(const json_t *p, const char *path)
{
        char buf[128];
        if (jr_snprintf(buf, sizeof buf, "%s", path) < 0)
                return NULL;
        const json_t *cur = p;
        for (char *save = NULL, *t = strtok_r(buf, ".", &save); t && cur; t = strtok_r(NULL, ".", &save))
                cur = json_object_get(cur, t);
        return (json_t *)cur;
}

static int check_limits(const json_t *doc, const char *what, struct jr_err *err)
{
        static const char *const pairs[][2] = {
                { "limits.memory", "limits.memory_max" },
                { "limits.cpus", "limits.cpus_max" },
                { "limits.pids", "limits.pids_max" },
        };
        for (size_t i = 0; i < ELEMENTSOF(pairs); i++)
                if (json_number_value(lookup(doc, pairs[i][0])) > json_number_value(lookup(doc, pairs[i][1])))
                        return bad(err, what, pairs[i][0], "%g is above %s (%g)",
                                   json_number_value(lookup(doc, pairs[i][0])), pairs[i][1],
                                   json_number_value(lookup(doc, pairs[i][1])));
        /* The other profiles' seccomp filter refuses execve: a shell there
         * would be a promise nothing keeps. */
        if (json_is_true(lookup(doc, "exec.shell")) && strcmp(json_string_value(lookup(doc, "profile")), "exec") != 0)
                return bad(err, what, "exec.shell", "only profile exec runs programs");
        if (json_array_size(lookup(doc, "exec.programs")) && strcmp(json_string_value(lookup(doc, "profile")), "exec") != 0)
                return bad(err, what, "exec.programs", "only profile exec runs programs");
        return 0;
}

int policy_check(const json_t *doc, int complete, const char *what, struct jr_err *err)
{
        if (!json_is_object(doc))
                return bad(err, what, "", "expected an object, got %s", type_name(doc));
        int r = check_object(doc, "", what, err);
        if (r < 0 || !complete)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(schema); i++)
                if (!lookup(doc, schema[i].path))
                        return bad(err, what, schema[i].path, "missing");
        return check_limits(doc, what, err);
}

int policy_apply(const char *profile, json_t *over, const char *what, json_t **out, struct jr_err *err)
{
        if (over) {
                int r = policy_check(over, 0, what, err);
                if (r < 0)
                        return r;
                const char *named = json_string_value(json_object_get(over, "profile"));
                if (profile && named && strcmp(profile, named) != 0)
                        return bad(err, what, "profile", "'%s' differs from --profile %s", named, profile);
                if (!profile)
                        profile = named;
        }
        if (!profile)
                profile = "worker";
        json_error_t je;
        _cleanup_(json_decrefp) json_t *all = json_loads(jr_profiles_json, JSON_REJECT_DUPLICATES, &je);
        json_t *base = all ? json_object_get(all, profile) : NULL;
        if (!base)
                return jr_fail(err, 0, "built-in profiles: %s", all ? "no such profile" : je.text);
        _cleanup_(json_decrefp) json_t *doc = json_deep_copy(base);
        if (!doc || (over && json_object_update_recursive(doc, over) < 0))
                return jr_fail(err, ENOMEM, "policy");
        int r = policy_check(doc, 1, what ? what : "policy", err);
        if (r < 0)
                return r;
        *out = TAKE_PTR(doc);
        return 0;
}

int policy_load(const char *profile, const char *path, json_t **out, struct jr_err *err)
{
        if (!path)
                return policy_apply(profile, NULL, "built-in profile", out, err);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        struct stat st;
        if (fd < 0)
                return jr_fail(err, errno, "policy %s", path);
        if (fstat(fd, &st) < 0)
                return jr_fail(err, errno, "policy %s: fstat", path);
        if (!S_ISREG(st.st_mode))
                return jr_fail(err, 0, "policy %s: not a regular file", path);
        if (st.st_size > POLICY_MAX_FILE)
                return jr_fail(err, 0, "policy %s: larger than %d bytes", path, POLICY_MAX_FILE);
        json_error_t je;
        _cleanup_(json_decrefp) json_t *over = json_loadfd(fd, JSON_REJECT_DUPLICATES, &je);
        if (!over)
                return jr_fail(err, 0, "policy %s: line %d column %d: %s", path, je.line, je.column, je.text);
        return policy_apply(profile, over, path, out, err);
}

const char *policy_str(const json_t *p, const char *path)
{
        return json_string_value(lookup(p, path));
}

json_int_t policy_int(const json_t *p, const char *path)
{
        return json_integer_value(lookup(p, path));
}

double policy_real(const json_t *p, const char *path)
{
        return json_number_value(lookup(p, path));
}

int policy_bool(const json_t *p, const char *path)
{
        return json_is_true(lookup(p, path));
}

int policy_set(json_t *p, const char *path, json_t *value)
{
        const char *dot = strrchr(path, '.');
        json_t *parent = p;
        char buf[128];
        if (dot) {
                if (jr_snprintf(buf, sizeof buf, "%.*s", (int)(dot - path), path) < 0)
                        return json_decref(value), -EINVAL;
                parent = lookup(p, buf);
        }
        if (!json_is_object(parent))
                return json_decref(value), -EINVAL;
        return json_object_set_new(parent, dot ? dot + 1 : path, value) < 0 ? -ENOMEM : 0;
}

const char *policy_profile_name(enum policy_profile profile)
{
        return (unsigned)profile < ELEMENTSOF(profiles) - 1 ? profiles[profile] : "?";
}

static int choice_index(const char *s, const char *const *choices)
{
        for (int i = 0; choices[i]; i++)
                if (strcmp(s, choices[i]) == 0)
                        return i;
        return -1;  /* cannot happen: the value was checked */
}

/* Copies `len` bytes of `v` into the field of `size` bytes at `at`. */
static int put(void *at, size_t size, const void *v, size_t len)
{
        if (size != len)
                return -EINVAL;
        memcpy(at, v, len);
        return 0;
}

static int decode_list(const struct pkey *k, const json_t *v, void *at)
{
        size_t i;
        json_t *e;
        if (k->type == P_RULES) {
                unsigned bits = 0;
                json_array_foreach(v, i, e)
                        bits |= 1u << choice_index(json_string_value(e), k->choices);
                return put(at, k->size, &bits, sizeof bits);
        }
        if (k->type == P_NETS) {
                struct policy_nets *n = at;
                if (k->size != sizeof *n)
                        return -EINVAL;
                json_array_foreach(v, i, e)
                        if (jr_net_parse(json_string_value(e), &n->net[n->n++]) < 0)
                                return -EINVAL;
                return 0;
        }
        struct policy_hosts *h = at;
        if (k->size != sizeof *h)
                return -EINVAL;
        json_array_foreach(v, i, e)
                if (jr_snprintf(h->host[h->n++], sizeof h->host[0], "%s", json_string_value(e)) < 0)
                        return -EINVAL;
        return 0;
}

/* One checked value into its field of struct policy. -EINVAL when the
 * schema gives it a field of another type: a programmer's error, which
 * the unit tests meet on every build. */
static int decode_value(const struct pkey *k, const json_t *v, void *at)
{
        switch (k->type) {
        case P_BOOL: {
                bool b = json_is_true(v);
                return put(at, k->size, &b, sizeof b);
        }
        case P_INT: {
                /* Every integer key's range starts at 0 or above. */
                uint64_t u = (uint64_t)json_integer_value(v);
                unsigned small = (unsigned)u;
                return k->size == sizeof u ? put(at, k->size, &u, sizeof u)
                       : k->max <= UINT_MAX ? put(at, k->size, &small, sizeof small) : -EINVAL;
        }
        case P_REAL: {
                double d = json_number_value(v);
                return put(at, k->size, &d, sizeof d);
        }
        case P_CHOICE: {
                int i = choice_index(json_string_value(v), k->choices);
                return put(at, k->size, &i, sizeof i);
        }
        case P_PROXY:
                return k->size ? jr_snprintf(at, k->size, "%s", json_string_value(v)) : -EINVAL;
        case P_ADAPTERS:
                if (k->size != sizeof(json_t *))
                        return -EINVAL;
                *(json_t **)at = json_incref((json_t *)v);
                return 0;
        case P_RULES:
        case P_NETS:
        case P_HOSTS:
                return decode_list(k, v, at);
        case P_PATHS:  /* how many; the jail reads the paths from the text */
                if (k->size != sizeof(unsigned))
                        return -EINVAL;
                *(unsigned *)at = (unsigned)json_array_size(v);
                return 0;
        case P_OBJECT:
        case P_NAMES:
        case P_REASONS:
        case P_MODULES:
                break;  /* not decoded: the jail's runtime reads them */
        }
        return k->size ? -EINVAL : 0;
}

int policy_decode(const json_t *doc, const char *what, struct policy *out, struct jr_err *err)
{
        memset(out, 0, sizeof *out);
        int r = policy_check(doc, 1, what, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(schema); i++) {
                const struct pkey *k = &schema[i];
                if (decode_value(k, lookup(doc, k->path), (char *)out + k->off) < 0) {
                        policy_release(out);
                        return bad(err, what, k->path, "cannot be decoded (no field of its type)");
                }
        }
        return 0;
}

void policy_release(struct policy *p)
{
        json_decref(p->adapters);
        memset(p, 0, sizeof *p);
}
