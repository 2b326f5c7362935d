/* The worker registry (supervisor/jaild/registry.c) on a real SQLite file:
 * CRUD, names unique, bad fields refused, persistence across close and
 * open, transactions, a full disk, and a writer killed with SIGKILL right
 * after add() returned. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "supervisor/jaild/registry.h"
#include "tests/unit/unit.h"

static char dir[] = "/tmp/jaild-registry-XXXXXX";
static char path[PATH_MAX];
static struct registry *reg;

static void make_dir(void)
{
        ck_assert_ptr_nonnull(mkdtemp(dir));
}

static int remove_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st, (void)flag, (void)ftw;
        return remove(p);
}

/* p's directory, in a static buffer. */
static const char *dirname_of(const char *p)
{
        static char d[PATH_MAX];
        snprintf(d, sizeof d, "%s", p);
        *strrchr(d, '/') = '\0';
        return d;
}

static void remove_dir(void)
{
        nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh registry at DIR/PID-N/sub/registry.db for each test (each runs
 * in a child of its own, or not: CK_FORK=no); registry_open makes its
 * directories. */
static void setup(void)
{
        static int n;
        snprintf(path, sizeof path, "%s/%d-%d/sub/registry.db", dir, (int)getpid(), n++);
        struct jr_err err = { 0 };
        ck_assert_msg(registry_open(&reg, path, &err) == 0, "%s", err.msg);
}

static void teardown(void)
{
        registry_close(reg);
        reg = NULL;
}

static struct registry_new worker(const char *name)
{
        static const char src[] = "def tick(ctx):\n    ctx.log.info('h\xc3\xa9llo')\n";
        return (struct registry_new){ .name = name, .profile = "worker", .source = src, .source_len = sizeof src - 1 };
}

static void add_ok(const char *name, struct registry_worker *out)
{
        struct registry_new w = worker(name);
        struct jr_err err = { 0 };
        ck_assert_msg(registry_add(reg, &w, out, &err) == 0, "%s: %s", name, err.msg);
}

START_TEST(add_get)
{
        struct registry_new w = worker("alpha");
        w.policy = "{\"limits\": {\"memory\": 1}, \"b\": 1}";
        w.schedule = "{\"interval\": 5, \"tick_timeout\": 60}";
        w.paused = 1;
        struct registry_worker a, b, c;
        struct jr_err err = { 0 };
        ck_assert_msg(registry_add(reg, &w, &a, &err) == 0, "%s", err.msg);
        ck_assert_uint_eq(strlen(a.id), REGISTRY_ID_LEN);
        ck_assert_msg(strncmp(a.id, "w-", 2) == 0 && strspn(a.id + 2, "0123456789abcdef") == 16, "%s", a.id);
        ck_assert_str_eq(a.name, "alpha");
        ck_assert_str_eq(a.profile, "worker");
        ck_assert_uint_eq(a.source_len, w.source_len);
        ck_assert_mem_eq(a.source, w.source, w.source_len);
        ck_assert_str_eq(a.policy, "{\"b\":1,\"limits\":{\"memory\":1}}");
        ck_assert_str_eq(a.schedule, "{\"interval\":5,\"tick_timeout\":60}");
        ck_assert_int_eq(a.paused, 1);
        ck_assert_int_eq(a.generation, 1);
        ck_assert_int_eq(a.created_ms, a.updated_ms);
        ck_assert_int_gt(a.created_ms, 1700000000000LL);

        ck_assert_int_eq(registry_get(reg, a.id, &b, &err), 0);
        ck_assert_int_eq(registry_get_by_name(reg, "alpha", &c, &err), 0);
        ck_assert_str_eq(b.id, a.id);
        ck_assert_str_eq(c.id, a.id);
        ck_assert_mem_eq(c.source, a.source, a.source_len);
        ck_assert_int_eq(c.created_ms, a.created_ms);
        registry_worker_clear(&b);
        registry_worker_clear(&c);

        /* Defaults: "{}" for policy and schedule, not paused. */
        struct registry_worker d;
        add_ok("beta", &d);
        ck_assert_str_eq(d.policy, "{}");
        ck_assert_str_eq(d.schedule, "{}");
        ck_assert_int_eq(d.paused, 0);
        ck_assert_str_ne(d.id, a.id);
        registry_worker_clear(&d);
        registry_worker_clear(&a);

        /* Absent, and hostile keys (bound, never spliced into SQL). */
        ck_assert_int_eq(registry_get(reg, "w-0000000000000000", &b, &err), -ENOENT);
        ck_assert_int_eq(registry_get_by_name(reg, "gamma", &b, &err), -ENOENT);
        ck_assert_int_eq(registry_get_by_name(reg, "x' OR '1'='1", &b, &err), -ENOENT);
        ck_assert_int_eq(registry_get(reg, "'; DROP TABLE workers; --", &b, &err), -ENOENT);
        ck_assert_int_eq(registry_get_by_name(reg, "beta", &b, &err), 0);
        registry_worker_clear(&b);
}
END_TEST

/* Every fd the registry (SQLite) opened is close-on-exec: a jail cloned
 * and exec'd from the daemon must not inherit the registry. */
START_TEST(fds_cloexec)
{
        registry_close(reg);
        reg = NULL;
        char before[1024] = { 0 };
        for (int fd = 0; fd < (int)sizeof before; fd++)
                before[fd] = fcntl(fd, F_GETFD) >= 0;
        struct jr_err err = { 0 };
        ck_assert_msg(registry_open(&reg, path, &err) == 0, "%s", err.msg);
        add_ok("fds", NULL);  /* the WAL and its index are open now */
        int opened = 0;
        for (int fd = 0; fd < (int)sizeof before; fd++) {
                int fl = fcntl(fd, F_GETFD);
                if (fl < 0 || before[fd])
                        continue;
                opened++;
                ck_assert_msg(fl & FD_CLOEXEC, "fd %d without FD_CLOEXEC", fd);
        }
        ck_assert_int_ge(opened, 3);  /* the database, its -wal and -shm */
}
END_TEST

START_TEST(file_private)
{
        struct stat st;
        char parent[PATH_MAX];
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_uint_eq(st.st_mode & 0777, 0600);
        snprintf(parent, sizeof parent, "%s", path);
        *strrchr(parent, '/') = '\0';
        ck_assert_int_eq(stat(parent, &st), 0);
        ck_assert_uint_eq(st.st_mode & 0777, 0700);
}
END_TEST

START_TEST(duplicate_name)
{
        struct registry_worker a, b;
        add_ok("dup", &a);
        struct registry_new w = worker("dup");
        w.source = "x = 1\n";
        w.source_len = 6;
        struct jr_err err = { 0 };
        ck_assert_int_eq(registry_add(reg, &w, NULL, &err), -EEXIST);
        ck_assert_msg(strstr(err.msg, "a worker named 'dup' exists") != NULL, "%s", err.msg);
        /* The first one is untouched; names differ by case are distinct. */
        ck_assert_int_eq(registry_get_by_name(reg, "dup", &b, &err), 0);
        ck_assert_str_eq(b.id, a.id);
        ck_assert_int_eq(b.generation, 1);
        ck_assert_mem_eq(b.source, a.source, a.source_len);
        registry_worker_clear(&b);
        add_ok("Dup", NULL);
        registry_worker_clear(&a);
}
END_TEST

START_TEST(bad_fields)
{
        struct jr_err err = { 0 };
        char long_name[REGISTRY_MAX_NAME + 2];
        memset(long_name, 'n', sizeof long_name - 1);
        long_name[sizeof long_name - 1] = '\0';
        const char *names[] = { "", ".hidden", "../x", "a/b", "sp ace", long_name, NULL };
        for (size_t i = 0; names[i]; i++) {
                struct registry_new w = worker(names[i]);
                ck_assert_msg(registry_add(reg, &w, NULL, &err) == -EINVAL, "name '%s'", names[i]);
        }
        struct registry_new w = worker(NULL);
        ck_assert_int_eq(registry_add(reg, &w, NULL, &err), -EINVAL);
        w = worker("ok");
        w.profile = "Worker";
        ck_assert_int_eq(registry_add(reg, &w, NULL, &err), -EINVAL);
        w = worker("ok");
        w.source = "a\0b";
        w.source_len = 3;
        ck_assert_int_eq(registry_add(reg, &w, NULL, &err), -EINVAL);
        ck_assert_msg(strstr(err.msg, "NUL") != NULL, "%s", err.msg);
        char *big = malloc(REGISTRY_MAX_SOURCE + 1);
        ck_assert_ptr_nonnull(big);
        memset(big, '#', REGISTRY_MAX_SOURCE + 1);
        w = worker("ok");
        w.source = big;
        w.source_len = REGISTRY_MAX_SOURCE + 1;
        ck_assert_int_eq(registry_add(reg, &w, NULL, &err), -EINVAL);
        w.source_len = REGISTRY_MAX_SOURCE;  /* exactly the cap is fine */
        ck_assert_msg(registry_add(reg, &w, NULL, &err) == 0, "%s", err.msg);
        free(big);
        const char *json[] = { "[1]", "{", "{\"a\": 1, \"a\": 2}", "3", NULL };
        for (size_t i = 0; json[i]; i++) {
                w = worker("other");
                w.policy = json[i];
                ck_assert_msg(registry_add(reg, &w, NULL, &err) == -EINVAL, "policy %s", json[i]);
                ck_assert_msg(strstr(err.msg, "policy") != NULL, "%s", err.msg);
                w.policy = NULL;
                w.schedule = json[i];
                ck_assert_msg(registry_add(reg, &w, NULL, &err) == -EINVAL, "schedule %s", json[i]);
                ck_assert_msg(strstr(err.msg, "schedule") != NULL, "%s", err.msg);
        }
        w = worker("other");
        w.paused = 2;
        ck_assert_int_eq(registry_add(reg, &w, NULL, &err), -EINVAL);
        /* None of the refused ones was stored. */
        struct registry_worker g;
        ck_assert_int_eq(registry_get_by_name(reg, "other", &g, &err), -ENOENT);
}
END_TEST

START_TEST(updates)
{
        struct registry_worker a, b;
        struct jr_err err = { 0 };
        int64_t gen = 0;
        add_ok("upd", &a);
        usleep(2000);  /* updated_ms must move past created_ms */
        ck_assert_msg(registry_set_source(reg, a.id, "y = 2\n", 6, &gen, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(gen, 2);
        ck_assert_int_eq(registry_set_source(reg, a.id, "y = 3\n", 6, NULL, &err), 0);
        ck_assert_int_eq(registry_set_schedule(reg, a.id, "{\"interval\": 10}", &err), 0);
        ck_assert_int_eq(registry_set_policy(reg, a.id, "{\"http\": {\"allow\": []}}", &err), 0);
        ck_assert_int_eq(registry_set_paused(reg, a.id, 1, &err), 0);
        ck_assert_int_eq(registry_get(reg, a.id, &b, &err), 0);
        ck_assert_int_eq(b.generation, 3);  /* source changes only */
        ck_assert_uint_eq(b.source_len, 6);
        ck_assert_str_eq(b.source, "y = 3\n");
        ck_assert_str_eq(b.schedule, "{\"interval\":10}");
        ck_assert_str_eq(b.policy, "{\"http\":{\"allow\":[]}}");
        ck_assert_int_eq(b.paused, 1);
        ck_assert_int_eq(b.created_ms, a.created_ms);
        ck_assert_int_gt(b.updated_ms, a.updated_ms);
        registry_worker_clear(&b);
        ck_assert_int_eq(registry_set_paused(reg, a.id, 0, &err), 0);
        ck_assert_int_eq(registry_get(reg, a.id, &b, &err), 0);
        ck_assert_int_eq(b.paused, 0);
        registry_worker_clear(&b);

        /* Bad values change nothing. */
        ck_assert_int_eq(registry_set_schedule(reg, a.id, "[]", &err), -EINVAL);
        ck_assert_int_eq(registry_set_policy(reg, a.id, "{", &err), -EINVAL);
        ck_assert_int_eq(registry_set_paused(reg, a.id, 5, &err), -EINVAL);
        ck_assert_int_eq(registry_set_source(reg, a.id, "a\0b", 3, NULL, &err), -EINVAL);
        ck_assert_int_eq(registry_get(reg, a.id, &b, &err), 0);
        ck_assert_int_eq(b.generation, 3);
        ck_assert_str_eq(b.schedule, "{\"interval\":10}");
        registry_worker_clear(&b);

        /* An unknown id is -ENOENT for each. */
        const char *none = "w-ffffffffffffffff";
        ck_assert_int_eq(registry_set_source(reg, none, "z", 1, &gen, &err), -ENOENT);
        ck_assert_msg(strstr(err.msg, none) != NULL, "%s", err.msg);
        ck_assert_int_eq(registry_set_schedule(reg, none, "{}", &err), -ENOENT);
        ck_assert_int_eq(registry_set_policy(reg, none, "{}", &err), -ENOENT);
        ck_assert_int_eq(registry_set_paused(reg, none, 1, &err), -ENOENT);
        ck_assert_int_eq(registry_delete(reg, none, &err), -ENOENT);

        ck_assert_int_eq(registry_delete(reg, a.id, &err), 0);
        ck_assert_int_eq(registry_get(reg, a.id, &b, &err), -ENOENT);
        ck_assert_int_eq(registry_get_by_name(reg, "upd", &b, &err), -ENOENT);
        ck_assert_int_eq(registry_delete(reg, a.id, &err), -ENOENT);
        /* The name is free again, under a new id. */
        add_ok("upd", &b);
        ck_assert_str_ne(b.id, a.id);
        registry_worker_clear(&b);
        registry_worker_clear(&a);
}
END_TEST

struct names {
        char got[8][REGISTRY_MAX_NAME + 1];
        int n, stop_at;
};

static int collect(const struct registry_worker *w, void *ctx)
{
        struct names *ns = ctx;
        snprintf(ns->got[ns->n], sizeof ns->got[0], "%s", w->name);
        return ++ns->n == ns->stop_at ? 42 : 0;
}

START_TEST(list)
{
        struct jr_err err = { 0 };
        struct names ns = { .stop_at = -1 };
        ck_assert_int_eq(registry_list(reg, collect, &ns, &err), 0);
        ck_assert_int_eq(ns.n, 0);
        add_ok("charlie", NULL);
        add_ok("alpha", NULL);
        add_ok("bravo", NULL);
        ck_assert_int_eq(registry_list(reg, collect, &ns, &err), 0);
        ck_assert_int_eq(ns.n, 3);
        ck_assert_str_eq(ns.got[0], "alpha");
        ck_assert_str_eq(ns.got[1], "bravo");
        ck_assert_str_eq(ns.got[2], "charlie");
        ns = (struct names){ .stop_at = 2 };
        ck_assert_int_eq(registry_list(reg, collect, &ns, &err), 42);
        ck_assert_int_eq(ns.n, 2);
        /* The statement was reset: the registry goes on working. */
        add_ok("delta", NULL);
        ns = (struct names){ .stop_at = -1 };
        ck_assert_int_eq(registry_list(reg, collect, &ns, &err), 0);
        ck_assert_int_eq(ns.n, 4);
}
END_TEST

START_TEST(persists)
{
        struct registry_worker a, b;
        struct jr_err err = { 0 };
        add_ok("keep", &a);
        ck_assert_int_eq(registry_set_source(reg, a.id, "v = 2\n", 6, NULL, &err), 0);
        registry_close(reg);
        ck_assert_msg(registry_open(&reg, path, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(registry_get_by_name(reg, "keep", &b, &err), 0);
        ck_assert_str_eq(b.id, a.id);
        ck_assert_str_eq(b.source, "v = 2\n");
        ck_assert_int_eq(b.generation, 2);
        ck_assert_int_eq(b.created_ms, a.created_ms);
        registry_worker_clear(&a);
        registry_worker_clear(&b);

        /* The schema's version is recorded, and the file is in WAL mode. */
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT user_version, journal_mode FROM pragma_user_version, "
                                                "pragma_journal_mode", -1, &st, NULL), SQLITE_OK);
        ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
        ck_assert_int_eq(sqlite3_column_int(st, 0), REGISTRY_SCHEMA);
        ck_assert_str_eq((const char *)sqlite3_column_text(st, 1), "wal");
        sqlite3_finalize(st);
        sqlite3_close(db);
}
END_TEST

START_TEST(newer_schema_refused)
{
        struct jr_err err = { 0 };
        registry_close(reg);
        reg = NULL;
        sqlite3 *db = NULL;
        ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        ck_assert_int_eq(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
        ck_assert_int_eq(registry_open(&reg, path, &err), -EPROTO);
        ck_assert_ptr_null(reg);
        ck_assert_msg(strstr(err.msg, "schema version 99") != NULL, "%s", err.msg);
}
END_TEST

/* SQLite's own errors come with what failed, the file and SQLite's words. */
START_TEST(not_a_database)
{
        struct jr_err err = { 0 };
        char junk[PATH_MAX + 8];
        snprintf(junk, sizeof junk, "%s.junk", path);
        FILE *f = fopen(junk, "we");
        ck_assert_ptr_nonnull(f);
        for (int i = 0; i < 512; i++)
                fputs("not a database, not at all ", f);
        fclose(f);
        struct registry *r = NULL;
        ck_assert_int_eq(registry_open(&r, junk, &err), -EIO);
        ck_assert_ptr_null(r);
        ck_assert_msg(strstr(err.msg, junk) && strstr(err.msg, "file is not a database"), "%s", err.msg);
}
END_TEST

/* Changes between begin and rollback are not made; between begin and
 * commit they are, together. */
START_TEST(transaction)
{
        struct registry_worker a, b;
        struct jr_err err = { 0 };
        add_ok("kept", &a);
        ck_assert_int_eq(registry_begin(reg, &err), 0);
        add_ok("dropped", NULL);
        ck_assert_int_eq(registry_set_source(reg, a.id, "v = 2\n", 6, NULL, &err), 0);
        ck_assert_int_eq(registry_get_by_name(reg, "dropped", &b, &err), 0);  /* seen inside */
        registry_worker_clear(&b);
        registry_rollback(reg);
        ck_assert_int_eq(registry_get_by_name(reg, "dropped", &b, &err), -ENOENT);
        ck_assert_int_eq(registry_get(reg, a.id, &b, &err), 0);
        ck_assert_int_eq(b.generation, 1);
        registry_worker_clear(&b);

        ck_assert_int_eq(registry_begin(reg, &err), 0);
        add_ok("both", NULL);
        ck_assert_int_eq(registry_set_source(reg, a.id, "v = 3\n", 6, NULL, &err), 0);
        ck_assert_msg(registry_commit(reg, &err) == 0, "%s", err.msg);
        registry_close(reg);
        ck_assert_msg(registry_open(&reg, path, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(registry_get_by_name(reg, "both", &b, &err), 0);
        registry_worker_clear(&b);
        ck_assert_int_eq(registry_get(reg, a.id, &b, &err), 0);
        ck_assert_str_eq(b.source, "v = 3\n");
        registry_worker_clear(&b);
        registry_worker_clear(&a);
        registry_rollback(reg);  /* none open: nothing to do */
}
END_TEST

/* Fills the file system under fd's file to its last byte: 0 or -errno. */
static int fill(int fd)
{
        static const char block[4096];
        for (;;) {
                ssize_t n = write(fd, block, sizeof block);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return errno == ENOSPC ? 0 : -errno;
                if (n == 0)
                        return 0;
        }
}

static void refused_full(int r, const struct jr_err *err)
{
        ck_assert_msg(r == -ENOSPC, "%d: %s", r, err->msg);
        ck_assert_msg(strstr(err->msg, "is full (ENOSPC); nothing was changed") && strstr(err->msg, "/small/"), "%s",
                      err->msg);
}

/* On a tmpfs of its own (a mount namespace of this test's process) that a
 * file fills: a change, and a transaction's commit, are refused with
 * -ENOSPC and words saying so; nothing of them is kept, what was there
 * stays, and once the file is gone the same changes are made. */
START_TEST(full_disk)
{
        const char *fork_mode = getenv("CK_FORK");
        if (fork_mode && strcmp(fork_mode, "no") == 0) {
                fprintf(stderr, "full_disk: skipped: it unshares its process's mounts (CK_FORK=no)\n");
                return;
        }
        char small[PATH_MAX], db[PATH_MAX + 16], filler[PATH_MAX + 16];
        snprintf(small, sizeof small, "%s/%d-full/small", dir, (int)getpid());
        ck_assert_int_eq(mkdir(dirname_of(small), 0700), 0);
        ck_assert_int_eq(mkdir(small, 0700), 0);
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("tmpfs", small, "tmpfs", 0, "size=512k,mode=0700") < 0) {
                fprintf(stderr, "full_disk: skipped: no tmpfs of its own: %s\n", strerror(errno));
                return;
        }
        snprintf(db, sizeof db, "%s/registry.db", small);
        snprintf(filler, sizeof filler, "%s/filler", small);
        struct jr_err err = { 0 };
        struct registry *r = NULL;
        struct registry_worker a, b;
        ck_assert_msg(registry_open(&r, db, &err) == 0, "%s", err.msg);
        struct registry_new n = worker("before");
        ck_assert_msg(registry_add(r, &n, &a, &err) == 0, "%s", err.msg);
        int fd = open(filler, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(fill(fd), 0);
        close(fd);

        n = worker("after");
        refused_full(registry_add(r, &n, NULL, &err), &err);
        refused_full(registry_set_source(r, a.id, "v = 2\n", 6, NULL, &err), &err);
        refused_full(registry_delete(r, a.id, &err), &err);
        ck_assert_int_eq(registry_begin(r, &err), 0);  /* its pages are in memory until the commit */
        int ret = registry_add(r, &n, NULL, &err);
        if (ret == 0)
                ret = registry_commit(r, &err);
        else
                registry_rollback(r);
        refused_full(ret, &err);
        ck_assert_int_eq(registry_get_by_name(r, "after", &b, &err), -ENOENT);
        ck_assert_int_eq(registry_get(r, a.id, &b, &err), 0);
        ck_assert_int_eq(b.generation, 1);
        registry_worker_clear(&b);

        ck_assert_int_eq(unlink(filler), 0);
        ck_assert_int_eq(registry_begin(r, &err), 0);  /* no transaction was left open */
        ck_assert_msg(registry_add(r, &n, NULL, &err) == 0, "%s", err.msg);
        ck_assert_msg(registry_set_source(r, a.id, "v = 2\n", 6, NULL, &err) == 0, "%s", err.msg);
        ck_assert_msg(registry_commit(r, &err) == 0, "%s", err.msg);
        registry_close(r);
        ck_assert_msg(registry_open(&r, db, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(registry_get_by_name(r, "after", &b, &err), 0);
        registry_worker_clear(&b);
        ck_assert_int_eq(registry_get(r, a.id, &b, &err), 0);
        ck_assert_int_eq(b.generation, 2);
        registry_worker_clear(&b);

        /* Closed with room (its -shm removed), then the disk full: it opens
         * for this process alone, reads, refuses changes until there is
         * room, and opens as before once there is. */
        registry_close(r);
        char shm[PATH_MAX + 32];
        snprintf(shm, sizeof shm, "%s-shm", db);
        ck_assert_int_eq(access(shm, F_OK), -1);
        fd = open(filler, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(fill(fd), 0);
        close(fd);
        ck_assert_int_eq(registry_open(&r, db, &err), 1);
        ck_assert_msg(strstr(err.msg, "is full (ENOSPC)") && strstr(err.msg, "opened for jaild alone"), "%s", err.msg);
        ck_assert_int_eq(registry_get(r, a.id, &b, &err), 0);
        ck_assert_int_eq(b.generation, 2);
        registry_worker_clear(&b);
        n = worker("third");
        refused_full(registry_add(r, &n, NULL, &err), &err);
        ck_assert_int_eq(unlink(filler), 0);
        ck_assert_msg(registry_add(r, &n, NULL, &err) == 0, "%s", err.msg);
        registry_close(r);
        ck_assert_msg(registry_open(&r, db, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(registry_get_by_name(r, "third", &b, &err), 0);
        registry_worker_clear(&b);
        registry_worker_clear(&a);
        registry_close(r);
}
END_TEST

/* A child adds workers in a loop and reports each id once add() has
 * returned; it is killed with SIGKILL after the 25th report, likely in the
 * middle of the next add. Every reported worker is there on reopen. */
START_TEST(survives_sigkill)
{
        enum { REPORTS = 25 };
        int p[2];
        registry_close(reg);
        reg = NULL;
        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                close(p[0]);
                struct jr_err err = { 0 };
                struct registry *r = NULL;
                if (registry_open(&r, path, &err) < 0)
                        _exit(2);
                for (int i = 0;; i++) {
                        char name[32];
                        struct registry_worker w;
                        snprintf(name, sizeof name, "k%d", i);
                        struct registry_new n = worker(name);
                        if (registry_add(r, &n, &w, &err) < 0)
                                _exit(3);
                        char line[REGISTRY_ID_LEN + 1];
                        memcpy(line, w.id, REGISTRY_ID_LEN);
                        line[REGISTRY_ID_LEN] = '\n';
                        if (write(p[1], line, sizeof line) != (ssize_t)sizeof line)
                                _exit(4);
                        registry_worker_clear(&w);
                }
        }
        close(p[1]);
        char ids[REPORTS][REGISTRY_ID_LEN + 1];
        for (int i = 0; i < REPORTS; i++) {
                size_t got = 0;
                while (got < REGISTRY_ID_LEN + 1) {
                        ssize_t n = read(p[0], ids[i] + got, REGISTRY_ID_LEN + 1 - got);
                        if (n < 0 && errno == EINTR)
                                continue;
                        ck_assert_int_gt(n, 0);
                        got += (size_t)n;
                }
                ids[i][REGISTRY_ID_LEN] = '\0';
        }
        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        int status;
        while (waitpid(pid, &status, 0) < 0)
                ck_assert_int_eq(errno, EINTR);
        close(p[0]);
        ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %#x", status);

        struct jr_err err = { 0 };
        ck_assert_msg(registry_open(&reg, path, &err) == 0, "%s", err.msg);
        for (int i = 0; i < REPORTS; i++) {
                struct registry_worker w;
                char name[32];
                snprintf(name, sizeof name, "k%d", i);
                ck_assert_msg(registry_get(reg, ids[i], &w, &err) == 0, "%s: %s", ids[i], err.msg);
                ck_assert_str_eq(w.name, name);
                registry_worker_clear(&w);
        }
}
END_TEST

int main(void)
{
        Suite *s = suite_create("registry");
        TCase *tc = tcase_create("registry");
        tcase_add_unchecked_fixture(tc, make_dir, remove_dir);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, add_get);
        tcase_add_test(tc, file_private);
        tcase_add_test(tc, fds_cloexec);
        tcase_add_test(tc, duplicate_name);
        tcase_add_test(tc, bad_fields);
        tcase_add_test(tc, updates);
        tcase_add_test(tc, list);
        tcase_add_test(tc, persists);
        tcase_add_test(tc, newer_schema_refused);
        tcase_add_test(tc, not_a_database);
        tcase_add_test(tc, transaction);
        tcase_add_test(tc, full_disk);
        tcase_add_test(tc, survives_sigkill);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
