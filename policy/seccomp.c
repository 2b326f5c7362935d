#include "config.h"

#include "common/cleanup.h"
#include "policy/seccomp.h"

#define LIST(name, ...)                                                      \
        static const char *const name##_v[] = { __VA_ARGS__ };              \
        const struct syscall_list name = { name##_v, ELEMENTSOF(name##_v) }

LIST(seccomp_allow_common,
     /* memory */
     "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync",
     "membarrier", "get_mempolicy", "mlock", "munlock",
     /* files: the jail's root is read-only, so writes land in scratch only */
     "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
     "preadv2", "pwritev2", "open", "openat", "openat2", "close", "close_range",
     "creat", "lseek", "stat", "fstat", "lstat", "newfstatat", "statx", "statfs",
     "fstatfs", "access", "faccessat", "faccessat2", "readlink", "readlinkat",
     "getdents", "getdents64", "getcwd", "chdir", "fchdir", "mkdir", "mkdirat",
     "rmdir", "unlink", "unlinkat", "rename", "renameat", "renameat2", "link",
     "linkat", "symlink", "symlinkat", "chmod", "fchmod", "fchmodat", "truncate",
     "ftruncate", "fallocate", "fsync", "fdatasync", "sync_file_range",
     "utimensat", "utime", "utimes", "futimesat", "umask", "flock", "fcntl",
     "dup", "dup2", "dup3", "pipe", "pipe2", "sendfile", "splice", "tee",
     "copy_file_range", "getxattr", "lgetxattr", "fgetxattr",
     "listxattr", "llistxattr", "flistxattr",
     /* waiting and time */
     "poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1",
     "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd",
     "eventfd2", "timerfd_create", "timerfd_settime", "timerfd_gettime",
     "nanosleep", "clock_nanosleep", "clock_gettime", "clock_getres",
     "gettimeofday", "time", "getitimer", "setitimer", "alarm", "timer_create",
     "timer_settime", "timer_gettime", "timer_getoverrun", "timer_delete",
     "futex", "futex_waitv", "sched_yield", "pause",
     /* signals */
     "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending",
     "rt_sigtimedwait", "rt_sigsuspend", "sigaltstack", "signalfd", "signalfd4",
     "kill", "tgkill", "tkill",
     /* unix sockets (socket/socketpair themselves are argument-checked) */
     "connect", "accept", "accept4", "bind", "listen", "sendto", "recvfrom",
     "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown", "getsockname",
     "getpeername", "setsockopt", "getsockopt",
     /* process and identity (all confined by the namespaces) */
     "exit", "exit_group", "wait4", "waitid", "getpid", "getppid", "gettid",
     "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid",
     "getgroups", "getpgrp", "getpgid", "setpgid", "getsid", "setsid",
     "set_tid_address", "set_robust_list", "get_robust_list", "rseq",
     "arch_prctl", "prctl", "capget", "uname", "sysinfo", "times", "getrusage",
     "getrlimit", "prlimit64", "getpriority", "setpriority", "getcpu",
     "sched_getaffinity", "sched_setaffinity", "sched_getparam",
     "sched_getscheduler", "sched_get_priority_max", "sched_get_priority_min",
     "getrandom", "pidfd_open", "pidfd_send_signal", "restart_syscall");

LIST(seccomp_allow_exec, "execve", "execveat", "fork", "vfork");

/* Profiles that run no program may make anonymous files; in profile exec a
 * memfd would be a file to execute outside every noexec mount (EPERM). */
LIST(seccomp_allow_noexec, "memfd_create");

LIST(seccomp_kill,
     "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
     "bpf", "keyctl", "add_key", "request_key", "mount", "umount2", "pivot_root",
     "chroot", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount",
     "open_tree", "mount_setattr", "unshare", "setns", "kexec_load",
     "kexec_file_load", "init_module", "finit_module", "delete_module",
     "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
     "io_uring_register", "open_by_handle_at", "name_to_handle_at", "reboot",
     "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "iopl", "ioperm",
     "syslog", "lookup_dcookie", "uselib", "vhangup", "modify_ldt",
     "process_madvise", "fanotify_init");
