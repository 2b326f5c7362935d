/* The API server's pure parts: field checks (api_check_object) and the
 * route table (api_route_find). The HTTP side is tested end to end by
 * tests/jaild/test_api_layer.py. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/cleanup.h"

#include "supervisor/jaild/api_int.h"
#include "tests/unit/unit.h"

static const struct api_field fields[] = {
        { "source", API_STRING | API_REQUIRED },
        { "every", API_NUMBER },
        { "count", API_INTEGER },
        { "flag", API_BOOLEAN },
        { "policy", API_OBJECT },
        { "args", API_ARRAY },
        { "schedule", API_OBJECT | API_NULL },
        { NULL, 0 },
};

/* Checks text against fields: "" when it passes, else the message. */
static const char *check(const char *text, const char *where)
{
        static char msg[256];
        json_error_t je;
        json_t *j = json_loads(text, 0, &je);
        ck_assert_msg(j, "bad test JSON %s", text);
        int r = api_check_object(j, fields, where, msg, sizeof msg);
        json_decref(j);
        return r == 0 ? "" : msg;
}

START_TEST(fields_pass)
{
        ck_assert_str_eq(check("{\"source\": \"x\"}", NULL), "");
        ck_assert_str_eq(check("{\"source\": \"x\", \"every\": 1, \"count\": 2, \"flag\": false, \"policy\": {},"
                               " \"args\": [], \"schedule\": null}", NULL), "");
        ck_assert_str_eq(check("{\"source\": \"x\", \"every\": 1.5, \"schedule\": {}}", NULL), "");
}
END_TEST

START_TEST(fields_refused)
{
        static const struct {
                const char *json, *where, *msg;
        } cases[] = {
                { "{}", NULL, "missing required field 'source'" },
                { "{\"source\": 1}", NULL, "field 'source': expected string, got integer" },
                { "{\"source\": null}", NULL, "field 'source': expected string, got null" },
                { "{\"source\": \"x\", \"bogus\": 1}", NULL, "unknown field 'bogus'" },
                { "{\"source\": \"x\", \"bogus\": 1}", "schedule", "unknown field 'schedule.bogus'" },
                { "{}", "schedule", "missing required field 'schedule.source'" },
                { "{\"source\": \"x\", \"count\": 1.5}", NULL, "field 'count': expected integer, got real" },
                { "{\"source\": \"x\", \"every\": \"1\"}", NULL, "field 'every': expected number, got string" },
                { "{\"source\": \"x\", \"flag\": 0}", NULL, "field 'flag': expected boolean, got integer" },
                { "{\"source\": \"x\", \"schedule\": []}", NULL,
                  "field 'schedule': expected object or null, got array" },
                { "{\"source\": \"x\", \"args\": {}}", NULL, "field 'args': expected array, got object" },
                { "[]", NULL, "body: expected an object, got array" },
                { "3", "schedule", "schedule: expected an object, got integer" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                json_error_t je;
                char msg[256] = "";
                json_t *j = json_loads(cases[i].json, JSON_DECODE_ANY, &je);
                ck_assert_ptr_nonnull(j);
                ck_assert_int_eq(api_check_object(j, fields, cases[i].where, msg, sizeof msg), -EINVAL);
                ck_assert_str_eq(msg, cases[i].msg);
                json_decref(j);
        }
}
END_TEST

START_TEST(fields_long_key_cut)
{
        char text[512], msg[128];
        memset(msg, 0, sizeof msg);
        snprintf(text, sizeof text, "{\"source\": \"x\", \"%0300d\": 1}", 0);
        json_t *j = json_loads(text, 0, NULL);
        ck_assert_int_eq(api_check_object(j, fields, NULL, msg, sizeof msg), -EINVAL);
        ck_assert_uint_lt(strlen(msg), 100);  /* the key is cut, not the whole buffer filled */
        json_decref(j);
}
END_TEST

static const struct api_route *find(const char *method, const char *path, char *id, char *allow, unsigned *status)
{
        const char *tail;
        return api_route_find(method, path, id, &tail, allow, 64, status);
}

START_TEST(routes_found)
{
        char id[API_ID_MAX + 1], allow[64];
        unsigned status = 0;
        const struct api_route *r = find("POST", "/v1/workers/w-1.a_b/tick", id, allow, &status);
        ck_assert_ptr_nonnull(r);
        ck_assert_str_eq(r->pattern, "/v1/workers/{id}/tick");
        ck_assert_str_eq(id, "w-1.a_b");
        r = find("GET", "/v1/workers", id, allow, &status);
        ck_assert_ptr_nonnull(r);
        ck_assert_str_eq(r->pattern, "/v1/workers");
        r = find("DELETE", "/v1/workers/abc", id, allow, &status);
        ck_assert_ptr_nonnull(r);
        ck_assert_str_eq(id, "abc");
        ck_assert_ptr_nonnull(find("GET", "/metrics", id, allow, &status));
        r = find("GET", "/v1/workers/x/logs", id, allow, &status);
        ck_assert_ptr_nonnull(r);
        ck_assert_str_eq(r->query, "follow");
}
END_TEST

START_TEST(routes_refused)
{
        char id[API_ID_MAX + 1], allow[64];
        unsigned status = 0;
        static const char *const missing[] = {
                "/", "/v1", "/v1/workers/", "/v1/workers//tick", "/v1/workers/a/b", "/v1/workers/../tick",
                "/v1/workers/./tick", "/v1/workers/a b", "/v1/workers/a/tick/", "/v2/health", "/v1/healthz",
                "/metrics/", "v1/health",
        };
        for (size_t i = 0; i < ELEMENTSOF(missing); i++) {
                ck_assert_msg(!find("GET", missing[i], id, allow, &status), "%s matched", missing[i]);
                ck_assert_msg(status == 404 || status == 405, "%s: %u", missing[i], status);
        }
        ck_assert_ptr_null(find("GET", "/v1/workers/a/b", id, allow, &status));
        ck_assert_uint_eq(status, 404);
        char longid[API_ID_MAX + 32] = "/v1/workers/";
        memset(longid + strlen(longid), 'a', API_ID_MAX + 1);
        ck_assert_ptr_null(find("GET", longid, id, allow, &status));
        ck_assert_uint_eq(status, 404);
}
END_TEST

START_TEST(routes_method_not_allowed)
{
        char id[API_ID_MAX + 1], allow[64];
        unsigned status = 0;
        ck_assert_ptr_null(find("PUT", "/v1/workers/abc", id, allow, &status));
        ck_assert_uint_eq(status, 405);
        ck_assert_str_eq(allow, "GET, PATCH, DELETE");
        ck_assert_ptr_null(find("GET", "/v1/workers/abc/tick", id, allow, &status));
        ck_assert_uint_eq(status, 405);
        ck_assert_str_eq(allow, "POST");
        ck_assert_ptr_null(find("DELETE", "/v1/workers", id, allow, &status));
        ck_assert_str_eq(allow, "POST, GET");
}
END_TEST

START_TEST(routes_file_path_tail)
{
        char id[API_ID_MAX + 1], allow[64];
        unsigned status = 0;
        const char *tail = NULL;
        static const char *const methods[] = { "GET", "PUT", "DELETE" };
        for (size_t i = 0; i < ELEMENTSOF(methods); i++) {
                const struct api_route *r = api_route_find(methods[i], "/v1/sessions/s-1/files/a/b c/d.txt", id, &tail,
                                                           allow, sizeof allow, &status);
                ck_assert_ptr_nonnull(r);
                ck_assert_str_eq(r->method, methods[i]);
                ck_assert_str_eq(id, "s-1");
                ck_assert_str_eq(tail, "a/b c/d.txt");
                ck_assert_uint_eq(r->flags & API_ROUTE_RAW, strcmp(methods[i], "PUT") == 0 ? API_ROUTE_RAW : 0);
        }
        /* The tail takes anything (checked apart, by api_path_check), even
         * nothing: the session directory itself. */
        ck_assert_ptr_nonnull(api_route_find("GET", "/v1/sessions/s/files/", id, &tail, allow, sizeof allow, &status));
        ck_assert_str_eq(tail, "");
        ck_assert_ptr_nonnull(api_route_find("GET", "/v1/sessions/s/files/../x", id, &tail, allow, sizeof allow,
                                             &status));
        ck_assert_str_eq(tail, "../x");
        /* Other routes have no tail. */
        ck_assert_ptr_nonnull(api_route_find("GET", "/v1/workers/w", id, &tail, allow, sizeof allow, &status));
        ck_assert_ptr_null(tail);
        /* The id is an id; "files" without its slash is not the route. */
        static const char *const missing[] = { "/v1/sessions/../files/x", "/v1/sessions//files/x",
                                               "/v1/sessions/s/files", "/v1/sessions/s/filesx", "/v1/sessions/a b/files/x" };
        for (size_t i = 0; i < ELEMENTSOF(missing); i++)
                ck_assert_msg(!api_route_find("GET", missing[i], id, &tail, allow, sizeof allow, &status), "%s", missing[i]);
        ck_assert_ptr_null(api_route_find("POST", "/v1/sessions/s/files/x", id, &tail, allow, sizeof allow, &status));
        ck_assert_uint_eq(status, 405);
        ck_assert_str_eq(allow, "GET, PUT, DELETE");
}
END_TEST

START_TEST(path_check)
{
        char msg[256];
        static const char *const good[] = { "a", "a/b", "a.txt", ".hidden", "...", "a/..b/c..", "x y/z",
                                            "\xff\xfe-not-utf8", "a/b/c/d/e/f" };
        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                ck_assert_msg(api_path_check(good[i], 0, msg, sizeof msg) == 0, "%s: %s", good[i], msg);
        ck_assert_int_eq(api_path_check("", 1, msg, sizeof msg), 0);
        static const struct {
                const char *path, *msg;
        } bad[] = {
                { "", "a file path is 1 to 4096 bytes" },
                { "/etc/passwd", "a file path is relative to the session directory" },
                { "..", "a file path has a '..' segment" },
                { "a/../b", "a file path has a '..' segment" },
                { "a/..", "a file path has a '..' segment" },
                { ".", "a file path has a '.' segment" },
                { "./a", "a file path has a '.' segment" },
                { "a/./b", "a file path has a '.' segment" },
                { "a//b", "a file path has an empty segment (a doubled or trailing slash)" },
                { "a/", "a file path has an empty segment (a doubled or trailing slash)" },
                { "a\x01b", "a file path holds a NUL or control character (byte 1)" },
                { "a\nb", "a file path holds a NUL or control character (byte 1)" },
                { "a\x7f", "a file path holds a NUL or control character (byte 1)" },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                msg[0] = '\0';
                ck_assert_int_eq(api_path_check(bad[i].path, 0, msg, sizeof msg), -EINVAL);
                ck_assert_str_eq(msg, bad[i].msg);
        }
        char longp[API_PATH_MAX + 2];
        memset(longp, 'a', sizeof longp);
        for (size_t i = 200; i < sizeof longp - 1; i += 201)
                longp[i] = '/';
        longp[API_PATH_MAX] = '\0';
        ck_assert_int_eq(api_path_check(longp, 0, msg, sizeof msg), 0);
        longp[API_PATH_MAX] = 'a';
        longp[API_PATH_MAX + 1] = '\0';
        ck_assert_int_eq(api_path_check(longp, 0, msg, sizeof msg), -EINVAL);
        char name[300];
        memset(name, 'n', sizeof name);
        name[256] = '\0';
        ck_assert_int_eq(api_path_check(name, 0, msg, sizeof msg), -EINVAL);
        ck_assert_str_eq(msg, "a file path has a name over 255 bytes");
        name[255] = '\0';
        ck_assert_int_eq(api_path_check(name, 0, msg, sizeof msg), 0);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("api");
        TCase *tc = tcase_create("api");
        tcase_add_test(tc, fields_pass);
        tcase_add_test(tc, fields_refused);
        tcase_add_test(tc, fields_long_key_cut);
        tcase_add_test(tc, routes_found);
        tcase_add_test(tc, routes_refused);
        tcase_add_test(tc, routes_method_not_allowed);
        tcase_add_test(tc, routes_file_path_tail);
        tcase_add_test(tc, path_check);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
