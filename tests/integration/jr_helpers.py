"""Helpers shared by the integration tests (imported by the test modules;
tests/conftest.py provides the `jail` and `worker` fixtures)."""
import contextlib
import ctypes
import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from conftest import JAILRUN, Result, native_opts  # noqa: E402  (tests/conftest.py)

JAIL_UID_LO, JAIL_UID_HI = 100000, 165535
LOCK_DIR = "/run/jailrun/uids"
PR_SET_CHILD_SUBREAPER = 36


def _status(pid):
    try:
        with open("/proc/%s/status" % pid) as f:
            return dict((k, v.strip()) for k, v in (line.split(":", 1) for line in f if ":" in line))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def _all_procs():
    procs = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _status(d)
            if st is not None:
                procs[int(d)] = {"uid": int(st["Uid"].split()[0]), "name": st["Name"],
                                 "state": st["State"].split()[0], "ppid": int(st["PPid"])}
    return procs


def in_jail_range(uid):
    return JAIL_UID_LO <= uid <= JAIL_UID_HI


def jail_procs(uid=None):
    """Live (non-zombie) processes running as a jail uid (the default range,
    or exactly `uid`): {pid: info}."""
    return {pid: p for pid, p in _all_procs().items()
            if p["state"] not in ("Z", "X")
            and (in_jail_range(p["uid"]) if uid is None else p["uid"] == uid)}


def orphan_jail_procs():
    """Live jail processes that no running jailrun or jaild supervises any more.

    Other users of this machine may run jailrun at the same time; their jails
    hang below their own live supervisor and are not counted. A jail process
    whose outermost jail ancestor's parent is not a live `jailrun` running as
    root (pid 1 after its supervisor died, or a subreaper) is a leak."""
    procs = _all_procs()
    out = {}
    for pid, p in procs.items():
        if p["state"] in ("Z", "X") or not in_jail_range(p["uid"]):
            continue
        top, seen = pid, set()
        while top in procs and in_jail_range(procs[top]["uid"]) and top not in seen:
            seen.add(top)
            top = procs[top]["ppid"]
        sup = procs.get(top)
        if not (sup and sup["uid"] == 0 and sup["name"] in ("jailrun", "jaild") and sup["state"] != "Z"):
            out[pid] = p
    return out


def _unheld(path):
    """True if `path` exists and nobody holds its flock."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


@contextlib.contextmanager
def private_tmpfs(d, size):
    """A tmpfs of `size` (mount's size=) at the new directory d, the
    test's own, unmounted at the end."""
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", str(d)], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=True)


def lock_files():
    """The lock files of uids in the jail range (a test's own other uids,
    and the daemon suites' range, are not this check's)."""
    try:
        names = os.listdir(LOCK_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.endswith(".lock") and n[:-5].isdigit() and in_jail_range(int(n[:-5])))


def stale_lock_files():
    """Lock files that no running job holds (a job unlinks its own on exit)."""
    return [n for n in lock_files() if _unheld(os.path.join(LOCK_DIR, n))]


def lock_path(uid):
    return os.path.join(LOCK_DIR, "%d.lock" % uid)


def snapshot():
    return set(orphan_jail_procs()), set(stale_lock_files())


def new_leftovers(before, grace=3.0):
    """Orphaned jail processes and stale locks that were not there `before`,
    after up to `grace` seconds."""
    deadline = time.monotonic() + grace
    while True:
        procs, locks = snapshot()
        procs -= before[0]
        locks -= before[1]
        if (not procs and not locks) or time.monotonic() >= deadline:
            return procs, locks
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def host_stays_clean():
    """No test leaves a jail process running or a uid lock file behind."""
    before = snapshot()
    yield
    procs, locks = new_leftovers(before)
    assert not procs, "jail processes left running after the test: %r" % (
        {p: _status(p) and _status(p)["Name"] for p in procs},)
    assert not locks, "uid lock files left in %s after the test: %r" % (LOCK_DIR, sorted(locks))


def assert_job_gone(uid, what=""):
    """Right after a job's jailrun exited: nothing runs as its uid and its
    lock file is gone."""
    procs = jail_procs(uid)
    assert not procs, "processes of uid %d left running %s: %r" % (uid, what, procs)
    assert not os.path.exists(lock_path(uid)), "lock file %s left %s" % (lock_path(uid), what)


UID_PROBE = "int(open('/proc/self/uid_map').read().split()[1])"


def write_script(tmp_path, source, name="script.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return str(path)


def jailrun_cmd(script, *opts, script_args=()):
    with open(script) as f:
        cmd = [JAILRUN, *native_opts(f.read(), opts), *opts, script]
    if script_args:
        cmd += ["--", *script_args]
    return cmd


def start(tmp_path, source, *opts, name="script.py", script_args=()):
    """Starts jailrun in the background; stdout and stderr are unbuffered
    binary pipes, read with wait_line() and finish()."""
    script = write_script(tmp_path, source, name=name)
    return subprocess.Popen(jailrun_cmd(script, *opts, script_args=script_args),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)


_pending = {}  # fd -> bytes read past the last line wait_line() returned


def wait_line(stream, want, timeout=10.0):
    """Reads lines from a pipe of start() until one contains `want`;
    returns the lines read (str)."""
    import select
    fd = stream.fileno()
    buf = _pending.pop(fd, b"")
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            seen.append(line.decode("utf-8", "replace") + "\n")
            if want in seen[-1]:
                _pending[fd] = buf
                return seen
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        data = os.read(fd, 65536)
        if not data:
            break
        buf += data
    _pending[fd] = buf
    raise AssertionError("no line with %r within %ss; got %r" % (want, timeout, seen))


def finish(proc, timeout=10.0):
    """Waits for a start()ed jailrun; returns (Result, seconds waited)."""
    t0 = time.monotonic()
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise AssertionError("jailrun did not exit within %ss" % timeout)
    elapsed = time.monotonic() - t0
    out = _pending.pop(out_fd, b"") + (out or b"")
    err = _pending.pop(err_fd, b"") + (err or b"")

    class P:
        returncode = proc.returncode
        stdout = out.decode("utf-8", "replace")
        stderr = err.decode("utf-8", "replace")
    return Result(P), elapsed


def set_subreaper(on):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap(pids):
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def kill_pids(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def remove_stale_locks(names):
    """Removes lock files that nobody holds (left by a SIGKILLed jailrun)."""
    for name in names:
        path = os.path.join(LOCK_DIR, name)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(path)
        except BlockingIOError:
            pass
        finally:
            os.close(fd)


def log_lines(err):
    """stderr lines that are jail log entries in text mode."""
    return [l for l in err.splitlines() if l.split(" ", 1)[0] in ("DEBUG", "INFO", "WARN", "ERROR")]


def json_logs(err):
    """stderr lines of a --json run that are log objects."""
    out = []
    for l in err.splitlines():
        if l.startswith("{"):
            obj = json.loads(l)
            if obj.get("type") == "log":
                out.append(obj)
    return out


def final_json(res):
    """The final stdout line of a --json run, checked for its shape."""
    lines = res.out.strip().splitlines()
    assert lines, "no JSON result on stdout: %r" % (res,)
    obj = json.loads(lines[-1])
    assert set(obj) == {"status", "error", "exit_code", "stats"}, obj
    assert obj["status"] in ("ok", "error", "timeout", "cpu-time", "memory", "pids", "signal", "setup",
                             "internal"), obj
    # wall and CPU always; the kernel's accounting where the cgroup backend has it
    assert {"wall_ms", "cpu_ms"} <= set(obj["stats"]) <= {
        "wall_ms", "cpu_ms", "peak_memory_bytes", "cpu_user_us", "cpu_system_us", "pids_peak", "ticks",
        "ticks_failed", "restarts", "slots_skipped", "log_dropped", "supervisor_cpu_us", "ctx_cpu_us",
        "ctx_refused", "supervisor_peak_rss_bytes", "cgroup_setup_us", "cgroup_teardown_us"}, obj
    assert all(isinstance(v, int) and v >= 0 for v in obj["stats"].values()), obj
    assert isinstance(obj["stats"]["wall_ms"], int) and obj["stats"]["wall_ms"] >= 0
    assert isinstance(obj["stats"]["cpu_ms"], int) and obj["stats"]["cpu_ms"] >= 0
    assert obj["exit_code"] == res.code, (obj, res)
    if obj["status"] == "ok":
        assert obj["error"] is None, obj
    else:
        assert set(obj["error"]) == {"type", "message", "line", "traceback"}, obj
        assert isinstance(obj["error"]["traceback"], str), obj
    return obj


def stop(proc):
    """Ends a Popen'd jailrun still running after a failed assertion: SIGTERM
    first (jailrun then kills its jail and cleans up), SIGKILL as a last resort."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for f in (proc.stdout, proc.stderr):
        if f is not None and not f.closed:
            _pending.pop(f.fileno(), None)
            f.close()
