/* Checks of what a session's requests ask for (sesscheck.h). */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/parse.h"
#include "supervisor/jaild/sesscheck.h"
#include "supervisor/jaild/session.h"

int session_parse_memory(const json_t *v, uint64_t *out)
{
        if (json_is_integer(v)) {
                if (json_integer_value(v) <= 0)
                        return -EINVAL;
                *out = (uint64_t)json_integer_value(v);
                return 0;
        }
        char buf[32];
        const char *s = json_string_value(v);
        if (!s)
                return -EINVAL;
        size_t n = strlen(s);
        if (n == 0 || n >= sizeof buf)
                return -EINVAL;
        memcpy(buf, s, n + 1);
        if (n >= 3 && strcmp(buf + n - 2, "iB") == 0)
                buf[n -= 2] = '\0';
        else if (n >= 2 && buf[n - 1] == 'B' && strchr("KMGkmg", buf[n - 2]))
                buf[--n] = '\0';
        unsigned long b;
        if (jr_parse_size(buf, &b) < 0 || b == 0)
                return -EINVAL;
        *out = b;
        return 0;
}

int session_take_limits(const json_t *spec, struct session_limits *l, char *msg, size_t size)
{
        json_t *m = json_object_get(spec, "memory_limit"), *cpu = json_object_get(spec, "cpu_limit");
        json_t *t = json_object_get(spec, "timeout"), *idle = json_object_get(spec, "idle_timeout");
        if (m && session_parse_memory(m, &l->memory) < 0)
                return jr_snprintf(msg, size, "memory_limit: a size such as \"512M\" or \"1G\", or bytes"), -EINVAL;
        if (l->memory > l->mem_max || l->memory < SESSION_MEMORY_MIN) {
                char max[32];
                format_size(l->mem_max, max, sizeof max);
                return jr_snprintf(msg, size, "memory_limit: at most %s (%llu bytes), at least 32 MiB", max,
                                   (unsigned long long)l->mem_max), -EINVAL;
        }
        if (cpu)
                l->cpus = json_number_value(cpu);
        if (!(l->cpus >= 0.01 && l->cpus <= l->cpus_max))
                return jr_snprintf(msg, size, "cpu_limit: at most %g cores, at least 0.01", l->cpus_max), -EINVAL;
        if (t)
                l->timeout = json_number_value(t);
        if (!(l->timeout >= 0.001 && l->timeout <= SESSION_TIMEOUT_MAX))
                return jr_snprintf(msg, size, "timeout: from 0.001 to %d seconds", SESSION_TIMEOUT_MAX), -EINVAL;
        l->idle_s = idle ? json_number_value(idle) : l->idle_max;
        if (!(l->idle_s >= 1 && l->idle_s <= l->idle_max))
                return jr_snprintf(msg, size, "idle_timeout: from 1 to %g seconds (sessions.idle_timeout)", l->idle_max),
                       -EINVAL;
        return 0;
}

int session_execute_check(const json_t *body, double max_timeout, double *timeout, char *msg, size_t size)
{
        json_t *code = json_object_get(body, "code"), *t = json_object_get(body, "timeout");
        *timeout = t ? json_number_value(t) : max_timeout;
        if (!(*timeout >= 0.001 && *timeout <= max_timeout))
                return jr_snprintf(msg, size, "timeout: from 0.001 to the session's %g s", max_timeout), -EINVAL;
        if (json_string_length(code) > JOB_MAX_CELL)
                return jr_snprintf(msg, size, "code: at most %d bytes", JOB_MAX_CELL), -EMSGSIZE;
        if (!json_is_string(code) || strlen(json_string_value(code)) != json_string_length(code))
                return jr_snprintf(msg, size, "code: must not hold NUL characters"), -EINVAL;
        return 0;
}

static int alnum(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* A project name (PEP 508): letters and digits, with . _ - inside. */
static const char *project(const char *p)
{
        if (!alnum(*p))
                return NULL;
        while (alnum(*p) || ((*p == '.' || *p == '_' || *p == '-') && alnum(p[1])))
                p++;
        return p;
}

/* "==1.2", ">=1,<2": operators and versions of [A-Za-z0-9.*+!-]. */
static const char *constraint(const char *p)
{
        static const char *const ops[] = { "===", "==", "!=", "<=", ">=", "~=", "<", ">" };
        for (;;) {
                size_t k = 0;
                while (k < ELEMENTSOF(ops) && strncmp(p, ops[k], strlen(ops[k])) != 0)
                        k++;
                if (k == ELEMENTSOF(ops))
                        return NULL;
                p += strlen(ops[k]);
                const char *v = p;
                while (alnum(*p) || (*p && strchr(".*+!-", *p)))
                        p++;
                if (p == v)
                        return NULL;
                if (*p != ',')
                        return p;
                p++;
        }
}

/* A requirement in the plain form of PEP 508 alone: a project name,
 * optional [extras], optional version constraints. Never an option, a
 * path, a URL, or a name pip would read as an archive file in its
 * working directory ("x.whl", "x.tar.gz": then it builds and runs what
 * the session put there). */
static int name_ok(const char *s, size_t len)
{
        static const char *const archives[] = { ".whl", ".zip", ".tar", ".gz", ".tgz", ".bz2", ".tbz", ".xz", ".txz" };
        if (len == 0 || len > 200 || strlen(s) != len)
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(archives); i++) {
                size_t n = strlen(archives[i]);
                if (len >= n && strcasecmp(s + len - n, archives[i]) == 0)
                        return 0;
        }
        const char *p = project(s);
        if (p && *p == '[') {
                do
                        p = project(p + 1);
                while (p && *p == ',');
                p = p && *p == ']' ? p + 1 : NULL;
        }
        if (p && *p)
                p = constraint(p);
        return p && *p == '\0';
}

int session_package_names_check(const json_t *names, char *msg, size_t size)
{
        size_t i, n = json_array_size(names);
        json_t *v;
        if (n == 0 || n > SESSION_MAX_PACKAGES)
                return jr_snprintf(msg, size, "names: 1 to %d package names", SESSION_MAX_PACKAGES), -EINVAL;
        json_array_foreach(names, i, v) {
                if (!json_is_string(v) || !name_ok(json_string_value(v), json_string_length(v)))
                        return jr_snprintf(msg, size, "names[%zu]: a package name, optionally with extras and a version "
                                           "(\"name\", \"name==1.2\", \"name[extra]>=1\")", i), -EINVAL;
        }
        return 0;
}
