"""What profile exec's everyday Python adds to the jail, attacked from
inside: the interpreter as a program (a process it executes is as jailed
as the script), a private /dev/shm (not the host's, not another jail's,
nothing runs from it, bounded), and the shell's tools of exec.shell
(read-only, no set-uid program anywhere)."""
import errno
import json
import os
import subprocess
import uuid

import pytest

from conftest import JAILRUN, WARM
from jailsec import KILLED_BY_SIGSYS, results, run_attack, script

SHELL_POLICY = {"profile": "exec", "exec": {"shell": True}}


def shell_policy(tmp_path):
    p = tmp_path / "shell.json"
    p.write_text(json.dumps(SHELL_POLICY))
    return str(p)


# Run by the executed interpreter: what the kernel says of it.
CHILD = r'''
import json, os, resource
st = dict(l.split(":", 1) for l in open("/proc/self/status"))
print(json.dumps({
    "status": {k: st[k].strip() for k in ("NoNewPrivs", "Seccomp", "CapInh", "CapPrm", "CapEff",
                                          "CapBnd", "CapAmb")},
    "uid_map": open("/proc/self/uid_map").read().split(),
    "gid_map": open("/proc/self/gid_map").read().split(),
    "ns": {n: os.readlink("/proc/self/ns/" + n) for n in ("user", "mnt", "net", "pid", "ipc", "uts", "cgroup")},
    "cgroup": open("/proc/self/cgroup").read(),
    "nproc": resource.getrlimit(resource.RLIMIT_NPROC),
    "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
}))
'''


def test_an_executed_python_is_as_jailed_as_the_script(jail):
    _, r = run_attack(jail, """
        import resource, subprocess
        out = subprocess.run([sys.executable, "-c", sys.argv[1]], capture_output=True, text=True)
        report("child", json.loads(out.stdout))
        st = dict(l.split(":", 1) for l in open("/proc/self/status"))
        report("parent", {
            "status": {k: st[k].strip() for k in ("NoNewPrivs", "Seccomp", "CapInh", "CapPrm", "CapEff",
                                                  "CapBnd", "CapAmb")},
            "uid_map": open("/proc/self/uid_map").read().split(),
            "gid_map": open("/proc/self/gid_map").read().split(),
            "ns": {n: os.readlink("/proc/self/ns/" + n) for n in ("user", "mnt", "net", "pid", "ipc", "uts",
                                                                  "cgroup")},
            "cgroup": open("/proc/self/cgroup").read(),
            "nproc": list(resource.getrlimit(resource.RLIMIT_NPROC)),
            "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        })
    """, script_args=[CHILD])
    child, parent = r["child"], r["parent"]
    assert child["status"] == {"NoNewPrivs": "1", "Seccomp": "2", "CapInh": "0" * 16, "CapPrm": "0" * 16,
                               "CapEff": "0" * 16, "CapBnd": "0" * 16, "CapAmb": "0" * 16}, child
    assert child == parent, (child, parent)


@pytest.mark.parametrize("call", [
    "sysc(272, 0x10000000)",         # unshare(CLONE_NEWUSER)
    "sysc(165, b'none', b'/scratch', b'tmpfs', 0, 0)",  # mount
    "sysc(101, 0, 1, 0, 0)",         # ptrace(PTRACE_ATTACH, 1): the script's process
])
def test_an_executed_python_meets_the_same_seccomp_filter(jail, call):
    # The executed interpreter makes a call the filter kills: it dies of
    # SIGSYS, and the script goes on.
    child = script('mark("before")\n%s\nmark("after")\n' % call)
    _, r = run_attack(jail, """
        import subprocess
        p = subprocess.run([sys.executable, "-c", sys.argv[1]], capture_output=True, text=True)
        report("rc", p.returncode)
        report("out", p.stdout)
    """, script_args=[child])
    assert r["rc"] == -31, r  # SIGSYS
    assert "MARK before" in r["out"] and "MARK after" not in r["out"], r


def test_dev_shm_is_not_the_hosts(jail):
    name = "jr-probe-" + uuid.uuid4().hex
    host_file = "/dev/shm/jr-host-" + uuid.uuid4().hex
    with open(host_file, "w") as f:
        f.write("host secret")
    try:
        _, r = run_attack(jail, """
            report("listing", os.listdir("/dev/shm"))
            with open("/dev/shm/" + sys.argv[1], "w") as f:
                f.write("from the jail")
            report("host_file", err_of(os.stat, sys.argv[2]))
            st = os.statvfs("/dev/shm")
            report("fsid", [os.stat("/dev/shm").st_dev, os.stat("/scratch").st_dev])
        """, script_args=[name, host_file])
        assert r["listing"] == [], r
        assert r["host_file"] == errno.ENOENT, r
        assert r["fsid"][0] != r["fsid"][1], r
        assert not os.path.exists("/dev/shm/" + name)
    finally:
        os.unlink(host_file)


def _start(tmp_path, src, name):
    path = tmp_path / name
    path.write_text(script(src))
    cmd = [JAILRUN, *(("--warm=" + WARM,) if WARM is not None else ()), "--profile", "exec", str(path)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.PIPE)


def test_two_jails_do_not_share_dev_shm(tmp_path):
    # A makes a file and a POSIX semaphore in its /dev/shm and waits; B,
    # running at the same time, finds neither and cannot open the
    # semaphore by name.
    a = _start(tmp_path, """
        import multiprocessing.synchronize as s, _multiprocessing
        with open("/dev/shm/jr-shared", "w") as f:
            f.write("a")
        sem = _multiprocessing.SemLock(1, 1, 1, "/jr-sem", False)
        report("a_listing", sorted(os.listdir("/dev/shm")))
        sys.stdin.readline()
    """, "a.py")
    b = None
    try:
        first = a.stdout.readline()
        assert first.startswith("RESULT"), (first, a.stderr.read() if a.poll() is not None else "")
        b = _start(tmp_path, """
            import _multiprocessing
            report("b_listing", sorted(os.listdir("/dev/shm")))
            try:
                _multiprocessing.SemLock._rebuild(0, 1, 1, "/jr-sem")
                report("sem", 0)
            except OSError as e:
                report("sem", e.errno)
        """, "b.py")
        out_b, err_b = b.communicate(timeout=60)
        out_a, err_a = a.communicate("go\n", timeout=60)
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert a.returncode == 0 and b.returncode == 0, (out_a, err_a, out_b, err_b)
    ra = json.loads(first[len("RESULT "):])
    rb = results(type("R", (), {"out": out_b})())
    assert ra["a_listing"] == ["jr-shared", "sem.jr-sem"], ra
    assert rb == {"b_listing": [], "sem": errno.ENOENT}, rb


def test_nothing_written_runs(jail):
    # jailrun(1) PROFILE EXEC: a copy of the interpreter written to
    # /dev/shm or /scratch is no program (execve, execveat: EACCES), no code
    # (mmap PROT_EXEC: EPERM; through the loader: it cannot map it), and
    # there is no anonymous file to write one to (memfd_create: EPERM, by
    # the filter, asked with native power). The interpreter itself runs
    # (the control).
    _, r = run_attack(jail, """
        import ctypes, mmap, shutil, subprocess
        libc = ctypes.CDLL(None, use_errno=True)
        def rc(argv):
            try:
                return subprocess.run(argv, capture_output=True).returncode
            except OSError as e:
                return "errno %d" % e.errno
        report("control", rc([sys.executable, "-c", "pass"]))
        for d in ("/dev/shm", "/scratch"):
            p = d + "/py"
            shutil.copy(sys.executable, p)
            os.chmod(p, 0o755)
            report(d + " exec", rc([p, "-c", "pass"]))
            report(d + " loader", rc(["/lib64/ld-linux-x86-64.so.2", p, "-c", "pass"]))
            fd = os.open(p, os.O_RDONLY)
            argv = (ctypes.c_char_p * 2)(p.encode(), None)
            pid = os.fork()
            if pid == 0:  # execveat(fd, "", argv, NULL, AT_EMPTY_PATH)
                libc.syscall(322, fd, b"", argv, None, 0x1000)
                os._exit(ctypes.get_errno())
            report(d + " execveat", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
            try:
                mmap.mmap(fd, 4096, prot=mmap.PROT_READ | mmap.PROT_EXEC, flags=mmap.MAP_PRIVATE)
                report(d + " mmap", 0)
            except OSError as e:
                report(d + " mmap", e.errno)
            os.close(fd)
            os.unlink(p)
        report("memfd", libc.syscall(319, b"x", 0))
        report("memfd errno", ctypes.get_errno())
        try:
            os.memfd_create("x")
            report("os.memfd_create", 0)
        except OSError as e:
            report("os.memfd_create", e.errno)
    """, "--scratch-size", "64M")
    assert r["control"] == 0, r
    for d in ("/dev/shm", "/scratch"):
        assert r[d + " exec"] == "errno %d" % errno.EACCES, r
        assert r[d + " loader"] == 127, r
        assert r[d + " execveat"] == errno.EACCES, r
        assert r[d + " mmap"] == errno.EPERM, r
    assert r["memfd"] == -1 and r["memfd errno"] == errno.EPERM and r["os.memfd_create"] == errno.EPERM, r


def test_dev_shm_is_bounded(jail):
    # --memory 128M: /dev/shm holds 64 MiB (half), then ENOSPC; the job
    # lives on. Files: MNT_SHM_INODES (4096), then ENOSPC.
    _, r = run_attack(jail, """
        chunk = b"x" * (1 << 20)
        n, err = 0, 0
        with open("/dev/shm/fill", "wb") as f:
            try:
                while n < 512:
                    f.write(chunk)
                    f.flush()
                    n += 1
            except OSError as e:
                err = e.errno
        report("mib", n)
        report("err", err)
        os.unlink("/dev/shm/fill")
        files, ferr = 0, 0
        try:
            while files < 100000:
                open("/dev/shm/f%d" % files, "w").close()
                files += 1
        except OSError as e:
            ferr = e.errno
        report("files", files)
        report("ferr", ferr)
    """, "--memory", "128M", timeout=120)
    assert r["err"] == errno.ENOSPC and 60 <= r["mib"] <= 64, r
    assert r["ferr"] == errno.ENOSPC and 4000 <= r["files"] <= 4096, r


@pytest.mark.parametrize("shell", [False, True])
def test_programs_are_read_only(jail, tmp_path, shell):
    opts = ("--policy", shell_policy(tmp_path)) if shell else ()
    _, r = run_attack(jail, """
        names = sorted(os.listdir("/usr/bin"))
        report("names", names)
        for n in names:
            p = "/usr/bin/" + n
            if os.path.islink(p):
                continue
            report(n, [err_of(lambda: os.close(os.open(p, os.O_WRONLY))),
                       err_of(os.chmod, p, 0o4755), err_of(os.unlink, p),
                       err_of(os.rename, p, "/usr/bin/x"), err_of(os.truncate, p, 0)])
        report("create", err_of(lambda: os.close(os.open("/usr/bin/evil", os.O_WRONLY | os.O_CREAT, 0o755))))
        report("symlink", err_of(os.symlink, "/scratch/evil", "/usr/bin/evil"))
    """, *opts)
    names = r.pop("names")
    assert r.pop("create") == errno.EROFS and r.pop("symlink") == errno.EROFS, r
    if shell:
        assert {"sh", "dash", "ls", "cat", "grep", "sed", "python3.11"} <= set(names), names
    else:
        assert names == ["python3", "python3.11"], names
    for n, errs in r.items():
        # open for writing and truncate meet the owner's mode first (the
        # files are the host root's, nobody in the jail)
        assert errs[1:4] == [errno.EROFS] * 3 and set(errs[::4]) <= {errno.EROFS, errno.EACCES}, (n, errs)


def test_no_set_id_program_anywhere(jail, tmp_path):
    # With the shell (the most programs a jail gets): no program in
    # /usr/bin is set-uid or set-gid, and every mount is nosuid, so the
    # set-gid helper a bound library directory holds (Debian's utempter,
    # in /usr/lib/x86_64-linux-gnu) runs without its group too.
    _, r = run_attack(jail, """
        import stat
        found, files = [], 0
        for top in ("/usr", "/etc", "/lib", "/lib64", "/bin", "/dev"):
            for d, dirs, names in os.walk(top):
                for n in names:
                    st = os.lstat(os.path.join(d, n))
                    files += 1
                    if stat.S_ISREG(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                        found.append(os.path.join(d, n))
        report("found", found)
        report("files", files)
        report("suid_mounts", [l.split()[4] for l in open("/proc/self/mountinfo")
                               if "nosuid" not in l.split()[5].split(",")])
    """, "--policy", shell_policy(tmp_path), timeout=120)
    assert r["files"] > 1000, r
    assert not [f for f in r["found"] if f.startswith(("/usr/bin/", "/bin/"))], r
    assert r["suid_mounts"] == [], r


def test_a_program_the_script_executes_dies_with_the_job(tmp_path):
    # A shell loop started in the background outlives nothing: the job's
    # end (its timeout) takes every process of the jail.
    path = tmp_path / "bg.py"
    path.write_text(script("""
        import subprocess
        subprocess.Popen("while true; do sleep 1; done", shell=True, start_new_session=True)
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
        import time
        time.sleep(600)
    """))
    pol = shell_policy(tmp_path)
    cmd = [JAILRUN, *(("--warm=" + WARM,) if WARM is not None else ()), "--profile", "exec", "--policy", pol,
           "--timeout", "2", str(path)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 124, p
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
    from jr_helpers import orphan_jail_procs
    import time
    deadline = time.monotonic() + 5
    while orphan_jail_procs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not orphan_jail_procs()


assert KILLED_BY_SIGSYS == 128 + 31
