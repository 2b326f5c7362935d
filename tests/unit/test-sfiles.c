/* A session's files from jaild's side (supervisor/jaild/sfiles.c) against
 * a directory with hostile contents: symbolic links out and in, a FIFO, a
 * socket, a device node, hard links, another mount, deep paths, names
 * that are not UTF-8, more entries than a listing shows, a full disk.
 *
 * Each test runs in its own child (Check's fork) with a private mount
 * namespace and a fresh tmpfs at BASE: the session directory is BASE/s
 * (owned by NOBODY, as a jail's is), and BASE/outside is a file beyond it.
 * Root is needed (mounts, mknod, chown). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "supervisor/jaild/api.h"
#include "supervisor/jaild/sfiles.h"
#include "tests/unit/unit.h"

#define NOBODY 65534

static char base[64];
static char sdir[96];

/* The session directory on a fresh tmpfs (mount options opts), as an fd. */
static int session(const char *opts)
{
        ck_assert_int_eq(unshare(CLONE_NEWNS), 0);
        ck_assert_int_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
        ck_assert_int_eq(mount("tmpfs", base, "tmpfs", 0, opts ? opts : "size=16m"), 0);
        ck_assert_int_eq(mkdir(sdir, 0755), 0);
        ck_assert_int_eq(chown(sdir, NOBODY, NOBODY), 0);
        char out[128];
        snprintf(out, sizeof out, "%s/outside", base);
        int fd = open(out, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, "secret", 6), 6);
        close(fd);
        fd = open(sdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        return fd;
}

/* Writes text as name beneath dirfd (test set-up, plain syscalls). */
static void plant(int dirfd, const char *name, const char *text)
{
        int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        ck_assert_msg(fd >= 0, "plant %s: %s", name, strerror(errno));
        ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        close(fd);
}

static char *slurp(int dirfd, const char *name, size_t *len)
{
        static char buf[4096];
        int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        ck_assert_msg(fd >= 0, "read %s: %s", name, strerror(errno));
        ssize_t n = read(fd, buf, sizeof buf - 1);
        ck_assert_int_ge(n, 0);
        close(fd);
        buf[n] = '\0';
        *len = (size_t)n;
        return buf;
}

static const char *outside_text(void)
{
        static char text[64];
        char out[128];
        snprintf(out, sizeof out, "%s/outside", base);
        int fd = open(out, O_RDONLY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ssize_t n = read(fd, text, sizeof text - 1);
        close(fd);
        text[n < 0 ? 0 : n] = '\0';
        return text;
}

/* sfiles_get of path: its error (0 when it passed), and err. */
static int get(int dirfd, const char *path, size_t max, struct sfiles_out *out, struct jr_err *err)
{
        *err = (struct jr_err){ 0 };
        return sfiles_get(dirfd, path, max, out, err);
}

START_TEST(get_a_file_binary_and_capped)
{
        int d = session(NULL);
        ck_assert_int_eq(mkdirat(d, "sub", 0755), 0);
        int fd = openat(d, "sub/bin", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        ck_assert_int_eq(write(fd, "a\0b\xff", 4), 4);
        close(fd);
        struct sfiles_out o;
        struct jr_err err;
        ck_assert_int_eq(get(d, "sub/bin", 4, &o, &err), 0);
        ck_assert_ptr_null(o.listing);
        ck_assert_uint_eq(o.len, 4);
        ck_assert(memcmp(o.data, "a\0b\xff", 4) == 0);
        sfiles_out_free(&o);
        ck_assert_int_eq(get(d, "sub/bin", 3, &o, &err), -EFBIG);
        ck_assert_str_eq(err.msg, "sub/bin: the file is 4 bytes, over the limit of 3 bytes");
        ck_assert_ptr_null(o.data);
        const char *type;
        ck_assert_uint_eq(sfiles_status(-EFBIG, &type), 413);
        plant(d, "empty", "");
        ck_assert_int_eq(get(d, "empty", 0, &o, &err), 0);
        ck_assert_uint_eq(o.len, 0);
        ck_assert_ptr_null(o.listing);
        sfiles_out_free(&o);
}
END_TEST

/* A file the jail appends to while jaild reads it: every answer is at
 * most the cap (cut at the size fstat saw), or the cap's refusal. */
START_TEST(get_a_growing_file)
{
        int d = session("size=64m");
        plant(d, "grow", "");
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                static char chunk[4096];
                int fd = openat(d, "grow", O_WRONLY | O_APPEND | O_CLOEXEC);
                for (int i = 0; fd >= 0 && i < 8192; i++)  /* up to 32 MiB */
                        if (write(fd, chunk, sizeof chunk) != (ssize_t)sizeof chunk)
                                _exit(1);
                _exit(0);
        }
        const size_t max = 1 << 20;
        int refused = 0;
        while (!refused) {
                struct sfiles_out o;
                struct jr_err err;
                int r = get(d, "grow", max, &o, &err);
                ck_assert_msg(r == 0 || r == -EFBIG, "%d: %s", r, err.msg);
                refused = r == -EFBIG;
                ck_assert_uint_le(o.len, max);
                sfiles_out_free(&o);
        }
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

START_TEST(get_lists_a_directory)
{
        int d = session(NULL);
        plant(d, "b.txt", "hello");
        ck_assert_int_eq(mkdirat(d, "a", 0755), 0);
        ck_assert_int_eq(mkfifoat(d, "c.fifo", 0600), 0);
        ck_assert_int_eq(symlinkat("b.txt", d, "d.link"), 0);
        plant(d, "\xff\xfe", "x");  /* not UTF-8 */
        struct sfiles_out o;
        struct jr_err err;
        ck_assert_int_eq(get(d, "", 100, &o, &err), 0);
        ck_assert_ptr_null(o.data);
        char *text = json_dumps(o.listing, JSON_SORT_KEYS);
        ck_assert_str_eq(text, "{\"entries\": [{\"name\": \"a\", \"size\": 0, \"type\": \"dir\"}, "
                               "{\"name\": \"b.txt\", \"size\": 5, \"type\": \"file\"}, "
                               "{\"name\": \"c.fifo\", \"size\": 0, \"type\": \"other\"}, "
                               "{\"name\": \"d.link\", \"size\": 0, \"type\": \"other\"}, "
                               "{\"name\": \"??\", \"size\": 1, \"type\": \"file\"}], "
                               "\"path\": \"\", \"truncated\": false}");
        free(text);
        sfiles_out_free(&o);
        ck_assert_int_eq(get(d, "a", 100, &o, &err), 0);
        ck_assert_str_eq(json_string_value(json_object_get(o.listing, "path")), "a");
        ck_assert_uint_eq(json_array_size(json_object_get(o.listing, "entries")), 0);
        sfiles_out_free(&o);
}
END_TEST

START_TEST(get_caps_a_huge_listing)
{
        int d = session("size=16m,nr_inodes=20000");
        ck_assert_int_eq(mkdirat(d, "many", 0755), 0);
        int m = openat(d, "many", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        for (int i = 0; i < SFILES_MAX_ENTRIES + 5; i++) {
                char name[16];
                snprintf(name, sizeof name, "%05d", i);
                int fd = openat(m, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
                ck_assert_int_ge(fd, 0);
                close(fd);
        }
        close(m);
        struct sfiles_out o;
        struct jr_err err;
        ck_assert_int_eq(get(d, "many", 100, &o, &err), 0);
        ck_assert_uint_eq(json_array_size(json_object_get(o.listing, "entries")), SFILES_MAX_ENTRIES);
        ck_assert(json_is_true(json_object_get(o.listing, "truncated")));
        sfiles_out_free(&o);
}
END_TEST

/* A tmpfs mounted at s/mnt: the path crosses into another mount. */
static void mount_inside(int d)
{
        ck_assert_int_eq(mkdirat(d, "mnt", 0755), 0);
        char mnt[128];
        snprintf(mnt, sizeof mnt, "%s/mnt", sdir);
        ck_assert_int_eq(mount("tmpfs", mnt, "tmpfs", 0, "size=1m"), 0);
        plant(d, "mnt/x", "other mount");
}

/* Symbolic links out (relative and absolute) and in, a FIFO, a socket, a
 * device node, another mount: each refused with its reason, never
 * followed, opened or blocked on. */
START_TEST(get_refuses_the_hostile)
{
        int d = session(NULL);
        char abs[128];
        snprintf(abs, sizeof abs, "%s/outside", base);
        ck_assert_int_eq(symlinkat("../outside", d, "rel"), 0);
        ck_assert_int_eq(symlinkat(abs, d, "abs"), 0);
        ck_assert_int_eq(symlinkat("..", d, "up"), 0);
        plant(d, "f", "in");
        ck_assert_int_eq(symlinkat("f", d, "in"), 0);
        ck_assert_int_eq(mkfifoat(d, "fifo", 0666), 0);
        ck_assert_int_eq(mknodat(d, "null", S_IFCHR | 0666, makedev(1, 3)), 0);
        int sk = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s/sock", sdir);
        ck_assert_int_eq(bind(sk, (struct sockaddr *)&sa, sizeof sa), 0);
        mount_inside(d);
        static const struct {
                const char *path;
                int r;
                const char *msg;
        } cases[] = {
                { "rel", -ELOOP, "rel: the path holds a symbolic link, which is not followed" },
                { "abs", -ELOOP, "abs: the path holds a symbolic link, which is not followed" },
                { "in", -ELOOP, "in: the path holds a symbolic link, which is not followed" },
                { "up/outside", -ELOOP, "up/outside: the path holds a symbolic link, which is not followed" },
                { "fifo", -EINVAL, "fifo: not a regular file or directory (a FIFO)" },
                { "sock", -EINVAL, "sock: not a regular file or directory (a socket)" },
                { "null", -EINVAL, "null: not a regular file or directory (a device node)" },
                { "mnt", -EXDEV, "mnt: the path leaves the session directory" },
                { "mnt/x", -EXDEV, "mnt/x: the path leaves the session directory" },
                { "f/x", -ENOTDIR, "f/x: a part of the path is not a directory" },
                { "missing", -ENOENT, "missing: no such file or directory" },
                { "../outside", -EINVAL, "a file path has a '..' segment" },
                { "/etc/passwd", -EINVAL, "a file path is relative to the session directory" },
                { "a//b", -EINVAL, "a file path has an empty segment (a doubled or trailing slash)" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct sfiles_out o;
                struct jr_err err;
                ck_assert_msg(get(d, cases[i].path, 1 << 20, &o, &err) == cases[i].r, "%s: %s", cases[i].path,
                              err.msg);
                ck_assert_str_eq(err.msg, cases[i].msg);
                ck_assert_ptr_null(o.data);
                ck_assert_ptr_null(o.listing);
                const char *type;
                unsigned status = sfiles_status(cases[i].r, &type);
                ck_assert_uint_eq(status, cases[i].r == -ENOENT ? 404 : 400);
        }
        close(sk);
}
END_TEST

static struct stat stat_of(int d, const char *name)
{
        struct stat st;
        ck_assert_msg(fstatat(d, name, &st, AT_SYMLINK_NOFOLLOW) == 0, "%s: %s", name, strerror(errno));
        return st;
}

/* No temporary file is left beside what a PUT wrote, or failed to. */
static void no_temp_left(int d, const char *dir)
{
        struct sfiles_out o;
        struct jr_err err;
        ck_assert_int_eq(get(d, dir, 0, &o, &err), 0);
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(o.listing, "entries"), i, e)
                ck_assert_msg(strncmp(json_string_value(json_object_get(e, "name")), SFILES_TMP,
                                      strlen(SFILES_TMP)) != 0, "temporary file left");
        sfiles_out_free(&o);
}

START_TEST(put_writes_owned_by_the_jail)
{
        int d = session(NULL);
        ck_assert_int_eq(mkdirat(d, "sub", 0755), 0);
        /* jaild writes as the session directory's owner: what is in it is the jail's */
        ck_assert_int_eq(fchownat(d, "sub", NOBODY, NOBODY, AT_SYMLINK_NOFOLLOW), 0);
        struct jr_err err = { 0 };
        umask(077);  /* jaild's umask does not decide the mode */
        ck_assert_int_eq(sfiles_put(d, "sub/new.bin", "a\0b", 3, &err), 0);
        struct stat st = stat_of(d, "sub/new.bin");
        ck_assert_uint_eq(st.st_uid, NOBODY);
        ck_assert_uint_eq(st.st_gid, NOBODY);
        ck_assert_uint_eq(st.st_mode & 07777, 0644);
        ck_assert_uint_eq(st.st_size, 3);
        /* Replacing a root-owned 0600 file: the new one is the jail's. */
        plant(d, "old", "old text");
        ck_assert_int_eq(sfiles_put(d, "old", "new", 3, &err), 0);
        size_t len;
        ck_assert_str_eq(slurp(d, "old", &len), "new");
        st = stat_of(d, "old");
        ck_assert_uint_eq(st.st_uid, NOBODY);
        ck_assert_uint_eq(st.st_mode & 07777, 0644);
        ck_assert_int_eq(sfiles_put(d, "empty", "", 0, &err), 0);
        ck_assert_int_eq(stat_of(d, "empty").st_size, 0);
        no_temp_left(d, "");
        no_temp_left(d, "sub");
}
END_TEST

/* A name that is a hard link, a symbolic link out or a FIFO is replaced
 * as a name: nothing is written through it, nothing blocks. */
START_TEST(put_replaces_names_not_what_they_point_to)
{
        int d = session(NULL);
        plant(d, "a", "shared");
        ck_assert_int_eq(linkat(d, "a", d, "b", 0), 0);
        struct jr_err err = { 0 };
        ck_assert_int_eq(sfiles_put(d, "a", "mine", 4, &err), 0);
        size_t len;
        ck_assert_str_eq(slurp(d, "a", &len), "mine");
        ck_assert_str_eq(slurp(d, "b", &len), "shared");
        ck_assert_int_eq(symlinkat("../outside", d, "evil"), 0);
        ck_assert_int_eq(sfiles_put(d, "evil", "x", 1, &err), 0);
        ck_assert(S_ISREG(stat_of(d, "evil").st_mode));
        ck_assert_str_eq(outside_text(), "secret");
        ck_assert_int_eq(mkfifoat(d, "fifo", 0666), 0);
        ck_assert_int_eq(sfiles_put(d, "fifo", "y", 1, &err), 0);
        ck_assert(S_ISREG(stat_of(d, "fifo").st_mode));
        no_temp_left(d, "");
}
END_TEST

START_TEST(put_refuses)
{
        int d = session(NULL);
        ck_assert_int_eq(mkdirat(d, "dir", 0755), 0);
        plant(d, "file", "x");
        ck_assert_int_eq(symlinkat("dir", d, "link"), 0);
        ck_assert_int_eq(symlinkat("..", d, "up"), 0);
        mount_inside(d);
        static const struct {
                const char *path;
                int r;
                unsigned status;
                const char *msg;
        } cases[] = {
                { "no/such/x", -ENOENT, 404, "no/such/x: the directory 'no/such' does not exist" },
                { "dir", -EISDIR, 400, "dir: is a directory" },
                { "link/x", -ELOOP, 400, "link/x: the path holds a symbolic link, which is not followed" },
                { "up/outside", -ELOOP, 400, "up/outside: the path holds a symbolic link, which is not followed" },
                { "file/x", -ENOTDIR, 400, "file/x: a part of the path is not a directory" },
                { "mnt/y", -EXDEV, 400, "mnt/y: the path leaves the session directory" },
                { "", -EINVAL, 400, "a file path is 1 to 4096 bytes" },
                { "../outside", -EINVAL, 400, "a file path has a '..' segment" },
                { "dir/", -EINVAL, 400, "a file path has an empty segment (a doubled or trailing slash)" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct jr_err err = { 0 };
                ck_assert_msg(sfiles_put(d, cases[i].path, "data", 4, &err) == cases[i].r, "%s: %s",
                              cases[i].path, err.msg);
                ck_assert_str_eq(err.msg, cases[i].msg);
                const char *type;
                ck_assert_uint_eq(sfiles_status(cases[i].r, &type), cases[i].status);
        }
        ck_assert_str_eq(outside_text(), "secret");
        no_temp_left(d, "");
        no_temp_left(d, "dir");
}
END_TEST

START_TEST(put_on_a_full_directory)
{
        int d = session("size=1m");
        static char big[2 << 20];
        struct jr_err err = { 0 };
        ck_assert_int_eq(sfiles_put(d, "big", big, sizeof big, &err), -ENOSPC);
        ck_assert_str_eq(err.msg, "big: the session directory is full (1 MiB)");
        const char *type;
        ck_assert_uint_eq(sfiles_status(-ENOSPC, &type), 507);
        ck_assert_str_eq(type, "InsufficientStorageError");
        /* Nothing is left behind: the room is there for the next write. */
        no_temp_left(d, "");
        ck_assert_int_eq(sfiles_put(d, "small", big, 512 << 10, &err), 0);
}
END_TEST

START_TEST(deep_and_long_paths)
{
        int d = session(NULL);
        char path[API_PATH_MAX + 16] = "";
        size_t n = 0;
        /* 1350 levels of "dd/" (4053 bytes with the file's name) */
        for (int i = 0; i < 1350; i++) {
                memcpy(path + n, "dd", 2);
                path[n + 2] = '\0';
                ck_assert_int_eq(mkdirat(d, path, 0755), 0);
                ck_assert_int_eq(fchownat(d, path, NOBODY, NOBODY, AT_SYMLINK_NOFOLLOW), 0);
                path[n + 2] = '/';
                n += 3;
        }
        memcpy(path + n, "f.x", 4);
        ck_assert_uint_eq(strlen(path), 4053);
        struct jr_err err = { 0 };
        ck_assert_int_eq(sfiles_put(d, path, "deep", 4, &err), 0);
        struct sfiles_out o;
        ck_assert_int_eq(get(d, path, 10, &o, &err), 0);
        ck_assert_uint_eq(o.len, 4);
        sfiles_out_free(&o);
        memset(path + n, 'y', API_PATH_MAX + 1 - n);
        path[API_PATH_MAX + 1] = '\0';
        ck_assert_int_eq(get(d, path, 10, &o, &err), -EINVAL);
        ck_assert_int_eq(sfiles_put(d, path, "x", 1, &err), -EINVAL);
        ck_assert_int_eq(sfiles_delete(d, path, &err), -EINVAL);
}
END_TEST

START_TEST(delete_names)
{
        int d = session(NULL);
        plant(d, "f", "x");
        ck_assert_int_eq(symlinkat("../outside", d, "link"), 0);
        ck_assert_int_eq(mkdirat(d, "empty", 0755), 0);
        ck_assert_int_eq(mkdirat(d, "full", 0755), 0);
        plant(d, "full/x", "x");
        ck_assert_int_eq(symlinkat("full", d, "ldir"), 0);
        ck_assert_int_eq(mkfifoat(d, "fifo", 0666), 0);
        struct jr_err err = { 0 };
        ck_assert_int_eq(sfiles_delete(d, "f", &err), 0);
        ck_assert_int_eq(faccessat(d, "f", F_OK, AT_SYMLINK_NOFOLLOW), -1);
        ck_assert_int_eq(sfiles_delete(d, "link", &err), 0);  /* the link goes, not its target */
        ck_assert_str_eq(outside_text(), "secret");
        ck_assert_int_eq(sfiles_delete(d, "empty", &err), 0);
        ck_assert_int_eq(sfiles_delete(d, "fifo", &err), 0);
        ck_assert_int_eq(sfiles_delete(d, "full", &err), -ENOTEMPTY);
        ck_assert_str_eq(err.msg, "full: the directory is not empty");
        const char *type;
        ck_assert_uint_eq(sfiles_status(-ENOTEMPTY, &type), 409);
        ck_assert_int_eq(sfiles_delete(d, "ldir/x", &err), -ELOOP);
        ck_assert_int_eq(sfiles_delete(d, "gone", &err), -ENOENT);
        ck_assert_int_eq(sfiles_delete(d, "", &err), -EINVAL);
        ck_assert_int_eq(sfiles_delete(d, "..", &err), -EINVAL);
        ck_assert_int_eq(sfiles_delete(d, "full/x", &err), 0);
        ck_assert_int_eq(sfiles_delete(d, "full", &err), 0);
}
END_TEST

START_TEST(status_of_each_error)
{
        static const struct {
                int r;
                unsigned status;
                const char *type;
        } cases[] = {
                { -ENOENT, 404, "NotFoundError" },         { -EINVAL, 400, "ValueError" },
                { -ELOOP, 400, "ValueError" },             { -EXDEV, 400, "ValueError" },
                { -ENOTDIR, 400, "ValueError" },           { -EISDIR, 400, "ValueError" },
                { -ENOTEMPTY, 409, "ConflictError" },      { -EFBIG, 413, "PayloadTooLargeError" },
                { -ENOSPC, 507, "InsufficientStorageError" }, { -EDQUOT, 507, "InsufficientStorageError" },
                { -EIO, 500, "InternalError" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const char *type = NULL;
                ck_assert_uint_eq(sfiles_status(cases[i].r, &type), cases[i].status);
                ck_assert_str_eq(type, cases[i].type);
        }
}
END_TEST

int main(void)
{
        if (geteuid() != 0) {
                fprintf(stderr, "test-sfiles: needs root (mounts, mknod, chown); skipped\n");
                return 77;
        }
        snprintf(base, sizeof base, "/tmp/jr-sfiles-XXXXXX");
        if (!mkdtemp(base)) {
                perror("test-sfiles: mkdtemp");
                return 99;
        }
        snprintf(sdir, sizeof sdir, "%s/s", base);
        Suite *s = suite_create("sfiles");
        TCase *tc = tcase_create("sfiles");
        tcase_set_timeout(tc, 60);  /* ten thousand files made on a slow host */
        tcase_add_test(tc, get_a_file_binary_and_capped);
        tcase_add_test(tc, get_a_growing_file);
        tcase_add_test(tc, get_lists_a_directory);
        tcase_add_test(tc, get_caps_a_huge_listing);
        tcase_add_test(tc, get_refuses_the_hostile);
        tcase_add_test(tc, put_writes_owned_by_the_jail);
        tcase_add_test(tc, put_replaces_names_not_what_they_point_to);
        tcase_add_test(tc, put_refuses);
        tcase_add_test(tc, put_on_a_full_directory);
        tcase_add_test(tc, deep_and_long_paths);
        tcase_add_test(tc, delete_names);
        tcase_add_test(tc, status_of_each_error);
        suite_add_tcase(s, tc);
        int r = unit_run(s);
        rmdir(base);  /* each test's tmpfs went with its child's mount namespace */
        return r;
}
