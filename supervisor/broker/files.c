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
#include "common/fdio.h"
#include "supervisor/broker/broker.h"
#include "supervisor/broker/files.h"
#include "supervisor/engine/log.h"
#include "supervisor/broker/ctxerr.h"

#define RESOLVE_STRICT (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)

void files_init(struct files *f, const struct files_cfg *cfg)
{
        *f = (struct files){ .cfg = cfg, .dirfd = -1 };
}

void files_close(struct files *f)
{
        closep(&f->dirfd);
}

/* What went wrong with `path`, in the user's terms. */
static json_t *errno_fail(int e, const char *path)
{
        switch (e) {
        case ENOENT: return ctx_error("%.200s: no such file or directory", path);
        case ELOOP: return ctx_error("%.200s: the path holds a symbolic link, which ctx.files does not follow", path);
        case EXDEV: return ctx_error("%.200s: the path leaves the workspace", path);
        case EISDIR: return ctx_error("%.200s: is a directory", path);
        case ENOTDIR: return ctx_error("%.200s: a part of the path is not a directory", path);
        case ENOTEMPTY: return ctx_error("%.200s: the directory is not empty", path);
        case ENOSPC: return ctx_error("%.200s: the host's disk is full (ENOSPC)", path);
        default: return ctx_error("%.200s: %s", path, strerror(e));
        }
}

#define WHY 300  /* bytes of a check's refusal */

/* A path the worker may give: relative, 1 to FILES_MAX_PATH bytes, no
 * ".." component (the kernel refuses escapes anyway; this says why). 0,
 * or 1 with why[WHY]. */
static int path_refused(const char *p, int dir_ok, char *why)
{
        size_t n = strlen(p);
        if (n == 0 || n > FILES_MAX_PATH)
                return snprintf(why, WHY, "a path is 1 to %d bytes", FILES_MAX_PATH), 1;
        if (p[0] == '/')
                return snprintf(why, WHY, "%.200s: paths are relative to the workspace", p), 1;
        for (const char *c = p; *c;) {
                size_t k = strcspn(c, "/");
                if (k == 2 && c[0] == '.' && c[1] == '.')
                        return snprintf(why, WHY, "%.200s: '..' is not allowed in a path", p), 1;
                if (k > 255)
                        return snprintf(why, WHY, "%.200s: a name in a path is at most 255 bytes", p), 1;
                if (strncmp(c, FILES_RESERVED, strlen(FILES_RESERVED)) == 0)
                        return snprintf(why, WHY, "%.200s: names starting with " FILES_RESERVED " are jailrun's own",
                                        p), 1;
                c += k + (c[k] == '/');
        }
        if (!dir_ok && (strcmp(p, ".") == 0 || p[n - 1] == '/'))
                return snprintf(why, WHY, "%.200s: names a directory, not a file", p), 1;
        return 0;
}

/* The path checked: BROKER_NEXT, or the call's end (its refusal, or
 * -ENOMEM: a refusal that cannot be made never lets the path through). */
static int bad_path(const char *p, int dir_ok, json_t **result)
{
        char why[WHY];
        return path_refused(p, dir_ok, why) ? broker_done(result, ctx_error("%s", why)) : BROKER_NEXT;
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

/* The workspace, created (0700, with its parents) on first use: 0, or 1
 * with why[LOG_WHY] (for the operator's log). */
#define LOG_WHY 600
static int workspace_open(struct files *f, char *why)
{
        if (f->dirfd >= 0)
                return 0;
        char dir[PATH_MAX];
        if (jr_snprintf(dir, sizeof dir, "%s", f->cfg->root) < 0)
                return snprintf(why, LOG_WHY, "workspace path too long"), 1;
        for (char *p = dir + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                        return snprintf(why, LOG_WHY, "workspace unavailable: mkdir %.500s: %s", dir, strerror(errno)), 1;
                *p = '/';
        }
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return snprintf(why, LOG_WHY, "workspace unavailable: mkdir %.500s: %s", dir, strerror(errno)), 1;
        f->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (f->dirfd < 0)
                return snprintf(why, LOG_WHY, "workspace unavailable: %.500s: %s", dir, strerror(errno)), 1;
        return 0;
}

/* The workspace open: BROKER_NEXT, or the call's end. Why it cannot be
 * goes to the operator's log: its path is not the jail's to know. */
static int workspace(struct files *f, json_t **result)
{
        char why[LOG_WHY];
        if (!workspace_open(f, why))
                return BROKER_NEXT;
        log_msg("ctx.files: %s", why);
        return broker_done(result, ctx_error("the workspace is unavailable (the operator's log says why)"));
}

/* One changer per workspace at a time, across jailruns: the count is
 * read, checked and changed with the files under the lock. Never a
 * blocking wait: whoever holds the lock (another jailrun's write takes
 * milliseconds; anyone else who can open the directory could hold it for
 * ever) gets FILES_LOCK_TRIES short tries, then the worker an error, and
 * the supervisor's loop goes on. */
static int lock(struct files *f, json_t **result)
{
        int tries = 0;
        while (flock(f->dirfd, LOCK_EX | LOCK_NB) < 0) {
                if (errno != EWOULDBLOCK && errno != EINTR)
                        return broker_done(result, ctx_error("locking the workspace: %s", strerror(errno)));
                if (++tries >= FILES_LOCK_TRIES)
                        return broker_done(result, ctx_error("the workspace is busy (another writer holds it); "
                                                             "try again"));
                nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
        }
        return BROKER_NEXT;
}

/* The checks every call makes before its work (`dir_ok`: the path may
 * name a directory; `locked`: the workspace's lock taken): BROKER_NEXT,
 * or the call's end. */
static int ready(struct files *f, const char *path, int dir_ok, int locked, json_t **result)
{
        int r = bad_path(path, dir_ok, result);
        if (r == BROKER_NEXT)
                r = workspace(f, result);
        if (r == BROKER_NEXT && locked)
                r = lock(f, result);
        return r;
}

static json_t *read_file(struct files *f, const char *path, void **data, size_t *len)
{
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
                return ctx_error("%.200s: not a regular file", path);
        if ((uint64_t)st.st_size > f->cfg->max_read)
                return ctx_error("%.200s: the file is %lld bytes; read returns at most %llu", path,
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

int files_read(struct files *f, const char *path, json_t **result, void **data, size_t *len)
{
        *data = NULL;
        *len = 0;
        int r = ready(f, path, 0, 0, result);
        return r == BROKER_NEXT ? broker_done(result, read_file(f, path, data, len)) : r;
}

/* Splits path into its directory (opened strictly, created component by
 * component when `make`) and its last component, in *base. *dirs (may be
 * NULL) counts the directories made; without `make`, on -ENOENT, it
 * counts the missing one and those below it. */
static int open_parent(struct files *f, const char *path, int make, const char **base, int *dirs)
{
        char buf[FILES_MAX_PATH + 1];
        snprintf(buf, sizeof buf, "%s", path);
        char *slash = strrchr(buf, '/');
        int n = 0;
        *base = slash ? path + (slash - buf) + 1 : path;
        if (dirs)
                *dirs = 0;
        int cur = fcntl(f->dirfd, F_DUPFD_CLOEXEC, 0);
        if (cur < 0 || !slash)
                return cur < 0 ? -errno : cur;
        *slash = '\0';
        char *save = NULL;
        for (char *c = strtok_r(buf, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
                if (strcmp(c, ".") == 0)
                        continue;
                int made = make && mkdirat(cur, c, 0700) == 0;
                if (make && !made && errno != EEXIST) {
                        int e = -errno;
                        close(cur);
                        return e;
                }
                n += made;
                if (dirs)
                        *dirs = n;
                int next = resolve(cur, c, O_RDONLY | O_DIRECTORY, 0);
                close(cur);
                if (next == -ENOENT && !make && dirs)
                        for (*dirs = 1; (c = strtok_r(NULL, "/", &save));)
                                *dirs += strcmp(c, ".") != 0;
                if (next < 0)
                        return next;
                cur = next;
        }
        return cur;
}

/* Bytes of regular files below dirfd (which it consumes), every entry
 * counted in *entries, or -errno (-E2BIG past the limits). Temporary
 * files are removed: the walk runs under the lock, when no write is under
 * way, so any there was left by a jailrun that died in a write. */
static int64_t walk(int dirfd, int depth, long *entries)
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
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
                    (depth == 0 && strcmp(de->d_name, FILES_USAGE) == 0) ||
                    (strncmp(de->d_name, FILES_TMP, strlen(FILES_TMP)) == 0 && unlinkat(dirfd, de->d_name, 0) == 0))
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
                        int64_t u = sub < 0 ? sub : walk(sub, depth + 1, entries);
                        total = u < 0 ? (u == -ENOENT ? total : u) : total + u;
                }
        }
        closedir(d);
        return total;
}

/* The running count, FILES_USAGE: {"version": 1, "bytes", "entries",
 * "over"}; 0, or -errno when it is missing or not one. */
static int usage_read(struct files *f, struct files_usage *u)
{
        _cleanup_close_ int fd = resolve(f->dirfd, FILES_USAGE, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0);
        struct stat st;
        char buf[256];
        if (fd < 0)
                return fd;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size >= (off_t)sizeof buf)
                return -EINVAL;
        ssize_t n;
        while ((n = pread(fd, buf, sizeof buf, 0)) < 0 && errno == EINTR)
                ;
        if (n < 0)
                return -errno;
        json_error_t je;
        json_int_t version, bytes, entries;
        int over;
        _cleanup_(json_decrefp) json_t *j = json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES, &je);
        if (!j || json_unpack_ex(j, &je, JSON_STRICT, "{s:I, s:I, s:I, s:b}", "version", &version, "bytes", &bytes,
                                 "entries", &entries, "over", &over) < 0)
                return -EINVAL;
        if (version != 1 || bytes < 0 || entries < 0 || entries > FILES_MAX_INODES + 1)
                return -EINVAL;
        *u = (struct files_usage){ .bytes = bytes, .entries = entries, .over = over };
        return 0;
}

/* Replaces the record (not fsync'd: every job counts afresh at its first
 * change, so a record a crash left behind is never trusted). */
static int usage_store(struct files *f, const struct files_usage *u)
{
        _cleanup_(json_decrefp) json_t *j = json_pack("{s:i, s:I, s:I, s:b}", "version", 1, "bytes",
                                                      (json_int_t)u->bytes, "entries", (json_int_t)u->entries,
                                                      "over", u->over);
        _cleanup_free_ char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (!text)
                return -ENOMEM;
        _cleanup_close_ int fd = resolve(f->dirfd, FILES_USAGE, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY,
                                         0600);
        struct stat st;
        size_t len = strlen(text);
        if (fd < 0)
                return fd;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return -EINVAL;
        int r = jr_write_all(fd, text, len);  /* at offset 0: just opened */
        if (r < 0)
                return r;
        return ftruncate(fd, (off_t)len) < 0 ? -errno : 0;
}

/* The workspace's usage, under the lock: counted afresh at the job's
 * first change (the record a jailrun that died mid-write left may
 * overstate it), when `recount` (the record was caught out) or when the
 * record is missing or malformed; else the record the last change left,
 * whichever jailrun made it. */
static int usage_load(struct files *f, struct files_usage *u, int recount, json_t **result)
{
        if (f->counted && !recount && usage_read(f, u) == 0)
                return BROKER_NEXT;
        long entries = 0;
        /* A fresh open, not a dup: a dup shares the directory's offset. */
        int top = openat(f->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int64_t used = top < 0 ? -errno : walk(top, 0, &entries);
        if (used < 0 && used != -E2BIG)
                return broker_done(result, ctx_error("measuring the workspace: %s", strerror((int)-used)));
        *u = (struct files_usage){ .bytes = used < 0 ? 0 : used, .entries = entries, .over = used == -E2BIG };
        f->counted = usage_store(f, u) == 0;
        return BROKER_NEXT;
}

/* What a write to path replaces, judged before anything is made. */
struct target {
        int64_t existing;  /* bytes of the regular file being replaced */
        int fresh;         /* no entry of that name yet */
        int missing;       /* directories to make */
};

/* BROKER_NEXT with *t, or the call's end. */
static int probe(struct files *f, const char *path, struct target *t, json_t **result)
{
        const char *base;
        struct stat st;
        *t = (struct target){ .fresh = 1 };
        _cleanup_close_ int dir = open_parent(f, path, 0, &base, &t->missing);
        if (dir == -ENOENT)
                return BROKER_NEXT;
        if (dir < 0)
                return broker_done(result, errno_fail(-dir, path));
        if (fstatat(dir, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? BROKER_NEXT : broker_done(result, errno_fail(errno, path));
        if (S_ISDIR(st.st_mode) || S_ISLNK(st.st_mode))
                return broker_done(result, errno_fail(S_ISDIR(st.st_mode) ? EISDIR : ELOOP, path));
        t->fresh = 0;
        t->existing = S_ISREG(st.st_mode) ? st.st_size : 0;
        return BROKER_NEXT;
}

/* Writes a temporary file beside path, fsync'd, renames it over path and
 * fsyncs the directory: a reader sees the old file or the new one. 0, or
 * -errno; *made counts the directories made, *renamed says whether the
 * new file took its place. */
static int replace(struct files *f, const char *path, const void *data, size_t len, int *made, int *renamed)
{
        const char *base;
        *renamed = 0;
        _cleanup_close_ int parent = open_parent(f, path, 1, &base, made);
        if (parent < 0)
                return parent;
        char tmp[64];
        snprintf(tmp, sizeof tmp, FILES_TMP "%d-%lu", (int)getpid(), f->seq++);
        int fd = openat(parent, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        int err = -jr_write_all(fd, data, len);
        if (!err && fsync(fd) < 0)
                err = errno;
        if (close(fd) < 0 && !err)
                err = errno;
        if (!err && renameat(parent, tmp, parent, base) < 0)
                err = errno;
        if (err) {
                unlinkat(parent, tmp, 0);
                return -err;
        }
        *renamed = 1;
        return fsync(parent) < 0 ? -errno : 0;
}

/* The workspace's count and what the write replaces, checked (the count
 * again when caught out): BROKER_NEXT, or the call's end. */
static int write_checks(struct files *f, const char *path, struct files_usage *u, struct target *t, json_t **result)
{
        int r = usage_load(f, u, 0, result);
        if (r == BROKER_NEXT)
                r = probe(f, path, t, result);
        /* A file larger than the whole count: something outside jailrun
         * changed the workspace; count it again. */
        if (r == BROKER_NEXT && !u->over && t->existing > u->bytes)
                r = usage_load(f, u, 1, result);
        return r;
}

/* The write, its checks passed: its answer (NULL when out of memory). */
static json_t *write_counted(struct files *f, const char *path, const void *data, size_t len,
                             struct files_usage u, struct target t)
{
        if (u.over)
                return ctx_error("the workspace holds more than %d files and directories, or is nested deeper than %d",
                            FILES_MAX_INODES, FILES_MAX_DEPTH);
        if ((uint64_t)(u.bytes - t.existing) + len > f->cfg->quota)
                return ctx_error("the workspace quota of %llu bytes would be exceeded: it holds %lld, this write "
                            "needs %zu", (unsigned long long)f->cfg->quota, (long long)u.bytes, len);
        if (u.entries + t.missing + t.fresh > FILES_MAX_INODES)
                return ctx_error("%.200s: the workspace would hold more than %d files and directories", path,
                            FILES_MAX_INODES);
        /* Counted before the file is there: a jailrun that dies in between
         * leaves the count high, never low. */
        struct files_usage after = { u.bytes - t.existing + (int64_t)len, u.entries + t.missing + t.fresh, 0 };
        int r = usage_store(f, &after);
        if (r < 0) {
                f->counted = 0;
                return ctx_error("recording the workspace's usage: %s", strerror(-r));
        }
        int made = 0, renamed = 0;
        r = replace(f, path, data, len, &made, &renamed);
        if (r < 0 && !renamed && usage_store(f, &(struct files_usage){ u.bytes, u.entries + made, 0 }) < 0)
                f->counted = 0;
        if (r < 0)
                return errno_fail(-r, path);
        return json_pack("{s:b, s:I}", "ok", 1, "size", (json_int_t)len);
}

static int write_locked(struct files *f, const char *path, const void *data, size_t len, json_t **result)
{
        /* Refused before any directory is made: a write that fails leaves
         * nothing behind. */
        int depth = 0;
        for (const char *c = path; *c; c++)
                depth += *c == '/';
        if (depth >= FILES_MAX_DEPTH)
                return broker_done(result, ctx_error("%.200s: paths are at most %d directories deep", path,
                                                     FILES_MAX_DEPTH - 1));
        struct files_usage u;
        struct target t;
        int r = write_checks(f, path, &u, &t, result);
        return r == BROKER_NEXT ? broker_done(result, write_counted(f, path, data, len, u, t)) : r;
}

int files_write(struct files *f, const char *path, const void *data, size_t len, json_t **result)
{
        int r = ready(f, path, 0, 1, result);
        if (r != BROKER_NEXT)
                return r;
        r = write_locked(f, path, data, len, result);
        flock(f->dirfd, LOCK_UN);
        return r;
}
static int by_name(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in d, at most FILES_MAX_ENTRIES (malloc'd, in *names): read
 * before anything is looked at, so a directory too large costs no more
 * than its names. The count, or -E2BIG, -errno. */
static long list_names(DIR *d, char **names)
{
        long n = 0;
        struct dirent *de;
        errno = 0;
        while ((de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
                    strncmp(de->d_name, FILES_RESERVED, strlen(FILES_RESERVED)) == 0)
                        continue;
                if (n == FILES_MAX_ENTRIES)
                        return -E2BIG;
                if (!(names[n] = strdup(de->d_name)))
                        return -ENOMEM;
                n++;
        }
        return errno ? -errno : n;
}

static json_t *list_entry(int dirfd, const char *name)
{
        struct stat st;
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return json_null();  /* gone meanwhile, or unreadable: skipped */
        const char *type = S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir"
                         : S_ISLNK(st.st_mode) ? "symlink" : "other";
        json_t *s = json_string(name);
        return json_pack("{s:o, s:s, s:I}", "name", s ? s : json_string("?"), "type", type,
                         "size", (json_int_t)(S_ISREG(st.st_mode) ? st.st_size : 0));
}

static json_t *list_dir(struct files *f, const char *path)
{
        int fd = resolve(f->dirfd, path, O_RDONLY | O_DIRECTORY, 0);
        if (fd < 0)
                return errno_fail(-fd, path);
        DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return errno_fail(errno, path);
        }
        _cleanup_free_ char **names = calloc(FILES_MAX_ENTRIES, sizeof *names);
        long n = names ? list_names(d, names) : -ENOMEM;
        json_t *arr = n >= 0 ? json_array() : NULL;
        if (n >= 0)
                qsort(names, (size_t)n, sizeof *names, by_name);
        for (long i = 0; arr && i < n; i++) {
                json_t *item = list_entry(dirfd(d), names[i]);
                if (!item || (!json_is_null(item) && json_array_append(arr, item) < 0))
                        json_decref(TAKE_PTR(arr));
                json_decref(item);
        }
        for (long i = 0; names && i < FILES_MAX_ENTRIES && names[i]; i++)
                free(names[i]);
        closedir(d);
        if (n == -E2BIG)
                return ctx_error("%.200s: more than %d entries", path, FILES_MAX_ENTRIES);
        if (n < 0 && n != -ENOMEM)
                return errno_fail((int)-n, path);
        return arr ? json_pack("{s:o}", "entries", arr) : NULL;
}

int files_list(struct files *f, const char *path, json_t **result)
{
        int r = ready(f, path, 1, 0, result);
        return r == BROKER_NEXT ? broker_done(result, list_dir(f, path)) : r;
}

/* Counted out after it is gone: a jailrun that dies in between leaves
 * the count high, never low. */
static json_t *delete_counted(struct files *f, const char *path, struct files_usage u)
{
        const char *base;
        _cleanup_close_ int parent = open_parent(f, path, 0, &base, NULL);
        struct stat st;
        if (parent < 0)
                return errno_fail(-parent, path);
        if (fstatat(parent, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno_fail(errno, path);
        if (unlinkat(parent, base, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) < 0)
                return errno_fail(errno, path);
        struct files_usage after = { u.bytes - (S_ISREG(st.st_mode) ? st.st_size : 0), u.entries - 1, 0 };
        /* Over the limits (no count holds), or changed outside jailrun:
         * counted again, so deletes can bring a workspace back under them.
         * The walk stops at the limits, and its CPU is the job's budget's. */
        json_t *ignored = NULL;
        if (u.over || after.bytes < 0 || after.entries < 0) {
                if (usage_load(f, &after, 1, &ignored) == BROKER_DONE)  /* the delete is done all the same */
                        json_decref(ignored);
        } else if (usage_store(f, &after) < 0)
                f->counted = 0;
        if (fsync(parent) < 0)
                return errno_fail(errno, path);
        return json_pack("{s:b}", "ok", 1);
}

int files_delete(struct files *f, const char *path, json_t **result)
{
        int r = ready(f, path, 0, 1, result);
        if (r != BROKER_NEXT)
                return r;
        struct files_usage u;
        r = usage_load(f, &u, 0, result);
        if (r == BROKER_NEXT)
                r = broker_done(result, delete_counted(f, path, u));
        flock(f->dirfd, LOCK_UN);
        return r;
}

static json_t *exists(struct files *f, const char *path)
{
        int fd = resolve(f->dirfd, path, O_PATH | O_NOFOLLOW, 0);
        if (fd >= 0) {
                close(fd);
                return json_true();
        }
        return fd == -ENOENT || fd == -ENOTDIR ? json_false() : errno_fail(-fd, path);
}

int files_exists(struct files *f, const char *path, json_t **result)
{
        int r = ready(f, path, 1, 0, result);
        return r == BROKER_NEXT ? broker_done(result, exists(f, path)) : r;
}

static json_t *size(struct files *f, const char *path)
{
        _cleanup_close_ int fd = resolve(f->dirfd, path, O_PATH | O_NOFOLLOW, 0);
        struct stat st;
        if (fd < 0)
                return errno_fail(-fd, path);
        if (fstat(fd, &st) < 0)
                return errno_fail(errno, path);
        if (!S_ISREG(st.st_mode))
                return S_ISDIR(st.st_mode) ? errno_fail(EISDIR, path) : ctx_error("%.200s: not a regular file", path);
        return json_integer((json_int_t)st.st_size);
}

int files_size(struct files *f, const char *path, json_t **result)
{
        int r = ready(f, path, 0, 0, result);
        return r == BROKER_NEXT ? broker_done(result, size(f, path)) : r;
}
