/* The mount planner against a fake host tree. */
#include "config.h"

#include "tests/unit/unit.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jail/mnt.h"
#include "jail/mntplan.h"

static char root[PATH_MAX];

static void mk(const char *rel, const char *link)
{
        char p[PATH_MAX * 2];
        snprintf(p, sizeof p, "%s%s", root, rel);
        /* create parents */
        for (char *s = p + strlen(root) + 1; (s = strchr(s, '/')); s++) {
                *s = '\0';
                mkdir(p, 0755);
                *s = '/';
        }
        if (link)
                ck_assert_int_eq(symlink(link, p), 0);
        else if (rel[strlen(rel) - 1] != '/')
                fclose(fopen(p, "w"));
}

static void setup(void)
{
        snprintf(root, sizeof root, "/tmp/test-mntplan.XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(root));
        mk("/usr/lib/x86_64-linux-gnu/libc.so.6", NULL);
        mk("/usr/lib/x86_64-linux-gnu/ld.so", NULL);
        mk("/usr/lib/x86_64-linux-gnu/blas/libblas.so.3", NULL);
        mk("/usr/lib/x86_64-linux-gnu/libblas.so.3", "/etc/alternatives/libblas.so.3");
        mk("/etc/alternatives/libblas.so.3", "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3");
        mk("/etc/alternatives/editor", "/usr/bin/vim");
        mk("/etc/alternatives/blas-tool", "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3");
        mk("/etc/shadow", NULL);
        mk("/etc/ld.so.cache", NULL);
        mk("/usr/bin/vim", NULL);
        mk("/usr/lib/python3.11/os.py", NULL);
        mk("/usr/lib64/ld-linux-x86-64.so.2", "../lib/x86_64-linux-gnu/ld.so");
        mk("/lib", "usr/lib");
        mk("/bin", "usr/bin");
        mk("/lib64", "usr/lib64");
        mk("/loop1", "loop2");
        mk("/loop2", "loop1");
        mk("/opt/jailrun", NULL);
}

static void teardown(void)
{
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        ck_assert_int_eq(system(cmd), 0);
}

static const struct mnt_entry *find(const struct mnt_plan *p, const char *path)
{
        for (size_t i = 0; i < p->n; i++)
                if (strcmp(p->v[i].path, path) == 0)
                        return &p->v[i];
        return NULL;
}

static void assert_entry(const struct mnt_plan *p, const char *path, enum mnt_op op)
{
        const struct mnt_entry *e = find(p, path);
        ck_assert_msg(e, "no entry for %s", path);
        ck_assert_msg(e->op == op, "%s: op %d, want %d", path, e->op, op);
}

START_TEST(test_maps_bind_loader_dirs)
{
        struct mnt_plan p;
        ck_assert_int_eq(mntplan_init(&p, root, NULL), 0);
        const char *maps =
                "55d0-55d1 r--p 00000000 fe:00 1 /opt/jailrun\n"
                "7f00-7f01 r-xp 00000000 fe:00 2 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
                "7f01-7f02 rw-p 00000000 00:00 0 \n"
                "7f02-7f03 r--p 00000000 fe:00 3 /usr/lib/x86_64-linux-gnu/gone.so (deleted)\n"
                "7f03-7f04 rw-s 00000000 fe:00 4 /var/lib/jaild/registry.db-shm\n"
                "7f04-7f05 r--p 00000000 fe:00 5 /srv/secrets/data.bin\n"
                "7ffd-7ffe rw-p 00000000 00:00 0 [stack]\n";
        ck_assert_int_eq(mntplan_add_maps(&p, maps, "/opt/jailrun", NULL), 0);
        mntplan_finish(&p);
        assert_entry(&p, "/usr", MNT_OP_DIR);
        assert_entry(&p, "/usr/lib", MNT_OP_DIR);
        assert_entry(&p, "/usr/lib/x86_64-linux-gnu", MNT_OP_BIND);
        ck_assert(find(&p, "/usr/lib/x86_64-linux-gnu")->is_dir);
        ck_assert_ptr_null(find(&p, "/opt"));
        ck_assert_ptr_null(find(&p, "/var"));  /* data mappings bind nothing */
        ck_assert_ptr_null(find(&p, "/srv"));
        ck_assert_int_eq(p.n, 3);
        mntplan_free(&p);
}
END_TEST

START_TEST(test_symlink_chain)
{
        struct mnt_plan p;
        ck_assert_int_eq(mntplan_init(&p, root, NULL), 0);
        ck_assert_int_eq(mntplan_add(&p, "/usr/lib/x86_64-linux-gnu", NULL), 0);
        ck_assert_int_eq(mntplan_add(&p, "/lib64/ld-linux-x86-64.so.2", NULL), 0);
        mntplan_finish(&p);
        assert_entry(&p, "/lib64", MNT_OP_SYMLINK);
        ck_assert_str_eq(find(&p, "/lib64")->target, "usr/lib64");
        assert_entry(&p, "/usr/lib64", MNT_OP_DIR);
        assert_entry(&p, "/usr/lib64/ld-linux-x86-64.so.2", MNT_OP_SYMLINK);
        ck_assert_str_eq(find(&p, "/usr/lib64/ld-linux-x86-64.so.2")->target, "../lib/x86_64-linux-gnu/ld.so");
        /* the final target lies in a bound directory: no extra bind */
        ck_assert_ptr_null(find(&p, "/usr/lib/x86_64-linux-gnu/ld.so"));
        mntplan_free(&p);
}
END_TEST

START_TEST(test_links_into_plan_only)
{
        struct mnt_plan p;
        ck_assert_int_eq(mntplan_init(&p, root, NULL), 0);
        ck_assert_int_eq(mntplan_add(&p, "/usr/lib/x86_64-linux-gnu", NULL), 0);
        ck_assert_int_eq(mntplan_add(&p, "/usr/lib/python3.11", NULL), 0);
        ck_assert_int_eq(mntplan_add_links_into(&p, "/", NULL, NULL), 0);
        ck_assert_int_eq(mntplan_add_links_into(&p, "/etc/alternatives", NULL, NULL), 0);
        mntplan_finish(&p);
        assert_entry(&p, "/lib", MNT_OP_SYMLINK);         /* -> usr/lib, a planned dir */
        ck_assert_ptr_null(find(&p, "/bin"));               /* -> usr/bin, not planned */
        ck_assert_ptr_null(find(&p, "/usr/bin"));
        ck_assert_ptr_null(find(&p, "/loop1"));             /* broken on the host */
        assert_entry(&p, "/etc", MNT_OP_DIR);
        assert_entry(&p, "/etc/alternatives", MNT_OP_DIR);
        assert_entry(&p, "/etc/alternatives/libblas.so.3", MNT_OP_SYMLINK);
        ck_assert_ptr_null(find(&p, "/etc/alternatives/editor"));
        assert_entry(&p, "/etc/alternatives/blas-tool", MNT_OP_SYMLINK);  /* no name filter */
        ck_assert_ptr_null(find(&p, "/etc/shadow"));
        /* /usr/lib itself is a directory on the way, never bound whole */
        assert_entry(&p, "/usr/lib", MNT_OP_DIR);
        mntplan_free(&p);
}
END_TEST

START_TEST(test_links_name_filter)
{
        struct mnt_plan p;
        ck_assert_int_eq(mntplan_init(&p, root, NULL), 0);
        ck_assert_int_eq(mntplan_add(&p, "/usr/lib/x86_64-linux-gnu", NULL), 0);
        ck_assert_int_eq(mntplan_add_links_into(&p, "/etc/alternatives", ".so", NULL), 0);
        mntplan_finish(&p);
        assert_entry(&p, "/etc/alternatives/libblas.so.3", MNT_OP_SYMLINK);
        ck_assert_ptr_null(find(&p, "/etc/alternatives/blas-tool"));  /* not named like a library */
        mntplan_free(&p);
}
END_TEST

START_TEST(test_finish_sorts_and_collapses)
{
        struct mnt_plan p;
        ck_assert_int_eq(mntplan_init(&p, root, NULL), 0);
        ck_assert_int_eq(mntplan_add(&p, "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3", NULL), 0);
        ck_assert_int_eq(mntplan_add(&p, "/etc/ld.so.cache", NULL), 0);
        ck_assert_int_eq(mntplan_add(&p, "/usr/lib/x86_64-linux-gnu", NULL), 0);
        mntplan_finish(&p);
        ck_assert_ptr_null(find(&p, "/usr/lib/x86_64-linux-gnu/blas"));
        ck_assert_ptr_null(find(&p, "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3"));
        assert_entry(&p, "/etc/ld.so.cache", MNT_OP_BIND);
        ck_assert(!find(&p, "/etc/ld.so.cache")->is_dir);
        for (size_t i = 1; i < p.n; i++)
                ck_assert_msg(strcmp(p.v[i - 1].path, p.v[i].path) < 0, "not sorted at %zu", i);
        mntplan_free(&p);
}
END_TEST

START_TEST(test_dotdot_missing_and_loops)
{
        struct mnt_plan p;
        struct jr_err err = { 0 };
        ck_assert_int_eq(mntplan_init(&p, root, NULL), 0);
        ck_assert_int_eq(mntplan_add(&p, "/usr/lib/../lib/python3.11/", NULL), 0);
        assert_entry(&p, "/usr/lib/python3.11", MNT_OP_BIND);
        size_t n = p.n;
        ck_assert_int_eq(mntplan_add(&p, "/nonexistent/dir", NULL), 0);
        ck_assert_int_eq(mntplan_add(&p, "/etc/shadow/x", NULL), 0);  /* not a directory */
        ck_assert_int_eq(p.n, n);
        ck_assert_int_eq(mntplan_add(&p, "/loop1", &err), -ELOOP);
        ck_assert_int_eq(mntplan_add(&p, "relative", &err), -EINVAL);
        mntplan_free(&p);
}
END_TEST

/* A zygote's plan, carried as its bound paths (jail/zsetup.c ->
 * jail/zygote.c): mnt_expected judges a child's mounts by it alone. */
START_TEST(test_bound_plan_judges_mounts)
{
        struct mnt_plan p;
        struct jr_err err = { 0 };
        ck_assert_int_eq(mntplan_init(&p, "", NULL), 0);
        ck_assert_int_eq(mntplan_add_bound(&p, "/usr/lib/python3.11", &err), 0);
        ck_assert_int_eq(mntplan_add_bound(&p, "/etc/ld.so.cache", &err), 0);
        ck_assert_int_eq(mntplan_add_bound(&p, "relative", &err), -EINVAL);
        ck_assert(mnt_expected(&p, "/usr/lib/python3.11"));
        ck_assert(mnt_expected(&p, "/usr/lib/python3.11/lib-dynload"));
        ck_assert(mnt_expected(&p, "/etc/ld.so.cache"));
        ck_assert(mnt_expected(&p, "/proc") && mnt_expected(&p, MNT_ZPROGRAM) && mnt_expected(&p, "/scratch"));
        ck_assert(!mnt_expected(&p, "/usr/lib"));
        ck_assert(!mnt_expected(&p, "/var/lib/jaild"));
        ck_assert(!mnt_expected(&p, "/etc"));
        mntplan_free(&p);
}
END_TEST

START_TEST(test_path_within)
{
        ck_assert(path_within("/usr/lib", "/usr"));
        ck_assert(path_within("/usr", "/usr"));
        ck_assert(!path_within("/usrx", "/usr"));
        ck_assert(!path_within("/us", "/usr"));
        ck_assert(path_within("/anything", "/"));
}
END_TEST

int main(void)
{
        Suite *s = suite_create("mntplan");
        TCase *tc = tcase_create("plan");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_maps_bind_loader_dirs);
        tcase_add_test(tc, test_symlink_chain);
        tcase_add_test(tc, test_links_into_plan_only);
        tcase_add_test(tc, test_links_name_filter);
        tcase_add_test(tc, test_finish_sorts_and_collapses);
        tcase_add_test(tc, test_dotdot_missing_and_loops);
        tcase_add_test(tc, test_path_within);
        tcase_add_test(tc, test_bound_plan_judges_mounts);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
