#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "supervisor/engine/cgroup.h"

static const char *const v1_names[CG_V1_N] = { "memory", "pids", "cpu", "cpuacct", "freezer" };
static const char v2_controllers[] = "+memory +pids +cpu";

const char *cg_backend_name(enum cg_backend b)
{
        return b == CG_V2 ? "cgroup v2" : b == CG_V1 ? "cgroup v1" : "none";
}

/* ---- files ------------------------------------------------------------ */

static int cg_write(const char *dir, const char *file, const char *val)
{
        char path[PATH_MAX];
        if (jr_snprintf(path, sizeof path, "%s/%s", dir, file) < 0)
                return -ENAMETOOLONG;
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        size_t len = strlen(val);
        ssize_t n;
        while ((n = write(fd, val, len)) < 0 && errno == EINTR)
                ;
        return n < 0 ? -errno : (size_t)n == len ? 0 : -EIO;
}

static ssize_t cg_read(const char *dir, const char *file, char *buf, size_t size)
{
        char path[PATH_MAX];
        if (jr_snprintf(path, sizeof path, "%s/%s", dir, file) < 0)
                return -ENAMETOOLONG;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        size_t len = 0;
        ssize_t n;
        while (len + 1 < size && (n = read(fd, buf + len, size - 1 - len)) != 0) {
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                len += (size_t)n;
        }
        buf[len] = '\0';
        return (ssize_t)len;
}

/* The value of "key N" in a flat-keyed file, or -1. */
static int64_t cg_key(const char *dir, const char *file, const char *key)
{
        char buf[4096];
        if (cg_read(dir, file, buf, sizeof buf) < 0)
                return -1;
        size_t n = strlen(key);
        for (char *l = buf; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
                if (strncmp(l, key, n) == 0 && l[n] == ' ')
                        return strtoll(l + n + 1, NULL, 10);
        return -1;
}

/* A single-number file, or -1. */
static int64_t cg_num(const char *dir, const char *file)
{
        char buf[64];
        if (cg_read(dir, file, buf, sizeof buf) <= 0 || buf[0] < '0' || buf[0] > '9')
                return -1;
        return strtoll(buf, NULL, 10);
}

static void msleep(long ms)
{
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* ---- detection -------------------------------------------------------- */

/* Records cgroup mounts from one mountinfo line. */
static void note_mount(struct cg_host *h, char *line)
{
        char *sep = strstr(line, " - ");
        if (!sep)
                return;
        char mp[PATH_MAX], fstype[32], super[512];
        if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1 ||
            sscanf(sep + 3, "%31s %*s %511s", fstype, super) != 2)
                return;
        if (strcmp(fstype, "cgroup2") == 0 && !h->v2[0]) {
                snprintf(h->v2, sizeof h->v2, "%s", mp);
                return;
        }
        if (strcmp(fstype, "cgroup") != 0)
                return;
        for (char *save = NULL, *o = strtok_r(super, ",", &save); o; o = strtok_r(NULL, ",", &save))
                for (int c = 0; c < CG_V1_N; c++)
                        if (strcmp(o, v1_names[c]) == 0 && !h->v1[c][0])
                                snprintf(h->v1[c], sizeof h->v1[c], "%s", mp);
}

/* 1 when the space-separated list holds word. */
static int has_word(const char *list, const char *word)
{
        size_t n = strlen(word);
        for (const char *p = list; (p = strstr(p, word)); p += n)
                if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\n' || p[n] == '\0'))
                        return 1;
        return 0;
}

static int v2_has_controllers(const struct cg_host *h)
{
        char buf[512];
        if (!h->v2[0] || cg_read(h->v2, "cgroup.controllers", buf, sizeof buf) < 0)
                return 0;
        return has_word(buf, "memory") && has_word(buf, "pids") && has_word(buf, "cpu");
}

int cg_detect(struct cg_host *h, struct jr_err *err)
{
        *h = (struct cg_host){ .backend = CG_NONE };
        _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
        if (!f)
                return jr_fail(err, errno, "open /proc/self/mountinfo");
        char line[4096];
        while (fgets(line, sizeof line, f))
                note_mount(h, line);
        if (v2_has_controllers(h)) {
                h->backend = CG_V2;
                return 0;
        }
        if (h->v1[CG_MEMORY][0] && h->v1[CG_PIDS][0] && h->v1[CG_CPU][0] && h->v1[CG_CPUACCT][0]) {
                h->backend = CG_V1;
                return 0;
        }
        snprintf(h->why, sizeof h->why,
                 "no cgroup hierarchy with the memory, pids and cpu controllers (cgroup2 at '%s')",
                 h->v2[0] ? h->v2 : "nowhere");
        return 0;
}

/* ---- a job's group ---------------------------------------------------- */

/* The job's directory in hierarchy `root`. */
static int job_dir(const struct cg_job *j, const char *root, char *out)
{
        return jr_snprintf(out, PATH_MAX, "%s/%s", root, j->rel);
}

/* mkdir -p of parent below root; on v2 each level delegates the
 * controllers to the next (a group's controllers are those enabled in its
 * parent's subtree_control). */
static int make_parent(const char *root, const char *parent, int v2, struct jr_err *err)
{
        char path[PATH_MAX], buf[PATH_MAX];
        if (jr_snprintf(path, sizeof path, "%s", root) < 0 ||
            jr_snprintf(buf, sizeof buf, "%s", parent) < 0)
                return jr_fail(err, ENAMETOOLONG, "cgroup path");
        for (char *save = NULL, *c = strtok_r(buf, "/", &save);; c = strtok_r(NULL, "/", &save)) {
                if (v2) {
                        int r = cg_write(path, "cgroup.subtree_control", v2_controllers);
                        if (r < 0)
                                return jr_fail(err, -r, "enable %s in %s/cgroup.subtree_control",
                                               v2_controllers, path);
                }
                if (!c)
                        return 0;
                size_t n = strlen(path);
                if (jr_snprintf(path + n, sizeof path - n, "/%s", c) < 0)
                        return jr_fail(err, ENAMETOOLONG, "cgroup path");
                if (mkdir(path, 0755) < 0 && errno != EEXIST)
                        return jr_fail(err, errno, "mkdir %s", path);
        }
}

static int set(const char *dir, const char *file, const char *val, int optional, struct jr_err *err)
{
        int r = cg_write(dir, file, val);
        if (r == -ENOENT && optional)
                return 0;
        return r < 0 ? jr_fail(err, -r, "write %s to %s/%s", val, dir, file) : 0;
}

/* What every v2 group gets, whatever its job's limits. */
static int v2_fixed(const char *dir, struct jr_err *err)
{
        /* No swap: the limit is on memory, not on memory plus disk. */
        int r = set(dir, "memory.swap.max", "0", 1, err);
        /* At the limit the whole job goes, not one process of it. */
        return r < 0 ? r : set(dir, "memory.oom.group", "1", 0, err);
}

/* The limits that differ from old (all of them for a new group). */
static int v2_limits(const char *dir, const struct cg_limits *l, const struct cg_limits *old, struct jr_err *err)
{
        char v[64];
        int r = 0;
        snprintf(v, sizeof v, "%" PRIu64, l->memory);
        if (l->memory != old->memory)
                r = set(dir, "memory.max", v, 0, err);
        snprintf(v, sizeof v, "%u", l->pids);
        if (r == 0 && l->pids != old->pids)
                r = set(dir, "pids.max", v, 0, err);
        snprintf(v, sizeof v, "%" PRIu64 " %" PRIu64, l->cpu_quota_us, l->cpu_period_us);
        if (r == 0 && (l->cpu_quota_us != old->cpu_quota_us || l->cpu_period_us != old->cpu_period_us))
                r = set(dir, "cpu.max", v, 0, err);
        return r;
}

/* v1 OOM notification: an eventfd the memory controller signals. */
static int v1_oom_eventfd(const char *memdir, struct jr_err *err)
{
        char path[PATH_MAX], reg[64];
        if (jr_snprintf(path, sizeof path, "%s/memory.oom_control", memdir) < 0)
                return jr_fail(err, ENAMETOOLONG, "cgroup path");
        _cleanup_close_ int ofd = open(path, O_RDONLY | O_CLOEXEC);
        if (ofd < 0)
                return jr_fail(err, errno, "open %s", path);
        _cleanup_close_ int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (efd < 0)
                return jr_fail(err, errno, "eventfd");
        snprintf(reg, sizeof reg, "%d %d", efd, ofd);
        int r = set(memdir, "cgroup.event_control", reg, 0, err);
        return r < 0 ? r : TAKE_FD(efd);
}

/* memory+swap at the memory figure: no swap (the file is absent without
 * swap accounting). The kernel keeps memory <= memory+swap at every
 * step, so a raise writes memory+swap first and a cut memory first. */
static int v1_memory(const char *dir, uint64_t bytes, uint64_t old, struct jr_err *err)
{
        char v[64];
        snprintf(v, sizeof v, "%" PRIu64, bytes);
        int raise = old && bytes > old;
        int r = raise ? set(dir, "memory.memsw.limit_in_bytes", v, 1, err) : 0;
        if (r == 0)
                r = set(dir, "memory.limit_in_bytes", v, 0, err);
        if (r == 0 && !raise)
                r = set(dir, "memory.memsw.limit_in_bytes", v, 1, err);
        return r;
}

/* The limits that differ from old (all of them for a new group). */
static int v1_limits(struct cg_job *j, const struct cg_limits *l, const struct cg_limits *old, struct jr_err *err)
{
        char dir[PATH_MAX], v[64];
        int r = 0;
        if (l->memory != old->memory && (r = job_dir(j, j->h->v1[CG_MEMORY], dir)) == 0)
                r = v1_memory(dir, l->memory, old->memory, err);
        snprintf(v, sizeof v, "%u", l->pids);
        if (r == 0 && l->pids != old->pids && job_dir(j, j->h->v1[CG_PIDS], dir) == 0)
                r = set(dir, "pids.max", v, 0, err);
        if (r == 0 && l->cpu_period_us != old->cpu_period_us && job_dir(j, j->h->v1[CG_CPU], dir) == 0) {
                snprintf(v, sizeof v, "%" PRIu64, l->cpu_period_us);
                r = set(dir, "cpu.cfs_period_us", v, 0, err);
        }
        if (r == 0 && l->cpu_quota_us != old->cpu_quota_us && job_dir(j, j->h->v1[CG_CPU], dir) == 0) {
                snprintf(v, sizeof v, "%" PRIu64, l->cpu_quota_us);
                r = set(dir, "cpu.cfs_quota_us", v, 0, err);
        }
        return r;
}

/* 1 when v1 controller c shares its mount with an earlier one (cpu,cpuacct). */
static int v1_dup(const struct cg_host *h, int c)
{
        for (int k = 0; k < c; k++)
                if (strcmp(h->v1[k], h->v1[c]) == 0)
                        return 1;
        return 0;
}

/* The directory of v1 controller c's group (a shared mount's owner). */
static int v1_dir(const struct cg_job *j, int c, char *out)
{
        return job_dir(j, j->h->v1[c], out);
}

static int make_dirs(struct cg_job *j, const char *parent, struct jr_err *err)
{
        char dir[PATH_MAX];
        int n = j->h->backend == CG_V2 ? 1 : CG_V1_N;
        for (int c = 0; c < n; c++) {
                const char *root = j->h->backend == CG_V2 ? j->h->v2 : j->h->v1[c];
                if (!root[0] || (j->h->backend == CG_V1 && v1_dup(j->h, c)))
                        continue;
                if (job_dir(j, root, dir) < 0)
                        return jr_fail(err, ENAMETOOLONG, "cgroup path");
                /* A parent that was empty is removed by whoever cleans it
                 * up (another supervisor's last job, an operator) while we
                 * make ours below it: made again, a few times. */
                int r = -ENOENT;
                for (int tries = 0; r == -ENOENT && tries < 4; tries++) {
                        r = make_parent(root, parent, j->h->backend == CG_V2, err);
                        if (r == 0 && mkdir(dir, 0755) < 0)
                                r = jr_fail(err, errno, "mkdir %s", dir);
                }
                if (r < 0)
                        return r;
                j->made[c] = 1;
        }
        return 0;
}

/* v1: the OOM eventfd. */
static int v1_open(struct cg_job *j, struct jr_err *err)
{
        char dir[PATH_MAX];
        int r = v1_dir(j, CG_MEMORY, dir);
        if (r == 0 && (r = v1_oom_eventfd(dir, err)) >= 0) {
                j->oom_fd = r;
                r = 0;
        }
        return r;
}

int cg_job_make(struct cg_job *j, const struct cg_host *h, const char *parent, const char *name,
                struct jr_err *err)
{
        *j = (struct cg_job)CG_JOB_INIT;
        j->h = h;
        const char *p = parent + strspn(parent, "/");
        if (jr_snprintf(j->rel, sizeof j->rel, "%s%s%s", p, *p ? "/" : "", name) < 0)
                return jr_fail(err, ENAMETOOLONG, "cgroup name");
        int r = make_dirs(j, p, err);
        char dir[PATH_MAX];
        if (r == 0 && h->backend == CG_V2) {
                job_dir(j, h->v2, dir);
                r = v2_fixed(dir, err);
                if (r == 0 && (j->dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
                        r = jr_fail(err, errno, "open %s", dir);
        } else if (r == 0) {
                r = v1_open(j, err);
        }
        if (r < 0) {
                struct jr_err ignored;
                cg_job_destroy(j, &ignored);
        }
        return r;
}

int cg_job_limits(struct cg_job *j, const struct cg_limits *l, struct jr_err *err)
{
        char dir[PATH_MAX];
        int r;
        if (j->h->backend == CG_V2) {
                job_dir(j, j->h->v2, dir);
                r = v2_limits(dir, l, &j->lim, err);
        } else {
                r = v1_limits(j, l, &j->lim, err);
        }
        /* Unknown after a failure: all are written next time. */
        j->lim = r == 0 ? *l : (struct cg_limits){ 0 };
        return r;
}

int cg_job_create(struct cg_job *j, const struct cg_host *h, const char *parent, const char *name,
                  const struct cg_limits *l, struct jr_err *err)
{
        int r = cg_job_make(j, h, parent, name, err);
        if (r == 0 && (r = cg_job_limits(j, l, err)) < 0) {
                struct jr_err ignored;
                cg_job_destroy(j, &ignored);
        }
        return r;
}

int cg_job_attach(struct cg_job *j, pid_t pid, struct jr_err *err)
{
        char dir[PATH_MAX], v[32];
        snprintf(v, sizeof v, "%d", (int)pid);
        if (j->h->backend == CG_V2) {
                job_dir(j, j->h->v2, dir);
                return set(dir, "cgroup.procs", v, 0, err);
        }
        for (int c = 0; c < CG_V1_N; c++) {
                if (!j->made[c])
                        continue;
                v1_dir(j, c, dir);
                int r = set(dir, "cgroup.procs", v, 0, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

int cg_job_join_fds(const struct cg_job *j, int fds[CG_V1_N], struct jr_err *err)
{
        char dir[PATH_MAX], path[PATH_MAX];
        int n = 0;
        for (int c = 0; c < CG_V1_N; c++)
                fds[c] = -1;
        for (int c = 0; j->h->backend == CG_V1 && c < CG_V1_N; c++) {
                if (!j->made[c])
                        continue;
                int r = v1_dir(j, c, dir) < 0 || jr_snprintf(path, sizeof path, "%s/tasks", dir) < 0
                        ? jr_fail(err, ENAMETOOLONG, "cgroup path") : 0;
                if (r == 0 && (fds[c] = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
                        r = jr_fail(err, errno, "open %s", path);
                if (r < 0) {
                        for (int k = 0; k < c; k++)
                                closep(&fds[k]);
                        return r;
                }
                n = c + 1;
        }
        return n;
}

/* The group's CPU time, µs, or -1. */
static int64_t raw_cpu_us(const struct cg_job *j)
{
        char dir[PATH_MAX];
        if (j->h->backend == CG_V2) {
                job_dir(j, j->h->v2, dir);
                return cg_key(dir, "cpu.stat", "usage_usec");
        }
        v1_dir(j, CG_CPUACCT, dir);
        int64_t v = cg_num(dir, "cpuacct.usage");
        return v < 0 ? v : v / 1000;
}

int cg_job_cpu_us(const struct cg_job *j, uint64_t *us)
{
        int64_t v = raw_cpu_us(j);
        if (v < 0)
                return -EIO;
        *us = v > j->base.cpu_us ? (uint64_t)(v - j->base.cpu_us) : 0;
        return 0;
}

/* A single number read again through an open file, or -1. */
static int64_t fd_num(int fd)
{
        char buf[64];
        ssize_t n;
        while ((n = pread(fd, buf, sizeof buf - 1, 0)) < 0 && errno == EINTR)
                ;
        if (n <= 0)
                return -1;
        buf[n] = '\0';
        return buf[0] >= '0' && buf[0] <= '9' ? strtoll(buf, NULL, 10) : -1;
}

/* What the kernel says of the group, since it was made (the peak: since
 * its last reset). */
static void raw_stats(const struct cg_job *j, struct cg_stats *s)
{
        char dir[PATH_MAX];
        *s = (struct cg_stats){ -1, -1, -1, -1, -1, -1, -1 };
        if (j->h->backend == CG_V2) {
                job_dir(j, j->h->v2, dir);
                s->peak_memory_bytes = j->peak_fd >= 0 ? fd_num(j->peak_fd) : cg_num(dir, "memory.peak");
                s->cpu_user_us = cg_key(dir, "cpu.stat", "user_usec");
                s->cpu_system_us = cg_key(dir, "cpu.stat", "system_usec");
                s->cpu_us = cg_key(dir, "cpu.stat", "usage_usec");
                s->pids_peak = cg_num(dir, "pids.peak");
                s->oom_kills = cg_key(dir, "memory.events", "oom_kill");
                s->pids_max_hits = cg_key(dir, "pids.events", "max");
                return;
        }
        if (j->h->backend != CG_V1)
                return;
        v1_dir(j, CG_MEMORY, dir);
        s->peak_memory_bytes = j->peak_fd >= 0 ? fd_num(j->peak_fd) : cg_num(dir, "memory.max_usage_in_bytes");
        s->oom_kills = cg_key(dir, "memory.oom_control", "oom_kill");
        v1_dir(j, CG_CPUACCT, dir);
        int64_t u = cg_num(dir, "cpuacct.usage_user"), y = cg_num(dir, "cpuacct.usage_sys");
        s->cpu_user_us = u < 0 ? -1 : u / 1000;
        s->cpu_system_us = y < 0 ? -1 : y / 1000;
        int64_t t = cg_num(dir, "cpuacct.usage");
        s->cpu_us = t < 0 ? -1 : t / 1000;
        v1_dir(j, CG_PIDS, dir);
        s->pids_max_hits = cg_key(dir, "pids.events", "max");
        s->pids_peak = cg_num(dir, "pids.peak");  /* newer kernels only */
}

/* v less what it was at the job's start (unknown stays unknown). */
static int64_t since(int64_t v, int64_t base)
{
        return v < 0 ? -1 : v > base ? v - base : 0;
}

void cg_job_stats(const struct cg_job *j, struct cg_stats *s)
{
        raw_stats(j, s);
        const struct cg_base *b = &j->base;
        s->peak_memory_bytes = since(s->peak_memory_bytes, b->memory);
        s->cpu_user_us = since(s->cpu_user_us, b->user_us);
        s->cpu_system_us = since(s->cpu_system_us, b->system_us);
        s->cpu_us = since(s->cpu_us, b->cpu_us);
        s->oom_kills = since(s->oom_kills, b->oom_kills);
        s->pids_max_hits = since(s->pids_max_hits, b->pids_max_hits);
        /* pids.peak cannot be reset: a pool reuses only a group whose
         * peak is at most 1, which every job reaches (cgpool.c). */
}

/* ---- reuse ------------------------------------------------------------ */

int cg_job_open_peak(struct cg_job *j)
{
        char dir[PATH_MAX], path[PATH_MAX];
        int v2 = j->h->backend == CG_V2;
        if (job_dir(j, v2 ? j->h->v2 : j->h->v1[CG_MEMORY], dir) < 0 ||
            jr_snprintf(path, sizeof path, "%s/%s", dir, v2 ? "memory.peak" : "memory.max_usage_in_bytes") < 0)
                return -ENAMETOOLONG;
        int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)  /* v2 before 6.12: read-only, EACCES */
                return errno == EACCES || errno == EPERM ? 0 : -errno;
        ssize_t n;
        while ((n = write(fd, "0", 1)) < 0 && errno == EINTR)
                ;
        if (n != 1) {
                close(fd);
                return 0;
        }
        closep(&j->peak_fd);
        j->peak_fd = fd;
        return 1;
}

int cg_job_reset_peak(struct cg_job *j, struct jr_err *err)
{
        ssize_t n;
        /* v1 sets memory.max_usage_in_bytes to the usage now; v2 the peak
         * reads through this descriptor see. */
        while ((n = write(j->peak_fd, "0", 1)) < 0 && errno == EINTR)
                ;
        if (n != 1)
                return jr_fail(err, n < 0 ? errno : EIO, "reset the memory peak of %s", j->rel);
        int64_t now = fd_num(j->peak_fd);
        if (now < 0)
                return jr_fail(err, EIO, "read the memory peak of %s", j->rel);
        j->base.memory = now;
        return 0;
}

int64_t cg_job_baseline(struct cg_job *j)
{
        struct cg_stats s;
        raw_stats(j, &s);
        int64_t cpu = raw_cpu_us(j);
        j->base = (struct cg_base){
                .memory = j->base.memory,
                .cpu_us = cpu < 0 ? 0 : cpu,
                .user_us = s.cpu_user_us < 0 ? 0 : s.cpu_user_us,
                .system_us = s.cpu_system_us < 0 ? 0 : s.cpu_system_us,
                .oom_kills = s.oom_kills < 0 ? 0 : s.oom_kills,
                .pids_max_hits = s.pids_max_hits < 0 ? 0 : s.pids_max_hits,
        };
        uint64_t x;  /* v1: an OOM signalled late must not reach the next job */
        while (j->oom_fd >= 0 && (read(j->oom_fd, &x, sizeof x) > 0 || errno == EINTR))
                ;
        return s.pids_peak;
}

/* ---- the end of a job ------------------------------------------------- */

/* SIGKILLs every pid listed in dir/cgroup.procs; returns how many. */
static int kill_listed(const char *dir)
{
        char buf[65536];
        if (cg_read(dir, "cgroup.procs", buf, sizeof buf) < 0)
                return 0;
        int n = 0;
        for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                pid_t pid = (pid_t)strtol(l, NULL, 10);
                if (pid > 0 && kill(pid, SIGKILL) == 0)
                        n++;
        }
        return n;
}

static int empty(const char *dir)
{
        char buf[64];
        return cg_read(dir, "cgroup.procs", buf, sizeof buf) <= 0;
}

/* Kills everything in the group and waits (up to 2 s) until it is empty.
 * v2: cgroup.kill, one atomic write. v1: freeze, kill each, thaw, so no
 * process forks away between the listing and the kill. Usually the group
 * is empty already: the jail's init was reaped, and the pid namespace's
 * processes died before it. 0, or -EBUSY. */
static int kill_all(const struct cg_job *j, const char *dir)
{
        char freezer[PATH_MAX] = "";
        if (empty(dir)) {
                return 0;
        } else if (j->h->backend == CG_V2 && cg_write(dir, "cgroup.kill", "1") == 0) {
                /* fall through to the wait */
        } else {
                if (j->h->backend == CG_V1 && j->made[CG_FREEZER]) {
                        v1_dir(j, CG_FREEZER, freezer);
                        cg_write(freezer, "freezer.state", "FROZEN");
                }
                kill_listed(dir);
                if (freezer[0])
                        cg_write(freezer, "freezer.state", "THAWED");
        }
        for (int i = 0; i < 400 && !empty(dir); i++) {
                kill_listed(dir);  /* the kernel finishes the kill; anything left is killed again */
                /* A group a dead jailrun left frozen: killed tasks die only thawed. */
                if (j->h->backend == CG_V1 && j->made[CG_FREEZER]) {
                        v1_dir(j, CG_FREEZER, freezer);
                        cg_write(freezer, "freezer.state", "THAWED");
                }
                msleep(5);
        }
        return empty(dir) ? 0 : -EBUSY;
}

/* The directory whose cgroup.procs lists the job's processes. */
static int procs_dir(const struct cg_job *j, char *dir)
{
        return job_dir(j, j->h->backend == CG_V2 ? j->h->v2 : j->h->v1[CG_MEMORY], dir);
}

int cg_job_empty(const struct cg_job *j)
{
        char dir[PATH_MAX];
        if (!j->h || j->h->backend == CG_NONE || procs_dir(j, dir) < 0)
                return 0;
        return kill_all(j, dir);
}

int cg_job_is_empty(const struct cg_job *j)
{
        char dir[PATH_MAX];
        return !j->h || j->h->backend == CG_NONE || procs_dir(j, dir) < 0 || empty(dir);
}

static int remove_dir(const char *dir, struct jr_err *err)
{
        for (int i = 0; i < 400; i++) {
                if (rmdir(dir) == 0 || errno == ENOENT)
                        return 0;
                if (errno != EBUSY)
                        break;
                msleep(5);  /* exiting tasks leave the group a moment later */
        }
        return jr_fail(err, errno, "rmdir %s", dir);
}

int cg_job_destroy(struct cg_job *j, struct jr_err *err)
{
        char dir[PATH_MAX];
        int r = 0;
        closep(&j->peak_fd);
        if (j->h && j->h->backend == CG_V2 && j->made[0]) {
                job_dir(j, j->h->v2, dir);
                kill_all(j, dir);
                r = remove_dir(dir, err);
                j->made[0] = 0;
        } else if (j->h && j->h->backend == CG_V1) {
                if (j->made[CG_MEMORY]) {
                        v1_dir(j, CG_MEMORY, dir);
                        kill_all(j, dir);
                }
                for (int c = 0; c < CG_V1_N; c++) {
                        if (!j->made[c])
                                continue;
                        v1_dir(j, c, dir);
                        int q = remove_dir(dir, err);
                        r = r < 0 ? r : q;
                        j->made[c] = 0;
                }
        }
        closep(&j->dirfd);
        closep(&j->oom_fd);
        return r;
}

/* 1 when pid is a live jailrun. */
static int jailrun_alive(pid_t pid)
{
        char path[64], comm[32];
        snprintf(path, sizeof path, "/proc/%d", (int)pid);
        if (cg_read(path, "comm", comm, sizeof comm) < 0)
                return 0;
        return strcmp(comm, "jailrun\n") == 0;
}

void cg_sweep_stale(const struct cg_host *h, const char *parent)
{
        cg_sweep(h, parent, 0);
}

void cg_sweep(const struct cg_host *h, const char *parent, int all)
{
        const char *p = parent + strspn(parent, "/");
        const char *root = h->backend == CG_V2 ? h->v2 : h->v1[CG_MEMORY];
        char dir[PATH_MAX];
        if (h->backend == CG_NONE || jr_snprintf(dir, sizeof dir, "%s/%s", root, p) < 0)
                return;
        DIR *d = opendir(dir);
        if (!d)
                return;
        struct dirent *de;
        while ((de = readdir(d))) {
                int pid;
                char tail;
                if (all ? strncmp(de->d_name, "job-", 4) != 0 && strncmp(de->d_name, "pool-", 5) != 0
                        : sscanf(de->d_name, "job-%d%c", &pid, &tail) != 1 || pid <= 0 || jailrun_alive(pid))
                        continue;
                struct cg_job j = CG_JOB_INIT;
                j.h = h;
                if (jr_snprintf(j.rel, sizeof j.rel, "%s%s%s", p, *p ? "/" : "", de->d_name) < 0)
                        continue;
                for (int c = 0; c < (h->backend == CG_V2 ? 1 : CG_V1_N); c++)
                        j.made[c] = h->backend == CG_V2 || (h->v1[c][0] && !v1_dup(h, c));
                struct jr_err ignored;
                cg_job_destroy(&j, &ignored);
        }
        closedir(d);
}

size_t cg_job_pids(const struct cg_job *j, pid_t *out, size_t max)
{
        char dir[PATH_MAX], path[PATH_MAX + 16], buf[4096];
        if (j->h->backend == CG_V2)
                job_dir(j, j->h->v2, dir);
        else
                v1_dir(j, CG_PIDS, dir);
        snprintf(path, sizeof path, "%s/cgroup.procs", dir);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
        if (n <= 0)
                return 0;
        buf[n] = '\0';
        size_t k = 0;
        for (char *p = buf, *end; k < max && *p; p = end) {
                long v = strtol(p, &end, 10);
                if (end == p)
                        break;
                if (v > 0)
                        out[k++] = (pid_t)v;
        }
        return k;
}
