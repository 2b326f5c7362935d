/* The policy model: built-in profiles are complete and consistent; an
 * override replaces keys one by one; every kind of bad input is refused
 * with its JSON path and reason. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy/policy.h"
#include "tests/unit/unit.h"

/* policy_apply on the JSON text `over` (NULL: none); returns the result
 * code, the effective policy in *out (or NULL) and the message in err. */
static int apply(const char *profile, const char *over, json_t **out, struct jr_err *err)
{
        json_error_t je;
        json_t *o = over ? json_loads(over, JSON_REJECT_DUPLICATES, &je) : NULL;
        if (over)
                ck_assert_msg(o != NULL, "test JSON: %s", je.text);
        *out = NULL;
        int r = policy_apply(profile, o, "test.json", out, err);
        json_decref(o);
        return r;
}

START_TEST(builtins_complete)
{
        const char *names[] = { "worker", "strategy", "exec" };
        for (size_t i = 0; i < 3; i++) {
                json_t *p;
                struct jr_err err = { 0 };
                ck_assert_msg(apply(names[i], NULL, &p, &err) == 0, "%s: %s", names[i], err.msg);
                ck_assert_str_eq(policy_str(p, "profile"), names[i]);
                ck_assert_int_eq(policy_check(p, 1, "again", &err), 0);
                json_decref(p);
        }
}
END_TEST

START_TEST(profile_numbers)
{
        json_t *p;
        struct jr_err err = { 0 };
        ck_assert_int_eq(apply("worker", NULL, &p, &err), 0);
        ck_assert_int_eq(policy_int(p, "limits.memory"), 256 << 20);
        ck_assert_int_eq(policy_int(p, "log.max_chars"), 4000);
        ck_assert_int_eq(policy_int(p, "log.batch"), 20);
        ck_assert(policy_bool(p, "python.guard"));
        ck_assert(policy_bool(p, "validator.enabled"));
        ck_assert_str_eq(policy_str(p, "python.dunder_policy"), "deny-list");
        json_decref(p);
        ck_assert_int_eq(apply("strategy", NULL, &p, &err), 0);
        ck_assert_int_eq(policy_int(p, "validator.max_source_bytes"), 102400);
        ck_assert_int_eq(policy_int(p, "validator.max_nesting"), 50);
        ck_assert_int_eq(policy_int(p, "validator.max_nodes"), 10000);
        ck_assert_str_eq(policy_str(p, "python.import_error"), "SecurityError");
        json_decref(p);
        ck_assert_int_eq(apply("exec", NULL, &p, &err), 0);
        ck_assert(!policy_bool(p, "python.guard"));
        ck_assert_int_eq(policy_int(p, "limits.memory_max"), 2LL << 30);
        json_decref(p);
}
END_TEST

START_TEST(override_key_by_key)
{
        json_t *p;
        struct jr_err err = { 0 };
        ck_assert_int_eq(apply("worker", "{\"python\": {\"imports\": [\"math\", \"os\"]}, "
                                         "\"limits\": {\"pids\": 10}}", &p, &err), 0);
        ck_assert_int_eq(json_array_size(json_object_get(json_object_get(p, "python"), "imports")), 2);
        ck_assert_int_eq(policy_int(p, "limits.pids"), 10);
        /* untouched keys keep the profile's values */
        ck_assert_int_eq(policy_int(p, "limits.memory"), 256 << 20);
        ck_assert(policy_bool(p, "python.guard"));
        json_decref(p);
        /* the file may pick the profile */
        ck_assert_int_eq(apply(NULL, "{\"profile\": \"strategy\"}", &p, &err), 0);
        ck_assert_str_eq(policy_str(p, "profile"), "strategy");
        json_decref(p);
}
END_TEST

/* Each bad document and a piece of the message it must give. */
static const struct { const char *json, *msg; } bad_docs[] = {
        { "{\"pythn\": {}}", "$: unknown key 'pythn'" },
        { "{\"python\": {\"importz\": []}}", "$.python: unknown key 'importz'" },
        { "{\"python\": {\"imports\": \"math\"}}", "$.python.imports: expected an array of strings, got a string" },
        { "{\"python\": {\"imports\": [\"math\", 3]}}", "$.python.imports: [1]: expected a string, got an integer" },
        { "{\"python\": {\"imports\": [\"os;rm\"]}}", "is not a Python name" },
        { "{\"python\": {\"imports\": [\"a\", \"a\"]}}", "listed twice" },
        { "{\"python\": {\"guard\": 1}}", "$.python.guard: expected a boolean, got an integer" },
        { "{\"python\": {\"open\": \"sometimes\"}}", "$.python.open: 'sometimes' is not one of the known values" },
        { "{\"python\": {\"globals\": {\"np\": 3}}}", "$.python.globals: .np: expected a string" },
        { "{\"python\": {\"globals\": {\"a.b\": \"numpy\"}}}", "is not an identifier" },
        { "{\"python\": {\"blocked_names\": {\"numpy.load\": \"\"}}}", "one-line reason" },
        { "{\"python\": {\"blocked_names\": {\"numpy.load\": \"a\\nb\"}}}", "one-line reason" },
        { "{\"python\": {\"absent_builtins\": {\"open\": \"\"}}}", "$.python.absent_builtins: .open: '' is not a one-line" },
        { "{\"python\": {\"absent_builtins\": {\"op en\": \"x\"}}}", "key 'op en' is not a Python name" },
        { "{\"limits\": {\"pids\": 0}}", "$.limits.pids: 0 is out of range" },
        { "{\"limits\": {\"pids\": 1.5}}", "$.limits.pids: expected an integer, got a number" },
        { "{\"limits\": {\"memory\": 1e300}}", "$.limits.memory: expected an integer" },
        { "{\"limits\": {\"pids\": 300}}", "$.limits.pids: 300 is above limits.pids_max" },
        { "{\"limits\": \"big\"}", "$.limits: expected an object, got a string" },
        { "{\"log\": {\"max_chars\": 5000}}", "$.log.max_chars: 5000 is out of range" },
        { "{\"validator\": {\"forbid\": [\"goto\"]}}", "'goto' is not a known rule" },
        { "{\"profile\": \"root\"}", "$.profile: 'root' is not one of the known values" },
        { "[1, 2]", "$: expected an object, got an array" },
        { "{\"limits\": {\"pids\": null}}", "expected an integer, got null" },
};

START_TEST(bad_input)
{
        json_t *p;
        struct jr_err err = { 0 };
        int r = apply("worker", bad_docs[_i].json, &p, &err);
        ck_assert_msg(r == -EINVAL && p == NULL, "accepted %s", bad_docs[_i].json);
        ck_assert_msg(strstr(err.msg, bad_docs[_i].msg) != NULL, "%s: got '%s'", bad_docs[_i].json, err.msg);
        ck_assert_msg(strncmp(err.msg, "test.json: ", 11) == 0, "no file name: '%s'", err.msg);
}
END_TEST

START_TEST(profile_conflict)
{
        json_t *p;
        struct jr_err err = { 0 };
        ck_assert_int_eq(apply("exec", "{\"profile\": \"worker\"}", &p, &err), -EINVAL);
        ck_assert_ptr_nonnull(strstr(err.msg, "differs from --profile exec"));
}
END_TEST

START_TEST(load_files)
{
        json_t *p = NULL;
        struct jr_err err = { 0 };
        ck_assert_int_eq(policy_load("worker", "/nonexistent/policy.json", &p, &err), -ENOENT);
        ck_assert_int_lt(policy_load("worker", "/", &p, &err), 0);
        ck_assert_ptr_nonnull(strstr(err.msg, "not a regular file"));
        char path[] = "/tmp/jr-policy-XXXXXX";
        int fd = mkstemp(path);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, "{\"limits\": {\"pids\": 8},}", 24), 24);
        close(fd);
        ck_assert_int_eq(policy_load("worker", path, &p, &err), -EINVAL);
        ck_assert_msg(strstr(err.msg, "line 1 column") != NULL, "%s", err.msg);
        unlink(path);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("policy");
        TCase *tc = tcase_create("policy");
        tcase_add_test(tc, builtins_complete);
        tcase_add_test(tc, profile_numbers);
        tcase_add_test(tc, override_key_by_key);
        tcase_add_loop_test(tc, bad_input, 0, (int)(sizeof bad_docs / sizeof bad_docs[0]));
        tcase_add_test(tc, profile_conflict);
        tcase_add_test(tc, load_files);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
