/* libFuzzer target for jaild's API requests, without a daemon: an input
 * is "METHOD URL\n" and the body. It goes the way the server takes it
 * (supervisor/jaild/api_http.c): the path percent-decoded (api_unescape),
 * routed (api_route_find: 404, 405 with Allow, the {id} segment), a file
 * path tail checked (api_path_check), each query argument decoded and
 * checked (api_query_arg), a JSON body parsed and checked against the
 * route's fields (api_body_parse); then what the route's handler checks
 * before it needs the daemon's state: a session's limits, its execute
 * body, package names (sesscheck.c), a job's or worker's name
 * (job_valid_name) and policy (policy_apply and policy_decode, as
 * build_opts). The HTTP framing itself is libmicrohttpd's. Build: make
 * fuzz; run: tests/fuzz/run SECONDS api. */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"
#include "supervisor/engine/job.h"
#include "supervisor/jaild/api_int.h"
#include "supervisor/jaild/sesscheck.h"
#include "supervisor/jaild/session.h"

/* The query, split on '&' and '=' as MHD does, each part decoded. */
static void query(const struct api_route *r, char *q)
{
        int follow = 0;
        for (char *save = NULL, *arg = strtok_r(q, "&", &save); arg; arg = strtok_r(NULL, "&", &save)) {
                char *eq = strchr(arg, '=');
                if (eq)
                        *eq++ = '\0';
                api_unescape(arg);
                if (eq)
                        api_unescape(eq);
                int rc = api_query_arg(r, arg, eq, &follow);
                if (rc != 0 && rc != -ENOENT && rc != -EINVAL)
                        __builtin_trap();
        }
}

/* As build_opts (jaild.c): the overrides copied, laid over the profile. */
static void policy(const char *profile, const json_t *over)
{
        json_t *o = over ? json_deep_copy(over) : json_object(), *p = NULL;
        struct jr_err err = { 0 };
        if (o && policy_apply(profile, o, "policy", &p, &err) == 0) {
                struct policy d;
                if (policy_decode(p, "policy", &d, &err) != 0)
                        __builtin_trap();  /* a policy that passed always decodes */
                policy_release(&d);
                err.msg[0] = '\0';
                if (policy_check_python_layer(p, "policy", &err) < 0 && !err.msg[0])
                        __builtin_trap();  /* a refusal always says why */
                json_decref(p);
        } else if (o && !err.msg[0]) {
                __builtin_trap();
        }
        json_decref(o);
}

/* What the route's handler checks of the body before it needs the daemon. */
static void handler(const struct api_route *r, json_t *body)
{
        char msg[256];
        const char *pat = r->pattern, *name = json_string_value(json_object_get(body, "name"));
        if (name)
                (void)job_valid_name(name);
        if (strcmp(pat, "/v1/sessions") == 0 && strcmp(r->method, "POST") == 0) {
                struct session_limits l = { .memory = 512 << 20, .mem_max = SESSION_MEMORY_MAX, .cpus = 1,
                                            .cpus_max = SESSION_CPUS_MAX, .timeout = SESSION_TIMEOUT_DEFAULT,
                                            .idle_max = 600 };
                if (session_take_limits(body, &l, msg, sizeof msg) == 0 &&
                    (l.memory > l.mem_max || !(l.cpus <= l.cpus_max) || !(l.idle_s <= l.idle_max)))
                        __builtin_trap();
                json_t *pk = json_object_get(body, "packages");
                if (pk)
                        (void)session_package_names_check(pk, msg, sizeof msg);
        } else if (strcmp(pat, "/v1/sessions/{id}/execute") == 0) {
                double t;
                if (session_execute_check(body, 300, &t, msg, sizeof msg) == 0 && !(t > 0 && t <= 300))
                        __builtin_trap();
        } else if (strcmp(pat, "/v1/sessions/{id}/packages") == 0) {
                (void)session_package_names_check(json_object_get(body, "names"), msg, sizeof msg);
        } else if (strcmp(pat, "/v1/jobs") == 0 || strncmp(pat, "/v1/workers", 11) == 0) {
                const char *profile = json_string_value(json_object_get(body, "profile"));
                json_t *pol = json_object_get(body, "policy");
                if (profile || pol)
                        policy(profile ? profile : strcmp(pat, "/v1/jobs") == 0 ? "exec" : "worker", pol);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *nl = memchr(data, '\n', size);
        size_t head = nl ? (size_t)(nl - (const char *)data) : size;
        if (head > 8192 || memchr(data, '\0', head))
                return 0;  /* MHD takes no NUL and no line this long */
        char *line = strndup((const char *)data, head);
        if (!line)
                return 0;
        char *url = strchr(line, ' ');
        if (url) {
                *url++ = '\0';
                char *q = strchr(url, '?');
                if (q)
                        *q++ = '\0';
                api_unescape(url);
                char id[API_ID_MAX + 1], allow[64], msg[256];
                const char *tail = NULL;
                unsigned status = 0;
                const struct api_route *r = api_route_find(line, url, id, &tail, allow, sizeof allow, &status);
                if (!r && !(status == 404 || (status == 405 && allow[0])))
                        __builtin_trap();
                if (r && tail && api_path_check(tail, 1, msg, sizeof msg) == 0 && tail[0] == '/')
                        __builtin_trap();
                if (r && q)
                        query(r, q);
                if (r && !(r->flags & API_ROUTE_RAW)) {
                        const char *body = nl ? nl + 1 : "";
                        size_t len = nl ? size - head - 1 : 0;
                        json_t *j = NULL;
                        int rc = api_body_parse(r, body, len, &j, msg, sizeof msg);
                        if (rc == 0)
                                handler(r, j);
                        else if (j || !msg[0])
                                __builtin_trap();
                        json_decref(j);
                }
        }
        free(line);
        return 0;
}
