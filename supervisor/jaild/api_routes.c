/* The API's routes: which method and path reach which backend callback,
 * and what body each one takes (docs/api.md is the contract). */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "supervisor/jaild/api_int.h"

/* Fields of a new worker and of a change to one; schedule's own fields
 * and the policy overrides are the backend's to check. */
static const struct api_field worker_fields[] = {
        { "source", API_STRING | API_REQUIRED },
        { "profile", API_STRING },
        { "policy", API_OBJECT },
        { "schedule", API_OBJECT },
        { "name", API_STRING },
        { NULL, 0 },
};

static const struct api_field worker_change_fields[] = {
        { "source", API_STRING },
        { "profile", API_STRING },
        { "policy", API_OBJECT },
        { "schedule", API_OBJECT | API_NULL },  /* null: ticks only on request */
        { "name", API_STRING },
        { NULL, 0 },
};

static const struct api_field job_fields[] = {
        { "source", API_STRING | API_REQUIRED },
        { "profile", API_STRING },
        { "policy", API_OBJECT },
        { "args", API_ARRAY },
        { "name", API_STRING },
        { NULL, 0 },
};

/* Sessions check their own fields (sessions.c): their types are many. */
static const struct api_field session_fields[] = {
        { "memory_limit", API_STRING | API_INTEGER }, { "cpu_limit", API_NUMBER }, { "timeout", API_NUMBER },
        { "idle_timeout", API_NUMBER }, { "packages", API_ARRAY }, { "name", API_STRING }, { NULL, 0 },
};

static const struct api_field execute_fields[] = {
        { "code", API_STRING | API_REQUIRED }, { "timeout", API_NUMBER }, { NULL, 0 },
};

static const struct api_field packages_fields[] = {
        { "names", API_ARRAY | API_REQUIRED }, { NULL, 0 },
};

static const struct api_field no_fields[] = { { NULL, 0 } };

#define NEED(op) do { if (!ops->op) return -ENOSYS; } while (0)

static int do_worker_create(const struct api_ops *ops, void *data, struct api_call *c)
{
        NEED(worker_create);
        ops->worker_create(data, c, c->json);
        return 0;
}

static int do_worker_list(const struct api_ops *ops, void *data, struct api_call *c)
{
        NEED(worker_list);
        ops->worker_list(data, c);
        return 0;
}

static int do_worker_get(const struct api_ops *ops, void *data, struct api_call *c)
{
        NEED(worker_get);
        ops->worker_get(data, c, c->id);
        return 0;
}

static int do_worker_update(const struct api_ops *ops, void *data, struct api_call *c)
{
        NEED(worker_update);
        ops->worker_update(data, c, c->id, c->json);
        return 0;
}

static int do_worker_delete(const struct api_ops *ops, void *data, struct api_call *c)
{
        NEED(worker_delete);
        ops->worker_delete(data, c, c->id);
        return 0;
}

static int do_worker_tick(const struct api_ops *ops, void *data, struct api_call *c)
{
        NEED(worker_tick);
        ops->worker_tick(data, c, c->id);
        return 0;
}

static int do_worker_pause(const struct api_ops *ops, void *data, struct api_call *c)
{
        NEED(worker_pause);
        ops->worker_pause(data, c, c->id);
        return 0;
}

static int do_worker_resume(const struct api_ops *ops, void *data, struct api_call *c)
{
        NEED(worker_resume);
        ops->worker_resume(data, c, c->id);
        return 0;
}

static int do_worker_logs(const struct api_ops *ops, void *data, struct api_call *c)
{
        NEED(worker_logs);
        ops->worker_logs(data, c, c->id, c->follow);
        return 0;
}

static int do_job_submit(const struct api_ops *ops, void *data, struct api_call *c)
{
        NEED(job_submit);
        ops->job_submit(data, c, c->json);
        return 0;
}

static int do_health(const struct api_ops *ops, void *data, struct api_call *c)
{
        NEED(health);
        ops->health(data, c);
        return 0;
}

static int do_metrics(const struct api_ops *ops, void *data, struct api_call *c)
{
        NEED(metrics);
        ops->metrics(data, c);
        return 0;
}

static int do_session_create(const struct api_ops *ops, void *data, struct api_call *c)
{
        NEED(session_create);
        ops->session_create(data, c, c->json);
        return 0;
}

static int do_session_list(const struct api_ops *ops, void *data, struct api_call *c)
{
        NEED(session_list);
        ops->session_list(data, c);
        return 0;
}

static int do_session_get(const struct api_ops *ops, void *data, struct api_call *c)
{
        NEED(session_get);
        ops->session_get(data, c, c->id);
        return 0;
}

static int do_session_delete(const struct api_ops *ops, void *data, struct api_call *c)
{
        NEED(session_delete);
        ops->session_delete(data, c, c->id);
        return 0;
}

static int do_session_execute(const struct api_ops *ops, void *data, struct api_call *c)
{
        NEED(session_execute);
        ops->session_execute(data, c, c->id, c->json, c->follow);
        return 0;
}

static int do_session_packages(const struct api_ops *ops, void *data, struct api_call *c)
{
        NEED(session_packages);
        ops->session_packages(data, c, c->id, c->json);
        return 0;
}

/* ---- session files ---- */

static int do_session_file_get(const struct api_ops *ops, void *data, struct api_call *c)
{
        NEED(session_file_get);
        ops->session_file_get(data, c, c->id, c->path);
        return 0;
}

static int do_session_file_put(const struct api_ops *ops, void *data, struct api_call *c)
{
        NEED(session_file_put);
        ops->session_file_put(data, c, c->id, c->path, c->body ? c->body : "", c->len);
        return 0;
}

static int do_session_file_delete(const struct api_ops *ops, void *data, struct api_call *c)
{
        NEED(session_file_delete);
        ops->session_file_delete(data, c, c->id, c->path);
        return 0;
}

static const struct api_route routes[] = {
        { "POST", "/v1/workers", worker_fields, NULL, do_worker_create },
        { "GET", "/v1/workers", no_fields, NULL, do_worker_list },
        { "GET", "/v1/workers/{id}", no_fields, NULL, do_worker_get },
        { "PATCH", "/v1/workers/{id}", worker_change_fields, NULL, do_worker_update },
        { "DELETE", "/v1/workers/{id}", no_fields, NULL, do_worker_delete },
        { "POST", "/v1/workers/{id}/tick", no_fields, NULL, do_worker_tick },
        { "POST", "/v1/workers/{id}/pause", no_fields, NULL, do_worker_pause },
        { "POST", "/v1/workers/{id}/resume", no_fields, NULL, do_worker_resume },
        { "GET", "/v1/workers/{id}/logs", no_fields, "follow", do_worker_logs },
        { "POST", "/v1/jobs", job_fields, NULL, do_job_submit },
        { "GET", "/v1/health", no_fields, NULL, do_health },
        { "GET", "/metrics", no_fields, NULL, do_metrics },
        { "POST", "/v1/sessions", session_fields, NULL, do_session_create },
        { "GET", "/v1/sessions", no_fields, NULL, do_session_list },
        { "GET", "/v1/sessions/{id}", no_fields, NULL, do_session_get },
        { "DELETE", "/v1/sessions/{id}", no_fields, NULL, do_session_delete },
        { "POST", "/v1/sessions/{id}/execute", execute_fields, "stream", do_session_execute },
        { "POST", "/v1/sessions/{id}/packages", packages_fields, NULL, do_session_packages },

        /* ---- session files ---- */
        { "GET", "/v1/sessions/{id}/files/{path}", no_fields, NULL, do_session_file_get, 0 },
        { "PUT", "/v1/sessions/{id}/files/{path}", NULL, NULL, do_session_file_put, API_ROUTE_RAW },
        { "DELETE", "/v1/sessions/{id}/files/{path}", no_fields, NULL, do_session_file_delete, 0 },
};

static int id_char(char ch)
{
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
               ch == '.' || ch == '_' || ch == '-';
}

/* Does path match pattern? A "{id}" segment takes one non-empty segment
 * of id characters (so never "." or ".."), copied into id; a "{path}"
 * (last in a pattern) takes the rest, pointed to by *tail. */
static int match(const char *pattern, const char *path, char id[API_ID_MAX + 1], const char **tail)
{
        const char *p = pattern, *s = path;
        *tail = NULL;
        while (*p) {
                if (strcmp(p, "{path}") == 0) {
                        *tail = s;
                        return 1;
                }
                if (strncmp(p, "{id}", 4) == 0) {
                        size_t n = 0;
                        while (id_char(s[n]))
                                n++;
                        if (n == 0 || n > API_ID_MAX || (s[n] && s[n] != '/'))
                                return 0;
                        if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
                                return 0;
                        memcpy(id, s, n);
                        id[n] = '\0';
                        p += 4;
                        s += n;
                        continue;
                }
                if (*p++ != *s++)
                        return 0;
        }
        return *s == '\0';
}

static void allow_add(char *allow, size_t size, const char *method)
{
        size_t used = strlen(allow);
        /* The table's methods fit the caller's buffer: a cut list is a bug. */
        (void)jr_snprintf(allow + used, size - used, "%s%s", used ? ", " : "", method);
}

const struct api_route *api_route_find(const char *method, const char *path, char id[API_ID_MAX + 1],
                                       const char **tail, char *allow, size_t allow_size, unsigned *status)
{
        allow[0] = '\0';
        for (size_t i = 0; i < ELEMENTSOF(routes); i++) {
                if (!match(routes[i].pattern, path, id, tail))
                        continue;
                if (strcmp(routes[i].method, method) == 0)
                        return &routes[i];
                allow_add(allow, allow_size, routes[i].method);
        }
        *status = allow[0] ? 405 : 404;
        return NULL;
}

int api_path_check(const char *path, int empty_ok, char *msg, size_t size)
{
        size_t n = strlen(path);
        if (n == 0 && empty_ok)
                return 0;
        if (n == 0 || n > API_PATH_MAX)
                return jr_snprintf(msg, size, "a file path is 1 to %d bytes", API_PATH_MAX), -EINVAL;
        if (path[0] == '/')
                return jr_snprintf(msg, size, "a file path is relative to the session directory"), -EINVAL;
        for (const char *c = path; *c; c++)
                if ((unsigned char)*c < 0x20 || *c == 0x7f)
                        return jr_snprintf(msg, size, "a file path holds a NUL or control character (byte %zu)",
                                           (size_t)(c - path)), -EINVAL;
        for (const char *c = path;; c++) {
                size_t k = strcspn(c, "/");
                if (k == 0)
                        return jr_snprintf(msg, size, "a file path has an empty segment (a doubled or trailing "
                                           "slash)"), -EINVAL;
                if ((k == 1 && c[0] == '.') || (k == 2 && c[0] == '.' && c[1] == '.'))
                        return jr_snprintf(msg, size, "a file path has a '%.*s' segment", (int)k, c), -EINVAL;
                if (k > 255)
                        return jr_snprintf(msg, size, "a file path has a name over 255 bytes"), -EINVAL;
                c += k;
                if (!*c)
                        return 0;
        }
}

int api_query_arg(const struct api_route *r, const char *key, const char *value, int *follow)
{
        if (!r->query || strcmp(key, r->query) != 0)
                return -ENOENT;
        /* follow, follow=, follow=1, follow=true: on; follow=0, follow=false: off */
        if (!value || !*value || strcmp(value, "1") == 0 || strcmp(value, "true") == 0)
                *follow = 1;
        else if (strcmp(value, "0") == 0 || strcmp(value, "false") == 0)
                *follow = 0;
        else
                return -EINVAL;
        return 0;
}

int api_body_parse(const struct api_route *r, const char *body, size_t len, json_t **out, char *msg, size_t size)
{
        json_error_t je;
        *out = NULL;
        _cleanup_(json_decrefp) json_t *j = len ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &je) : json_object();
        if (!j && !len)
                return -ENOMEM;
        if (!j)
                return jr_snprintf(msg, size, "invalid JSON at line %d, column %d: %s", je.line, je.column, je.text),
                       -EINVAL;
        if (api_check_object(j, r->body, NULL, msg, size) < 0)
                return -EINVAL;
        *out = TAKE_PTR(j);
        return 0;
}

static int hex(char ch)
{
        return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
             : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

size_t api_unescape(char *s)
{
        char *w = s;
        for (const char *r = s; *r; w++) {
                int hi = r[0] == '%' ? hex(r[1]) : -1, lo = hi >= 0 ? hex(r[2]) : -1;
                if (lo < 0) {
                        *w = *r++;
                        continue;
                }
                *w = (char)(hi << 4 | lo);
                if (*w == '\0')
                        *w = '\x01';
                r += 3;
        }
        *w = '\0';
        return (size_t)(w - s);
}
