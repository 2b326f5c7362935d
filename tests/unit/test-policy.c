/* The policy model: built-in profiles are complete and consistent; an
 * override replaces keys one by one; every kind of bad input is refused
 * with its JSON path and reason. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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
        { "{\"exec\": {\"shell\": true}}", "$.exec.shell: only profile exec runs programs" },
        { "{\"exec\": {\"shell\": \"yes\"}}", "$.exec.shell: expected a boolean" },
        { "{\"exec\": {\"sh\": true}}", "$.exec: unknown key 'sh'" },
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

/* --- policy_decode ------------------------------------------------------ */

/* The effective policy of `profile` with `over` on it, decoded. */
static void decode(const char *profile, const char *over, struct policy *out)
{
        json_t *p;
        struct jr_err err = { 0 };
        ck_assert_msg(apply(profile, over, &p, &err) == 0, "%s: %s", profile, err.msg);
        ck_assert_msg(policy_decode(p, "test.json", out, &err) == 0, "%s: %s", profile, err.msg);
        json_decref(p);
}

#define MiB (1024ULL * 1024)
#define RULE(r) (1u << POLICY_RULE_##r)
#define ALL_RULES (RULE(IMPORTS) | RULE(LAMBDA) | RULE(DUNDER) | RULE(GLOBAL) | RULE(NONLOCAL) | \
                   RULE(WHILE_TRUE) | RULE(DEL) | RULE(DYNAMIC_CODE) | RULE(STRING_ATTRIBUTES) | RULE(METACLASS))

/* What every profile shares (jailrun-policy(5)'s defaults). */
static void assert_common_defaults(const struct policy *p)
{
        ck_assert_uint_eq(p->limits.memory_max >= p->limits.memory, 1);
        ck_assert_double_eq(p->limits.cpus, 1);
        ck_assert_double_eq(p->limits.cpus_max, 4);
        ck_assert_double_eq(p->limits.timeout, 300);
        ck_assert_double_eq(p->limits.cpu_time, 0);
        ck_assert_double_eq(p->limits.tick_timeout, 60);
        ck_assert_double_eq(p->limits.tick_grace, 5);
        ck_assert_uint_eq(p->state.max_value_bytes, 524288);
        ck_assert_uint_eq(p->state.max_total_bytes, 67108864);
        ck_assert_uint_eq(p->files.quota_bytes, 104857600);
        ck_assert_uint_eq(p->files.max_read_bytes, 51200);
        ck_assert_double_eq(p->http.timeout_max, 30);
        ck_assert_uint_eq(p->http.max_response_bytes, 5242880);
        ck_assert_uint_eq(p->http.max_in_flight, 4);
        ck_assert_uint_eq(p->http.max_redirects, 5);
        ck_assert_double_eq(p->http.rate_per_second, 10);
        ck_assert_uint_eq(p->http.allow_addresses.n, 0);
        ck_assert_uint_eq(p->http.allow_hosts.n, 0);
        ck_assert_uint_eq(p->http.deny_hosts.n, 0);
        ck_assert_str_eq(p->http.proxy, "");
        ck_assert(json_is_object(p->adapters) && json_object_size(p->adapters) == 0);
        ck_assert_double_eq(p->backtest.bar_timeout, 0.8);
        ck_assert_double_eq(p->backtest.grace, 1);
        ck_assert_uint_eq(p->backtest.window, 500);
        ck_assert_uint_eq(p->backtest.memory, 64 * MiB);
        ck_assert_double_eq(p->backtest.abort_percent, 5);
        ck_assert_uint_eq(p->backtest.abort_min, 5);
        ck_assert_uint_eq(p->log.max_chars, 4000);
        ck_assert_uint_eq(p->log.batch, 20);
        ck_assert_uint_eq(p->log.max_bytes, 16 * MiB);
}

START_TEST(decode_defaults)
{
        struct policy p;
        decode("worker", NULL, &p);
        assert_common_defaults(&p);
        ck_assert_int_eq(p.profile, POLICY_WORKER);
        ck_assert_str_eq(policy_profile_name(p.profile), "worker");
        ck_assert_uint_eq(p.limits.memory, 256 * MiB);
        ck_assert_uint_eq(p.limits.memory_max, 1024 * MiB);
        ck_assert_uint_eq(p.limits.pids, 64);
        ck_assert_uint_eq(p.limits.pids_max, 256);
        ck_assert(p.python.guard && p.python.attribute_guard);
        ck_assert_int_eq(p.python.import_error, POLICY_IMPORT_ERROR);
        ck_assert_int_eq(p.python.dunder_policy, POLICY_DUNDER_DENY_LIST);
        ck_assert_int_eq(p.python.open, POLICY_OPEN_READ_LIBRARY);
        ck_assert(p.validator.enabled);
        ck_assert_uint_eq(p.validator.max_source_bytes, 1 * MiB);
        ck_assert_uint_eq(p.validator.max_nesting, 200);
        ck_assert_uint_eq(p.validator.max_nodes, 1000000);
        ck_assert_uint_eq(p.validator.forbid, RULE(DUNDER) | RULE(STRING_ATTRIBUTES));
        policy_release(&p);

        decode("strategy", NULL, &p);
        assert_common_defaults(&p);
        ck_assert_str_eq(policy_profile_name(p.profile), "strategy");
        ck_assert_uint_eq(p.limits.memory, 256 * MiB);
        ck_assert_uint_eq(p.limits.memory_max, 1024 * MiB);
        ck_assert_uint_eq(p.limits.pids, 32);
        ck_assert_uint_eq(p.limits.pids_max, 64);
        ck_assert(p.python.guard && p.python.attribute_guard);
        ck_assert_int_eq(p.python.import_error, POLICY_SECURITY_ERROR);
        ck_assert_int_eq(p.python.dunder_policy, POLICY_DUNDER_ALLOW_LIST);
        ck_assert(p.validator.enabled);
        ck_assert_uint_eq(p.validator.max_source_bytes, 102400);
        ck_assert_uint_eq(p.validator.max_nesting, 50);
        ck_assert_uint_eq(p.validator.max_nodes, 10000);
        ck_assert_uint_eq(p.validator.forbid, ALL_RULES);
        policy_release(&p);

        decode("exec", NULL, &p);
        assert_common_defaults(&p);
        ck_assert_str_eq(policy_profile_name(p.profile), "exec");
        ck_assert_uint_eq(p.limits.memory, 512 * MiB);
        ck_assert_uint_eq(p.limits.memory_max, 2048 * MiB);
        ck_assert_uint_eq(p.limits.pids, 64);
        ck_assert_uint_eq(p.limits.pids_max, 1024);
        ck_assert(!p.python.guard && !p.python.attribute_guard);
        ck_assert_int_eq(p.python.open, POLICY_OPEN_ALLOW);
        ck_assert(!p.validator.enabled);
        ck_assert_uint_eq(p.validator.max_source_bytes, 16 * MiB);
        ck_assert_uint_eq(p.validator.forbid, 0);
        policy_release(&p);
}
END_TEST

/* Every decoded key set away from its default (integers to their
 * maxima: the fields are wide enough). */
static const char every_key[] =
        "{\"python\": {\"guard\": false, \"import_error\": \"SecurityError\", \"attribute_guard\": false,"
        "  \"dunder_policy\": \"allow-list\", \"open\": \"deny\"},"
        " \"validator\": {\"enabled\": false, \"max_source_bytes\": 16777216, \"max_nesting\": 1000,"
        "  \"max_nodes\": 100000000, \"forbid\": [\"metaclass\", \"imports\"]},"
        " \"limits\": {\"memory\": 1099511627776, \"memory_max\": 1099511627776, \"cpus\": 2.5,"
        "  \"cpus_max\": 1024, \"pids\": 1000000, \"pids_max\": 1000000, \"timeout\": 31536000,"
        "  \"cpu_time\": 1.5, \"tick_timeout\": 0.001, \"tick_grace\": 600},"
        " \"state\": {\"max_value_bytes\": 786432, \"max_total_bytes\": 1099511627776},"
        " \"files\": {\"quota_bytes\": 0, \"max_read_bytes\": 524288},"
        " \"http\": {\"timeout_max\": 0.1, \"max_response_bytes\": 8388608, \"max_in_flight\": 64,"
        "  \"max_redirects\": 0, \"rate_per_second\": 0, \"allow_addresses\": [\"127.0.0.1\", \"fd00::/8\"],"
        "  \"allow_hosts\": [\"*.example.com\", \"api.example.org\"], \"deny_hosts\": [\"bad.example.com\"],"
        "  \"proxy\": \"http://127.0.0.1:3128\"},"
        " \"adapters\": {\"chat\": {\"kind\": \"messenger\", \"base_url\": \"https://chat.example.com\","
        "  \"token_secret\": \"chat_token\"}},"
        " \"backtest\": {\"bar_timeout\": 3600, \"grace\": 0.1, \"window\": 100000000,"
        "  \"memory\": 68719476736, \"abort_percent\": 100, \"abort_min\": 1000000000},"
        " \"log\": {\"max_chars\": 1, \"batch\": 1, \"max_bytes\": 0},"
        " \"exec\": {\"shell\": false}}";

START_TEST(exec_shell)
{
        struct policy p;
        decode("exec", NULL, &p);
        ck_assert(!p.exec.shell);
        policy_release(&p);
        decode("exec", "{\"exec\": {\"shell\": true}}", &p);
        ck_assert(p.exec.shell);
        policy_release(&p);
}
END_TEST

START_TEST(decode_overrides)
{
        struct policy p;
        decode("worker", every_key, &p);
        ck_assert(!p.python.guard && !p.python.attribute_guard);
        ck_assert_int_eq(p.python.import_error, POLICY_SECURITY_ERROR);
        ck_assert_int_eq(p.python.dunder_policy, POLICY_DUNDER_ALLOW_LIST);
        ck_assert_int_eq(p.python.open, POLICY_OPEN_DENY);
        ck_assert(!p.validator.enabled);
        ck_assert_uint_eq(p.validator.max_source_bytes, 16 * MiB);
        ck_assert_uint_eq(p.validator.max_nesting, 1000);
        ck_assert_uint_eq(p.validator.max_nodes, 100000000);
        ck_assert_uint_eq(p.validator.forbid, RULE(METACLASS) | RULE(IMPORTS));
        ck_assert_uint_eq(p.limits.memory, 1ULL << 40);
        ck_assert_uint_eq(p.limits.memory_max, 1ULL << 40);
        ck_assert_double_eq(p.limits.cpus, 2.5);
        ck_assert_double_eq(p.limits.cpus_max, 1024);
        ck_assert_uint_eq(p.limits.pids, 1000000);
        ck_assert_uint_eq(p.limits.pids_max, 1000000);
        ck_assert_double_eq(p.limits.timeout, 31536000);
        ck_assert_double_eq(p.limits.cpu_time, 1.5);
        ck_assert_double_eq(p.limits.tick_timeout, 0.001);
        ck_assert_double_eq(p.limits.tick_grace, 600);
        ck_assert_uint_eq(p.state.max_value_bytes, 786432);
        ck_assert_uint_eq(p.state.max_total_bytes, 1ULL << 40);
        ck_assert_uint_eq(p.files.quota_bytes, 0);
        ck_assert_uint_eq(p.files.max_read_bytes, 524288);
        ck_assert_double_eq(p.http.timeout_max, 0.1);
        ck_assert_uint_eq(p.http.max_response_bytes, 8 * MiB);
        ck_assert_uint_eq(p.http.max_in_flight, 64);
        ck_assert_uint_eq(p.http.max_redirects, 0);
        ck_assert_double_eq(p.http.rate_per_second, 0);
        ck_assert_uint_eq(p.http.allow_addresses.n, 2);
        ck_assert_int_eq(p.http.allow_addresses.net[0].family, AF_INET);
        ck_assert_uint_eq(p.http.allow_addresses.net[0].bits, 32);
        ck_assert_int_eq(p.http.allow_addresses.net[1].family, AF_INET6);
        ck_assert_uint_eq(p.http.allow_addresses.net[1].bits, 8);
        ck_assert_uint_eq(p.http.allow_hosts.n, 2);
        ck_assert_str_eq(p.http.allow_hosts.host[0], "*.example.com");
        ck_assert_str_eq(p.http.allow_hosts.host[1], "api.example.org");
        ck_assert_uint_eq(p.http.deny_hosts.n, 1);
        ck_assert_str_eq(p.http.deny_hosts.host[0], "bad.example.com");
        ck_assert_str_eq(p.http.proxy, "http://127.0.0.1:3128");
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(p.adapters, "chat"), "kind")),
                         "messenger");
        ck_assert_double_eq(p.backtest.bar_timeout, 3600);
        ck_assert_double_eq(p.backtest.grace, 0.1);
        ck_assert_uint_eq(p.backtest.window, 100000000);
        ck_assert_uint_eq(p.backtest.memory, 64ULL << 30);
        ck_assert_double_eq(p.backtest.abort_percent, 100);
        ck_assert_uint_eq(p.backtest.abort_min, 1000000000);
        ck_assert_uint_eq(p.log.max_chars, 1);
        ck_assert_uint_eq(p.log.batch, 1);
        ck_assert_uint_eq(p.log.max_bytes, 0);
        policy_release(&p);
        ck_assert_ptr_null(p.adapters);
        /* the profile the file names */
        decode(NULL, "{\"profile\": \"exec\"}", &p);
        ck_assert_int_eq(p.profile, POLICY_EXEC);
        policy_release(&p);
}
END_TEST

/* The longest host name the schema takes ("*." and 253 characters) is
 * decoded whole. */
START_TEST(decode_long_host)
{
        char host[256] = "*.", doc[400];
        memset(host + 2, 'a', 253);
        host[255] = '\0';
        snprintf(doc, sizeof doc, "{\"http\": {\"deny_hosts\": [\"%s\"]}}", host);
        struct policy p;
        decode("worker", doc, &p);
        ck_assert_str_eq(p.http.deny_hosts.host[0], host);
        policy_release(&p);
}
END_TEST

/* The decoded policy holds its own reference to the adapters. */
START_TEST(decode_adapters_owned)
{
        json_t *doc;
        struct jr_err err = { 0 };
        struct policy p;
        ck_assert_int_eq(apply("worker", NULL, &doc, &err), 0);
        json_t *adapters = json_object_get(doc, "adapters");
        ck_assert_int_eq(adapters->refcount, 1);
        ck_assert_int_eq(policy_decode(doc, "test.json", &p, &err), 0);
        ck_assert_ptr_eq(p.adapters, adapters);
        ck_assert_int_eq(adapters->refcount, 2);
        json_decref(doc);
        ck_assert(json_is_object(p.adapters));
        policy_release(&p);
}
END_TEST

/* A complete policy with one key replaced by bad JSON, and the whole
 * message policy_decode must give: the key's path and the reason. */
static const struct { const char *path, *json, *msg; } bad_values[] = {
        { "python.guard", "\"yes\"", "test.json: $.python.guard: expected a boolean, got a string" },
        { "python.open", "\"always\"", "test.json: $.python.open: 'always' is not one of the known values" },
        { "validator.max_nesting", "1001", "test.json: $.validator.max_nesting: 1001 is out of range (1 to 1000)" },
        { "validator.forbid", "[\"goto\"]", "test.json: $.validator.forbid: [0]: 'goto' is not a known rule" },
        { "limits.memory", "\"1G\"", "test.json: $.limits.memory: expected an integer, got a string" },
        { "limits.memory", "2147483648",
          "test.json: $.limits.memory: 2.14748e+09 is above limits.memory_max (1.07374e+09)" },
        { "limits.pids", "0", "test.json: $.limits.pids: 0 is out of range (4 to 1e+06)" },
        { "limits.pids", "8.0", "test.json: $.limits.pids: expected an integer, got a number" },
        { "limits.cpus", "true", "test.json: $.limits.cpus: expected a number, got a boolean" },
        { "limits.cpus", "0.001", "test.json: $.limits.cpus: 0.001 is out of range (0.01 to 1024)" },
        { "limits.tick_timeout", "86401", "test.json: $.limits.tick_timeout: 86401 is out of range (0.001 to 86400)" },
        { "limits.tick_grace", NULL, "test.json: $.limits.tick_grace: missing" },
        { "state.max_value_bytes", "786433",
          "test.json: $.state.max_value_bytes: 786433 is out of range (1 to 786432)" },
        { "files.max_read_bytes", "null", "test.json: $.files.max_read_bytes: expected an integer, got null" },
        { "http.max_response_bytes", "8388609",
          "test.json: $.http.max_response_bytes: 8.38861e+06 is out of range (1 to 8.38861e+06)" },
        { "http.rate_per_second", "-1", "test.json: $.http.rate_per_second: -1 is out of range (0 to 10000)" },
        { "http.allow_addresses", "[\"10.0.0.0/33\"]",
          "test.json: $.http.allow_addresses: [0]: not an address or ADDRESS/BITS" },
        { "http.allow_hosts", "[\"Example.com\"]",
          "test.json: $.http.allow_hosts: [0]: not a lower-case host name or *.name" },
        { "http.proxy", "\"socks5://h:1\"", "test.json: $.http.proxy: 'socks5://h:1' is not \"\" or http://HOST:PORT" },
        { "adapters", "[]", "test.json: $.adapters: expected an object of at most 32 adapters" },
        { "backtest.bar_timeout", "0", "test.json: $.backtest.bar_timeout: 0 is out of range (0.001 to 3600)" },
        { "backtest.abort_min", "0", "test.json: $.backtest.abort_min: 0 is out of range (1 to 1e+09)" },
        { "log.batch", "21", "test.json: $.log.batch: 21 is out of range (1 to 20)" },
        { "log", "[]", "test.json: $.log: expected an object, got an array" },
};

/* The Python layer of worker and strategy is whole or off: each piece it
 * cannot hold without is refused by name while python.guard is on. */
START_TEST(python_layer_whole_or_off)
{
        static const struct {
                const char *profile, *over, *key; /* key NULL: accepted */
        } cases[] = {
                { "worker", NULL, NULL },
                { "strategy", NULL, NULL },
                { "exec", "{\"validator\": {\"enabled\": false}}", NULL },
                { "worker", "{\"python\": {\"guard\": false}, \"validator\": {\"enabled\": false}}", NULL },
                { "strategy", "{\"python\": {\"guard\": false, \"attribute_guard\": false}}", NULL },
                { "worker", "{\"validator\": {\"forbid\": [\"dunder\"]}}", NULL },
                { "worker", "{\"validator\": {\"enabled\": false}}", "$.validator.enabled: the source validator is off" },
                { "strategy", "{\"validator\": {\"enabled\": false}}", "$.validator.enabled" },
                { "worker", "{\"validator\": {\"forbid\": []}}", "$.validator.forbid: the rule \"dunder\" is missing" },
                { "strategy", "{\"validator\": {\"forbid\": [\"imports\", \"lambda\"]}}", "$.validator.forbid" },
                { "worker", "{\"python\": {\"attribute_guard\": false}}", "$.python.attribute_guard" },
                { "worker", "{\"python\": {\"dunder_deny\": [\"__globals__\"]}}", "$.python.dunder_deny: does not deny __builtins__" },
                { "worker", "{\"python\": {\"dunder_policy\": \"allow-list\", \"dunder_allow\": [\"__name__\", \"__mro__\"]}}",
                  "$.python.dunder_allow: allows __mro__" },
                { "strategy", "{\"python\": {\"dunder_allow\": [\"__self__\"]}}", "$.python.dunder_allow: allows __self__" },
                { "strategy", "{\"python\": {\"dunder_policy\": \"deny-list\"}}", "$.python.dunder_deny: does not deny __globals__" },
                { "worker", "{\"python\": {\"denied_attributes\": [\"gi_frame\"]}}", "$.python.denied_attributes: does not deny f_globals" },
                { "worker", "{\"python\": {\"builtins\": [\"print\", \"compile\"]}}", "$.python.builtins: hands out compile" },
                { "worker", "{\"python\": {\"imports\": [\"math\", \"gc\"]}}", "$.python.imports: allows gc" },
                { "strategy", "{\"python\": {\"imports\": [\"inspect.x\"]}}", "$.python.imports: allows inspect" },
                { "worker", "{\"python\": {\"imports\": [\"system\", \"sysx\", \"typesafe\"]}}", NULL },
                { "worker", "{\"python\": {\"globals\": {\"o\": \"operator\"}}}", "$.python.globals: injects operator as o" },
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                json_t *p;
                struct jr_err err = { 0 };
                ck_assert_msg(apply(cases[i].profile, cases[i].over, &p, &err) == 0, "%zu: %s", i, err.msg);
                int r = policy_check_python_layer(p, "test.json", &err);
                if (!cases[i].key) {
                        ck_assert_msg(r == 0, "%zu: %s", i, err.msg);
                } else {
                        ck_assert_msg(r == -EINVAL, "%zu accepted", i);
                        ck_assert_msg(strstr(err.msg, cases[i].key) && strstr(err.msg, "set python.guard to false"),
                                      "%zu: %s", i, err.msg);
                        ck_assert_msg(strncmp(err.msg, "test.json: $.", 13) == 0, "%s", err.msg);
                }
                json_decref(p);
        }
}
END_TEST

START_TEST(exec_programs)
{
        static const struct {
                const char *over, *msg; /* msg NULL: accepted */
        } cases[] = {
                { "{\"exec\": {\"programs\": [\"/usr/bin/id\", \"/opt/x/run-it\"]}}", NULL },
                { "{\"exec\": {\"programs\": []}}", NULL },
                { "{\"exec\": {\"programs\": [\"usr/bin/id\"]}}", "[0]: 'usr/bin/id' is not a plain absolute path" },
                { "{\"exec\": {\"programs\": [\"/usr/bin/\"]}}", "is not a plain absolute path" },
                { "{\"exec\": {\"programs\": [\"/usr//bin/id\"]}}", "is not a plain absolute path" },
                { "{\"exec\": {\"programs\": [\"/usr/./id\"]}}", "is not a plain absolute path" },
                { "{\"exec\": {\"programs\": [\"/usr/../etc/x\"]}}", "is not a plain absolute path" },
                { "{\"exec\": {\"programs\": [\"/a:b\"]}}", "is not a plain absolute path" },
                { "{\"exec\": {\"programs\": [\"/\"]}}", "is not a plain absolute path" },
                { "{\"exec\": {\"programs\": [\"/x\", \"/x\"]}}", "[1]: '/x' is listed twice" },
                { "{\"exec\": {\"programs\": [1]}}", "[0]: expected a string" },
                { "{\"exec\": {\"programs\": \"/x\"}}", "expected an array of strings, got a string" },
                { "{\"exec\": {\"programs\": [\"/1\",\"/2\",\"/3\",\"/4\",\"/5\",\"/6\",\"/7\",\"/8\",\"/9\",\"/10\","
                  "\"/11\",\"/12\",\"/13\",\"/14\",\"/15\",\"/16\",\"/17\"]}}", "more than 16 entries" },
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                json_t *p;
                struct jr_err err = { 0 };
                int r = apply("exec", cases[i].over, &p, &err);
                if (!cases[i].msg) {
                        ck_assert_msg(r == 0, "%zu: %s", i, err.msg);
                        struct policy d = { 0 };
                        ck_assert_int_eq(policy_decode(p, "t", &d, &err), 0);
                        ck_assert_uint_eq(d.exec.nprograms, json_array_size(json_object_get(json_object_get(p, "exec"), "programs")));
                        policy_release(&d);
                        json_decref(p);
                } else {
                        ck_assert_msg(r == -EINVAL && strstr(err.msg, "$.exec.programs") && strstr(err.msg, cases[i].msg),
                                      "%zu: %d %s", i, r, err.msg);
                }
        }
        json_t *p;
        struct jr_err err = { 0 };
        ck_assert_int_eq(apply("worker", "{\"exec\": {\"programs\": [\"/usr/bin/id\"]}}", &p, &err), -EINVAL);
        ck_assert_str_eq(err.msg, "test.json: $.exec.programs: only profile exec runs programs");
}
END_TEST

START_TEST(decode_refuses)
{
        json_t *doc;
        struct jr_err err = { 0 };
        ck_assert_int_eq(apply("worker", NULL, &doc, &err), 0);
        const char *path = bad_values[_i].path, *dot = strchr(path, '.');
        char section[32];
        snprintf(section, sizeof section, "%.*s", dot ? (int)(dot - path) : (int)strlen(path), path);
        json_t *parent = dot ? json_object_get(doc, section) : doc;
        if (bad_values[_i].json) {
                json_error_t je;
                json_t *v = json_loads(bad_values[_i].json, JSON_DECODE_ANY, &je);
                ck_assert_msg(v != NULL, "test JSON: %s", je.text);
                json_object_set_new(parent, dot ? dot + 1 : path, v);
        } else {
                json_object_del(parent, dot + 1);
        }
        struct policy p;
        ck_assert_int_eq(policy_decode(doc, "test.json", &p, &err), -EINVAL);
        ck_assert_str_eq(err.msg, bad_values[_i].msg);
        ck_assert_ptr_null(p.adapters);  /* nothing to release */
        json_decref(doc);
}
END_TEST

START_TEST(decode_not_an_object)
{
        struct policy p;
        struct jr_err err = { 0 };
        json_t *doc = json_array();
        ck_assert_int_eq(policy_decode(doc, "test.json", &p, &err), -EINVAL);
        ck_assert_str_eq(err.msg, "test.json: $: expected an object, got an array");
        json_decref(doc);
        /* a document with no profile is incomplete */
        doc = json_object();
        ck_assert_int_eq(policy_decode(doc, "test.json", &p, &err), -EINVAL);
        ck_assert_str_eq(err.msg, "test.json: $.profile: missing");
        json_decref(doc);
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
        tcase_add_test(tc, exec_shell);
        tcase_add_test(tc, load_files);
        tcase_add_test(tc, decode_defaults);
        tcase_add_test(tc, decode_overrides);
        tcase_add_test(tc, decode_long_host);
        tcase_add_test(tc, decode_adapters_owned);
        tcase_add_loop_test(tc, decode_refuses, 0, (int)(sizeof bad_values / sizeof bad_values[0]));
        tcase_add_test(tc, decode_not_an_object);
        tcase_add_test(tc, python_layer_whole_or_off);
        tcase_add_test(tc, exec_programs);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
