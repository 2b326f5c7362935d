/* jaild's configuration file (config.h, jaild(8) CONFIGURATION). Every
 * value is checked here, where its key is still known: what leaves this
 * file is a struct the daemon can use as it is. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "policy/policy.h"
#include "supervisor/broker/adapters.h"
#include "supervisor/engine/job.h"
#include "supervisor/jaild/jaildconf.h"


/* Where errors go, and the name of what is read. */
struct cfg_ctx {
        const char *what;
        struct jr_err *err;
};

/* A JSON path: "parent.name", or "name" at the top. */
struct key {
        char s[192];
};

static void key_of(struct key *k, const char *parent, const char *name)
{
        /* Cut rather than refuse: the path only names a key in a message. */
        snprintf(k->s, sizeof k->s, "%s%s%.64s", parent ? parent : "", parent && *parent ? "." : "", name);
}

/* "WHAT: KEY: reason", -EINVAL. */
__attribute__((format(printf, 3, 4)))
static int bad(struct cfg_ctx *x, const char *key, const char *fmt, ...)
{
        char why[320];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, sizeof why, fmt, ap);
        va_end(ap);
        jr_fail(x->err, 0, "%s: %s: %s", x->what, key, why);
        if (x->err)
                x->err->errnum = EINVAL;
        return -EINVAL;
}

static int oom(struct cfg_ctx *x)
{
        return jr_fail(x->err, ENOMEM, "%s", x->what);
}

static const char *type_name(const json_t *v)
{
        switch (json_typeof(v)) {
        case JSON_OBJECT: return "an object";
        case JSON_ARRAY: return "an array";
        case JSON_STRING: return "a string";
        case JSON_INTEGER: return "an integer";
        case JSON_REAL: return "a real number";
        case JSON_TRUE:
        case JSON_FALSE: return "a boolean";
        default: return "null";
        }
}

static int wrong_type(struct cfg_ctx *x, const char *key, const char *want, const json_t *v)
{
        return bad(x, key, "wrong type: must be %s, not %s", want, type_name(v));
}

/* Every key of obj is one of `known` (NULL-terminated). */
static int only_keys(struct cfg_ctx *x, const json_t *obj, const char *path, const char *const *known)
{
        const char *name;
        json_t *v;
        json_object_foreach((json_t *)obj, name, v) {
                size_t i = 0;
                while (known[i] && strcmp(known[i], name) != 0)
                        i++;
                if (!known[i]) {
                        struct key k;
                        key_of(&k, path, name);
                        return bad(x, k.s, "unknown key");
                }
        }
        return 0;
}

/* The object at parent.name (NULL when absent). */
static int get_obj(struct cfg_ctx *x, const json_t *parent, const char *path, const char *name, json_t **out,
                   struct key *k)
{
        key_of(k, path, name);
        *out = json_object_get(parent, name);
        if (*out && !json_is_object(*out))
                return wrong_type(x, k->s, "an object", *out);
        return 0;
}

/* A string without NUL bytes, 1 to max - 1 bytes. */
static int get_text(struct cfg_ctx *x, const json_t *obj, const char *path, const char *name, size_t max,
                    const char **out)
{
        struct key k;
        key_of(&k, path, name);
        json_t *v = json_object_get(obj, name);
        *out = NULL;
        if (!v)
                return 0;
        if (!json_is_string(v))
                return wrong_type(x, k.s, "a string", v);
        size_t n = json_string_length(v);
        if (n == 0 || n >= max || strlen(json_string_value(v)) != n)
                return bad(x, k.s, "out of range: must be 1 to %zu bytes without NUL", max - 1);
        *out = json_string_value(v);
        return 0;
}

/* Replaces *dst with a copy of src. */
static int set_str(struct cfg_ctx *x, char **dst, const char *src)
{
        char *s = strdup(src);
        if (!s)
                return oom(x);
        free(*dst);
        *dst = s;
        return 0;
}

/* An absolute path (the daemon's working directory is /, and a relative
 * path would silently mean something else under another one). */
static int get_path(struct cfg_ctx *x, const json_t *obj, const char *path, const char *name, char **dst)
{
        const char *s;
        int r = get_text(x, obj, path, name, PATH_MAX, &s);
        if (r < 0 || !s)
                return r;
        if (s[0] != '/') {
                struct key k;
                key_of(&k, path, name);
                return bad(x, k.s, "out of range: must be an absolute path, not '%.100s'", s);
        }
        return set_str(x, dst, s);
}

/* An integer in [lo, hi]. */
static int get_int(struct cfg_ctx *x, const json_t *v, const char *key, long long lo, long long hi,
                   long long *out)
{
        if (!json_is_integer(v))
                return wrong_type(x, key, "an integer", v);
        long long n = json_integer_value(v);
        if (n < lo || n > hi)
                return bad(x, key, "out of range: must be from %lld to %lld, not %lld", lo, hi, n);
        *out = n;
        return 0;
}

static int get_int_key(struct cfg_ctx *x, const json_t *obj, const char *path, const char *name, long long lo,
                       long long hi, long long *out)
{
        struct key k;
        key_of(&k, path, name);
        json_t *v = json_object_get(obj, name);
        return v ? get_int(x, v, k.s, lo, hi, out) : 0;
}

/* "0660" (octal digits) or a number (its value: 432 is 0660). */
static int get_mode(struct cfg_ctx *x, const json_t *v, const char *key, mode_t *out)
{
        long long m;
        if (json_is_string(v)) {
                const char *s = json_string_value(v);
                size_t n = strspn(s, "01234567");
                if (n == 0 || n > 4 || s[n] || n != json_string_length(v))
                        return bad(x, key, "out of range: must be octal digits from 0 to 0777, not '%.16s'", s);
                m = strtoll(s, NULL, 8);
        } else if (json_is_integer(v)) {
                m = json_integer_value(v);
        } else {
                return wrong_type(x, key, "an octal string or an integer", v);
        }
        if (m < 0 || m > 0777)
                return bad(x, key, "out of range: must be from 0 to 0777 (no setuid, setgid or sticky bit)");
        *out = (mode_t)m;
        return 0;
}

static int parse_socket(struct cfg_ctx *x, const json_t *root, struct jaild_config *c)
{
        static const char *const keys[] = { "path", "mode", NULL };
        struct key k;
        json_t *o;
        int r = get_obj(x, root, "", "socket", &o, &k);
        if (r < 0 || !o)
                return r;
        if ((r = only_keys(x, o, "socket", keys)) < 0 || (r = get_path(x, o, "socket", "path", &c->socket_path)) < 0)
                return r;
        if (strlen(c->socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
                return bad(x, "socket.path", "out of range: a unix socket's path is at most %zu bytes",
                           sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
        json_t *m = json_object_get(o, "mode");
        return m ? get_mode(x, m, "socket.mode", &c->socket_mode) : 0;
}

/* A user or group: a number, or a name looked up now. */
static int get_id(struct cfg_ctx *x, const json_t *v, const char *key, int group, unsigned *out)
{
        if (json_is_integer(v)) {
                long long n = 0;
                int r = get_int(x, v, key, 0, 0xFFFFFFFEll, &n);
                *out = (unsigned)n;
                return r;
        }
        if (!json_is_string(v))
                return wrong_type(x, key, group ? "a group name or gid" : "a user name or uid", v);
        const char *name = json_string_value(v);
        char buf[16384];
        int e;
        if (group) {
                struct group g, *res = NULL;
                e = getgrnam_r(name, &g, buf, sizeof buf, &res);
                if (res)
                        *out = g.gr_gid;
        } else {
                struct passwd p, *res = NULL;
                e = getpwnam_r(name, &p, buf, sizeof buf, &res);
                if (res)
                        *out = p.pw_uid;
        }
        if (e)
                return bad(x, key, "looking up '%.64s': %s", name, strerror(e));
        return 0;
}

static int get_ids(struct cfg_ctx *x, const json_t *obj, const char *name, int group, unsigned **ids, size_t *n)
{
        struct key k;
        key_of(&k, "allow", name);
        json_t *a = json_object_get(obj, name), *v;
        if (!a)
                return 0;
        if (!json_is_array(a))
                return wrong_type(x, k.s, "an array", a);
        if (json_array_size(a) > JAILD_ALLOW_MAX)
                return bad(x, k.s, "out of range: at most %d entries", JAILD_ALLOW_MAX);
        unsigned *out = calloc(json_array_size(a) + 1, sizeof *out);
        if (!out)
                return oom(x);
        free(*ids);
        *ids = out;
        *n = 0;
        size_t i;
        json_array_foreach(a, i, v) {
                char ek[sizeof k.s + 24];
                snprintf(ek, sizeof ek, "%s[%zu]", k.s, i);
                unsigned id = (unsigned)-1;
                int r = get_id(x, v, ek, group, &id);
                if (r < 0)
                        return r;
                if (id == (unsigned)-1)
                        return bad(x, ek, "out of range: no %s named '%.64s'", group ? "group" : "user",
                                   json_string_value(v));
                out[(*n)++] = id;
        }
        return 0;
}

static int parse_allow(struct cfg_ctx *x, const json_t *root, struct jaild_config *c)
{
        static const char *const keys[] = { "uids", "gids", NULL };
        struct key k;
        json_t *o;
        int r = get_obj(x, root, "", "allow", &o, &k);
        if (r < 0 || !o || (r = only_keys(x, o, "allow", keys)) < 0)
                return r;
        _Static_assert(sizeof(uid_t) == sizeof(unsigned) && sizeof(gid_t) == sizeof(unsigned), "32-bit ids");
        if ((r = get_ids(x, o, "uids", 0, (unsigned **)&c->allow_uids, &c->n_allow_uids)) < 0)
                return r;
        return get_ids(x, o, "gids", 1, (unsigned **)&c->allow_gids, &c->n_allow_gids);
}

static int parse_uid_range(struct cfg_ctx *x, const json_t *root, struct jaild_config *c)
{
        static const char *const keys[] = { "lo", "hi", NULL };
        struct key k;
        json_t *o;
        long long lo = c->uid_lo, hi = c->uid_hi;
        int r = get_obj(x, root, "", "uid_range", &o, &k);
        if (r < 0 || !o)
                return r;
        if ((r = only_keys(x, o, "uid_range", keys)) < 0 ||
            (r = get_int_key(x, o, "uid_range", "lo", JAILD_UID_MIN, 0xFFFFFFFEll, &lo)) < 0 ||
            (r = get_int_key(x, o, "uid_range", "hi", JAILD_UID_MIN, 0xFFFFFFFEll, &hi)) < 0)
                return r;
        if (hi < lo)
                return bad(x, "uid_range.hi", "out of range: below uid_range.lo (%lld)", lo);
        c->uid_lo = (uid_t)lo;
        c->uid_hi = (uid_t)hi;
        return 0;
}

static int parse_cgroup(struct cfg_ctx *x, const json_t *root, struct jaild_config *c)
{
        const char *s;
        int r = get_text(x, root, "", "cgroup_parent", PATH_MAX, &s);
        if (r < 0 || !s)
                return r;
        if (!job_valid_cgroup_parent(s))
                return bad(x, "cgroup_parent", "out of range: must be a path of names ([A-Za-z0-9._-], none '.', "
                           "'..', job-N or pool-N) below the hierarchy's root, not '%.100s'", s);
        return set_str(x, &c->cgroup_parent, s);
}

/* cgroup_pool: {"size": N, "max": M}; size 0 turns the pool off. A size
 * above the default max raises max with it unless max is given. */
static int parse_pool(struct cfg_ctx *x, const json_t *root, struct jaild_config *c)
{
        static const char *const keys[] = { "size", "max", NULL };
        struct key k;
        json_t *o;
        long long size = c->cgroup_pool_size, max = -1;
        int r = get_obj(x, root, "", "cgroup_pool", &o, &k);
        if (r < 0 || !o)
                return r;
        if ((r = only_keys(x, o, "cgroup_pool", keys)) < 0 ||
            (r = get_int_key(x, o, "cgroup_pool", "size", 0, JAILD_CGROUP_POOL_MAX, &size)) < 0 ||
            (r = get_int_key(x, o, "cgroup_pool", "max", 0, JAILD_CGROUP_POOL_MAX, &max)) < 0)
                return r;
        if (max < 0)
                max = size > c->cgroup_pool_max ? size : c->cgroup_pool_max;
        if (max < size)
                return bad(x, "cgroup_pool.max", "out of range: below cgroup_pool.size (%lld)", size);
        c->cgroup_pool_size = (unsigned)size;
        c->cgroup_pool_max = (unsigned)max;
        return 0;
}

/* A Redis host as jailrun's redis:// URLs take it: a name or an IPv4
 * address (the URL has no room for an IPv6 literal's colons). */
static int host_ok(const char *h)
{
        size_t n = strlen(h);
        return n <= 253 && h[0] != '-' && h[0] != '.' &&
               strspn(h, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_") == n;
}

static int parse_redis(struct cfg_ctx *x, const json_t *o, struct jaild_state_cfg *s)
{
        static const char *const keys[] = { "host", "port", "unix", "db", NULL };
        const char *host;
        long long port = JAILD_REDIS_PORT_DEFAULT, db = 0;
        int r;
        if ((r = only_keys(x, o, "state.redis", keys)) < 0 || (r = get_text(x, o, "state.redis", "host", 254, &host)) < 0 ||
            (r = get_path(x, o, "state.redis", "unix", &s->unix_path)) < 0 ||
            (r = get_int_key(x, o, "state.redis", "port", 1, 65535, &port)) < 0 ||
            (r = get_int_key(x, o, "state.redis", "db", 0, JAILD_REDIS_DB_MAX, &db)) < 0)
                return r;
        if (s->unix_path && strchr(s->unix_path, '?'))
                return bad(x, "state.redis.unix", "out of range: a '?' would end the path in the store's URL");
        if (host && !host_ok(host))
                return bad(x, "state.redis.host", "out of range: must be a host name or IPv4 address, not '%.100s'", host);
        if (!host == !s->unix_path)
                return bad(x, host ? "state.redis.unix" : "state.redis",
                           host ? "given with state.redis.host: one or the other" : "wants \"host\" or \"unix\"");
        if (s->unix_path && json_object_get(o, "port"))
                return bad(x, "state.redis.port", "given with state.redis.unix: a port is for \"host\"");
        if (host && (r = set_str(x, &s->host, host)) < 0)
                return r;
        s->port = (int)port;
        s->db = (int)db;
        return 0;
}

static int parse_state(struct cfg_ctx *x, const json_t *root, struct jaild_config *c)
{
        static const char *const keys[] = { "backend", "sqlite", "redis", NULL };
        static const char *const sqlite_keys[] = { "path", NULL };
        struct key k;
        json_t *o, *lite, *redis;
        const char *backend;
        int r = get_obj(x, root, "", "state", &o, &k);
        if (r < 0 || !o)
                return r;
        if ((r = only_keys(x, o, "state", keys)) < 0 || (r = get_text(x, o, "state", "backend", 16, &backend)) < 0 ||
            (r = get_obj(x, o, "state", "sqlite", &lite, &k)) < 0 || (r = get_obj(x, o, "state", "redis", &redis, &k)) < 0)
                return r;
        if (backend && strcmp(backend, "sqlite") != 0 && strcmp(backend, "redis") != 0)
                return bad(x, "state.backend", "out of range: must be \"sqlite\" or \"redis\", not '%s'", backend);
        c->state.backend = backend && strcmp(backend, "redis") == 0 ? JAILD_STATE_REDIS : JAILD_STATE_SQLITE;
        if (c->state.backend == JAILD_STATE_REDIS) {
                if (lite)
                        return bad(x, "state.sqlite", "given with state.backend \"redis\"");
                if (!redis)
                        return bad(x, "state.redis", "missing: state.backend \"redis\" wants it");
                return parse_redis(x, redis, &c->state);
        }
        if (redis)
                return bad(x, "state.redis", "given with state.backend \"sqlite\" (the default)");
        if (!lite)
                return 0;
        if ((r = only_keys(x, lite, "state.sqlite", sqlite_keys)) < 0)
                return r;
        return get_path(x, lite, "state.sqlite", "path", &c->state.path);
}

static int parse_files(struct cfg_ctx *x, const json_t *root, struct jaild_config *c)
{
        int r;
        if ((r = get_path(x, root, "", "workspace_root", &c->workspace_root)) < 0 ||
            (r = get_path(x, root, "", "registry", &c->registry)) < 0 ||
            (r = get_path(x, root, "", "secrets", &c->secrets)) < 0)
                return r;
        if (c->secrets) {
                /* Checked as jailrun --secrets checks it; read only later, by
                 * the broker, after a jail exists. */
                struct jr_err serr = { 0 };
                if (secrets_check(c->secrets, &serr) < 0)
                        return bad(x, "secrets", "%s", serr.msg);
        }
        return 0;
}

static int parse_limits(struct cfg_ctx *x, const json_t *root, struct jaild_config *c)
{
        long long n = c->max_live_jobs;
        int r = get_int_key(x, root, "", "max_live_jobs", 1, JAILD_MAX_LIVE_MAX, &n);
        if (r < 0)
                return r;
        c->max_live_jobs = (unsigned)n;
        /* Two jails never share a host uid: the range must hold them all. */
        if ((unsigned long long)c->uid_hi - c->uid_lo + 1 < c->max_live_jobs)
                return bad(x, "max_live_jobs", "out of range: %u is more than uid_range holds (%llu uids)",
                           c->max_live_jobs, (unsigned long long)c->uid_hi - c->uid_lo + 1);
        json_t *w = json_object_get(root, "queue_wait");
        if (w) {
                if (!json_is_number(w))
                        return wrong_type(x, "queue_wait", "a number of seconds", w);
                double s = json_number_value(w);
                if (!(s >= 0 && s <= JAILD_QUEUE_WAIT_MAX))
                        return bad(x, "queue_wait", "out of range: must be from 0 to %g seconds", JAILD_QUEUE_WAIT_MAX);
                c->queue_wait = s;
        }
        return 0;
}

/* A module name to preload: dotted identifiers. */
static int module_name_ok(const char *s)
{
        int start = 1;
        for (; *s; s++) {
                if (*s == '.' && !start) {
                        start = 1;
                        continue;
                }
                if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (!start && *s >= '0' && *s <= '9')))
                        return 0;
                start = 0;
        }
        return !start;
}

static int parse_preload(struct cfg_ctx *x, const json_t *a, struct jaild_config *c)
{
        if (!json_is_array(a))
                return wrong_type(x, "zygote.preload", "an array of module names", a);
        if (json_array_size(a) > JAILD_PRELOAD_MAX)
                return bad(x, "zygote.preload", "out of range: at most %d modules", JAILD_PRELOAD_MAX);
        size_t i;
        json_t *v;
        json_array_foreach(a, i, v) {
                struct key k;
                snprintf(k.s, sizeof k.s, "zygote.preload[%zu]", i);
                if (!json_is_string(v))
                        return wrong_type(x, k.s, "a module name", v);
                if (json_string_length(v) > 128 || !module_name_ok(json_string_value(v)))
                        return bad(x, k.s, "not a module name (dotted identifiers, at most 128 bytes)");
        }
        char *text = json_dumps(a, JSON_COMPACT);
        if (!text)
                return oom(x);
        free(c->zygote_preload);
        c->zygote_preload = text;
        return 0;
}

static int parse_zygote(struct cfg_ctx *x, const json_t *root, struct jaild_config *c)
{
        static const char *const keys[] = { "enabled", "preload", "max_forks", NULL };
        struct key k;
        json_t *z;
        int r = get_obj(x, root, "", "zygote", &z, &k);
        if (r < 0 || !z)
                return r;
        if ((r = only_keys(x, z, "zygote", keys)) < 0)
                return r;
        json_t *e = json_object_get(z, "enabled");
        if (e && !json_is_boolean(e))
                return wrong_type(x, "zygote.enabled", "a boolean", e);
        if (e)
                c->zygote_enabled = json_is_true(e);
        long long n = c->zygote_max_forks;
        if ((r = get_int_key(x, z, "zygote", "max_forks", 1, JAILD_ZYGOTE_FORKS_MAX, &n)) < 0)
                return r;
        c->zygote_max_forks = (unsigned)n;
        json_t *p = json_object_get(z, "preload");
        return p ? parse_preload(x, p, c) : 0;
}

/* An http(s) URL without spaces or quotes: pip's --index-url. */
static int url_ok(const char *s)
{
        if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)
                return 0;
        for (; *s; s++)
                if ((unsigned char)*s <= ' ' || *s == '"' || *s == '\\' || *s == 0x7f)
                        return 0;
        return 1;
}

static int parse_packages(struct cfg_ctx *x, const json_t *s, struct jaild_sessions_cfg *c)
{
        static const char *const keys[] = { "wheel_dir", "index_url", NULL };
        struct key k;
        json_t *p;
        const char *url;
        int r = get_obj(x, s, "sessions", "packages", &p, &k);
        if (r < 0 || !p)
                return r;
        if ((r = only_keys(x, p, "sessions.packages", keys)) < 0)
                return r;
        /* null: not configured, as when absent */
        if (!json_is_null(json_object_get(p, "wheel_dir")) &&
            (r = get_path(x, p, "sessions.packages", "wheel_dir", &c->wheel_dir)) < 0)
                return r;
        url = NULL;
        if (!json_is_null(json_object_get(p, "index_url")) &&
            (r = get_text(x, p, "sessions.packages", "index_url", 2048, &url)) < 0)
                return r;
        if (url && !url_ok(url))
                return bad(x, "sessions.packages.index_url", "out of range: an http:// or https:// URL, not '%.100s'", url);
        return url ? set_str(x, &c->index_url, url) : 0;
}

static int parse_sessions(struct cfg_ctx *x, const json_t *root, struct jaild_config *c)
{
        static const char *const keys[] = { "max", "idle_timeout", "dir_bytes", "file_max", "packages", NULL };
        struct key k;
        json_t *s;
        int r = get_obj(x, root, "", "sessions", &s, &k);
        if (r < 0 || !s)
                return r;
        if ((r = only_keys(x, s, "sessions", keys)) < 0)
                return r;
        long long max = c->sessions.max, dir = (long long)c->sessions.dir_bytes, file = (long long)c->sessions.file_max;
        if ((r = get_int_key(x, s, "sessions", "max", 0, JAILD_MAX_LIVE_MAX, &max)) < 0 ||
            (r = get_int_key(x, s, "sessions", "dir_bytes", 1 << 20, JAILD_SESSIONS_DIR_MAX, &dir)) < 0 ||
            (r = get_int_key(x, s, "sessions", "file_max", 1, JAILD_SESSIONS_FILE_MAX, &file)) < 0)
                return r;
        c->sessions.max = (unsigned)max;
        c->sessions.dir_bytes = (unsigned long long)dir;
        c->sessions.file_max = (unsigned long long)file;
        json_t *idle = json_object_get(s, "idle_timeout");
        if (idle && !json_is_number(idle))
                return wrong_type(x, "sessions.idle_timeout", "a number of seconds", idle);
        if (idle && !(json_number_value(idle) >= 1 && json_number_value(idle) <= JAILD_SESSIONS_IDLE_MAX))
                return bad(x, "sessions.idle_timeout", "out of range: must be from 1 to %d seconds",
                           JAILD_SESSIONS_IDLE_MAX);
        if (idle)
                c->sessions.idle_timeout = json_number_value(idle);
        return parse_packages(x, s, &c->sessions);
}

/* The operator's policy over each profile ({"worker": {...}}): checked
 * as a policy file over that profile is, kept as JSON text. */
static int parse_policy(struct cfg_ctx *x, const json_t *root, struct jaild_config *c)
{
        struct key k;
        json_t *p, *v;
        const char *name;
        int r = get_obj(x, root, "", "policy", &p, &k);
        if (r < 0 || !p)
                return r;
        json_object_foreach(p, name, v) {
                _cleanup_(json_decrefp) json_t *doc = NULL;
                struct jr_err perr = { 0 };
                key_of(&k, "policy", name);
                if (strcmp(name, "worker") != 0 && strcmp(name, "strategy") != 0 && strcmp(name, "exec") != 0)
                        return bad(x, k.s, "unknown profile: worker, strategy or exec");
                if (!json_is_object(v))
                        return wrong_type(x, k.s, "an object (a policy over the profile)", v);
                if (policy_apply(name, v, k.s, &doc, &perr) < 0 ||  /* "KEY: $.path: reason" */
                    policy_check_python_layer(doc, k.s, &perr) < 0 || job_programs_check(doc, k.s, &perr) < 0) {
                        jr_fail(x->err, 0, "%s: %s", x->what, perr.msg);
                        if (x->err)
                                x->err->errnum = EINVAL;
                        return -EINVAL;
                }
        }
        c->policy = json_dumps(p, JSON_COMPACT);
        return c->policy ? 0 : oom(x);
}

static const char *const level_names[] = {
        [JAILD_LOG_ERROR] = "error", [JAILD_LOG_WARNING] = "warning", [JAILD_LOG_NOTICE] = "notice",
        [JAILD_LOG_INFO] = "info", [JAILD_LOG_DEBUG] = "debug",
};

const char *jaild_log_level_name(enum jaild_log_level l)
{
        return (unsigned)l < ELEMENTSOF(level_names) && level_names[l] ? level_names[l] : "?";
}

static int parse_log(struct cfg_ctx *x, const json_t *root, struct jaild_config *c)
{
        const char *s;
        int r = get_text(x, root, "", "log_level", 16, &s);
        if (r < 0 || !s)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
                if (level_names[i] && strcmp(level_names[i], s) == 0) {
                        c->log_level = (enum jaild_log_level)i;
                        return 0;
                }
        return bad(x, "log_level", "out of range: must be debug, info, notice, warning or error, not '%s'", s);
}

static int defaults(struct cfg_ctx *x, struct jaild_config *c)
{
        *c = (struct jaild_config){
                .socket_mode = JAILD_SOCKET_MODE_DEFAULT,
                .uid_lo = JAILD_UID_LO_DEFAULT,
                .uid_hi = JAILD_UID_HI_DEFAULT,
                .state = { .backend = JAILD_STATE_SQLITE, .port = JAILD_REDIS_PORT_DEFAULT },
                .max_live_jobs = JAILD_MAX_LIVE_DEFAULT,
                .cgroup_pool_size = JAILD_CGROUP_POOL_SIZE_DEFAULT,
                .cgroup_pool_max = JAILD_CGROUP_POOL_MAX_DEFAULT,
                .queue_wait = JAILD_QUEUE_WAIT_DEFAULT,
                .log_level = JAILD_LOG_INFO,
                .zygote_enabled = 1,
                .zygote_max_forks = JAILD_ZYGOTE_FORKS_DEFAULT,
                .sessions = { .max = JAILD_SESSIONS_MAX_DEFAULT, .idle_timeout = JAILD_SESSIONS_IDLE_DEFAULT,
                              .dir_bytes = JAILD_SESSIONS_DIR_DEFAULT, .file_max = JAILD_SESSIONS_FILE_DEFAULT },
        };
        c->socket_path = strdup(JAILD_SOCKET_DEFAULT);
        c->cgroup_parent = strdup(JAILD_CGROUP_PARENT_DEFAULT);
        c->state.path = strdup(JAILD_STATE_PATH_DEFAULT);
        c->workspace_root = strdup(JAILD_WORKSPACES_DEFAULT);
        c->registry = strdup(JAILD_REGISTRY_DEFAULT);
        c->zygote_preload = strdup(JAILD_PRELOAD_DEFAULT);
        if (!c->socket_path || !c->cgroup_parent || !c->state.path || !c->workspace_root || !c->registry ||
            !c->zygote_preload)
                return oom(x);
        return 0;
}

static int parse_root(struct cfg_ctx *x, const json_t *root, struct jaild_config *c)
{
        static const char *const keys[] = { "socket", "allow", "uid_range", "cgroup_parent", "cgroup_pool",
                                            "state", "workspace_root", "secrets", "registry", "max_live_jobs",
                                            "queue_wait", "log_level", "zygote", "sessions", "policy", NULL };
        int r;
        if (!json_is_object(root))
                return wrong_type(x, "(top level)", "an object", root);
        if ((r = only_keys(x, root, "", keys)) < 0 || (r = parse_socket(x, root, c)) < 0 ||
            (r = parse_allow(x, root, c)) < 0 || (r = parse_uid_range(x, root, c)) < 0 ||
            (r = parse_cgroup(x, root, c)) < 0 || (r = parse_pool(x, root, c)) < 0 || (r = parse_state(x, root, c)) < 0 ||
            (r = parse_files(x, root, c)) < 0 || (r = parse_limits(x, root, c)) < 0 ||
            (r = parse_zygote(x, root, c)) < 0 || (r = parse_sessions(x, root, c)) < 0 ||
            (r = parse_policy(x, root, c)) < 0)
                return r;
        return parse_log(x, root, c);
}

int jaild_config_parse(const char *text, size_t len, const char *what, struct jaild_config **out,
                       struct jr_err *err)
{
        struct cfg_ctx x = { .what = what ? what : "config", .err = err };
        *out = NULL;
        struct jaild_config *c = calloc(1, sizeof *c);
        if (!c)
                return oom(&x);
        int r = defaults(&x, c);
        if (r == 0 && text) {
                json_error_t je;
                _cleanup_(json_decrefp) json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
                if (!root) {
                        /* jansson refuses \u0000 in strings too (no JSON_ALLOW_NUL). */
                        r = jr_fail(err, 0, "%s: JSON syntax error at line %d column %d: %s", x.what, je.line,
                                    je.column, je.text);
                        if (err)
                                err->errnum = EINVAL;
                } else {
                        r = parse_root(&x, root, c);
                }
        }
        if (r < 0) {
                jaild_config_free(c);
                return r;
        }
        *out = c;
        return 0;
}

/* The file decides who may drive a root daemon and where it writes: it
 * must be root's (or the caller's own) and writable by its owner alone. */
static int read_config(const char *path, char **text, size_t *len, struct jr_err *err)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0)
                return jr_fail(err, errno, "%s: unreadable", path);
        if (!S_ISREG(st.st_mode))
                return jr_fail(err, EINVAL, "%s: unreadable: not a regular file", path);
        if ((st.st_uid != 0 && st.st_uid != geteuid()) || (st.st_mode & 022))
                return jr_fail(err, EPERM, "%s: must be owned by root and writable by its owner alone "
                               "(it is uid %u, mode %04o)", path, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
        if (st.st_size > JAILD_CONFIG_MAX_FILE)
                return jr_fail(err, EFBIG, "%s: larger than %d bytes", path, JAILD_CONFIG_MAX_FILE);
        _cleanup_free_ char *buf = malloc((size_t)st.st_size + 1);
        if (!buf)
                return jr_fail(err, ENOMEM, "%s", path);
        size_t got = 0;
        /* Read to the end (at most the cap plus one byte): a file that grew
         * since fstat is judged by what is read. */
        while (got <= (size_t)st.st_size) {
                ssize_t n = read(fd, buf + got, (size_t)st.st_size + 1 - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return jr_fail(err, errno, "%s: unreadable", path);
                if (n == 0)
                        break;
                got += (size_t)n;
        }
        if (got > (size_t)st.st_size)
                return jr_fail(err, EFBIG, "%s: changed while read", path);
        *text = TAKE_PTR(buf);
        *len = got;
        return 0;
}

int jaild_config_load(const char *path, struct jaild_config **out, struct jr_err *err)
{
        if (!path)
                return jaild_config_parse(NULL, 0, "defaults", out, err);
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r = read_config(path, &text, &len, err);
        if (r < 0) {
                *out = NULL;
                return r;
        }
        return jaild_config_parse(text, len, path, out, err);
}

void jaild_config_free(struct jaild_config *c)
{
        if (!c)
                return;
        free(c->socket_path);
        free(c->allow_uids);
        free(c->allow_gids);
        free(c->cgroup_parent);
        free(c->state.path);
        free(c->state.host);
        free(c->state.unix_path);
        free(c->workspace_root);
        free(c->secrets);
        free(c->registry);
        free(c->zygote_preload);
        free(c->sessions.wheel_dir);
        free(c->sessions.index_url);
        free(c->policy);
        free(c);
}

int jaild_config_state_url(const struct jaild_config *c, char *buf, size_t size)
{
        const struct jaild_state_cfg *s = &c->state;
        if (s->backend == JAILD_STATE_SQLITE)
                return jr_snprintf(buf, size, "%s", s->path);
        if (s->unix_path)
                return jr_snprintf(buf, size, "unix://%s?db=%d", s->unix_path, s->db);
        return jr_snprintf(buf, size, "redis://%s:%d/%d", s->host, s->port, s->db);
}
