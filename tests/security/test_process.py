"""Processes and identity: pid, user and UTS namespaces, credentials,
capabilities, no_new_privs, seccomp mode, environment and descriptors."""
import errno
import os
import socket
import subprocess
import time

from conftest import JAILRUN, WARM_JAILS
from jailsec import host_pid_max, results, run_attack, script

UID_LO, UID_HI = 100000, 165535


def _popen(tmp_path, src, name="script.py", script_args=(), **kw):
    path = tmp_path / name
    path.write_text(script(src))
    cmd = [JAILRUN, "--profile", "exec", str(path)]
    if script_args:
        cmd += ["--", *script_args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, **kw)


class _Res:
    def __init__(self, code, out, err):
        self.code, self.out, self.err = code, out, err

    def __repr__(self):
        return "<exit %s\nstdout:\n%s\nstderr:\n%s>" % (self.code, self.out, self.err)


def test_no_host_pid_is_visible_or_signalable(tmp_path):
    # Every pid the host may use is probed from inside, the supervisor's
    # and the test's own among them; only the jail's pid 1 and its own
    # child may answer.
    scan_to = min(host_pid_max(), 1 << 16)
    me = os.getpid()
    p = _popen(tmp_path, """
        import signal, time
        lo, hi, me = (int(x) for x in sys.argv[1:4])
        child = os.fork()
        if child == 0:
            time.sleep(30)
            os._exit(0)
        report("child", child)
        report("proc", sorted(n for n in os.listdir("/proc") if n.isdigit()))
        ours = {1, child}
        answered = []
        pids = set(range(lo, hi + 1)) | set(range(me - 10, me + 4000))
        for pid in sorted(pids):
            if pid in ours or pid <= 0:
                continue
            try:
                os.kill(pid, 0)
                answered.append(pid)
            except ProcessLookupError:
                pass
        report("answered", answered)
        report("scanned", [min(pids), max(pids), len(pids)])
        # the test process (the supervisor's parent) by every route
        if me not in ours:
            report("kill_me", err_of(os.kill, me, signal.SIGKILL))
            report("pidfd_me", sysc(434, me, 0)[1])
            report("proc_me", err_of(os.stat, "/proc/%d" % me))
            report("mem_me", err_of(os.open, "/proc/%d/mem" % me, os.O_RDONLY))
            report("prlimit_me", sysc(302, me, 7, 0, (ctypes.c_ulong * 2)())[1])
            report("getpgid_me", err_of(os.getpgid, me))
            report("setpriority_me", err_of(os.setpriority, os.PRIO_PROCESS, me, 19))
        report("ppid", os.getppid())
        report("pid", os.getpid())
        report("self", os.readlink("/proc/self"))
        report("kill_all", err_of(os.kill, -1, 0))
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    """, script_args=["2", str(scan_to), str(me)])
    out, err = p.communicate(timeout=60)
    res = _Res(p.returncode, out, err)
    assert p.returncode == 0, res
    r = results(res)
    child = r["child"]
    # only the jail's own pids (its non-dumpable children may even be hidden
    # by hidepid=invisible)
    assert "1" in r["proc"] and set(r["proc"]) <= {"1", str(child)}, r["proc"]
    assert r["answered"] == [], r["answered"]
    lo, hi, _ = r["scanned"]
    # the supervisor (jailrun itself) was among the probed pids
    assert lo <= p.pid <= hi and p.pid not in (1, child) and (p.pid <= scan_to or
                                                            me - 10 <= p.pid < me + 4000), p.pid
    assert r["ppid"] == 0 and r["pid"] == 1 and r["self"] == "1", r
    assert r["kill_all"] == 0, r  # signals to "everyone" reach only the jail's own
    if me not in (1, child):
        assert {k: r[k] for k in ("kill_me", "pidfd_me", "proc_me", "mem_me", "prlimit_me",
                                  "getpgid_me", "setpriority_me")} == {
            "kill_me": errno.ESRCH, "pidfd_me": errno.ESRCH, "proc_me": errno.ENOENT,
            "mem_me": errno.ENOENT, "prlimit_me": errno.ESRCH, "getpgid_me": errno.ESRCH,
            "setpriority_me": errno.ESRCH}, r


def test_proc_1_is_the_jail_not_host_init(jail):
    with open("/proc/1/comm") as f:
        host_init = f.read().strip()
    _, r = run_attack(jail, """
        report("comm", open("/proc/1/comm").read().strip())
        st = dict(l.split(":", 1) for l in open("/proc/1/status").read().splitlines())
        report("nspid", st["NSpid"].split())
        report("ppid", st["PPid"].strip())
        report("environ", err_of(lambda: open("/proc/1/environ", "rb").read()))
        report("same_as_self", os.stat("/proc/1").st_ino == os.stat("/proc/self").st_ino or
               os.readlink("/proc/self") == "1")
    """)
    assert r["comm"] != host_init or host_init == "jailrun", (r, host_init)
    assert r["nspid"] == ["1"] and r["ppid"] == "0" and r["same_as_self"], r
    # its own environ: the jail program's fixed one (test_leaks.py); a warm
    # jail's owner-only files are the host root's: not even readable
    assert r["environ"] == (errno.EACCES if WARM_JAILS else 0), r


def test_every_namespace_but_time_is_new(jail):
    kinds = ["user", "mnt", "net", "pid", "ipc", "uts", "cgroup"]
    host = {k: os.readlink("/proc/self/ns/" + k) for k in kinds}
    _, r = run_attack(jail, """
        for k in sys.argv[1:]:
            report(k, os.readlink("/proc/self/ns/" + k))
    """, script_args=kinds)
    assert set(r) == set(kinds), r
    same = {k: r[k] for k in kinds if r[k] == host[k]}
    assert not same, same


def test_uid_and_gid_maps_are_one_unprivileged_id(jail):
    _, r = run_attack(jail, """
        report("uid_map", open("/proc/self/uid_map").read())
        report("gid_map", open("/proc/self/gid_map").read())
        report("setgroups", open("/proc/self/setgroups").read())
        report("ids", [os.getresuid(), os.getresgid(), os.getgroups()])
        for f in ("uid_map", "gid_map", "setgroups"):
            def write(path):
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.write(fd, b"0 0 4294967295\\n")
                finally:
                    os.close(fd)
            report("write_" + f, err_of(write, "/proc/self/" + f))
        report("uid_map_after", open("/proc/self/uid_map").read())
    """)
    uid_line = r["uid_map"].split()
    gid_line = r["gid_map"].split()
    assert r["uid_map"].count("\n") == 1 and len(uid_line) == 3, r
    assert uid_line[0] == "0" and uid_line[2] == "1", r
    assert UID_LO <= int(uid_line[1]) <= UID_HI, r
    assert gid_line[0] == "0" and gid_line[2] == "1" and r["gid_map"].count("\n") == 1, r
    assert UID_LO <= int(gid_line[1]) <= UID_HI, r
    assert r["setgroups"] == "deny\n", r
    assert r["ids"] == [[0, 0, 0], [0, 0, 0], []], r
    # the maps are written once, by the supervisor; setgroups stays "deny"
    # (a warm jail's map files are the host root's: refused before that)
    refused = errno.EACCES if WARM_JAILS else errno.EPERM
    assert (r["write_uid_map"], r["write_gid_map"]) == (refused,) * 2, r
    assert r["write_setgroups"] == errno.EACCES and r["uid_map_after"] == r["uid_map"], r


def test_changing_identity_is_refused_eperm(jail):
    _, r = run_attack(jail, """
        report("os_setuid", err_of(os.setuid, 1000))
        report("os_setgid", err_of(os.setgid, 1000))
        report("os_setgroups", err_of(os.setgroups, [0, 1000]))
        report("os_setgroups_empty", err_of(os.setgroups, []))
        report("setuid", sysc(105, 1000)[1])
        report("setuid_0", sysc(105, 0)[1])
        report("setgid", sysc(106, 1000)[1])
        report("setreuid", sysc(113, 1000, 1000)[1])
        report("setregid", sysc(114, 1000, 1000)[1])
        report("setresuid", sysc(117, 1000, 1000, 1000)[1])
        report("setresgid", sysc(119, 1000, 1000, 1000)[1])
        report("setgroups", sysc(116, 1, (ctypes.c_uint * 1)(0))[1])
        report("setfsuid", sysc(122, 1000)[1])
        report("setfsgid", sysc(123, 1000)[1])
        report("after", [os.getresuid(), os.getresgid(), os.getgroups()])
    """)
    after = r.pop("after")
    assert r == {k: errno.EPERM for k in r}, r
    assert len(r) == 14
    assert after == [[0, 0, 0], [0, 0, 0], []], after


def test_capabilities_are_all_gone(jail):
    _, r = run_attack(jail, """
        st = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
        for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"):
            report(k, st[k].strip())
        class Hdr(ctypes.Structure):
            _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
        class Data(ctypes.Structure):
            _fields_ = [("eff", ctypes.c_uint32), ("prm", ctypes.c_uint32), ("inh", ctypes.c_uint32)]
        h = Hdr(0x20080522, 0)
        d = (Data * 2)()
        report("capget", [sysc(125, ctypes.byref(h), d)[1]] + [[x.eff, x.prm, x.inh] for x in d])
        # capset: try to take back CAP_SYS_ADMIN and CAP_NET_ADMIN
        d[0].eff = d[0].prm = (1 << 21) | (1 << 12)
        report("capset", sysc(126, ctypes.byref(h), d)[1])
        # bounding and ambient sets, one capability at a time
        report("bnd", [sysc(157, 23, c, 0, 0, 0)[0] for c in range(41)])       # PR_CAPBSET_READ
        report("amb", [sysc(157, 47, 1, c, 0, 0)[0] for c in range(41)])       # AMBIENT_IS_SET
        report("amb_raise", sysc(157, 47, 2, 21, 0, 0)[1])                      # AMBIENT_RAISE
        report("bnd_drop", sysc(157, 24, 21, 0, 0, 0)[1])                       # PR_CAPBSET_DROP
    """)
    for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert r[k] == "0000000000000000", (k, r[k])
    assert r["capget"] == [0, [0, 0, 0], [0, 0, 0]], r
    assert r["capset"] == errno.EPERM, r
    assert r["bnd"] == [0] * 41 and r["amb"] == [0] * 41, r
    assert r["amb_raise"] == errno.EPERM and r["bnd_drop"] == errno.EPERM, r


def test_no_new_privs_seccomp_and_locked_securebits(jail):
    _, r = run_attack(jail, """
        st = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
        report("status", [st["NoNewPrivs"].strip(), st["Seccomp"].strip(),
                          int(st["Seccomp_filters"])])
        report("get_nnp", sysc(157, 39, 0, 0, 0, 0)[0])           # PR_GET_NO_NEW_PRIVS
        report("unset_nnp", sysc(157, 38, 0, 0, 0, 0)[1])         # PR_SET_NO_NEW_PRIVS 0
        report("get_seccomp", sysc(157, 21, 0, 0, 0, 0)[0])       # PR_GET_SECCOMP
        report("securebits", sysc(157, 27, 0, 0, 0, 0)[0])        # PR_GET_SECUREBITS
        report("clear_securebits", sysc(157, 28, 0, 0, 0, 0)[1])  # PR_SET_SECUREBITS
        report("keepcaps", sysc(157, 8, 1, 0, 0, 0)[1])           # PR_SET_KEEPCAPS
        # the same holds in a forked child
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            st = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
            os.write(wfd, (st["NoNewPrivs"].strip() + st["Seccomp"].strip() +
                           st["CapEff"].strip()).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        report("child", os.read(rfd, 100).decode())
    """)
    assert r["status"][0] == "1" and r["status"][1] == "2" and r["status"][2] >= 1, r
    assert r["get_nnp"] == 1 and r["unset_nnp"] == errno.EINVAL, r
    assert r["get_seccomp"] == 2, r
    # NOROOT, NO_SETUID_FIXUP, NO_CAP_AMBIENT_RAISE and KEEP_CAPS, all locked
    assert r["securebits"] == 0xEF, hex(r["securebits"])
    assert r["clear_securebits"] == errno.EPERM and r["keepcaps"] == errno.EPERM, r
    assert r["child"] == "12" + "0" * 16, r


def test_environment_has_nothing_of_the_host(jail, monkeypatch):
    monkeypatch.setenv("JR_HOST_SECRET", "host-secret-value-42")
    monkeypatch.setenv("LD_PRELOAD", "/tmp/evil.so")
    monkeypatch.setenv("PYTHONPATH", "/tmp/evil")
    monkeypatch.setenv("PYTHONSTARTUP", "/tmp/evil.py")
    _, r = run_attack(jail, """
        report("env", dict(os.environ))
        report("path", sys.path)
    """)
    assert r["env"] == {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/scratch", "TMPDIR": "/scratch",
        "LANG": "C.UTF-8", "TZ": "UTC", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        # the runtime's, for matplotlib (profile exec)
        "MPLCONFIGDIR": "/scratch/.config/matplotlib",
    }, r["env"]
    assert not any("evil" in p for p in r["path"]), r["path"]


def test_only_fds_0_to_3_even_when_the_host_leaks_fds(tmp_path):
    # The supervisor is started with a root-only host file and a host
    # listening socket inherited on extra descriptors.
    shadow = os.open("/etc/shadow", os.O_RDONLY) if os.path.exists("/etc/shadow") else \
        os.open("/etc/passwd", os.O_RDONLY)
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    try:
        p = _popen(tmp_path, """
            import stat, socket
            names = sorted(int(n) for n in os.listdir("/proc/self/fd"))
            # the one descriptor listdir used for the directory is closed again
            report("listed", [fd for fd in names if err_of(os.fstat, fd) != errno.EBADF])
            report("listed_extra", len(names) - 4)
            report("probed", [fd for fd in range(1024) if err_of(os.fstat, fd) != errno.EBADF])
            st0 = os.fstat(0)
            report("fd0", [stat.S_ISCHR(st0.st_mode), os.major(st0.st_rdev), os.minor(st0.st_rdev)])
            report("fd12", [stat.S_ISFIFO(os.fstat(1).st_mode), stat.S_ISFIFO(os.fstat(2).st_mode)])
            s = socket.socket(fileno=3)
            report("fd3", [s.family == socket.AF_UNIX, s.type == socket.SOCK_SEQPACKET,
                           os.get_inheritable(3)])
            s.detach()
            report("tty", [os.isatty(fd) for fd in range(3)])
        """, pass_fds=(shadow, lst.fileno()))
        out, err = p.communicate(timeout=60)
    finally:
        os.close(shadow)
        lst.close()
    res = _Res(p.returncode, out, err)
    assert p.returncode == 0, res
    r = results(res)
    assert r["listed"] == [0, 1, 2, 3] and r["listed_extra"] <= 1, r
    assert r["probed"] == [0, 1, 2, 3], r
    assert r["fd0"] == [True, 1, 3], r  # /dev/null
    assert r["fd12"] == [True, True], r
    assert r["fd3"] == [True, True, False], r  # close-on-exec
    assert r["tty"] == [False, False, False], r


def test_hostname_change_refused_and_host_unchanged(jail):
    before = socket.gethostname()
    with open("/proc/sys/kernel/domainname") as f:
        dom_before = f.read()
    _, r = run_attack(jail, """
        report("nodename", os.uname().nodename)
        report("sethostname", sysc(170, b"pwned-by-jail", 13)[1])
        report("setdomainname", sysc(171, b"pwned-by-jail", 13)[1])
        report("proc_hostname", err_of(lambda: open("/proc/sys/kernel/hostname", "w").write("pwned")))
        report("after", os.uname().nodename)
    """)
    assert r == {"nodename": "jail", "sethostname": errno.EPERM, "setdomainname": errno.EPERM,
                 "proc_hostname": errno.ENOENT, "after": "jail"}, r
    assert socket.gethostname() == before
    with open("/proc/sys/kernel/domainname") as f:
        assert f.read() == dom_before


def test_tty_given_to_jailrun_never_reaches_the_jail(tmp_path):
    # jailrun's own stdout/stderr are a host pty: the jail still gets pipes,
    # and TIOCSTI into it cannot type into the host terminal.
    import pty
    import tty
    master, slave = pty.openpty()
    tty.setraw(slave)
    try:
        path = tmp_path / "tty.py"
        path.write_text(script("""
            ch = ctypes.c_char(b"X")
            report("isatty", [os.isatty(fd) for fd in range(4)])
            report("sti", [sysc(16, fd, 0x5412, ctypes.byref(ch))[1] for fd in range(3)])
            report("dev_tty", err_of(os.open, "/dev/tty", os.O_RDWR))
            report("ctty", err_of(os.tcgetpgrp, 1))
        """))
        p = subprocess.run([JAILRUN, "--profile", "exec", str(path)], stdin=subprocess.DEVNULL,
                           stdout=slave, stderr=slave, timeout=60)
        time.sleep(0.05)
        os.set_blocking(master, False)
        out = b""
        try:
            while True:
                chunk = os.read(master, 65536)
                if not chunk:
                    break
                out += chunk
        except (BlockingIOError, OSError):
            pass
        # nothing was pushed into the terminal's input queue
        os.set_blocking(slave, False)
        try:
            injected = os.read(slave, 100)
        except BlockingIOError:
            injected = b""
    finally:
        os.close(master)
        os.close(slave)
    text = out.decode(errors="replace").replace("\r", "")
    res = _Res(p.returncode, text, "")
    assert p.returncode == 0, res
    r = results(res)
    assert r == {"isatty": [False] * 4, "sti": [errno.EPERM] * 3, "dev_tty": errno.ENOENT,
                 "ctty": errno.ENOTTY}, res
    assert injected == b"", injected


def _host_uids_running():
    uids = set()
    for n in os.listdir("/proc"):
        if n.isdigit():
            try:
                with open("/proc/%s/status" % n) as f:
                    for line in f:
                        if line.startswith("Uid:"):
                            uids.add(int(line.split()[1]))
            except OSError:
                pass
    return uids


def test_two_jails_at_once_get_different_host_uids(tmp_path):
    src = """
        report("uid_map", open("/proc/self/uid_map").read().split())
        report("gid_map", open("/proc/self/gid_map").read().split())
        import time
        time.sleep(1.0)
        report("done", True)
    """
    a = _popen(tmp_path, src, name="a.py")
    b = _popen(tmp_path, src, name="b.py")
    try:
        first = [results(_Res(0, p.stdout.readline() + p.stdout.readline(), ""))
                 for p in (a, b)]
        # both are alive now: the host sees a process under each mapped uid
        running = _host_uids_running()
        outs = [p.communicate(timeout=60) for p in (a, b)]
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (out, err) in zip((a, b), outs):
        assert p.returncode == 0, _Res(p.returncode, out, err)
        assert '"done": true' in out
    ua, ub = (int(f["uid_map"][1]) for f in first)
    ga, gb = (int(f["gid_map"][1]) for f in first)
    assert first[0]["uid_map"][::2] == ["0", "1"] and first[1]["uid_map"][::2] == ["0", "1"], first
    assert ua != ub, first
    assert ga != gb, first
    assert UID_LO <= ua <= UID_HI and UID_LO <= ub <= UID_HI, first
    assert {ua, ub} <= running, (ua, ub)


def test_jail_cannot_signal_outside_its_pid_namespace_with_a_pidfd(jail):
    # pidfd_open/pidfd_send_signal are allowed, but only on pids it can see.
    _, r = run_attack(jail, """
        me = int(sys.argv[1])
        report("pidfd_open_host", sysc(434, me, 0)[1])
        report("pidfd_open_self", sysc(434, 1, 0)[0] >= 0)
        report("send_bad_fd", sysc(424, 0, 9, 0, 0)[1])  # fd 0 is not a pidfd
    """, script_args=[str(os.getpid())])
    assert r == {"pidfd_open_host": errno.ESRCH, "pidfd_open_self": True,
                 "send_bad_fd": errno.EBADF}, r
