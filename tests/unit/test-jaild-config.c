/* jaild's configuration file (supervisor/jaild/jaildconf.c): every key read,
 * the defaults, and each kind of error naming its key. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "supervisor/jaild/jaildconf.h"
#include "tests/unit/unit.h"

static char dir[] = "/tmp/jaild-config-XXXXXX";

static void make_dir(void)
{
        ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void remove_dir(void)
{
        char cmd[PATH_MAX];
        static const char *const names[] = { "c.json", "secrets.json", "open.json", "big.json", "bad.json" };
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
                snprintf(cmd, sizeof cmd, "%s/%s", dir, names[i]);
                unlink(cmd);
        }
        snprintf(cmd, sizeof cmd, "%s/sub", dir);
        rmdir(cmd);
        rmdir(dir);
}

/* Writes text to DIR/name with mode; returns the path (static buffer). */
static const char *put(const char *name, const char *text, mode_t mode)
{
        static char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        unlink(path);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        ck_assert_int_ge(fd, 0);
        size_t n = strlen(text);
        ck_assert_int_eq(write(fd, text, n), (ssize_t)n);
        ck_assert_int_eq(fchmod(fd, mode), 0);
        close(fd);
        return path;
}

START_TEST(defaults)
{
        struct jaild_config *c = NULL;
        struct jr_err err = { 0 };
        ck_assert_int_eq(jaild_config_load(NULL, &c, &err), 0);
        ck_assert_str_eq(c->socket_path, "/run/jaild/jaild.sock");
        ck_assert_uint_eq(c->socket_mode, 0660);
        ck_assert_uint_eq(c->n_allow_uids, 0);
        ck_assert_uint_eq(c->n_allow_gids, 0);
        ck_assert_uint_eq(c->uid_lo, 100000);
        ck_assert_uint_eq(c->uid_hi, 165535);
        ck_assert_str_eq(c->cgroup_parent, "jaild");
        ck_assert_uint_eq(c->cgroup_pool_size, 4);
        ck_assert_uint_eq(c->cgroup_pool_max, 64);
        ck_assert_int_eq(c->state.backend, JAILD_STATE_SQLITE);
        ck_assert_str_eq(c->state.path, "/var/lib/jaild/state.sqlite");
        ck_assert_str_eq(c->workspace_root, "/var/lib/jaild/workspaces");
        ck_assert_ptr_null(c->secrets);
        ck_assert_str_eq(c->registry, "/var/lib/jaild/registry.db");
        ck_assert_uint_eq(c->max_live_jobs, 64);
        ck_assert_double_eq(c->queue_wait, 30.0);
        ck_assert_int_eq(c->log_level, JAILD_LOG_INFO);
        char url[PATH_MAX];
        ck_assert_int_eq(jaild_config_state_url(c, url, sizeof url), 0);
        ck_assert_str_eq(url, "/var/lib/jaild/state.sqlite");
        jaild_config_free(c);

        /* An empty object is the defaults too. */
        ck_assert_int_eq(jaild_config_parse("{}", 2, "t", &c, &err), 0);
        ck_assert_str_eq(c->registry, "/var/lib/jaild/registry.db");
        jaild_config_free(c);
}
END_TEST

START_TEST(every_key)
{
        char text[PATH_MAX + 1024], secrets[PATH_MAX];
        snprintf(secrets, sizeof secrets, "%s", put("secrets.json", "{\"bot\": \"abcd1234\"}", 0600));
        snprintf(text, sizeof text,
                 "{\"socket\": {\"path\": \"/run/j/api.sock\", \"mode\": \"0600\"},\n"
                 " \"allow\": {\"uids\": [1000, \"root\", 4242], \"gids\": [\"root\", 2000]},\n"
                 " \"uid_range\": {\"lo\": 200000, \"hi\": 200999},\n"
                 " \"cgroup_parent\": \"pools/jaild\",\n"
                 " \"cgroup_pool\": {\"size\": 16, \"max\": 100},\n"
                 " \"state\": {\"backend\": \"sqlite\", \"sqlite\": {\"path\": \"/srv/state.db\"}},\n"
                 " \"workspace_root\": \"/srv/ws\",\n"
                 " \"secrets\": \"%s\",\n"
                 " \"registry\": \"/srv/reg.db\",\n"
                 " \"max_live_jobs\": 500,\n"
                 " \"queue_wait\": 2.5,\n"
                 " \"log_level\": \"debug\"}\n", secrets);
        const char *path = put("c.json", text, 0600);
        struct jaild_config *c = NULL;
        struct jr_err err = { 0 };
        ck_assert_msg(jaild_config_load(path, &c, &err) == 0, "%s", err.msg);
        ck_assert_str_eq(c->socket_path, "/run/j/api.sock");
        ck_assert_uint_eq(c->socket_mode, 0600);
        ck_assert_uint_eq(c->n_allow_uids, 3);
        ck_assert_uint_eq(c->allow_uids[0], 1000);
        ck_assert_uint_eq(c->allow_uids[1], 0);
        ck_assert_uint_eq(c->allow_uids[2], 4242);
        ck_assert_uint_eq(c->n_allow_gids, 2);
        ck_assert_uint_eq(c->allow_gids[0], 0);
        ck_assert_uint_eq(c->allow_gids[1], 2000);
        ck_assert_uint_eq(c->uid_lo, 200000);
        ck_assert_uint_eq(c->uid_hi, 200999);
        ck_assert_str_eq(c->cgroup_parent, "pools/jaild");
        ck_assert_uint_eq(c->cgroup_pool_size, 16);
        ck_assert_uint_eq(c->cgroup_pool_max, 100);
        ck_assert_int_eq(c->state.backend, JAILD_STATE_SQLITE);
        ck_assert_str_eq(c->state.path, "/srv/state.db");
        ck_assert_str_eq(c->workspace_root, "/srv/ws");
        ck_assert_str_eq(c->secrets, secrets);
        ck_assert_str_eq(c->registry, "/srv/reg.db");
        ck_assert_uint_eq(c->max_live_jobs, 500);
        ck_assert_double_eq(c->queue_wait, 2.5);
        ck_assert_int_eq(c->log_level, JAILD_LOG_DEBUG);
        ck_assert_str_eq(jaild_log_level_name(c->log_level), "debug");
        jaild_config_free(c);
}
END_TEST

static struct jaild_config *parse_ok(const char *text)
{
        struct jaild_config *c = NULL;
        struct jr_err err = { 0 };
        ck_assert_msg(jaild_config_parse(text, strlen(text), "t", &c, &err) == 0, "%s: %s", text, err.msg);
        return c;
}

START_TEST(redis_and_mode)
{
        char url[PATH_MAX];
        struct jaild_config *c = parse_ok("{\"state\": {\"backend\": \"redis\", \"redis\": {\"host\": \"10.0.0.5\", "
                                          "\"port\": 6380, \"db\": 2}}, \"socket\": {\"mode\": 432}}");
        ck_assert_int_eq(c->state.backend, JAILD_STATE_REDIS);
        ck_assert_str_eq(c->state.host, "10.0.0.5");
        ck_assert_int_eq(c->state.port, 6380);
        ck_assert_int_eq(c->state.db, 2);
        ck_assert_ptr_null(c->state.unix_path);
        ck_assert_uint_eq(c->socket_mode, 0660);
        ck_assert_int_eq(jaild_config_state_url(c, url, sizeof url), 0);
        ck_assert_str_eq(url, "redis://10.0.0.5:6380/2");
        ck_assert_int_eq(jaild_config_state_url(c, url, 10), -ENAMETOOLONG);
        jaild_config_free(c);

        c = parse_ok("{\"state\": {\"backend\": \"redis\", \"redis\": {\"unix\": \"/run/redis/r.sock\"}}}");
        ck_assert_ptr_null(c->state.host);
        ck_assert_str_eq(c->state.unix_path, "/run/redis/r.sock");
        ck_assert_int_eq(jaild_config_state_url(c, url, sizeof url), 0);
        ck_assert_str_eq(url, "unix:///run/redis/r.sock?db=0");
        ck_assert_int_eq(c->zygote_enabled, 1);  /* the zygote's defaults */
        ck_assert_str_eq(c->zygote_preload, "[\"numpy\",\"pandas\"]");
        ck_assert_uint_eq(c->zygote_max_forks, 256);
        jaild_config_free(c);
        c = parse_ok("{}");
        ck_assert_uint_eq(c->sessions.max, 64);  /* the sessions' defaults */
        ck_assert(c->sessions.idle_timeout == 600);
        ck_assert_uint_eq(c->sessions.dir_bytes, 64ULL << 20);
        ck_assert_uint_eq(c->sessions.file_max, 16ULL << 20);
        ck_assert_ptr_null(c->sessions.wheel_dir);
        ck_assert_ptr_null(c->sessions.index_url);
        jaild_config_free(c);
        c = parse_ok("{\"sessions\": {\"max\": 5, \"idle_timeout\": 2.5, \"dir_bytes\": 2097152, \"file_max\": 10, "
                     "\"packages\": {\"wheel_dir\": \"/srv/w\", \"index_url\": \"https://pi.example/simple/\"}}}");
        ck_assert_uint_eq(c->sessions.max, 5);
        ck_assert(c->sessions.idle_timeout == 2.5);
        ck_assert_uint_eq(c->sessions.dir_bytes, 2097152);
        ck_assert_uint_eq(c->sessions.file_max, 10);
        ck_assert_str_eq(c->sessions.wheel_dir, "/srv/w");
        ck_assert_str_eq(c->sessions.index_url, "https://pi.example/simple/");
        jaild_config_free(c);
        c = parse_ok("{\"sessions\": {\"packages\": {\"wheel_dir\": null, \"index_url\": null}}}");
        ck_assert_ptr_null(c->sessions.wheel_dir);
        ck_assert_ptr_null(c->sessions.index_url);
        ck_assert_ptr_null(c->policy);  /* no operator policy by default */
        jaild_config_free(c);
        c = parse_ok("{\"policy\": {\"worker\": {\"http\": {\"allow_addresses\": [\"127.0.0.1\"]}}, "
                     "\"exec\": {\"limits\": {\"pids\": 256, \"pids_max\": 256}}}}");
        ck_assert_str_eq(c->policy, "{\"worker\":{\"http\":{\"allow_addresses\":[\"127.0.0.1\"]}},"
                                    "\"exec\":{\"limits\":{\"pids\":256,\"pids_max\":256}}}");
        jaild_config_free(c);
        c = parse_ok("{\"zygote\": {\"enabled\": false, \"preload\": [\"numpy.linalg\", \"_x1\"], \"max_forks\": 3}}");
        ck_assert_int_eq(c->zygote_enabled, 0);
        ck_assert_str_eq(c->zygote_preload, "[\"numpy.linalg\",\"_x1\"]");
        ck_assert_uint_eq(c->zygote_max_forks, 3);
        jaild_config_free(c);
        c = parse_ok("{\"state\": {\"backend\": \"redis\", \"redis\": {\"host\": \"cache.internal\"}}, "
                     "\"queue_wait\": 0, \"log_level\": \"error\", \"max_live_jobs\": 1}");
        ck_assert_int_eq(c->state.port, 6379);
        ck_assert_double_eq(c->queue_wait, 0);
        ck_assert_int_eq(c->log_level, JAILD_LOG_ERROR);
        jaild_config_free(c);
}
END_TEST

/* size 0 turns the pool off; a size alone above the default max raises
 * max with it; max alone keeps the default size. */
START_TEST(pool_sizes)
{
        struct jaild_config *c = parse_ok("{\"cgroup_pool\": {\"size\": 0}}");
        ck_assert_uint_eq(c->cgroup_pool_size, 0);
        ck_assert_uint_eq(c->cgroup_pool_max, 64);
        jaild_config_free(c);
        c = parse_ok("{\"cgroup_pool\": {\"size\": 200}}");
        ck_assert_uint_eq(c->cgroup_pool_size, 200);
        ck_assert_uint_eq(c->cgroup_pool_max, 200);
        jaild_config_free(c);
        c = parse_ok("{\"cgroup_pool\": {\"max\": 8}}");
        ck_assert_uint_eq(c->cgroup_pool_size, 4);
        ck_assert_uint_eq(c->cgroup_pool_max, 8);
        jaild_config_free(c);
}
END_TEST

/* Text, then what the message must hold: "t: KEY: reason". */
static const struct {
        const char *text, *want;
} errors[] = {
        { "[1]", "t: (top level): wrong type" },
        { "{\"sockett\": {}}", "t: sockett: unknown key" },
        { "{\"socket\": []}", "t: socket: wrong type: must be an object, not an array" },
        { "{\"socket\": {\"pth\": \"/x\"}}", "t: socket.pth: unknown key" },
        { "{\"socket\": {\"path\": 5}}", "t: socket.path: wrong type: must be a string, not an integer" },
        { "{\"socket\": {\"path\": \"relative.sock\"}}", "t: socket.path: out of range: must be an absolute path" },
        { "{\"socket\": {\"path\": \"/run/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\"}}",
          "t: socket.path: out of range: a unix socket's path" },
        { "{\"socket\": {\"mode\": \"0999\"}}", "t: socket.mode: out of range" },
        { "{\"socket\": {\"mode\": \"4755\"}}", "t: socket.mode: out of range" },
        { "{\"socket\": {\"mode\": 4095}}", "t: socket.mode: out of range" },
        { "{\"socket\": {\"mode\": 0.5}}", "t: socket.mode: wrong type" },
        { "{\"allow\": {\"uids\": 5}}", "t: allow.uids: wrong type: must be an array" },
        { "{\"allow\": {\"uids\": [0, \"no-such-user-jaild-test\"]}}", "t: allow.uids[1]: out of range: no user named" },
        { "{\"allow\": {\"gids\": [\"no-such-group-jaild-test\"]}}", "t: allow.gids[0]: out of range: no group named" },
        { "{\"allow\": {\"uids\": [-1]}}", "t: allow.uids[0]: out of range" },
        { "{\"allow\": {\"uids\": [4294967295]}}", "t: allow.uids[0]: out of range" },
        { "{\"allow\": {\"gids\": [true]}}", "t: allow.gids[0]: wrong type" },
        { "{\"allow\": {\"users\": []}}", "t: allow.users: unknown key" },
        { "{\"uid_range\": {\"lo\": 500}}", "t: uid_range.lo: out of range: must be from 1000" },
        { "{\"uid_range\": {\"lo\": 200000, \"hi\": 100000}}", "t: uid_range.hi: out of range: below uid_range.lo" },
        { "{\"uid_range\": {\"hi\": \"165535\"}}", "t: uid_range.hi: wrong type" },
        { "{\"uid_range\": {\"lo\": 100000, \"hi\": 100009}}", "t: max_live_jobs: out of range: 64 is more than" },
        { "{\"cgroup_parent\": \"job-3\"}", "t: cgroup_parent: out of range" },
        { "{\"cgroup_parent\": \"a/../b\"}", "t: cgroup_parent: out of range" },
        { "{\"cgroup_parent\": \"/\"}", "t: cgroup_parent: out of range" },
        { "{\"cgroup_parent\": \"\"}", "t: cgroup_parent: out of range" },
        { "{\"cgroup_parent\": [\"jaild\"]}", "t: cgroup_parent: wrong type" },
        { "{\"cgroup_parent\": \"jaild/pool-2\"}", "t: cgroup_parent: out of range" },
        { "{\"cgroup_pool\": 4}", "t: cgroup_pool: wrong type" },
        { "{\"cgroup_pool\": {\"size\": 8, \"max\": 4}}", "t: cgroup_pool.max: out of range: below cgroup_pool.size (8)" },
        { "{\"cgroup_pool\": {\"size\": -1}}", "t: cgroup_pool.size: out of range" },
        { "{\"cgroup_pool\": {\"size\": 4097}}", "t: cgroup_pool.size: out of range" },
        { "{\"cgroup_pool\": {\"size\": \"4\"}}", "t: cgroup_pool.size: wrong type" },
        { "{\"cgroup_pool\": {\"min\": 1}}", "t: cgroup_pool.min: unknown key" },
        { "{\"policy\": []}", "t: policy: wrong type: must be an object" },
        { "{\"policy\": {\"workers\": {}}}", "t: policy.workers: unknown profile" },
        { "{\"policy\": {\"worker\": 1}}", "t: policy.worker: wrong type" },
        { "{\"policy\": {\"worker\": {\"http\": {\"allow_adresses\": []}}}}",
          "t: policy.worker: $.http: unknown key 'allow_adresses'" },
        { "{\"policy\": {\"exec\": {\"limits\": {\"pids\": 5000}}}}", "t: policy.exec: $.limits.pids: 5000 is above limits.pids_max" },
        { "{\"policy\": {\"exec\": {\"profile\": \"worker\"}}}", "t: policy.exec: $.profile: 'worker' differs" },
        { "{\"policy\": {\"worker\": {\"validator\": {\"enabled\": false}}}}",
          "t: policy.worker: $.validator.enabled: the source validator is off" },
        { "{\"state\": 1}", "t: state: wrong type" },
        { "{\"state\": {\"backend\": \"mysql\"}}", "t: state.backend: out of range" },
        { "{\"state\": {\"kind\": \"sqlite\"}}", "t: state.kind: unknown key" },
        { "{\"state\": {\"sqlite\": {\"path\": \"state.db\"}}}", "t: state.sqlite.path: out of range" },
        { "{\"state\": {\"sqlite\": {\"file\": \"/s.db\"}}}", "t: state.sqlite.file: unknown key" },
        { "{\"state\": {\"redis\": {\"host\": \"h\"}}}", "t: state.redis: given with state.backend \"sqlite\"" },
        { "{\"state\": {\"backend\": \"redis\"}}", "t: state.redis: missing" },
        { "{\"state\": {\"backend\": \"redis\", \"sqlite\": {}, \"redis\": {\"host\": \"h\"}}}", "t: state.sqlite: given" },
        { "{\"state\": {\"backend\": \"redis\", \"redis\": {\"host\": \"h\", \"port\": 70000}}}",
          "t: state.redis.port: out of range: must be from 1 to 65535, not 70000" },
        { "{\"state\": {\"backend\": \"redis\", \"redis\": {\"host\": \"h\", \"port\": \"6379\"}}}",
          "t: state.redis.port: wrong type" },
        { "{\"state\": {\"backend\": \"redis\", \"redis\": {\"host\": \"h\", \"db\": -1}}}", "t: state.redis.db: out of range" },
        { "{\"state\": {\"backend\": \"redis\", \"redis\": {\"host\": \"h\", \"unix\": \"/s\"}}}", "t: state.redis.unix: given" },
        { "{\"state\": {\"backend\": \"redis\", \"redis\": {\"port\": 1}}}", "t: state.redis: wants \"host\" or \"unix\"" },
        { "{\"state\": {\"backend\": \"redis\", \"redis\": {\"unix\": \"/s\", \"port\": 1}}}", "t: state.redis.port: given" },
        { "{\"state\": {\"backend\": \"redis\", \"redis\": {\"unix\": \"/s?db=3\"}}}", "t: state.redis.unix: out of range" },
        { "{\"state\": {\"backend\": \"redis\", \"redis\": {\"host\": \"a:b/c\"}}}", "t: state.redis.host: out of range" },
        { "{\"state\": {\"backend\": \"redis\", \"redis\": {\"host\": \"h\", \"tls\": true}}}",
          "t: state.redis.tls: unknown key" },
        { "{\"workspace_root\": \"/a\\u0000b\"}", "t: JSON syntax error at line 1 column 30: \\u0000 is not allowed" },
        { "{\"workspace_root\": null}", "t: workspace_root: wrong type: must be a string, not null" },
        { "{\"registry\": \"reg.db\"}", "t: registry: out of range: must be an absolute path" },
        { "{\"secrets\": \"/nonexistent-jaild/secrets.json\"}", "t: secrets: secrets file /nonexistent-jaild/secrets.json" },
        { "{\"max_live_jobs\": 0}", "t: max_live_jobs: out of range" },
        { "{\"max_live_jobs\": 1.5}", "t: max_live_jobs: wrong type" },
        { "{\"queue_wait\": -1}", "t: queue_wait: out of range" },
        { "{\"queue_wait\": 3601}", "t: queue_wait: out of range" },
        { "{\"queue_wait\": \"30\"}", "t: queue_wait: wrong type" },
        { "{\"log_level\": \"verbose\"}", "t: log_level: out of range" },
        { "{\"log_level\": 3}", "t: log_level: wrong type" },
        { "{\"log_level\": \"info\", \"log_level\": \"debug\"}", "t: JSON syntax error at line 1 column" },
        { "{\n  \"log_level\": \"info\",\n  oops\n}", "t: JSON syntax error at line 3 column" },
        { "", "t: JSON syntax error at line" },
        { "{\"zygote\": true}", "t: zygote: wrong type: must be an object" },
        { "{\"zygote\": {\"warm\": true}}", "t: zygote.warm: unknown key" },
        { "{\"zygote\": {\"enabled\": 1}}", "t: zygote.enabled: wrong type: must be a boolean" },
        { "{\"zygote\": {\"max_forks\": 0}}", "t: zygote.max_forks: out of range: must be from 1 to 1000000" },
        { "{\"zygote\": {\"preload\": \"numpy\"}}", "t: zygote.preload: wrong type: must be an array" },
        { "{\"zygote\": {\"preload\": [\"numpy\", 3]}}", "t: zygote.preload[1]: wrong type" },
        { "{\"zygote\": {\"preload\": [\"os; import x\"]}}", "t: zygote.preload[0]: not a module name" },
        { "{\"zygote\": {\"preload\": [\"a..b\"]}}", "t: zygote.preload[0]: not a module name" },
        { "{\"zygote\": {\"preload\": [\"1abc\"]}}", "t: zygote.preload[0]: not a module name" },
        { "{\"zygote\": {\"preload\": [\"numpy.\"]}}", "t: zygote.preload[0]: not a module name" },
        { "{\"sessions\": []}", "t: sessions: wrong type: must be an object" },
        { "{\"sessions\": {\"maximum\": 3}}", "t: sessions.maximum: unknown key" },
        { "{\"sessions\": {\"idle_timeout\": 0}}", "t: sessions.idle_timeout: out of range" },
        { "{\"sessions\": {\"idle_timeout\": \"1m\"}}", "t: sessions.idle_timeout: wrong type" },
        { "{\"sessions\": {\"dir_bytes\": 1000}}", "t: sessions.dir_bytes: out of range" },
        { "{\"sessions\": {\"file_max\": 0}}", "t: sessions.file_max: out of range" },
        { "{\"sessions\": {\"packages\": {\"wheel_dir\": \"wheels\"}}}", "t: sessions.packages.wheel_dir: out of range: must be an absolute path" },
        { "{\"sessions\": {\"packages\": {\"index_url\": \"ftp://x/\"}}}", "t: sessions.packages.index_url: out of range" },
        { "{\"sessions\": {\"packages\": {\"index_url\": \"http://x/a b\"}}}", "t: sessions.packages.index_url: out of range" },
        { "{\"sessions\": {\"packages\": {\"mirror\": \"x\"}}}", "t: sessions.packages.mirror: unknown key" },
};

START_TEST(error_names_key)
{
        struct jaild_config *c = (void *)1;
        struct jr_err err = { 0 };
        const char *text = errors[_i].text;
        int r = jaild_config_parse(text, strlen(text), "t", &c, &err);
        ck_assert_msg(r == -EINVAL, "%s: %d (%s)", text, r, err.msg);
        ck_assert_ptr_null(c);
        ck_assert_msg(strncmp(err.msg, errors[_i].want, strlen(errors[_i].want)) == 0, "%s: got '%s', want '%s...'",
                      text, err.msg, errors[_i].want);
}
END_TEST

START_TEST(secrets_file_checked)
{
        char text[PATH_MAX + 32];
        snprintf(text, sizeof text, "{\"secrets\": \"%s\"}", put("secrets.json", "{}", 0644));
        struct jaild_config *c = NULL;
        struct jr_err err = { 0 };
        ck_assert_int_lt(jaild_config_parse(text, strlen(text), "t", &c, &err), 0);
        ck_assert_msg(strncmp(err.msg, "t: secrets: secrets file ", 25) == 0 && strstr(err.msg, "readable by root alone"),
                      "%s", err.msg);
        ck_assert_ptr_null(c);
}
END_TEST

/* The file as a whole: its path in each message. */
START_TEST(file_errors)
{
        struct jaild_config *c = NULL;
        struct jr_err err = { 0 };
        char want[PATH_MAX + 64], sub[PATH_MAX];

        snprintf(want, sizeof want, "%s/missing.json: unreadable", dir);
        ck_assert_int_eq(jaild_config_load(want, &c, &err), -ENOENT);  /* the path is "DIR/missing.json: ..." */
        ck_assert_msg(strncmp(err.msg, want, strlen(want)) == 0, "%s", err.msg);

        snprintf(sub, sizeof sub, "%s/sub", dir);
        ck_assert_int_eq(mkdir(sub, 0700), 0);
        ck_assert_int_eq(jaild_config_load(sub, &c, &err), -EINVAL);
        ck_assert_msg(strstr(err.msg, "not a regular file") != NULL, "%s", err.msg);

        const char *open_path = put("open.json", "{}", 0666);
        ck_assert_int_eq(jaild_config_load(open_path, &c, &err), -EPERM);
        ck_assert_msg(strstr(err.msg, "writable by its owner alone") && strstr(err.msg, "mode 0666"), "%s", err.msg);

        char *big = malloc(JAILD_CONFIG_MAX_FILE + 2);
        ck_assert_ptr_nonnull(big);
        memset(big, ' ', JAILD_CONFIG_MAX_FILE + 1);
        big[0] = '{';
        big[JAILD_CONFIG_MAX_FILE] = '}';
        big[JAILD_CONFIG_MAX_FILE + 1] = '\0';
        ck_assert_int_eq(jaild_config_load(put("big.json", big, 0600), &c, &err), -EFBIG);
        free(big);

        const char *bad = put("bad.json", "{\"max_live_jobs\": 8,\n \"log_level\": \"info\"\n \"x\": 1}", 0600);
        ck_assert_int_eq(jaild_config_load(bad, &c, &err), -EINVAL);
        snprintf(want, sizeof want, "%s: JSON syntax error at line 3 column ", bad);
        ck_assert_msg(strncmp(err.msg, want, strlen(want)) == 0, "%s", err.msg);

        const char *typed = put("bad.json", "{\"state\": {\"backend\": \"redis\", \"redis\": {\"host\": \"h\", "
                                            "\"port\": true}}}", 0600);
        ck_assert_int_eq(jaild_config_load(typed, &c, &err), -EINVAL);
        snprintf(want, sizeof want, "%s: state.redis.port: wrong type: must be an integer, not a boolean", typed);
        ck_assert_str_eq(err.msg, want);
        ck_assert_ptr_null(c);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("jaild-config");
        TCase *tc = tcase_create("config");
        tcase_add_unchecked_fixture(tc, make_dir, remove_dir);
        tcase_add_test(tc, defaults);
        tcase_add_test(tc, every_key);
        tcase_add_test(tc, redis_and_mode);
        tcase_add_test(tc, pool_sizes);
        tcase_add_loop_test(tc, error_names_key, 0, (int)(sizeof errors / sizeof errors[0]));
        tcase_add_test(tc, secrets_file_checked);
        tcase_add_test(tc, file_errors);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
