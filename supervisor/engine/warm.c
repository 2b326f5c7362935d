#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/sanitizers.h"
#include "common/zyproto.h"
#include "supervisor/engine/log.h"
#include "supervisor/engine/warm.h"

/* Namespaces of the zygote itself: its root, and nothing it could share
 * with the host's network, IPC or host name. No user namespace (each
 * child makes its own) and no pid namespace (its children must not die
 * with it). */
#define ZYGOTE_NS_FLAGS (CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)
/* Longest the loop waits for a zygote's answer to one clone. */
#define WARM_REPLY_TIMEOUT_S 5
#define WARM_BACKOFF_MIN_S 0.5
#define WARM_BACKOFF_MAX_S 60.0
/* waitid's idtype for a pidfd (linux/wait.h; glibc names it from 2.36). */
#define JR_P_PIDFD 3

static void note(struct warm *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct warm *w, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->last_error, sizeof w->last_error, fmt, ap);
        va_end(ap);
        if (w->note)
                w->note(w->note_data, w->last_error);
        else
                log_msg("%s", w->last_error);
}

static const char *profile_name(const struct warm *w)
{
        return w->profile == JAIL_PROFILE_EXEC ? "exec" : "worker";
}

/* No zygote in p. */
static void proc_clear(struct warm_proc *p, struct warm *w)
{
        *p = (struct warm_proc){ .pidfd = -1, .sock = -1, .wpid = WATCH_INIT, .wsock = WATCH_INIT, .owner = w };
}

/* Ends a zygote (killed, reaped); its children are ours and live on. */
static void proc_end(struct warm_proc *p)
{
        loop_unwatch(&p->wsock);
        loop_unwatch(&p->wpid);
        if (p->pid > 0) {
                kill(p->pid, SIGKILL);
                while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
                        ;
        }
        closep(&p->sock);
        closep(&p->pidfd);
        proc_clear(p, p->owner);
}

static void schedule_retry(struct warm *w)
{
        if (timer_arm(&w->retry, w->backoff_s, 0) < 0)
                note(w, "warm zygote (%s): cannot arm its retry timer", profile_name(w));
        w->backoff_s = w->backoff_s * 2 > WARM_BACKOFF_MAX_S ? WARM_BACKOFF_MAX_S : w->backoff_s * 2;
}

/* Threads of pid from the host's /proc: a zygote clones only while it
 * has one (numpy's BLAS pool must not have started). */
/* /proc/PID/NAME of the host's into buf (NUL-terminated); 0 or -1. */
static int read_proc(pid_t pid, const char *name, char *buf, size_t size)
{
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? -1 : read(fd, buf, size - 1);
        if (n <= 0)
                return -1;
        buf[n] = '\0';
        return 0;
}

static int thread_count(pid_t pid)
{
        char buf[4096];
        if (read_proc(pid, "status", buf, sizeof buf) < 0)
                return -1;
        const char *t = strstr(buf, "\nThreads:");
        return t ? atoi(t + 9) : -1;
}

static void became_ready(struct warm *w, struct warm_proc *p, const char *msg)
{
        int threads = thread_count(p->pid);
        if (threads != 1) {
                note(w, "warm zygote (%s) runs %d threads, not 1: not used; jails start cold", profile_name(w), threads);
                proc_end(p);
                return schedule_retry(w);
        }
        p->ready = 1;
        w->backoff_s = WARM_BACKOFF_MIN_S;
        if (msg[0])
                note(w, "warm zygote (%s): could not preload: %s", profile_name(w), msg);
        if (p == &w->next) {  /* the replacement takes over */
                proc_end(&w->cur);
                w->cur = w->next;
                w->cur.wpid.data = w->cur.wsock.data = &w->cur;
                loop_unwatch(&w->next.wpid);
                proc_clear(&w->next, w);
                if (loop_watch(w->loop, &w->cur.wpid, w->cur.pidfd, EPOLLIN, 1, w->cur.wpid.fn, &w->cur) < 0)
                        proc_end(&w->cur);
                w->replaced++;
        }
}

static void on_hello(struct watch *wt, uint32_t events)
{
        (void)events;
        struct warm_proc *p = wt->data;
        struct warm *w = p->owner;
        struct zy_hello h;
        ssize_t n;
        while ((n = recv(p->sock, &h, sizeof h, MSG_DONTWAIT)) < 0 && errno == EINTR)
                ;
        if (n < 0 && errno == EAGAIN)
                return;
        loop_unwatch(&p->wsock);  /* from here the socket is read only in warm_spawn */
        if (n != (ssize_t)sizeof h || h.magic != ZY_MAGIC || h.errnum) {
                h.msg[sizeof h.msg - 1] = '\0';
                note(w, "warm zygote (%s) could not be made: %s", profile_name(w),
                     n == (ssize_t)sizeof h && h.magic == ZY_MAGIC ? h.msg : "it ended without saying why");
                proc_end(p);
                return schedule_retry(w);
        }
        h.msg[sizeof h.msg - 1] = '\0';
        became_ready(w, p, h.msg);
}

static void on_zygote_exit(struct watch *wt, uint32_t events)
{
        (void)events;
        struct warm_proc *p = wt->data;
        struct warm *w = p->owner;
        int st = 0;
        while (waitpid(p->pid, &st, WNOHANG) < 0 && errno == EINTR)
                ;
        san_note_exit("a warm zygote", p->pid, st);
        w->crashes++;
        note(w, "warm zygote (%s, pid %d) ended (%s %d); jails start cold until another is ready", profile_name(w),
             (int)p->pid, WIFSIGNALED(st) ? "signal" : "status", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        p->pid = 0;  /* reaped */
        proc_end(p);
        if (!w->cur.pid && !w->next.pid)
                schedule_retry(w);
}

/* Clones a zygote's set-up (jail/zsetup.c) into p. */
static int proc_start(struct warm *w, struct warm_proc *p, struct jr_err *err)
{
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return jr_fail(err, errno, "zygote socketpair");
        struct timeval tv = { .tv_sec = WARM_REPLY_TIMEOUT_S };
        if (setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) {
                int e = errno;
                close(sv[0]);
                close(sv[1]);
                return jr_fail(err, e, "zygote socket timeout");
        }
        int pidfd = -1;
        struct clone_args a = {
                .flags = ZYGOTE_NS_FLAGS | CLONE_PIDFD,
                .pidfd = (uint64_t)(uintptr_t)&pidfd,
                .exit_signal = SIGCHLD,
        };
        fflush(NULL);
        pid_t pid = (pid_t)syscall(SYS_clone3, &a, sizeof a);
        if (pid == 0) {
                struct jail_zygote_cfg zc = {
                        .profile = w->profile,
                        .program = w->program,
                        .ctl_fd = sv[1],
                        .stderr_fd = STDERR_FILENO,
                        .preload = w->preload,
                };
                jail_zygote_main(&zc);
        }
        int e = errno;
        close(sv[1]);
        if (pid < 0) {
                close(sv[0]);
                return jr_fail(err, e, "clone the zygote");
        }
        *p = (struct warm_proc){ .pid = pid, .pidfd = pidfd, .sock = sv[0], .gen = ++w->gen, .owner = w,
                                 .wpid = WATCH_INIT, .wsock = WATCH_INIT };
        int r = loop_watch(w->loop, &p->wpid, pidfd, EPOLLIN, 1, on_zygote_exit, p);
        if (r == 0)
                r = loop_watch(w->loop, &p->wsock, p->sock, EPOLLIN, 1, on_hello, p);
        if (r < 0) {
                proc_end(p);
                return jr_fail(err, -r, "watch the zygote");
        }
        return 0;
}

static void start_next(struct warm *w)
{
        struct jr_err err = { 0 };
        struct warm_proc *p = w->cur.pid ? &w->next : &w->cur;
        if (p->pid)
                return;
        if (proc_start(w, p, &err) < 0) {
                note(w, "warm zygote (%s): %s", profile_name(w), err.msg);
                schedule_retry(w);
        }
}

static void on_retry(struct timer *t)
{
        start_next(t->data);
}

int warm_init(struct warm *w, struct loop *l, enum jail_profile profile, const char *preload_json, unsigned max_forks,
              struct jr_err *err)
{
        *w = (struct warm){ .loop = l, .profile = profile, .max_forks = max_forks ? max_forks : 1,
                            .retry = TIMER_INIT, .backoff_s = WARM_BACKOFF_MIN_S };
        proc_clear(&w->cur, w);
        proc_clear(&w->next, w);
        int r = jail_zygote_program_find(w->program, sizeof w->program, err);
        if (r < 0)
                return r;
        if (!(w->preload = strdup(preload_json ? preload_json : "[]")))
                return jr_fail(err, ENOMEM, "preload list");
        if ((r = timer_init(l, &w->retry, 1, on_retry, w)) < 0) {
                free(w->preload);
                return jr_fail(err, -r, "zygote retry timer");
        }
        r = proc_start(w, &w->cur, err);
        if (r < 0) {
                timer_close(&w->retry);
                free(w->preload);
        }
        return r;
}

int warm_can(const struct warm *w, const struct jail_cfg *cfg)
{
        /* Past its budget the zygote serves on while its replacement is
         * made, but not for ever (the replacement may keep failing). */
        return w && w->cur.ready && w->cur.forks < 2 * w->max_forks && cfg->profile == w->profile && cfg->data_fd < 0 &&
               (cfg->entry == JAIL_ENTRY_TICKS || cfg->entry == JAIL_ENTRY_SCRIPT || cfg->entry == JAIL_ENTRY_LOAD ||
                cfg->entry == JAIL_ENTRY_SESSION);
}

/* The serving zygote failed a request: said, ended, made again. */
static int broken(struct warm *w, const struct jr_err *err, int r)
{
        /* Dead already (its pidfd readable): it ended, as on_zygote_exit
         * would count it had the loop seen that first. */
        struct pollfd dead = { .fd = w->cur.pidfd, .events = POLLIN };
        if (poll(&dead, 1, 0) == 1)
                w->crashes++;
        note(w, "warm zygote (%s, pid %d): %s; it is replaced, and jails start cold meanwhile", profile_name(w),
             (int)w->cur.pid, err->msg);
        proc_end(&w->cur);
        schedule_retry(w);
        return r;
}

/* One request and its answer; the child's pid and pidfd in *s. */
static int ask(struct warm *w, const struct jail_cfg *cfg, struct cg_job *cg, struct spawn *s, int *late,
               struct jr_err *err)
{
        _cleanup_close_ int cfd = jail_config_memfd(cfg, err);
        if (cfd < 0)
                return cfd;
        int has_cg = cg && cg->dirfd >= 0;
        int fds[ZY_MAX_FDS] = { cfg->stdin_fd, cfg->stdout_fd, cfg->stderr_fd, cfg->channel_fd, cfg->sync_fd, cfd,
                                has_cg ? cg->dirfd : -1 };
        /* v1: the child moves itself in (no grace period on our path) */
        int *join = fds + ZY_FD_CGROUP + has_cg;
        int n_join = 0, v1[CG_V1_N];
        int nv1 = cg && !has_cg ? cg_job_join_fds(cg, v1, err) : 0;
        if (nv1 < 0)
                return nv1;
        for (int i = 0; i < nv1; i++)  /* -1 where a hierarchy is shared or absent */
                if (v1[i] >= 0)
                        join[n_join++] = v1[i];
        struct zy_req q = { .magic = ZY_MAGIC, .has_cgroup = (uint32_t)has_cg, .n_join = (uint32_t)n_join };
        int r = jr_send_fds(w->cur.sock, &q, sizeof q, fds, (size_t)(ZY_FD_CGROUP + has_cg + n_join));
        for (int i = 0; i < n_join; i++)
                close(join[i]);
        if (r < 0) {
                jr_fail(err, -r, "ask the warm zygote for a jail");
                return broken(w, err, r);
        }
        struct zy_rep rep;
        int pidfd = -1;
        size_t got = 0;
        ssize_t n = jr_recv_fds(w->cur.sock, &rep, sizeof rep, &pidfd, 1, &got);
        if (n <= 0 || rep.magic != ZY_MAGIC) {  /* dead, hung, or confused: replaced */
                w->maybe_lost = 1;  /* it may have cloned the jail */
                if (got)
                        close(pidfd);
                r = jr_fail(err, n == 0 ? EPIPE : n < 0 ? (int)-n : EPROTO, "the warm zygote did not answer");
                return broken(w, err, r);
        }
        rep.msg[sizeof rep.msg - 1] = '\0';
        if (rep.errnum || got != 1 || rep.pid <= 0) {
                w->maybe_lost |= !rep.errnum;  /* a jail made, its pidfd not passed */
                if (got)
                        close(pidfd);
                return jr_fail(err, rep.errnum ? rep.errnum : EPROTO, "warm zygote: %s", rep.msg[0] ? rep.msg : "no jail");
        }
        *s = (struct spawn){ .pid = rep.pid, .pidfd = pidfd };
        *late = n_join ? 0 : rep.late;  /* joined: nothing for us to move */
        return 0;
}

int warm_ask(struct warm *w, const struct jail_cfg *cfg, struct cg_job *cg, struct spawn *s, int *late,
             struct jr_err *err)
{
        int r = ask(w, cfg, cg, s, late, err);
        if (r < 0) {
                w->fallbacks++;
                return r;
        }
        w->spawned++;
        if (++w->cur.forks >= w->max_forks)
                start_next(w);
        return 0;
}

/* The pids of every pidfd we hold (/proc/self/fdinfo's "Pid:"): the
 * children of ours we know of. Their count, or -errno when any pidfd's
 * could not be read (then none may be taken for a stray). */
static int held_pids(pid_t **pids)
{
        *pids = NULL;
        _cleanup_close_ int dfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
        if (!d)
                return -errno;
        dfd = -1;  /* the DIR's now */
        int n = 0, max = 0, r = 0;
        struct dirent *e;
        while (r == 0 && (e = readdir(d))) {
                char link[64], name[300], info[1024];
                if (e->d_name[0] == '.')
                        continue;
                ssize_t len = readlinkat(dirfd(d), e->d_name, link, sizeof link - 1);
                if (len < 0 && errno != ENOENT)  /* ENOENT: the fd of this very listing, closed */
                        r = -errno;
                if (len <= 0 || (link[len] = '\0', strcmp(link, "anon_inode:[pidfd]") != 0))
                        continue;
                snprintf(name, sizeof name, "fdinfo/%s", e->d_name);
                const char *p = read_proc(getpid(), name, info, sizeof info) < 0 ? NULL : strstr(info, "\nPid:");
                pid_t *more = p && n == max ? reallocarray(*pids, (size_t)(max = max ? 2 * max : 64), sizeof **pids)
                                            : *pids;
                if (!p || !more)
                        r = !p ? -EIO : -ENOMEM;
                else
                        (*pids = more)[n++] = (pid_t)atoi(p + 5);
        }
        closedir(d);
        return r < 0 ? r : n;
}

/* A clone of ours (CLONE_PARENT) that no zygote told us of: named as
 * its zygote still, and none of the pidfds we hold is its. */
static int is_stray(const struct warm *w, pid_t pid, const pid_t *held, int nheld)
{
        char buf[512];
        if (pid == w->cur.pid || pid == w->next.pid || read_proc(pid, "stat", buf, sizeof buf) < 0)
                return 0;
        const char *l = strchr(buf, '('), *r = strrchr(buf, ')');
        int ppid = -1;
        if (!l || !r || sscanf(r + 1, " %*c %d", &ppid) != 1 || ppid != getpid())
                return 0;
        if ((size_t)(r - l - 1) != strlen(JAIL_ZYGOTE_NAME) || strncmp(l + 1, JAIL_ZYGOTE_NAME, (size_t)(r - l - 1)))
                return 0;
        for (const struct warm_stray *s = w->strays; s; s = s->next)
                if (s->pid == pid)
                        return 0;
        for (int i = 0; i < nheld; i++)
                if (held[i] == pid)
                        return 0;
        return 1;
}

/* 1 once the stray is reaped (or found not to be ours), 0 while it runs. */
static int stray_reap(struct warm_stray *s, int block)
{
        pid_t r;
        while ((r = waitpid(s->pid, NULL, block ? 0 : WNOHANG)) < 0 && errno == EINTR)
                ;
        if (r < 0)
                log_msg("warm zygote (%s): reap its lost child %d: %s", profile_name(s->owner), (int)s->pid,
                        strerror(errno));
        return r != 0;
}

static void stray_free(struct warm_stray *s)
{
        struct warm *w = s->owner;
        int fd = s->wpid.fd;
        loop_unwatch(&s->wpid);
        closep(&fd);
        for (struct warm_stray **p = &w->strays; *p; p = &(*p)->next)
                if (*p == s) {
                        *p = s->next;
                        break;
                }
        free(s);
}

static void on_stray_exit(struct watch *wt, uint32_t events)
{
        (void)events;
        if (stray_reap(wt->data, 0))
                stray_free(wt->data);
}

/* Strays with no watch (pidfd_open or the loop refused one): reaped here
 * once they have ended, at the next loss or at warm_free. */
static void strays_sweep(struct warm *w, int block)
{
        for (struct warm_stray *s = w->strays, *next; s; s = next) {
                next = s->next;
                if (block && s->wpid.fd >= 0 && syscall(SYS_pidfd_send_signal, s->wpid.fd, SIGKILL, NULL, 0) < 0 &&
                    errno != ESRCH)
                        log_msg("warm zygote (%s): kill its lost child %d: %s", profile_name(w), (int)s->pid,
                                strerror(errno));
                if ((block || s->wpid.fd < 0) && stray_reap(s, block))
                        stray_free(s);
        }
}

/* Whether fd is a pidfd of a child of ours: waitid answers ECHILD for
 * any other (our /proc is another pid namespace's, or SIGCHLD ignored
 * reaped it and its pid went to another process). */
static int our_child(int fd)
{
        siginfo_t si = { 0 };
        int r;
        while ((r = waitid((idtype_t)JR_P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG | WNOWAIT)) < 0 && errno == EINTR)
                ;
        return r == 0;
}

/* Kills the stray pid (our child, unreaped: its pid is its own) and reaps
 * it once it has ended, from the loop. 0, or -errno (it is left alone). */
static int stray_end(struct warm *w, pid_t pid)
{
        struct warm_stray *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        *s = (struct warm_stray){ .wpid = WATCH_INIT, .pid = pid, .owner = w, .next = w->strays };
        int fd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (fd >= 0 && !our_child(fd)) {
                close(fd);
                free(s);
                return -ECHILD;
        }
        int r = fd < 0 ? kill(pid, SIGKILL) : (int)syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
        if (r < 0 && errno != ESRCH)
                log_msg("warm zygote (%s): kill its lost child %d: %s", profile_name(w), (int)pid, strerror(errno));
        if (fd >= 0 && loop_watch(w->loop, &s->wpid, fd, EPOLLIN, 1, on_stray_exit, s) < 0)
                close(fd);  /* swept, as one with no pidfd */
        w->strays = s;
        log_msg("warm zygote (%s): its lost child %d killed, to be reaped once it has ended", profile_name(w),
                (int)pid);
        return 0;
}

void warm_lost(struct warm *w)
{
        strays_sweep(w, 0);
        if (!w->maybe_lost)
                return;
        w->maybe_lost = 0;
        _cleanup_free_ pid_t *held = NULL;
        int nheld = held_pids(&held);
        _cleanup_close_ int dfd = nheld < 0 ? -1 : open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
        if (!d) {
                note(w, "warm zygote (%s): its lost child is not looked for: %s: %s", profile_name(w),
                     nheld < 0 ? "our pidfds" : "/proc", strerror(nheld < 0 ? -nheld : errno));
                return;
        }
        dfd = -1;
        struct dirent *e;
        while ((e = readdir(d)))
                if (e->d_name[0] >= '1' && e->d_name[0] <= '9' && is_stray(w, (pid_t)atoi(e->d_name), held, nheld)) {
                        int r = stray_end(w, (pid_t)atoi(e->d_name));
                        if (r < 0)
                                note(w, "warm zygote (%s): its lost child %s: %s", profile_name(w), e->d_name,
                                     strerror(-r));
                        else
                                w->lost++;
                }
        closedir(d);
}

void warm_free(struct warm *w)
{
        if (!w->loop)
                return;
        proc_end(&w->next);
        proc_end(&w->cur);
        strays_sweep(w, 1);
        timer_close(&w->retry);
        free(w->preload);
        w->preload = NULL;
        w->loop = NULL;
}
