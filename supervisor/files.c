#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "supervisor/files.h"
#include "supervisor/log.h"

#define RESOLVE_STRICT (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)

void files_init(struct files *f, const struct files_cfg *cfg)
{
        *f = (struct files){ .cfg = cfg, .dirfd = -1 };
}

void files_close(struct files *f)
{
        closep(&f->dirfd);
}

__attribute__((format(printf, 1, 2)))
static json_t *fail(const char *fmt, ...)
{
        char msg[600];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        return json_pack("{s:s}", "error", jr_utf8_clean(msg));
}

/* What went wrong with `path`, in the user's terms. */
static json_t *errno_fail(int e, const char *path)
{
        switch (e) {
        case ENOENT: return fail("%.200s: no such file or directory", path);
        case ELOOP: return fail("%.200s: the path holds a symbolic link, which ctx.files does not follow", path);
        case EXDEV: return fail("%.200s: the path leaves the workspace", path);
        case EISDIR: return fail("%.200s: is a directory", path);
        case ENOTDIR: return fail("%.200s: a part of the path is not a directory", path);
        case ENOTEMPTY: return fail("%.200s: the directory is not empty", path);
        case ENOSPC: return fail("%.200s: the host's disk is full", path);
        default: return fail("%.200s: %s", path, strerror(e));
        }
}

/* A path the worker may give: relative, 1 to FILES_MAX_PATH bytes, no
 * ".." component (the kernel refuses escapes anyway; this says why). */
static json_t *bad_path(const char *p, int dir_ok)
{
        size_t n = strlen(p);
        if (n == 0 || n > FILES_MAX_PATH)
                return fail("a path is 1 to %d bytes", FILES_MAX_PATH);
        if (p[0] == '/')
                return fail("%.200s: paths are relative to the workspace", p);
        for (const char *c = p; *c;) {
                size_t k = strcspn(c, "/");
                if (k == 2 && c[0] == '.' && c[1] == '.')
                        return fail("%.200s: '..' is not allowed in a path", p);
                if (k > 255)
                        return fail("%.200s: a name in a path is at most 255 bytes", p);
                c += k + (c[k] == '/');
        }
        if (!dir_ok && (strcmp(p, ".") == 0 || p[n - 1] == '/'))
                return fail("%.200s: names a directory, not a file", p);
        return NULL;
}

static int resolve(int dirfd, const char *path, uint64_t flags, uint64_t mode)
{
        struct open_how how = { .flags = flags | O_CLOEXEC, .mode = mode, .resolve = RESOLVE_STRICT };
        int fd;
        do
                fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
        while (fd < 0 && (errno == EINTR || errno == EAGAIN));
        return fd < 0 ? -errno : fd;
}

/* The workspace, created (0700, with its parents) on first use. Why it
 * cannot be goes to the operator's log: its path is not the jail's to know. */
static json_t *workspace_open(struct files *f)
{
        if (f->dirfd >= 0)
                return NULL;
        char dir[PATH_MAX];
        if (jr_snprintf(dir, sizeof dir, "%s", f->cfg->root) < 0)
                return fail("workspace path too long");
        for (char *p = dir + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                        return fail("workspace unavailable: mkdir %s: %s", dir, strerror(errno));
                *p = '/';
        }
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return fail("workspace unavailable: mkdir %s: %s", dir, strerror(errno));
        f->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (f->dirfd < 0)
                return fail("workspace unavailable: %s: %s", dir, strerror(errno));
        return NULL;
}

static json_t *workspace(struct files *f)
{
        json_t *r = workspace_open(f);
        if (r) {
                log_msg("ctx.files: %s", json_string_value(json_object_get(r, "error")));
                json_decref(r);
                return fail("the workspace is unavailable (the operator's log says why)");
        }
        return NULL;
}

/* Splits path into its directory (opened strictly, created component by
 * component when `make`) and its last component, in *base. */
static int open_parent(struct files *f, const char *path, int make, const char **base)
{
        char buf[FILES_MAX_PATH + 1];
        snprintf(buf, sizeof buf, "%s", path);
        char *slash = strrchr(buf, '/');
        *base = slash ? path + (slash - buf) + 1 : path;
        int cur = dup(f->dirfd);
        if (cur < 0 || !slash)
                return cur < 0 ? -errno : cur;
        *slash = '\0';
        for (char *save = NULL, *c = strtok_r(buf, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
                if (strcmp(c, ".") == 0)
                        continue;
                if (make && mkdirat(cur, c, 0700) < 0 && errno != EEXIST) {
                        int e = -errno;
                        close(cur);
                        return e;
                }
                int next = resolve(cur, c, O_RDONLY | O_DIRECTORY, 0);
                close(cur);
                if (next < 0)
                        return next;
                cur = next;
        }
        return cur;
}

/* Bytes of regular files below dirfd (which it consumes), or -errno. */
static int64_t usage(int dirfd, int depth, long *entries)
{
        DIR *d = fdopendir(dirfd);
        if (!d) {
                int e = -errno;
                close(dirfd);
                return e;
        }
        int64_t total = 0;
        struct dirent *de;
        while (total >= 0 && (de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                struct stat st;
                if (++*entries > FILES_MAX_INODES || fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        total = *entries > FILES_MAX_INODES ? -E2BIG : errno == ENOENT ? total : -errno;
                        continue;
                }
                if (S_ISREG(st.st_mode)) {
                        total += st.st_size;
                } else if (S_ISDIR(st.st_mode)) {
                        if (depth >= FILES_MAX_DEPTH) {
                                total = -E2BIG;
                                continue;
                        }
                        int sub = resolve(dirfd, de->d_name, O_RDONLY | O_DIRECTORY, 0);
                        int64_t u = sub < 0 ? sub : usage(sub, depth + 1, entries);
                        total = u < 0 ? (u == -ENOENT ? total : u) : total + u;
                }
        }
        closedir(d);
        return total;
}

json_t *files_read(struct files *f, const char *path, void **data, size_t *len)
{
        *data = NULL;
        *len = 0;
        json_t *e = bad_path(path, 0);
        if (e || (e = workspace(f)))
                return e;
        /* O_NONBLOCK: a FIFO someone planted opens at once (and is then
         * refused) instead of hanging the supervisor. */
        _cleanup_close_ int fd = resolve(f->dirfd, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0);
        struct stat st;
        if (fd < 0)
                return errno_fail(-fd, path);
        if (fstat(fd, &st) < 0)
                return errno_fail(errno, path);
        if (S_ISDIR(st.st_mode))
                return errno_fail(EISDIR, path);
        if (!S_ISREG(st.st_mode))
                return fail("%.200s: not a regular file", path);
        if ((uint64_t)st.st_size > f->cfg->max_read)
                return fail("%.200s: the file is %lld bytes; read returns at most %llu", path,
                            (long long)st.st_size, (unsigned long long)f->cfg->max_read);
        _cleanup_free_ unsigned char *buf = malloc((size_t)st.st_size + 1);
        size_t got = 0;
        if (!buf)
                return NULL;
        while (got < (size_t)st.st_size) {  /* a file growing meanwhile is cut at the size seen */
                ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return errno_fail(errno, path);
                if (n == 0)
                        break;
                got += (size_t)n;
        }
        json_t *r = json_pack("{s:I}", "size", (json_int_t)got);
        if (r) {
                *data = TAKE_PTR(buf);
                *len = got;
        }
        return r;
}

static json_t *write_locked(struct files *f, const char *path, const void *data, size_t len)
{
        /* Refused before any directory is made: a write that fails leaves
         * nothing behind. */
        int depth = 0;
        for (const char *c = path; *c; c++)
                depth += *c == '/';
        if (depth >= FILES_MAX_DEPTH)
                return fail("%.200s: paths are at most %d directories deep", path, FILES_MAX_DEPTH - 1);
        long entries = 0;
        /* A fresh open, not a dup: a dup shares the directory's offset. */
        int top = openat(f->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int64_t used = top < 0 ? -errno : usage(top, 0, &entries);
        if (used < 0)
                return used == -E2BIG ? fail("the workspace holds more than %d files and directories, or is nested "
                                             "deeper than %d", FILES_MAX_INODES, FILES_MAX_DEPTH)
                                      : fail("measuring the workspace: %s", strerror((int)-used));
        /* The file being replaced, if its directory exists: judged before
         * any directory is made. */
        const char *base;
        struct stat st;
        int64_t existing = 0;
        int probe = open_parent(f, path, 0, &base);
        if (probe >= 0 && fstatat(probe, base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
                int bad = S_ISDIR(st.st_mode) ? EISDIR : S_ISLNK(st.st_mode) ? ELOOP : 0;
                if (!bad && S_ISREG(st.st_mode))
                        existing = st.st_size;
                if (bad) {
                        close(probe);
                        return errno_fail(bad, path);
                }
        }
        if (probe >= 0)
                close(probe);
        if ((uint64_t)(used - existing) + len > f->cfg->quota)
                return fail("the workspace quota of %llu bytes would be exceeded: it holds %lld, this write "
                            "needs %zu", (unsigned long long)f->cfg->quota, (long long)used, len);
        _cleanup_close_ int parent = open_parent(f, path, 1, &base);
        if (parent < 0)
                return errno_fail(-parent, path);
        char tmp[64];
        snprintf(tmp, sizeof tmp, ".jailrun-tmp-%d-%lu", (int)getpid(), f->seq++);
        int fd = openat(parent, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return errno_fail(errno, path);
        int err = 0;
        for (size_t done = 0; !err && done < len;) {
                ssize_t n = write(fd, (const char *)data + done, len - done);
                if (n < 0 && errno != EINTR)
                        err = errno;
                else if (n > 0)
                        done += (size_t)n;
        }
        if (!err && fsync(fd) < 0)
                err = errno;
        if (close(fd) < 0 && !err)
                err = errno;
        if (!err && renameat(parent, tmp, parent, base) < 0)
                err = errno;
        if (err) {
                unlinkat(parent, tmp, 0);
                return errno_fail(err, path);
        }
        if (fsync(parent) < 0)
                return errno_fail(errno, path);
        return json_pack("{s:b, s:I}", "ok", 1, "size", (json_int_t)len);
}

json_t *files_write(struct files *f, const char *path, const void *data, size_t len)
{
        json_t *e = bad_path(path, 0);
        if (e || (e = workspace(f)))
                return e;
        /* One writer per workspace at a time, across jailruns: the quota
         * is measured and the file replaced under the lock. Never a
         * blocking wait: whoever holds the lock (another jailrun's write
         * takes milliseconds; anyone else who can open the directory could
         * hold it for ever) gets FILES_LOCK_TRIES short tries, then the
         * worker an error, and the supervisor's loop goes on. */
        int tries = 0;
        while (flock(f->dirfd, LOCK_EX | LOCK_NB) < 0) {
                if (errno != EWOULDBLOCK && errno != EINTR)
                        return fail("locking the workspace: %s", strerror(errno));
                if (++tries >= FILES_LOCK_TRIES)
                        return fail("the workspace is busy (another writer holds it); try again");
                nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
        }
        json_t *r = write_locked(f, path, data, len);
        flock(f->dirfd, LOCK_UN);
        return r;
}

static int by_name(const void *a, const void *b)
{
        return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "name")),
                      json_string_value(json_object_get(*(json_t *const *)b, "name")));
}

json_t *files_list(struct files *f, const char *path)
{
        json_t *e = bad_path(path, 1);
        if (e || (e = workspace(f)))
                return e;
        int fd = resolve(f->dirfd, path, O_RDONLY | O_DIRECTORY, 0);
        if (fd < 0)
                return errno_fail(-fd, path);
        DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return errno_fail(errno, path);
        }
        json_t *items[FILES_MAX_ENTRIES];
        size_t n = 0;
        struct dirent *de;
        json_t *r = NULL;
        while ((de = readdir(d))) {
                struct stat st;
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
                    strncmp(de->d_name, ".jailrun-tmp-", 13) == 0 ||
                    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (n == FILES_MAX_ENTRIES) {
                        r = fail("%.200s: more than %d entries", path, FILES_MAX_ENTRIES);
                        break;
                }
                const char *type = S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir"
                                 : S_ISLNK(st.st_mode) ? "symlink" : "other";
                json_t *name = json_string(de->d_name);
                items[n] = json_pack("{s:o*, s:s, s:I}", "name", name ? name : json_string("?"), "type", type,
                                     "size", (json_int_t)(S_ISREG(st.st_mode) ? st.st_size : 0));
                if (items[n])
                        n++;
        }
        closedir(d);
        qsort(items, n, sizeof items[0], by_name);
        json_t *arr = r ? NULL : json_array();
        for (size_t i = 0; i < n; i++)
                if (!arr || json_array_append_new(arr, items[i]) < 0)
                        json_decref(items[i]);
        return r ? r : arr ? json_pack("{s:o}", "entries", arr) : NULL;
}

json_t *files_delete(struct files *f, const char *path)
{
        json_t *e = bad_path(path, 0);
        if (e || (e = workspace(f)))
                return e;
        const char *base;
        _cleanup_close_ int parent = open_parent(f, path, 0, &base);
        struct stat st;
        if (parent < 0)
                return errno_fail(-parent, path);
        if (fstatat(parent, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno_fail(errno, path);
        if (unlinkat(parent, base, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) < 0)
                return errno_fail(errno, path);
        if (fsync(parent) < 0)
                return errno_fail(errno, path);
        return json_pack("{s:b}", "ok", 1);
}

json_t *files_exists(struct files *f, const char *path)
{
        json_t *e = bad_path(path, 1);
        if (e || (e = workspace(f)))
                return e;
        int fd = resolve(f->dirfd, path, O_PATH | O_NOFOLLOW, 0);
        if (fd >= 0) {
                close(fd);
                return json_true();
        }
        return fd == -ENOENT || fd == -ENOTDIR ? json_false() : errno_fail(-fd, path);
}

json_t *files_size(struct files *f, const char *path)
{
        json_t *e = bad_path(path, 0);
        if (e || (e = workspace(f)))
                return e;
        _cleanup_close_ int fd = resolve(f->dirfd, path, O_PATH | O_NOFOLLOW, 0);
        struct stat st;
        if (fd < 0)
                return errno_fail(-fd, path);
        if (fstat(fd, &st) < 0)
                return errno_fail(errno, path);
        if (!S_ISREG(st.st_mode))
                return S_ISDIR(st.st_mode) ? errno_fail(EISDIR, path) : fail("%.200s: not a regular file", path);
        return json_integer((json_int_t)st.st_size);
}
