#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "supervisor/engine/uidlock.h"

static int ensure_dir(struct jr_err *err)
{
        if (mkdir("/run/jailrun", 0700) < 0 && errno != EEXIST)
                return jr_fail(err, errno, "mkdir /run/jailrun");
        if (mkdir(UIDLOCK_DIR, 0700) < 0 && errno != EEXIST)
                return jr_fail(err, errno, "mkdir " UIDLOCK_DIR);
        return 0;
}

/* Does a live process run as `uid` (real, effective, saved or filesystem
 * uid)? 1 yes, 0 no, <0 -errno. Asked only of a uid whose lock file a
 * dead supervisor left: its jails die after it (the kernel's parent-death
 * signal, then the pid namespace's end), and until the last is gone that
 * uid is not free. /proc's owner of a non-dumpable process is root, so
 * the status file is read. */
static int uid_in_use(uid_t uid)
{
        DIR *d = opendir("/proc");
        if (!d)
                return -errno;
        int found = 0;
        struct dirent *de;
        while (!found && (de = readdir(d))) {
                if (de->d_name[0] < '1' || de->d_name[0] > '9')
                        continue;
                char path[64];
                snprintf(path, sizeof path, "%.20s/status", de->d_name);
                _cleanup_close_ int fd = openat(dirfd(d), path, O_RDONLY | O_CLOEXEC);
                char buf[2048];
                ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
                if (n <= 0)
                        continue;  /* gone meanwhile */
                buf[n] = 0;
                const char *st = strstr(buf, "\nState:\t");
                const char *u = strstr(buf, "\nUid:\t");
                unsigned ids[4];
                if (!u || sscanf(u + 6, "%u %u %u %u", &ids[0], &ids[1], &ids[2], &ids[3]) != 4)
                        continue;
                if (st && (st[8] == 'Z' || st[8] == 'X'))
                        continue;  /* dead, not yet reaped: it runs nothing */
                for (int i = 0; i < 4; i++)
                        found |= ids[i] == (unsigned)uid;
        }
        closedir(d);
        return found;
}

/* 1: locked, 0: taken by someone else (or still in use by a dead
 * supervisor's jail), <0: error. */
static int try_uid(struct uidlock *l, uid_t uid, struct jr_err *err)
{
        char path[PATH_MAX];
        snprintf(path, sizeof path, UIDLOCK_DIR "/%u.lock", (unsigned)uid);
        /* A file we create is no one's; one that exists and that nobody
         * holds is a dead supervisor's. */
        _cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        int left = fd < 0 && errno == EEXIST;
        if (left)
                fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 && left && errno == ENOENT)
                return 0;  /* its holder released it meanwhile: another uid */
        if (fd < 0)
                return jr_fail(err, errno, "open uid lock %s", path);
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                if (errno == EWOULDBLOCK)
                        return 0;
                return jr_fail(err, errno, "flock %s", path);
        }
        /* The previous holder may have unlinked the file between our open
         * and our lock: only a lock on the file still at `path` counts. */
        struct stat a, b;
        if (fstat(fd, &a) < 0)
                return jr_fail(err, errno, "fstat %s", path);
        if (stat(path, &b) < 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev)
                return 0;
        if (left) {
                int r = uid_in_use(uid);
                if (r < 0)
                        return jr_fail(err, -r, "reading /proc for processes of uid %u", (unsigned)uid);
                if (r)
                        return 0;  /* the file stays, unheld, for the next to ask */
        }
        l->uid = uid;
        l->fd = TAKE_FD(fd);
        snprintf(l->path, sizeof l->path, "%s", path);
        return 1;
}

/* Removes lock files nobody holds (a jailrun killed with SIGKILL cannot
 * remove its own) once no process runs as their uid. Same protocol as the
 * owners': lock, check the inode is still the one at the path, unlink,
 * close. */
int uidlock_sweep(void)
{
        DIR *d = opendir(UIDLOCK_DIR);
        if (!d)
                return 0;
        int busy = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                unsigned uid;
                char tail[8];
                if (sscanf(de->d_name, "%u%7s", &uid, tail) != 2 || strcmp(tail, ".lock") != 0)
                        continue;
                _cleanup_close_ int fd = openat(dirfd(d), de->d_name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
                struct stat a, b;
                if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0 || fstat(fd, &a) < 0 ||
                    fstatat(dirfd(d), de->d_name, &b, AT_SYMLINK_NOFOLLOW) < 0 || a.st_ino != b.st_ino)
                        continue;
                if (uid_in_use((uid_t)uid) != 0) {
                        busy++;  /* a dead supervisor's jail still runs (or /proc said nothing) */
                        continue;
                }
                unlinkat(dirfd(d), de->d_name, 0);
        }
        closedir(d);
        return busy;
}

int uidlock_acquire(struct uidlock *l, uid_t lo, uid_t hi, unsigned seed, struct jr_err *err)
{
        l->fd = -1;
        l->stale_busy = 0;
        if (lo == 0 || hi < lo)
                return jr_fail(err, EINVAL, "uid range %u-%u", (unsigned)lo, (unsigned)hi);
        int r = ensure_dir(err);
        if (r < 0)
                return r;
        l->stale_busy = uidlock_sweep();
        unsigned long span = (unsigned long)hi - lo + 1;
        unsigned long start = (seed * 2654435761UL) % span;
        for (unsigned long i = 0; i < span; i++) {
                r = try_uid(l, (uid_t)(lo + (start + i) % span), err);
                if (r != 0)
                        return r < 0 ? r : 0;
        }
        return jr_fail(err, EAGAIN, "every uid in %u-%u is in use", (unsigned)lo, (unsigned)hi);
}

void uidlock_abandon(struct uidlock *l)
{
        if (l->fd < 0)
                return;
        close(l->fd);
        l->fd = -1;
}

void uidlock_release(struct uidlock *l)
{
        if (l->fd < 0)
                return;
        /* Unlink while still holding the lock, so a waiter that opened the
         * old file fails its inode check and retries. */
        unlink(l->path);
        close(l->fd);
        l->fd = -1;
}
