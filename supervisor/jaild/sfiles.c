/* A session's files from jaild's side (sfiles.h): reads, listings,
 * atomic writes and removals beneath one directory fd the jail owns. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "supervisor/jaild/api.h"
#include "supervisor/jaild/sfiles.h"

#define RESOLVE_STRICT (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir);

static int fail(struct jr_err *err, int e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* err's message is exactly fmt's (no strerror appended): these go to an
 * API client as they are. Returns -e. */
static int fail(struct jr_err *err, int e, const char *fmt, ...)
{
        if (err) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(err->msg, sizeof err->msg, fmt, ap);
                va_end(ap);
                err->errnum = e;
        }
        return -e;
}

/* A name as a JSON string, made valid UTF-8 first ('?' for each bad
 * byte) if it is not; NULL without memory. (The engine's jr_json_text
 * does the same, but linking it pulls the whole engine in.) */
static json_t *name_json(const char *s)
{
        json_t *v = json_string(s);
        if (v)
                return v;
        _cleanup_free_ char *copy = strdup(s);
        return copy ? json_string(jr_utf8_clean(copy)) : NULL;
}

/* The size of the filesystem holding dirfd, in MiB, for "full" messages. */
static unsigned long long fs_mib(int dirfd)
{
        struct statfs sf;
        if (fstatfs(dirfd, &sf) < 0)
                return 0;
        return (unsigned long long)sf.f_blocks * (unsigned long long)sf.f_bsize >> 20;
}

/* What went wrong with path, in the client's terms. Returns -e. */
static int fail_errno(struct jr_err *err, int e, int dirfd, const char *path)
{
        const char *p = path[0] ? path : ".";
        switch (e) {
        case ENOENT: return fail(err, e, "%.300s: no such file or directory", p);
        case ELOOP: return fail(err, e, "%.300s: the path holds a symbolic link, which is not followed", p);
        case EXDEV: return fail(err, e, "%.300s: the path leaves the session directory", p);
        case ENOTDIR: return fail(err, e, "%.300s: a part of the path is not a directory", p);
        case EISDIR: return fail(err, e, "%.300s: is a directory", p);
        case ENOTEMPTY: return fail(err, e, "%.300s: the directory is not empty", p);
        case ENOSPC:
        case EDQUOT:
                return fail(err, e, "%.300s: the session directory is full (%llu MiB)", p, fs_mib(dirfd));
        default: return fail(err, e, "%.300s: %s", p, strerror(e));
        }
}

/* openat2 beneath dirfd, no link of any kind followed, no other mount
 * entered: the fd, or -errno. */
static int resolve(int dirfd, const char *path, int flags, mode_t mode)
{
        struct open_how how = { .flags = (unsigned)flags | O_CLOEXEC, .mode = mode, .resolve = RESOLVE_STRICT };
        int fd, tries = 0;
        /* EAGAIN: a rename raced the walk; our paths have no "..", so it
         * should not come, and a jail renaming on and on gets a bounded
         * number of retries, never a spinning daemon. */
        do
                fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
        while (fd < 0 && (errno == EINTR || (errno == EAGAIN && ++tries < 16)));
        return fd < 0 ? -errno : fd;
}

/* path names the session directory itself, a file or directory beneath
 * it, never anything else (the API layer checked it too; this is the
 * contract of these functions on their own). Returns 0 or -EINVAL. */
static int path_ok(const char *path, int empty_ok, struct jr_err *err)
{
        char msg[256];
        if (api_path_check(path, empty_ok, msg, sizeof msg) < 0)
                return fail(err, EINVAL, "%s", msg);
        if (!empty_ok && !path[0])
                return fail(err, EINVAL, "a file path is needed: the session directory itself cannot be written");
        return 0;
}

void sfiles_out_free(struct sfiles_out *o)
{
        free(o->data);
        json_decref(o->listing);
        if (o->fd >= 0)  /* every sfiles_out is filled by get() first: -1 or a file */
                close(o->fd);
        *o = (struct sfiles_out){ .fd = -1 };
}

/* ---- GET ------------------------------------------------------------- */

/* The regular file behind the O_PATH fd pfd, opened again for reading
 * through /proc (the very inode fstat saw, not the name, which the jail
 * may have changed meanwhile): the fd, or -errno. */
static int reopen_file(int pfd, struct jr_err *err, const char *path)
{
        char proc[64];
        if (jr_snprintf(proc, sizeof proc, "/proc/self/fd/%d", pfd) < 0)
                return fail(err, ENAMETOOLONG, "%.300s: /proc path", path);
        int fd = open(proc, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        if (fd < 0)  /* not the client's doing (no /proc?): an internal error */
                return fail(err, EIO, "%.300s: cannot open it for reading (%s): %s", path, proc, strerror(errno));
        return fd;
}

/* That file read whole, at most size bytes (what fstat saw). */
static int read_file(int pfd, size_t size, struct sfiles_out *out, struct jr_err *err, const char *path)
{
        _cleanup_close_ int fd = reopen_file(pfd, err, path);
        if (fd < 0)
                return fd;
        _cleanup_free_ char *buf = size ? malloc(size) : NULL;
        if (size && !buf)
                return fail(err, ENOMEM, "%.300s: out of memory for %zu bytes", path, size);
        size_t got = 0;
        while (got < size) {  /* a file growing meanwhile is cut at the size seen */
                ssize_t n = read(fd, buf + got, size - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return fail_errno(err, errno, -1, path);
                if (n == 0)  /* shrunk meanwhile */
                        break;
                got += (size_t)n;
        }
        out->data = TAKE_PTR(buf);
        out->len = got;
        return 0;
}

static int by_name(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One listing entry; NULL when it went meanwhile (skipped) or on ENOMEM
 * (*oom set). */
static json_t *entry(int dfd, const char *name, int *oom)
{
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return NULL;
        const char *type = S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir" : "other";
        json_t *e = json_pack("{s:o, s:s, s:I}", "name", name_json(name), "type", type, "size",
                              (json_int_t)(S_ISREG(st.st_mode) ? st.st_size : 0));
        *oom = !e;
        return e;
}

/* The names in d, at most SFILES_MAX_ENTRIES (read no further: a million
 * entries cost no more than the cap), in names[]; *more says whether
 * there were others. The count, or -errno. */
static long list_names(DIR *d, char **names, int *more)
{
        long n = 0;
        struct dirent *de;
        *more = 0;
        errno = 0;
        while ((de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (n == SFILES_MAX_ENTRIES) {
                        *more = 1;
                        return n;
                }
                if (!(names[n] = strdup(de->d_name)))
                        return -ENOMEM;
                n++;
                errno = 0;
        }
        return errno ? -errno : n;
}

static json_t *list_json(DIR *d, char **names, long n, int more, const char *path)
{
        qsort(names, (size_t)n, sizeof *names, by_name);
        json_t *arr = json_array();
        for (long i = 0; arr && i < n; i++) {
                int oom = 0;
                json_t *e = entry(dirfd(d), names[i], &oom);
                if (oom || (e && json_array_append_new(arr, e) < 0))
                        json_decref(TAKE_PTR(arr));
        }
        return arr ? json_pack("{s:o, s:o, s:b}", "path", name_json(path), "entries", arr, "truncated", more)
                   : NULL;
}

static int list_dir(int pfd, const char *path, struct sfiles_out *out, struct jr_err *err)
{
        int fd = resolve(pfd, ".", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK, 0);
        if (fd < 0)
                return fail_errno(err, -fd, -1, path);
        _cleanup_(closedirp) DIR *d = fdopendir(fd);
        if (!d) {
                int e = errno;
                close(fd);
                return fail_errno(err, e, -1, path);
        }
        _cleanup_free_ char **names = calloc(SFILES_MAX_ENTRIES, sizeof *names);
        if (!names)
                return fail(err, ENOMEM, "%.300s: out of memory", path);
        int more = 0;
        long n = list_names(d, names, &more);
        out->listing = n >= 0 ? list_json(d, names, n, more, path) : NULL;
        for (long i = 0; i < SFILES_MAX_ENTRIES && names[i]; i++)
                free(names[i]);
        if (n < 0)
                return fail_errno(err, (int)-n, -1, path);
        return out->listing ? 0 : fail(err, ENOMEM, "%.300s: out of memory", path);
}

static int get(int dirfd, const char *path, size_t max, int keep_fd, struct sfiles_out *out, struct jr_err *err)
{
        *out = (struct sfiles_out){ .fd = -1 };
        int r = path_ok(path, 1, err);
        if (r < 0)
                return r;
        /* O_PATH: nothing is opened for reading yet, so a FIFO, socket or
         * device node the jail planted is looked at (fstat) and refused,
         * never opened (no blocking, no device's open side effects). */
        _cleanup_close_ int pfd = resolve(dirfd, path[0] ? path : ".", O_PATH | O_NOFOLLOW, 0);
        if (pfd < 0)
                return fail_errno(err, -pfd, dirfd, path);
        struct stat st;
        if (fstat(pfd, &st) < 0)
                return fail_errno(err, errno, dirfd, path);
        if (S_ISDIR(st.st_mode))
                return list_dir(pfd, path, out, err);
        if (S_ISLNK(st.st_mode))
                return fail_errno(err, ELOOP, dirfd, path);
        if (!S_ISREG(st.st_mode))
                return fail(err, EINVAL, "%.300s: not a regular file or directory (a %s)", path,
                            S_ISFIFO(st.st_mode) ? "FIFO" : S_ISSOCK(st.st_mode) ? "socket" : "device node");
        if ((unsigned long long)st.st_size > max)
                return fail(err, EFBIG, "%.300s: the file is %lld bytes, over the limit of %zu bytes", path,
                            (long long)st.st_size, max);
        if (!keep_fd)
                return read_file(pfd, (size_t)st.st_size, out, err, path);
        out->fd = reopen_file(pfd, err, path);
        out->len = (size_t)st.st_size;
        return out->fd < 0 ? out->fd : 0;
}

int sfiles_get(int dirfd, const char *path, size_t max, struct sfiles_out *out, struct jr_err *err)
{
        return get(dirfd, path, max, 0, out, err);
}

int sfiles_open(int dirfd, const char *path, size_t max, struct sfiles_out *out, struct jr_err *err)
{
        return get(dirfd, path, max, 1, out, err);
}

/* ---- PUT and DELETE ---------------------------------------------------- */

/* The directory path's last name is in (opened strictly as an O_PATH fd)
 * and that last name, in *base. No O_NOFOLLOW here: RESOLVE_NO_SYMLINKS
 * refuses a link in any place with ELOOP, where O_NOFOLLOW would open the
 * link itself and O_DIRECTORY then fail it as "not a directory". */
static int open_parent(int dirfd, const char *path, const char **base, struct jr_err *err)
{
        char dir[API_PATH_MAX + 1];
        const char *slash = strrchr(path, '/');
        size_t n = slash ? (size_t)(slash - path) : 0;
        if (n >= sizeof dir)
                return fail(err, ENAMETOOLONG, "a file path is at most %d bytes", API_PATH_MAX);
        memcpy(dir, path, n);
        dir[n] = '\0';
        *base = slash ? slash + 1 : path;
        int fd = resolve(dirfd, n ? dir : ".", O_PATH | O_DIRECTORY, 0);
        if (fd == -ENOENT)
                return fail(err, ENOENT, "%.300s: the directory '%.300s' does not exist", path, dir);
        return fd < 0 ? fail_errno(err, -fd, dirfd, path) : fd;
}

/* A fresh temporary file in parent (O_EXCL: whatever the jail planted
 * under a guessed name is never opened), its name in tmp. */
static int tmp_create(int parent, char tmp[64])
{
        for (int tries = 0; tries < 8; tries++) {
                unsigned long long rnd;
                if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
                        return -errno;
                snprintf(tmp, 64, SFILES_TMP "%016llx", rnd);
                int fd = resolve(parent, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK, 0644);
                if (fd != -EEXIST)
                        return fd;
        }
        return -EEXIST;
}

/* The new file's content and owner: the directory's owner (the jail's
 * uid), set on the fd, never through a path; 0644 whatever our umask. */
static int tmp_fill(int fd, const struct stat *owner, const char *buf, size_t len)
{
        if (fchown(fd, owner->st_uid, owner->st_gid) < 0 || fchmod(fd, 0644) < 0)
                return -errno;
        return jr_write_all(fd, buf, len);
}

int sfiles_put(int dirfd, const char *path, const char *buf, size_t len, struct jr_err *err)
{
        int r = path_ok(path, 0, err);
        if (r < 0)
                return r;
        struct stat owner;
        if (fstat(dirfd, &owner) < 0)
                return fail_errno(err, errno, dirfd, path);
        const char *base;
        _cleanup_close_ int parent = open_parent(dirfd, path, &base, err);
        if (parent < 0)
                return parent;
        /* Made as the directory's owner: the jail's user namespace maps
         * only its own uids (root's makes EOVERFLOW there), and the owner's
         * permissions are the ones that apply. jaild has one thread. */
        uid_t fsuid = (uid_t)setfsuid(owner.st_uid);
        gid_t fsgid = (gid_t)setfsgid(owner.st_gid);
        char tmp[64];
        int fd = tmp_create(parent, tmp);
        r = fd < 0 ? fd : tmp_fill(fd, &owner, buf, len);
        if (fd >= 0 && close(fd) < 0 && r == 0)
                r = -errno;
        /* rename replaces the name atomically and never follows what is
         * there (a link is replaced, not written through); a directory
         * there stays (EISDIR). */
        if (r == 0 && renameat(parent, tmp, parent, base) < 0)
                r = -errno;
        if (r < 0 && fd >= 0)
                unlinkat(parent, tmp, 0);
        setfsgid(fsgid);
        setfsuid(fsuid);
        return r < 0 ? fail_errno(err, -r, dirfd, path) : 0;
}

int sfiles_delete(int dirfd, const char *path, struct jr_err *err)
{
        int r = path_ok(path, 0, err);
        if (r < 0)
                return r;
        const char *base;
        _cleanup_close_ int parent = open_parent(dirfd, path, &base, err);
        if (parent < 0)
                return parent;
        /* The name is removed, whatever it is: a symbolic link goes, its
         * target stays. A directory is removed only when empty. */
        if (unlinkat(parent, base, 0) < 0 && (errno != EISDIR || unlinkat(parent, base, AT_REMOVEDIR) < 0))
                return fail_errno(err, errno, dirfd, path);
        return 0;
}

/* ---- for the API ------------------------------------------------------ */

unsigned sfiles_status(int r, const char **type)
{
        switch (-r) {
        case ENOENT: *type = "NotFoundError"; return 404;
        case EINVAL:
        case ELOOP:
        case EXDEV:
        case ENOTDIR:
        case EISDIR:
        case ENAMETOOLONG: *type = "ValueError"; return 400;
        case ENOTEMPTY:
        case EEXIST:
        case EBUSY:
        case EACCES:
        case EPERM: *type = "ConflictError"; return 409;
        case EFBIG: *type = "PayloadTooLargeError"; return 413;
        case ENOSPC:
        case EDQUOT: *type = "InsufficientStorageError"; return 507;
        case ENOMEM: *type = "UnavailableError"; return 503;
        default: *type = "InternalError"; return 500;
        }
}

static void reply_fail(struct api_call *c, int r, const struct jr_err *err)
{
        const char *type;
        unsigned status = sfiles_status(r, &type);
        api_reply_error(c, status, type, "%s", err->msg);
}

void sfiles_reply_get(struct api_call *c, int dirfd, const char *path, size_t max)
{
        struct jr_err err = { 0 };
        struct sfiles_out out;
        int r = sfiles_open(dirfd, path, max, &out, &err);
        if (r < 0)
                reply_fail(c, r, &err);
        else if (out.listing)
                api_reply(c, 200, TAKE_PTR(out.listing));
        else
                api_reply_fd(c, 200, "application/octet-stream", TAKE_FD(out.fd), out.len);
        sfiles_out_free(&out);
}

void sfiles_reply_put(struct api_call *c, int dirfd, const char *path, const char *buf, size_t len)
{
        struct jr_err err = { 0 };
        int r = sfiles_put(dirfd, path, buf, len, &err);
        if (r < 0) {
                reply_fail(c, r, &err);
                return;
        }
        json_t *j = json_pack("{s:o, s:I}", "path", name_json(path), "size", (json_int_t)len);
        if (j)
                api_reply(c, 201, j);
        else
                api_reply_error(c, 503, "UnavailableError", "out of memory (the file was written)");
}

void sfiles_reply_delete(struct api_call *c, int dirfd, const char *path)
{
        struct jr_err err = { 0 };
        int r = sfiles_delete(dirfd, path, &err);
        if (r < 0) {
                reply_fail(c, r, &err);
                return;
        }
        json_t *j = json_pack("{s:o, s:b}", "path", name_json(path), "deleted", 1);
        if (j)
                api_reply(c, 200, j);
        else
                api_reply_error(c, 503, "UnavailableError", "out of memory (the file was deleted)");
}
