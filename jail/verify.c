#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <stdio.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "jail/mnt.h"
#include "jail/verify.h"

ssize_t read_small_file(const char *path, char *buf, size_t size)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        size_t len = 0;
        while (len + 1 < size) {
                ssize_t n = read(fd, buf + len, size - 1 - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        buf[len] = '\0';
        return (ssize_t)len;
}

/* Finds "Key:\t" in a /proc status text and returns what follows. */
static const char *status_field(const char *status, const char *key)
{
        size_t n = strlen(key);
        for (const char *l = status; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
                if (strncmp(l, key, n) == 0 && l[n] == ':')
                        return l + n + 1 + strspn(l + n + 1, " \t");
        return NULL;
}

int verify_status_text(const char *st, struct jr_err *err)
{
        const char *v = status_field(st, "Seccomp");
        if (!v || strncmp(v, "2\n", 2) != 0)
                return jr_fail(err, EPERM, "check seccomp: not in filter mode");
        v = status_field(st, "NoNewPrivs");
        if (!v || strncmp(v, "1\n", 2) != 0)
                return jr_fail(err, EPERM, "check no_new_privs: not set");
        static const char *const sets[] = { "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb" };
        for (size_t i = 0; i < ELEMENTSOF(sets); i++) {
                v = status_field(st, sets[i]);
                if (!v || strncmp(v, "0000000000000000\n", 17) != 0)
                        return jr_fail(err, EPERM, "check capabilities: %s is not empty", sets[i]);
        }
        return 0;
}

int verify_map_text(const char *name, const char *text, unsigned long want, struct jr_err *err)
{
        unsigned long in, out, count;
        int used = 0;
        if (sscanf(text, " %lu %lu %lu %n", &in, &out, &count, &used) != 3 || text[used] != '\0' ||
            in != 0 || out != want || count != 1)
                return jr_fail(err, EPERM, "check id map: %s is not exactly '0 %lu 1'", name, want);
        return 0;
}

int verify_net_text(const char *netdev, struct jr_err *err)
{
        int line = 0, links = 0;
        for (const char *l = netdev; *l; l += strcspn(l, "\n"), l += *l == '\n') {
                if (line++ < 2)
                        continue;  /* two header lines */
                links++;
                if (strncmp(l + strspn(l, " "), "lo:", 3) != 0)
                        return jr_fail(err, EPERM, "check network: a link other than lo");
        }
        if (links != 1)
                return jr_fail(err, EPERM, "check network: %d links, want only lo", links);
        return 0;
}

int verify_mountinfo_line(const struct mnt_plan *plan, const char *line, struct jr_err *err)
{
        char mp[4096];
        if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
                return jr_fail(err, EPROTO, "check mounts: unreadable mountinfo");
        if (!mnt_expected(plan, mp))
                return jr_fail(err, EPERM, "check mounts: unexpected mount at %s", mp);
        return 0;
}

int verify_cgroup_text(const char *text, struct jr_err *err)
{
        if (!*text)
                return jr_fail(err, EPERM, "check cgroup namespace: no cgroups listed");
        for (const char *l = text; *l; l += strcspn(l, "\n"), l += *l == '\n') {
                size_t n = strcspn(l, "\n");
                if (n < 2 || l[n - 2] != ':' || l[n - 1] != '/')
                        return jr_fail(err, EPERM, "check cgroup namespace: the jail sees a path beyond its own group");
        }
        return 0;
}

static int check_cgroup(struct jr_err *err)
{
        char buf[4096];
        ssize_t n = read_small_file("/proc/self/cgroup", buf, sizeof buf);
        if (n < 0)
                return jr_fail(err, (int)-n, "check cgroup namespace: read /proc/self/cgroup");
        return verify_cgroup_text(buf, err);
}

static int check_status(struct jr_err *err)
{
        char st[8192];
        ssize_t n = read_small_file("/proc/self/status", st, sizeof st);
        if (n < 0)
                return jr_fail(err, (int)-n, "check status: read /proc/self/status");
        return verify_status_text(st, err);
}

static int check_map(const char *path, unsigned long want, struct jr_err *err)
{
        char buf[256];
        ssize_t n = read_small_file(path, buf, sizeof buf);
        if (n < 0)
                return jr_fail(err, (int)-n, "check id map: read %s", path);
        return verify_map_text(path, buf, want, err);
}

static int check_ids(const struct verify_cfg *cfg, struct jr_err *err)
{
        int r = check_map("/proc/self/uid_map", cfg->host_uid, err);
        if (r == 0)
                r = check_map("/proc/self/gid_map", cfg->host_gid, err);
        if (r < 0)
                return r;
        char buf[32];
        if (read_small_file("/proc/self/setgroups", buf, sizeof buf) < 0 || strcmp(buf, "deny\n") != 0)
                return jr_fail(err, EPERM, "check setgroups: not denied");
        if (getgroups(0, NULL) != 0)
                return jr_fail(err, EPERM, "check groups: supplementary groups present");
        if (getpid() != 1)
                return jr_fail(err, EPERM, "check pid namespace: pid is %d, not 1", (int)getpid());
        return 0;
}

static int check_net(struct jr_err *err)
{
        char buf[4096];
        ssize_t n = read_small_file("/proc/self/net/dev", buf, sizeof buf);
        if (n < 0)
                return jr_fail(err, (int)-n, "check network: read /proc/self/net/dev");
        return verify_net_text(buf, err);
}

static int check_mounts(const struct verify_cfg *cfg, struct jr_err *err)
{
        struct statfs sf;
        if (statfs("/", &sf) < 0)
                return jr_fail(err, errno, "check root: statfs /");
        if (sf.f_type != TMPFS_MAGIC || !(sf.f_flags & ST_RDONLY))
                return jr_fail(err, EPERM, "check root: / is not the read-only jail tmpfs");
        _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
        if (!f)
                return jr_fail(err, errno, "check mounts: open mountinfo");
        char line[8192];
        while (fgets(line, sizeof line, f)) {
                int r = verify_mountinfo_line(cfg->plan, line, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

int verify_world(const struct verify_cfg *cfg, struct jr_err *err)
{
        int r = check_net(err);
        if (r == 0)
                r = check_cgroup(err);
        if (r == 0)
                r = check_mounts(cfg, err);
        return r;
}

int verify_process(const struct verify_cfg *cfg, struct jr_err *err)
{
        int r = check_status(err);
        return r == 0 ? check_ids(cfg, err) : r;
}
