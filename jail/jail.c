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
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/proto.h"
#include "jail/caps.h"
#include "jail/jail.h"
#include "jail/mnt.h"
#include "jail/net.h"
#include "jail/setup.h"
#include "jail/jexec.h"
#include "jail/verify.h"

/* Reads one byte of the sync pipe; EOF (the supervisor died) or anything
 * unexpected ends the child. */
char jail_read_sync(int fd)
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
        char c = jail_read_sync(cfg->sync_fd);
        *sync = fcntl(cfg->sync_fd, F_DUPFD_CLOEXEC, 10);
        if (*sync < 0)
                _exit(EXIT_SETUP);
        close(cfg->sync_fd);
        return c;
}

/* Waits until the supervisor has the child in its cgroup; then, if the
 * child was moved there after the clone, roots the cgroup namespace
 * there (which takes CAP_SYS_ADMIN: before the capabilities go). */
int jail_wait_attached(int sync, char go, struct jr_err *err)
{
        if (jail_read_sync(sync) != JAIL_ATTACHED[0])
                return jr_fail(err, EPROTO, "unexpected byte on the sync pipe");
        close(sync);
        if (go == JAIL_GO_CGROUPNS[0] && unshare(CLONE_NEWCGROUP) < 0)
                return jr_fail(err, errno, "unshare CLONE_NEWCGROUP");
        return 0;
}

/* cgroup v1: moves us into the job's groups through the files the
 * supervisor opened (jail.h, cgroup_join), then closes them. First of all:
 * what the set-up charges is the job's, and nothing may move fds 0-3 over
 * them before. */
static int join_cgroups(const struct jail_cfg *cfg, struct jr_err *err)
{
        for (unsigned i = 0; i < cfg->n_cgroup_join; i++) {
                int fd = cfg->cgroup_join[i];
                if (fd < 0)
                        continue;
                ssize_t n;
                while ((n = write(fd, "0", 1)) < 0 && errno == EINTR)
                        ;
                if (n != 1)
                        return jr_fail(err, n < 0 ? errno : EIO, "join the job's cgroup (%u)", i);
                close(fd);
        }
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

int jail_set_env(int profile, struct jr_err *err)
{
        int exec = profile == JAIL_PROFILE_EXEC;
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
int jail_reset_signals(struct jr_err *err)
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

/* What the mount planner needs from the host, read before any mount. */
int jail_read_host_view(struct host_view *hv, struct jr_err *err)
{
        ssize_t n = read_small_file("/proc/self/maps", hv->maps, sizeof hv->maps);
        if (n < 0)
                return jr_fail(err, (int)-n, "read /proc/self/maps");
        /* Cut, its last path would be cut too, and the planner would bind
         * the directory the cut left (/usr for "/usr/l"): refused. */
        if ((size_t)n >= sizeof hv->maps - 1 || (n > 0 && hv->maps[n - 1] != '\n'))
                return jr_fail(err, EFBIG, "/proc/self/maps does not fit in %zu bytes", sizeof hv->maps);
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
int jail_become_root(int chan, struct jr_err *err)
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
int jail_set_rlimits(unsigned max_tasks, struct jr_err *err)
{
        /* Every job has a host uid of its own, so the per-user process
         * limit is a per-job one: one above the cgroup's task limit, so the
         * kernel reports that one (pids.events) first; this is the backstop. */
        struct rlimit nproc = { max_tasks + 1, max_tasks + 1 };
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
int jail_build_root(struct mnt_cfg *mc, struct mnt_plan *plan, struct jr_err *err)
{
        static struct host_view hv;
        int r = jail_read_host_view(&hv, err);
        if (r < 0)
                return r;
        if (sethostname("jail", 4) < 0)
                return jr_fail(err, errno, "sethostname");
        mc->maps = hv.maps;
        mc->exe = hv.exe;
        mc->interp = hv.interp;
        mc->pypath = JR_PYPATH;
        mc->datapath = JR_DATAPATH;
        return mnt_build_root(mc, plan, err);
}

int jail_exec_opts(const char *policy_json, struct jail_exec_opts *out, struct jr_err *err)
{
        json_error_t je;
        _cleanup_(json_decrefp) json_t *p = json_loads(policy_json, 0, &je);
        if (!p)
                return jr_fail(err, EINVAL, "the policy: %s", je.text);
        json_int_t memory = json_integer_value(json_object_get(json_object_get(p, "limits"), "memory"));
        if (memory <= 0)
                return jr_fail(err, EINVAL, "the policy: no limits.memory");
        *out = (struct jail_exec_opts){
                .shell = json_is_true(json_object_get(json_object_get(p, "exec"), "shell")),
                .shm_bytes = (unsigned long)memory / 2,
        };
        size_t i, n = 0;
        json_t *v;
        json_array_foreach(json_object_get(json_object_get(p, "exec"), "programs"), i, v) {
                const char *s = json_string_value(v);
                int w = s ? snprintf(out->programs + n, sizeof out->programs - n, "%s%s", n ? ":" : "", s) : -1;
                if (w < 0 || (size_t)w >= sizeof out->programs - n)
                        return jr_fail(err, EINVAL, "the policy: exec.programs");
                n += (size_t)w;
        }
        return 0;
}

static int build_world(const struct jail_cfg *cfg, struct mnt_plan *plan, struct jr_err *err)
{
        int exec = cfg->profile == JAIL_PROFILE_EXEC;
        struct jail_exec_opts eo = { 0 };
        int r = exec ? jail_exec_opts(cfg->policy_json, &eo, err) : 0;
        struct mnt_cfg mc = {
                .program = cfg->program,
                .scratch_bytes = exec ? cfg->scratch_bytes : 0,
                .exec = exec,
                .shell = eo.shell,
                .shm_bytes = eo.shm_bytes,
                .programs = eo.programs[0] ? eo.programs : NULL,
        };
        if (r == 0)
                r = jail_build_root(&mc, plan, err);
        return r < 0 ? r : net_setup_lo(err);
}

static int close_fds(const struct jail_cfg *cfg, struct jr_err *err)
{
        if (syscall(SYS_close_range, cfg->data_fd >= 0 ? DATA_FD + 1 : CHAN_FD + 1, ~0U, 0) < 0)
                return jr_fail(err, errno, "close_range");
        return 0;
}

int jail_config_memfd(const struct jail_cfg *cfg, struct jr_err *err)
{
        struct jexec_cfg c = {
                .profile = cfg->profile,
                .entry = cfg->entry,
                .host_uid = cfg->host_uid,
                .host_gid = cfg->host_gid,
                .max_tasks = cfg->max_tasks,
                .scratch_bytes = cfg->profile == JAIL_PROFILE_EXEC ? cfg->scratch_bytes : 0,
                .flags = cfg->profile == JAIL_PROFILE_EXEC && cfg->inet ? JEXEC_INET : 0,
                .policy_json = cfg->policy_json,
                .script = cfg->script,
                .script_len = cfg->script_len,
                .script_name = cfg->script_name,
                .data_name = cfg->data_name ? cfg->data_name : "",
                .cgroup_path = cfg->cgroup_path ? cfg->cgroup_path : "",
                .argc = cfg->argc,
                .argv = (char **)cfg->argv,
        };
        return jexec_make(&c, err);
}

int jail_place_config(int fd, struct jr_err *err)
{
        if (fd < 0)
                return fd;
        if (fd == CFG_FD)  /* it came out there: keep it, across the exec */
                return fcntl(fd, F_SETFD, 0) < 0 ? jr_fail(err, errno, "keep fd %d", CFG_FD) : 0;
        int r = dup2(fd, CFG_FD) < 0 ? jr_fail(err, errno, "dup2 to fd %d", CFG_FD) : 0;
        close(fd);
        return r;
}

/* Replaces this process, a copy of the supervisor's memory, with the jail
 * program: nothing of the supervisor's (its heap, its argv and
 * environment, its libraries) is left for user code to read. The file was
 * checked by the supervisor and is bound read-only at MNT_PROGRAM (the
 * kernel refuses to execute it through an fd of the host's mount); the
 * loader and the libraries it needs are in the jail's mounts. */
static int exec_jail_program(const struct jail_cfg *cfg, struct jr_err *err)
{
        char *const argv[] = { (char *)"jailrun-jail", NULL };
        /* The channel and the data file cross; the program marks them
         * close-on-exec again before anything of the user's runs. */
        if (fcntl(CHAN_FD, F_SETFD, 0) < 0 || (cfg->data_fd >= 0 && fcntl(DATA_FD, F_SETFD, 0) < 0))
                return jr_fail(err, errno, "keep the channel across the exec");
        execve(MNT_PROGRAM, argv, environ);
        return jr_fail(err, errno, "execute the jail program %s", MNT_PROGRAM);
}

_Noreturn void jail_child_main(const struct jail_cfg *cfg)
{
        struct jr_err err = { 0 };
        int chan = -1, sync = -1;
        struct mnt_plan plan = { 0 };
#define STEP(name, call)                                \
        do {                                            \
                if ((call) < 0)                         \
                        jail_fatal(name, &err, chan);        \
        } while (0)

        /* If the supervisor dies the jail dies with it (we are also the pid
         * namespace's init, so everything below us goes too). */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                _exit(EXIT_SETUP);
        if (join_cgroups(cfg, &err) < 0)
                jail_fatal("cgroup", &err, cfg->channel_fd);
        char go = wait_go(cfg, &sync);
        STEP("signals", jail_reset_signals(&err));
        STEP("stdio", place_fds(cfg, &err));
        chan = CHAN_FD;
        STEP("identity", jail_become_root(chan, &err));
        STEP("mounts and network", build_world(cfg, &plan, &err));
        STEP("cgroup", jail_wait_attached(sync, go, &err));
        /* New session: no controlling terminal for TIOCSTI to target. */
        if (setsid() < 0)
                jail_fatal("session", &(struct jr_err){ .errnum = errno, .msg = "setsid" }, chan);
        STEP("environment", jail_set_env(cfg->profile, &err));
        STEP("limits", jail_set_rlimits(cfg->max_tasks, &err));
        /* Capabilities go after every step that needs one, before seccomp. */
        STEP("capabilities", caps_drop_all(&err));
        STEP("close fds", close_fds(cfg, &err));
        struct verify_cfg vc = { .host_uid = cfg->host_uid, .host_gid = cfg->host_gid, .plan = &plan };
        STEP("verify", verify_world(&vc, &err));
        mntplan_free(&plan);
        STEP("configuration", jail_place_config(jail_config_memfd(cfg, &err), &err));
        /* seccomp, the process checks and the "jailed" report follow in
         * the jail program (jail/jailprog.c): the worker's filter refuses
         * execve. */
        STEP("exec", exec_jail_program(cfg, &err));
#undef STEP
        _exit(EXIT_SETUP);
}

/* Where the program `name` is: beside the installed libexec files when
 * this is the installed jailrun, else in the build tree this jailrun was
 * built in (supervisor/jailrun -> jail/NAME). */
static int program_path(const char *name, char *path, size_t size, struct jr_err *err)
{
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n < 0)
                return jr_fail(err, errno, "readlink /proc/self/exe");
        exe[n] = '\0';
        if (strcmp(exe, JR_BINDIR "/jailrun") == 0 || strcmp(exe, JR_SBINDIR "/jaild") == 0)
                return jr_snprintf(path, size, "%s/%s", JR_PKGLIBEXECDIR, name);
        /* In the build tree: supervisor/jailrun, supervisor/jaild/jaild. */
        char *slash = strrchr(exe, '/');
        if (slash)
                *slash = '\0';
        slash = strrchr(exe, '/');
        int deeper = slash && strcmp(slash, "/jaild") == 0;
        if (jr_snprintf(path, size, "%s/%sjail/%s", exe, deeper ? "../../" : "../", name) < 0)
                return jr_fail(err, ENAMETOOLONG, "path of the jail program");
        return 0;
}

static int program_find(const char *name, char *path, size_t size, struct jr_err *err)
{
        int r = program_path(name, path, size, err);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = open(path, O_PATH | O_CLOEXEC);
        if (fd < 0)
                return jr_fail(err, errno, "open the jail program %s", path);
        struct stat st;
        if (fstat(fd, &st) < 0)
                return jr_fail(err, errno, "stat the jail program %s", path);
        if (!S_ISREG(st.st_mode))
                return jr_fail(err, EINVAL, "the jail program %s is not a regular file", path);
        if ((st.st_uid != 0 && st.st_uid != geteuid()) || (st.st_mode & (S_IWGRP | S_IWOTH)))
                return jr_fail(err, EPERM, "the jail program %s may be written by others than root (owner %u, mode %04o)",
                               path, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
        /* Each jail executes it as its own unprivileged uid. */
        if ((st.st_mode & S_IXOTH) == 0)
                return jr_fail(err, EACCES, "the jail program %s is not executable by others (mode %04o)",
                               path, (unsigned)(st.st_mode & 07777));
        return 0;
}

int jail_program_find(char *path, size_t size, struct jr_err *err)
{
        return program_find("jailrun-jail", path, size, err);
}

int jail_zygote_program_find(char *path, size_t size, struct jr_err *err)
{
        return program_find("jailrun-zygote", path, size, err);
}
