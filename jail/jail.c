/* The jail child, from clone to the interpreter. Ordering matters and each
 * step says why it sits where it does. Die-on-error is fine here: nothing
 * of the user's has run yet, and a failure is reported as the failing step
 * plus errno and exit status EXIT_SETUP. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <link.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/proto.h"
#include "jail/caps.h"
#include "jail/filt.h"
#include "jail/jail.h"
#include "jail/mnt.h"
#include "jail/net.h"
#include "jail/pyrt.h"
#include "jail/verify.h"

/* Sends one message that is its type alone. */
static int notify(int chan, const char *type)
{
        char *s = NULL;
        json_t *m = json_pack("{s:s}", "type", type);
        if (m)
                s = json_dumps(m, JSON_COMPACT);
        json_decref(m);
        ssize_t n = s ? send(chan, s, strlen(s), MSG_NOSIGNAL) : -1;
        free(s);
        return n < 0 ? -1 : 0;
}

/* Reports the failing step over the channel (or stderr before the channel
 * is in place) and exits. */
_Noreturn static void fatal(const char *step, const struct jr_err *err, int chan)
{
        json_t *m = json_pack("{s:s, s:s, s:i, s:s}", "type", "fatal", "step", step, "errno",
                              err->errnum, "message", err->msg);
        char *s = m ? json_dumps(m, JSON_COMPACT) : NULL;
        if (s && chan >= 0)
                (void)!send(chan, s, strlen(s), MSG_NOSIGNAL);
        else
                dprintf(STDERR_FILENO, "jailrun: jail set-up failed at %s: %s\n", step, err->msg);
        _exit(EXIT_SETUP);
}

/* Reads one byte of the sync pipe; EOF (the supervisor died) or anything
 * unexpected ends the child. */
static char read_sync(int fd)
{
        char c;
        ssize_t n;
        do
                n = read(fd, &c, 1);
        while (n < 0 && errno == EINTR);
        if (n != 1)
                _exit(EXIT_SETUP);
        return c;
}

/* Waits for the supervisor to write our id maps. Returns the first
 * go-ahead byte and, in *sync, the pipe moved out of the way of 0-3. */
static char wait_go(const struct jail_cfg *cfg, int *sync)
{
        if (cfg->close_fd >= 0)
                close(cfg->close_fd);
        char c = read_sync(cfg->sync_fd);
        *sync = fcntl(cfg->sync_fd, F_DUPFD_CLOEXEC, 10);
        if (*sync < 0)
                _exit(EXIT_SETUP);
        close(cfg->sync_fd);
        return c;
}

/* Waits until the supervisor has the child in its cgroup; then, if the
 * child was moved there after the clone, roots the cgroup namespace
 * there (which takes CAP_SYS_ADMIN: before the capabilities go). */
static int wait_attached(int sync, char go, struct jr_err *err)
{
        if (read_sync(sync) != JAIL_ATTACHED[0])
                return jr_fail(err, EPROTO, "unexpected byte on the sync pipe");
        close(sync);
        if (go == JAIL_GO_CGROUPNS[0] && unshare(CLONE_NEWCGROUP) < 0)
                return jr_fail(err, errno, "unshare CLONE_NEWCGROUP");
        return 0;
}

/* Puts stdio on 0-2, the channel on CHAN_FD and the data file, if any, on
 * DATA_FD. Goes through high numbers
 * first so no source is overwritten before it is copied. */
static int place_fds(const struct jail_cfg *cfg, struct jr_err *err)
{
        const int src[5] = { cfg->stdin_fd, cfg->stdout_fd, cfg->stderr_fd, cfg->channel_fd, cfg->data_fd };
        int tmp[5] = { -1, -1, -1, -1, -1 };
        for (int i = 0; i < 5; i++)
                if (src[i] >= 0 && (tmp[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 10)) < 0)
                        return jr_fail(err, errno, "dup fd %d", src[i]);
        for (int i = 0; i < 4; i++)
                if (dup2(tmp[i], i) < 0)
                        return jr_fail(err, errno, "dup2 to fd %d", i);
        /* The channel must not leak into anything the script execs. */
        if (fcntl(CHAN_FD, F_SETFD, FD_CLOEXEC) < 0)
                return jr_fail(err, errno, "cloexec channel");
        if (cfg->data_fd >= 0 && dup3(tmp[4], DATA_FD, O_CLOEXEC) < 0)
                return jr_fail(err, errno, "dup3 to fd %d", DATA_FD);
        return 0;
}

static int main_interp(struct dl_phdr_info *info, size_t size, void *data)
{
        (void)size;
        for (int i = 0; i < info->dlpi_phnum; i++)
                if (info->dlpi_phdr[i].p_type == PT_INTERP) {
                        *(const char **)data = (const char *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
                        break;
                }
        return 1;  /* the first object is the program itself */
}

static int set_env(const struct jail_cfg *cfg, struct jr_err *err)
{
        int exec = cfg->profile == JAIL_PROFILE_EXEC;
        /* Fixed set: nothing of the supervisor's environment crosses. BLAS
         * and OpenMP pools sized to the CPU share before numpy loads. */
        const char *const env[][2] = {
                { "PATH", "/usr/local/bin:/usr/bin:/bin" },
                { "HOME", exec ? MNT_SCRATCH : "/" },
                { "TMPDIR", exec ? MNT_SCRATCH : "/" },
                { "LANG", "C.UTF-8" },
                { "TZ", "UTC" },
                { "OPENBLAS_NUM_THREADS", "1" },
                { "OMP_NUM_THREADS", "1" },
                { "MKL_NUM_THREADS", "1" },
        };
        if (clearenv() != 0)
                return jr_fail(err, ENOMEM, "clearenv");
        for (size_t i = 0; i < ELEMENTSOF(env); i++)
                if (setenv(env[i][0], env[i][1], 1) < 0)
                        return jr_fail(err, errno, "setenv %s", env[i][0]);
        if (chdir(exec ? MNT_SCRATCH : "/") < 0)
                return jr_fail(err, errno, "chdir to the working directory");
        return 0;
}

/* Signal state inherited from the supervisor (its blocked set for
 * signalfd) must not reach the interpreter. */
static int reset_signals(struct jr_err *err)
{
        sigset_t none;
        sigemptyset(&none);
        for (int s = 1; s < NSIG; s++)
                if (s != SIGKILL && s != SIGSTOP)
                        signal(s, SIG_DFL);
        if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
                return jr_fail(err, errno, "unblock signals");
        return 0;
}

/* The supervisor's argv and environment strings are still in our memory,
 * and /proc/self/cmdline and /proc/self/environ read them from there (not
 * from `environ`): zero both areas so the jail cannot read the operator's
 * environment or command line. Copies what the interpreter needs first. */
static int wipe_args_env(const struct jail_cfg *cfg, struct pyrt_cfg *pc, struct jr_err *err)
{
        char stat[4096];
        ssize_t n = read_small_file("/proc/self/stat", stat, sizeof stat);
        if (n < 0)
                return jr_fail(err, (int)-n, "read /proc/self/stat");
        char *p = strrchr(stat, ')');
        unsigned long v[52] = { 0 };
        int field = 2;  /* ')' ends field 2 */
        for (char *save = NULL, *t = p ? strtok_r(p + 1, " ", &save) : NULL; t && field < 51;
             t = strtok_r(NULL, " ", &save))
                v[++field] = strtoul(t, NULL, 10);
        if (field < 51 || v[48] > v[49] || v[50] > v[51])
                return jr_fail(err, EPROTO, "parse /proc/self/stat");
        char **argv = calloc((size_t)cfg->argc + 1, sizeof *argv);
        char *name = strdup(cfg->script_name), *data = strdup(cfg->data_name ? cfg->data_name : "");
        if (!argv || !name || !data)
                return jr_fail(err, ENOMEM, "copy arguments");
        for (int i = 0; i < cfg->argc; i++)
                if (!(argv[i] = strdup(cfg->argv[i])))
                        return jr_fail(err, ENOMEM, "copy arguments");
        memset((void *)v[48], 0, v[49] - v[48]);  /* arg_start .. arg_end */
        memset((void *)v[50], 0, v[51] - v[50]);  /* env_start .. env_end */
        pc->argv = argv;
        pc->script_name = name;
        pc->data_name = data;
        return 0;
}

struct host_view {
        char maps[256 * 1024];
        char exe[PATH_MAX];
        const char *interp;
};

/* What the mount planner needs from the host, read before any mount. */
static int read_host_view(struct host_view *hv, struct jr_err *err)
{
        ssize_t n = read_small_file("/proc/self/maps", hv->maps, sizeof hv->maps);
        if (n < 0)
                return jr_fail(err, (int)-n, "read /proc/self/maps");
        n = readlink("/proc/self/exe", hv->exe, sizeof hv->exe - 1);
        if (n < 0)
                return jr_fail(err, errno, "readlink /proc/self/exe");
        hv->exe[n] = '\0';
        hv->interp = NULL;
        dl_iterate_phdr(main_interp, &hv->interp);
        return 0;
}

/* Becomes uid/gid 0 of the new namespace, i.e. the one unprivileged host
 * uid: the first thing after the maps exist. Groups were cleared by the
 * supervisor and setgroups is denied. */
static int become_jail_root(int chan, struct jr_err *err)
{
        if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
                return jr_fail(err, errno, "setresuid/setresgid 0");
        /* The kernel clears the parent-death signal on a credential change:
         * arm it again, then make sure the supervisor did not die in the
         * gap (it holds the channel's other end until the job is over). */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                return jr_fail(err, errno, "PR_SET_PDEATHSIG");
        struct pollfd alive = { .fd = chan, .events = POLLRDHUP };
        if (poll(&alive, 1, 0) != 0)
                _exit(EXIT_SETUP);
        return 0;
}

/* The per-process limits the cgroup does not cover. Hard: raising them
 * needs a capability about to be dropped. */
static int set_rlimits(const struct jail_cfg *cfg, struct jr_err *err)
{
        /* Every job has a host uid of its own, so the per-user process
         * limit is a per-job one: one above the cgroup's task limit, so the
         * kernel reports that one (pids.events) first; this is the backstop. */
        struct rlimit nproc = { cfg->max_tasks + 1, cfg->max_tasks + 1 };
        if (setrlimit(RLIMIT_NPROC, &nproc) < 0)
                return jr_fail(err, errno, "setrlimit RLIMIT_NPROC");
        /* Open files are a host-wide table (fs.file-max) that cgroups do
         * not bound: the operator's limit must not be the jail's. */
        struct rlimit nofile = { JAIL_MAX_FILES, JAIL_MAX_FILES };
        if (setrlimit(RLIMIT_NOFILE, &nofile) < 0)
                return jr_fail(err, errno, "setrlimit RLIMIT_NOFILE");
        return 0;
}

/* Filesystem and network: the new root, then lo. */
static int build_world(const struct jail_cfg *cfg, struct mnt_plan *plan, struct jr_err *err)
{
        static struct host_view hv;
        int r = read_host_view(&hv, err);
        if (r < 0)
                return r;
        if (sethostname("jail", 4) < 0)
                return jr_fail(err, errno, "sethostname");
        struct mnt_cfg mc = {
                .maps = hv.maps,
                .exe = hv.exe,
                .interp = hv.interp,
                .pypath = JR_PYPATH,
                .datapath = JR_DATAPATH,
                .scratch_bytes = cfg->profile == JAIL_PROFILE_EXEC ? cfg->scratch_bytes : 0,
        };
        r = mnt_build_root(&mc, plan, err);
        return r < 0 ? r : net_setup_lo(err);
}

static int close_fds(const struct jail_cfg *cfg, struct jr_err *err)
{
        if (syscall(SYS_close_range, cfg->data_fd >= 0 ? DATA_FD + 1 : CHAN_FD + 1, ~0U, 0) < 0)
                return jr_fail(err, errno, "close_range");
        return 0;
}

static const char *const entry_names[] = {
        [JAIL_ENTRY_TICKS] = "ticks",
        [JAIL_ENTRY_SCRIPT] = "script",
        [JAIL_ENTRY_LOAD] = "load",
        [JAIL_ENTRY_CHECK] = "check",
        [JAIL_ENTRY_BACKTEST] = "backtest",
};

_Noreturn static void run_interpreter(const struct jail_cfg *cfg, int chan)
{
        struct jr_err err = { 0 };
        struct pyrt_cfg pc = {
                .entry = entry_names[cfg->entry],
                .policy_json = cfg->policy_json,
                .script = cfg->script,
                .script_len = cfg->script_len,
                .script_name = cfg->script_name,
                .data_name = cfg->data_name ? cfg->data_name : "",
                .argc = cfg->argc,
                .argv = cfg->argv,
                .pypath = JR_PYPATH,
                .home = JR_PYHOME,
        };
        if (wipe_args_env(cfg, &pc, &err) < 0)
                fatal("wipe environment", &err, chan);
        _exit(pyrt_run(&pc));
}

_Noreturn void jail_child_main(const struct jail_cfg *cfg)
{
        struct jr_err err = { 0 };
        int chan = -1, sync = -1;
        struct mnt_plan plan = { 0 };
#define STEP(name, call)                                \
        do {                                            \
                if ((call) < 0)                         \
                        fatal(name, &err, chan);        \
        } while (0)

        /* If the supervisor dies the jail dies with it (we are also the pid
         * namespace's init, so everything below us goes too). */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                _exit(EXIT_SETUP);
        char go = wait_go(cfg, &sync);
        STEP("signals", reset_signals(&err));
        STEP("stdio", place_fds(cfg, &err));
        chan = CHAN_FD;
        STEP("identity", become_jail_root(chan, &err));
        STEP("mounts and network", build_world(cfg, &plan, &err));
        STEP("cgroup", wait_attached(sync, go, &err));
        /* New session: no controlling terminal for TIOCSTI to target. */
        if (setsid() < 0)
                fatal("session", &(struct jr_err){ .errnum = errno, .msg = "setsid" }, chan);
        STEP("environment", set_env(cfg, &err));
        STEP("limits", set_rlimits(cfg, &err));
        /* Capabilities go after every step that needs one, before seccomp. */
        STEP("capabilities", caps_drop_all(&err));
        STEP("close fds", close_fds(cfg, &err));
        /* seccomp goes last: it refuses the calls the steps above make. */
        STEP("seccomp", filt_install(cfg->profile == JAIL_PROFILE_EXEC, &err));
        struct verify_cfg vc = { .host_uid = cfg->host_uid, .host_gid = cfg->host_gid, .plan = &plan };
        STEP("verify", verify_jail(&vc, &err));
#undef STEP
        mntplan_free(&plan);
        /* The last word of the trusted set-up: from here on the channel
         * carries what user code may have forged. */
        if (notify(chan, "jailed") < 0)
                _exit(EXIT_SETUP);
        run_interpreter(cfg, chan);
}
