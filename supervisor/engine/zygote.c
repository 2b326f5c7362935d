#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/fdio.h"
#include "supervisor/engine/job.h"
#include "supervisor/engine/zygote.h"

#define ZREQ_MAGIC 0x6a72737aU  /* "jrsz" */
/* stdin, stdout, stderr, channel, go-ahead pipe, script */
#define ZREQ_FDS 6

struct zreq {
        uint32_t magic;
        uint64_t script_len;
};

struct zrep {
        int32_t errnum;  /* 0, or why the clone failed (msg) */
        int32_t pid;
        int32_t late;
        char msg[512];  /* a jr_err message */
};

/* The script of a request, from its memfd. */
static char *read_script_fd(int fd, uint64_t len)
{
        if (len > JOB_MAX_SCRIPT)
                return NULL;
        char *s = malloc(len + 1);
        for (uint64_t got = 0; s && got < len;) {
                ssize_t n = pread(fd, s + got, len - got, (off_t)got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        free(s);
                        return NULL;
                }
                got += (uint64_t)n;
        }
        if (s)
                s[len] = '\0';
        return s;
}

/* One request: clone a jail with its fds and script, answer with its pid
 * and pidfd. */
static void serve_one(int sock, const struct jail_cfg *base, int cgfd, const int *fds, uint64_t script_len)
{
        struct zrep rep = { 0 };
        int pidfd = -1;
        _cleanup_free_ char *script = read_script_fd(fds[5], script_len);
        if (!script) {
                rep.errnum = EINVAL;
                snprintf(rep.msg, sizeof rep.msg, "zygote: cannot read the script");
        } else {
                struct jail_cfg cfg = *base;
                cfg.stdin_fd = fds[0];
                cfg.stdout_fd = fds[1];
                cfg.stderr_fd = fds[2];
                cfg.channel_fd = fds[3];
                cfg.sync_fd = fds[4];
                cfg.close_fd = -1;
                cfg.data_fd = -1;
                cfg.script = script;
                cfg.script_len = script_len;
                struct spawn s;
                struct jr_err e = { 0 };
                int late = 1;
                if (spawn_clone(&cfg, cgfd, 1, &s, &late, &e) < 0) {
                        rep.errnum = e.errnum ? e.errnum : EIO;
                        memcpy(rep.msg, e.msg, sizeof rep.msg);
                } else {
                        rep.pid = (int32_t)s.pid;
                        rep.late = late;
                        pidfd = s.pidfd;
                }
        }
        jr_send_fds(sock, &rep, sizeof rep, &pidfd, pidfd >= 0 ? 1 : 0);
        if (pidfd >= 0)
                close(pidfd);
}

/* Closes every fd but 0-2, sock and cgfd. */
static void close_others(int sock, int cgfd)
{
        int keep[2] = { sock < cgfd || cgfd < 0 ? sock : cgfd, sock < cgfd || cgfd < 0 ? cgfd : sock };
        unsigned from = 3;
        for (int i = 0; i < 2; i++) {
                if (keep[i] < 0)
                        continue;
                if ((unsigned)keep[i] > from)
                        syscall(SYS_close_range, from, (unsigned)keep[i] - 1, 0);
                from = (unsigned)keep[i] + 1;
        }
        syscall(SYS_close_range, from, ~0U, 0);
}

_Noreturn static void zygote_main(int sock, const struct jail_cfg *base, int cgfd, pid_t parent)
{
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
                _exit(1);
        close_others(sock, cgfd);
        for (;;) {
                struct zreq q;
                int fds[ZREQ_FDS];
                size_t got = 0;
                ssize_t n = jr_recv_fds(sock, &q, sizeof q, fds, ZREQ_FDS, &got);
                if (n == 0)
                        _exit(0);  /* the supervisor is done */
                if (n < 0 || got != ZREQ_FDS || q.magic != ZREQ_MAGIC)
                        _exit(1);  /* not our supervisor speaking */
                serve_one(sock, base, cgfd, fds, q.script_len);
                for (int i = 0; i < ZREQ_FDS; i++)
                        close(fds[i]);
        }
}

int zygote_start(struct zygote *z, const struct jail_cfg *base, int cgfd, struct jr_err *err)
{
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return jr_fail(err, errno, "zygote socketpair");
        pid_t parent = getpid();
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
                int e = errno;
                close(sv[0]);
                close(sv[1]);
                return jr_fail(err, e, "fork the zygote");
        }
        if (pid == 0) {
                close(sv[0]);
                zygote_main(sv[1], base, cgfd, parent);
        }
        close(sv[1]);
        *z = (struct zygote){ .pid = pid, .sock = sv[0] };
        return 0;
}

static int script_memfd(const struct jail_cfg *cfg, struct jr_err *err)
{
        _cleanup_close_ int fd = memfd_create("jailrun-script", MFD_CLOEXEC);
        if (fd < 0)
                return jr_fail(err, errno, "memfd_create");
        for (size_t off = 0; off < cfg->script_len;) {
                ssize_t n = write(fd, cfg->script + off, cfg->script_len - off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return jr_fail(err, errno, "write the script for the zygote");
                off += (size_t)n;
        }
        return TAKE_FD(fd);
}

int zygote_spawn(struct zygote *z, const struct jail_cfg *cfg, int sync_wr, struct cg_job *cg, struct spawn *out,
                 struct jr_err *err)
{
        _cleanup_close_ int go = sync_wr;
        _cleanup_close_ int sfd = script_memfd(cfg, err);
        if (sfd < 0)
                return sfd;
        struct zreq q = { .magic = ZREQ_MAGIC, .script_len = cfg->script_len };
        int fds[ZREQ_FDS] = { cfg->stdin_fd, cfg->stdout_fd, cfg->stderr_fd, cfg->channel_fd, cfg->sync_fd, sfd };
        int r = jr_send_fds(z->sock, &q, sizeof q, fds, ZREQ_FDS);
        if (r < 0)
                return jr_fail(err, -r, "ask the zygote for a jail");
        struct zrep rep;
        int pidfd = -1;
        size_t got = 0;
        ssize_t n = jr_recv_fds(z->sock, &rep, sizeof rep, &pidfd, 1, &got);
        if (n <= 0)
                return jr_fail(err, n == 0 ? EPIPE : (int)-n, "the zygote did not answer");
        if (rep.errnum || got != 1 || rep.pid <= 0) {
                if (got)
                        close(pidfd);
                rep.msg[sizeof rep.msg - 1] = '\0';
                return jr_fail(err, rep.errnum ? rep.errnum : EPROTO, "%s", rep.msg[0] ? rep.msg : "zygote");
        }
        struct spawn s = { .pid = rep.pid, .pidfd = pidfd };
        return spawn_release(cfg, &s, rep.late, TAKE_FD(go), cg, out, err);
}

void zygote_stop(struct zygote *z)
{
        if (z->pid <= 0)
                return;
        close(z->sock);
        while (waitpid(z->pid, NULL, 0) < 0 && errno == EINTR)
                ;
        *z = (struct zygote){ 0 };
}
