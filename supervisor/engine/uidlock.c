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

/* 1: locked, 0: taken by someone else, <0: error. */
static int try_uid(struct uidlock *l, uid_t uid, struct jr_err *err)
{
        char path[PATH_MAX];
        snprintf(path, sizeof path, UIDLOCK_DIR "/%u.lock", (unsigned)uid);
        _cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
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
        l->uid = uid;
        l->fd = TAKE_FD(fd);
        snprintf(l->path, sizeof l->path, "%s", path);
        return 1;
}

/* Removes lock files nobody holds (a jailrun killed with SIGKILL cannot
 * remove its own). Same protocol as the owners': lock, check the inode is
 * still the one at the path, unlink, close. */
void uidlock_sweep(void)
{
        DIR *d = opendir(UIDLOCK_DIR);
        if (!d)
                return;
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
                unlinkat(dirfd(d), de->d_name, 0);
        }
        closedir(d);
}

int uidlock_acquire(struct uidlock *l, uid_t lo, uid_t hi, unsigned seed, struct jr_err *err)
{
        l->fd = -1;
        if (lo == 0 || hi < lo)
                return jr_fail(err, EINVAL, "uid range %u-%u", (unsigned)lo, (unsigned)hi);
        int r = ensure_dir(err);
        if (r < 0)
                return r;
        uidlock_sweep();
        unsigned long span = (unsigned long)hi - lo + 1;
        unsigned long start = (seed * 2654435761UL) % span;
        for (unsigned long i = 0; i < span; i++) {
                r = try_uid(l, (uid_t)(lo + (start + i) % span), err);
                if (r != 0)
                        return r < 0 ? r : 0;
        }
        return jr_fail(err, EAGAIN, "every uid in %u-%u is in use", (unsigned)lo, (unsigned)hi);
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
