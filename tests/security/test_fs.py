"""The jail's file system: nothing of the host but a few read-only binds.

The root is a fresh read-only tmpfs; /usr holds read-only binds of the
Python and library directories only, /etc only the loader's cache, /dev
only null, zero and urandom, /proc is subset=pid and /scratch the one
writable place. Every probe asserts the exact errno the kernel gives.
"""
import errno
import hashlib
import os
import stat

import pytest

from conftest import JAILRUN
from jailsec import run_attack

HOST_ONLY = [
    "/etc/shadow", "/etc/passwd", "/etc/group", "/etc/hostname", "/etc/hosts",
    "/etc/resolv.conf", "/etc/ssh", "/root", "/root/.bash_history", "/home", "/sys",
    "/sys/kernel", "/boot", "/tmp", "/var", "/run", "/run/jailrun", "/srv", "/opt",
    "/sbin", "/usr/sbin", "/usr/local/bin", "/work",
    # profile exec's /usr/bin holds the interpreter alone (the shell and its
    # tools only with exec.shell; never a set-uid program)
    "/bin/sh", "/usr/bin/sh", "/usr/bin/dash", "/bin/bash", "/usr/bin/bash", "/usr/bin/ls",
    "/usr/bin/su", "/usr/bin/sudo", "/usr/bin/mount", "/usr/bin/passwd", "/usr/bin/newgrp",
    "/usr/bin/perl", "/usr/bin/curl", "/usr/bin/fc-list",
    "/proc/kcore", "/proc/kallsyms", "/proc/sys", "/proc/sys/kernel/hostname",
    "/proc/sysrq-trigger", "/proc/modules", "/proc/mounts", "/proc/keys",
    "/proc/kmsg", "/proc/config.gz", "/proc/sched_debug", "/proc/timer_list",
    "/dev/mem", "/dev/kmem", "/dev/port", "/dev/kmsg", "/dev/tty", "/dev/console",
    "/dev/ptmx", "/dev/pts", "/dev/vda", "/dev/sda", "/dev/fuse",
    "/dev/net/tun", "/dev/random", "/dev/loop0", "/dev/mqueue",
    # ".." out of a bind lands in the jail's own tree, not the host's
    "/usr/lib/python3.11/../../../etc/shadow",
    "/proc/self/root/etc/shadow", "/proc/1/root/etc/passwd",
    "/proc/self/cwd/../etc/shadow",
]


def test_host_paths_do_not_exist(jail, tmp_path):
    # The test's own directory (holding the script on the host) and a
    # secret file next to it are host paths too.
    secret = tmp_path / "host-secret.txt"
    secret.write_text("top secret\n")
    paths = HOST_ONLY + [str(tmp_path), str(secret), JAILRUN, os.path.realpath(JAILRUN)]
    _, r = run_attack(jail, """
        for p in sys.argv[1:]:
            report(p, [err_of(os.stat, p), err_of(os.lstat, p),
                       err_of(lambda: os.close(os.open(p, os.O_RDONLY)))])
    """, script_args=paths)
    assert set(r) == set(paths), r
    bad = {p: v for p, v in r.items() if v != [errno.ENOENT] * 3}
    assert not bad, bad


def test_root_holds_only_the_jail_tree(jail):
    _, r = run_attack(jail, """
        import stat
        report("root", sorted(os.listdir("/")))
        report("etc", sorted(os.listdir("/etc")))
        report("usr", sorted(os.listdir("/usr")))
        report("etc_alt_types", sorted({stat.S_IFMT(os.lstat("/etc/alternatives/" + n).st_mode)
                                        for n in os.listdir("/etc/alternatives")}))
        report("bin", os.readlink("/bin"))
    """)
    assert set(r["root"]) <= {"bin", "dev", "etc", "lib", "lib64", "proc", "scratch", "usr"}, r
    assert {"dev", "etc", "proc", "scratch", "usr"} <= set(r["root"]), r
    assert r["bin"] == "usr/bin", r  # profile exec's interpreter, by the host's name
    # only the loader's cache (plus the alternatives links of BLAS/LAPACK,
    # and matplotlib's settings in profile exec)
    assert set(r["etc"]) <= {"ld.so.cache", "alternatives", "matplotlibrc"}, r
    assert "ld.so.cache" in r["etc"], r
    assert set(r["etc_alt_types"]) <= {stat.S_IFLNK}, r
    assert set(r["usr"]) <= {"bin", "lib", "lib64", "local", "share"}, r


def test_mountinfo_lists_only_the_jails_mounts(jail):
    _, r = run_attack(jail, """
        rows = []
        for line in open("/proc/self/mountinfo"):
            f = line.split()
            sep = f.index("-")
            rows.append([f[4], f[5], f[sep + 1]])
        report("rows", rows)
    """)
    allowed_types = {"tmpfs", "proc", "ext4", "xfs", "btrfs", "devtmpfs", "overlay"}
    for mp, opts, fstype in r["rows"]:
        assert fstype in allowed_types, (mp, fstype)
        if mp not in ("/proc", "/scratch") and not mp.startswith("/dev/"):
            assert "ro" in opts.split(","), (mp, opts)
        assert "nosuid" in opts.split(","), (mp, opts)
        assert mp == "/" or mp in ("/proc", "/dev", "/scratch", "/etc/ld.so.cache", "/etc/matplotlibrc") or \
            mp.startswith(("/dev/", "/usr/")), mp
        if mp == "/dev/shm":
            assert fstype == "tmpfs" and {"nosuid", "nodev", "noexec"} <= set(opts.split(",")), (mp, opts)
    mps = [row[0] for row in r["rows"]]
    assert sorted(m for m in mps if m.startswith("/dev/")) == ["/dev/null", "/dev/shm", "/dev/urandom", "/dev/zero"]
    assert not any(t in ("sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "bpf", "debugfs",
                         "securityfs", "fusectl", "configfs", "tracefs")
                   for _, _, t in r["rows"]), r


def test_dev_holds_exactly_null_zero_urandom_and_fd_links(jail):
    _, r = run_attack(jail, """
        import stat
        out = {}
        for n in sorted(os.listdir("/dev")):
            st = os.lstat("/dev/" + n)
            if stat.S_ISLNK(st.st_mode):
                out[n] = ["link", os.readlink("/dev/" + n)]
            elif stat.S_ISCHR(st.st_mode):
                out[n] = ["chr", os.major(st.st_rdev), os.minor(st.st_rdev)]
            else:
                out[n] = ["other", stat.filemode(st.st_mode)]
        report("dev", out)
    """)
    assert r["dev"] == {
        "null": ["chr", 1, 3],
        "zero": ["chr", 1, 5],
        "urandom": ["chr", 1, 9],
        "fd": ["link", "/proc/self/fd"],
        "stdin": ["link", "/proc/self/fd/0"],
        "stdout": ["link", "/proc/self/fd/1"],
        "stderr": ["link", "/proc/self/fd/2"],
        "shm": ["other", "drwxrwxrwt"],  # profile exec's own tmpfs (test_everyday_python.py)
    }, r


def test_no_sys(jail):
    _, r = run_attack(jail, """
        report("stat", err_of(os.stat, "/sys"))
        report("mkdir", err_of(os.mkdir, "/sys"))
        report("statfs", sysc(137, b"/sys/fs/cgroup", ctypes.create_string_buffer(120))[1])
        report("class_net", err_of(os.listdir, "/sys/class/net"))
    """)
    assert r == {"stat": errno.ENOENT, "mkdir": errno.EROFS, "statfs": errno.ENOENT,
                 "class_net": errno.ENOENT}, r


@pytest.mark.parametrize("d", ["/", "/usr", "/etc", "/dev", "/lib", "/usr/lib/python3.11",
                               "/usr/lib/x86_64-linux-gnu", "/usr/share/zoneinfo"])
def test_writing_outside_scratch_is_erofs(jail, d):
    _, r = run_attack(jail, """
        d = sys.argv[1]
        p = os.path.join(d, "jr-evil")
        report("create", err_of(lambda: os.close(os.open(p, os.O_WRONLY | os.O_CREAT, 0o644))))
        report("mkdir", err_of(os.mkdir, p))
        report("symlink", err_of(os.symlink, "/scratch", p))
        report("mknod_fifo_via_mkfifo", err_of(os.mkfifo, p))
        # Control: /scratch is writable.
        report("scratch", err_of(lambda: open("/scratch/ok", "w").write("x")))
    """, script_args=[d])
    # mkfifo is mknod, which the filter refuses before the file system is asked
    assert r == {"create": errno.EROFS, "mkdir": errno.EROFS, "symlink": errno.EROFS,
                 "mknod_fifo_via_mkfifo": errno.EPERM, "scratch": 0}, r


def test_bound_host_files_cannot_be_changed(jail):
    _, r = run_attack(jail, """
        f = "/usr/lib/python3.11/os.py"
        c = "/etc/ld.so.cache"
        report("open_w_os", err_of(os.open, f, os.O_WRONLY))
        report("open_rw_cache", err_of(os.open, c, os.O_RDWR))
        report("truncate_os", err_of(os.truncate, f, 0))
        report("unlink_cache", err_of(os.unlink, c))
        report("rename_os", err_of(os.rename, f, f + ".bak"))
        report("chmod_os", err_of(os.chmod, f, 0o777))
        report("utime_os", err_of(os.utime, f, (0, 0)))
        report("rmdir_scratch", err_of(os.rmdir, "/scratch"))
        report("unlink_dev_null", err_of(os.unlink, "/dev/null"))
        open("/scratch/x", "w").close()
        report("link_into_usr", err_of(os.link, "/scratch/x", "/usr/x"))
        report("chown_os", err_of(os.chown, f, 0, 0))
    """)
    assert r == {
        # existing root-owned files: root is not mapped, so "other" bits
        # apply before the read-only check
        "open_w_os": errno.EACCES, "open_rw_cache": errno.EACCES,
        "truncate_os": errno.EACCES,
        "unlink_cache": errno.EROFS, "rename_os": errno.EROFS, "chmod_os": errno.EROFS,
        "utime_os": errno.EROFS, "rmdir_scratch": errno.EROFS,
        "unlink_dev_null": errno.EROFS, "link_into_usr": errno.EROFS,
        # chown is not on the allow list at all
        "chown_os": errno.EPERM,
    }, r


def test_mknod_device_nodes_refused_eperm(jail):
    _, r = run_attack(jail, """
        S_IFCHR, S_IFBLK = 0o020000, 0o060000
        report("mknod_mem", sysc(133, b"/scratch/mem", S_IFCHR | 0o666, os.makedev(1, 1))[1])
        report("mknod_vda", sysc(133, b"/scratch/vda", S_IFBLK | 0o666, os.makedev(254, 0))[1])
        report("mknodat_kmsg", sysc(259, AT_FDCWD, b"/scratch/kmsg", S_IFCHR | 0o600,
                                    os.makedev(1, 11))[1])
        report("exists", os.path.exists("/scratch/mem") or os.path.exists("/scratch/vda"))
    """)
    assert r == {"mknod_mem": errno.EPERM, "mknod_vda": errno.EPERM,
                 "mknodat_kmsg": errno.EPERM, "exists": False}, r


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_proc_self_exe_cannot_be_written_or_replaced(jail):
    # /proc/self/exe of the jail is the jail program (jailrun-jail), bound
    # read-only from the host at its installed path.
    exe = os.path.join(os.path.dirname(os.path.realpath(JAILRUN)), "..", "jail", "jailrun-jail")
    before = (_sha256(exe), os.stat(exe).st_mtime_ns, os.stat(exe).st_mode)
    _, r = run_attack(jail, """
        x = "/proc/self/exe"
        open("/scratch/evil", "wb").write(b"\\x7fELF evil")
        report("open_w", err_of(os.open, x, os.O_WRONLY))
        report("open_rw", err_of(os.open, x, os.O_RDWR))
        report("open_trunc", err_of(os.open, x, os.O_WRONLY | os.O_TRUNC))
        report("open_append", err_of(os.open, x, os.O_WRONLY | os.O_APPEND))
        report("truncate", err_of(os.truncate, x, 0))
        report("chmod", err_of(os.chmod, x, 0o777))
        report("rename_over", err_of(os.rename, "/scratch/evil", x))
        report("unlink", err_of(os.unlink, x))
        report("symlink_over", err_of(os.symlink, "/scratch/evil", x))
        report("link_follow", err_of(os.link, x, "/scratch/exe-link", follow_symlinks=True))
        report("pid1_open_w", err_of(os.open, "/proc/1/exe", os.O_WRONLY))
        # the path it points at is the read-only bind (a mount point)
        target = os.readlink(x)
        report("target", target)
        report("rename_target", err_of(os.rename, "/scratch/evil", target))
        # re-opening a read-only descriptor of it for writing
        fd = os.open(x, os.O_RDONLY)
        report("reopen_w", err_of(os.open, "/proc/self/fd/%d" % fd, os.O_WRONLY))
        report("ftruncate_ro_fd", err_of(os.ftruncate, fd, 0))
        report("pwrite_ro_fd", err_of(os.pwrite, fd, b"x", 0))
        import mmap
        report("mmap_shared_w", err_of(mmap.mmap, fd, 4096, mmap.MAP_SHARED,
                                       mmap.PROT_READ | mmap.PROT_WRITE))
    """)
    # the jail program, or a warm jail's zygote program: both read-only binds
    assert r.pop("target").endswith(("/libexec/jailrun/jailrun-jail", "/libexec/jailrun/jailrun-zygote")), r
    assert r == {
        "open_w": errno.EACCES, "open_rw": errno.EACCES, "open_trunc": errno.EROFS,
        "open_append": errno.EACCES, "truncate": errno.EACCES, "chmod": errno.EROFS,
        "rename_over": errno.EXDEV, "unlink": errno.EPERM, "symlink_over": errno.EEXIST,
        "link_follow": errno.EXDEV, "pid1_open_w": errno.EACCES,
        "rename_target": errno.EXDEV, "reopen_w": errno.EACCES,
        "ftruncate_ro_fd": errno.EINVAL, "pwrite_ro_fd": errno.EBADF,
        "mmap_shared_w": errno.EACCES,
    }, r
    assert (_sha256(exe), os.stat(exe).st_mtime_ns, os.stat(exe).st_mode) == before


def test_proc_is_pid_subset_and_read_only_where_it_matters(jail):
    res, r = run_attack(jail, """
        report("entries", sorted(os.listdir("/proc")))
        report("sys_write", err_of(lambda: open("/proc/sys/kernel/core_pattern", "w")))
        report("sysrq", err_of(lambda: open("/proc/sysrq-trigger", "w")))
        report("create", err_of(lambda: os.close(os.open("/proc/evil", os.O_CREAT | os.O_WRONLY))))
        # another process of the jail (one the script starts) and pid 1's files
        pid = os.fork()
        if pid == 0:
            os.write(1, ("CHILD %d %d %d\\n" % (err_of(os.open, "/proc/1/mem", os.O_RDONLY),
                                                err_of(lambda: open("/proc/1/environ", "rb").read()),
                                                err_of(lambda: open("/proc/1/maps").read()))).encode())
            os._exit(0)
        os.waitpid(pid, 0)
    """)
    # subset=pid: process directories and the self links only
    assert r["entries"] == ["1", "self", "thread-self"], r
    assert r["sys_write"] == errno.ENOENT and r["sysrq"] == errno.ENOENT, r
    assert r["create"] == errno.ENOENT, r
    # pid 1 (the jail program) is not dumpable: what the script starts may
    # not read its memory, environment or mappings
    child = [l for l in res.out.splitlines() if l.startswith("CHILD ")]
    assert child == ["CHILD %d %d %d" % ((errno.EACCES,) * 3)], res
