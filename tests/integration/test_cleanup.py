"""Nothing outlives a job: after every way a job can end, no process runs as
its host uid and its uid lock file is gone. Timeouts and signals kill the
whole jail, setsid'd grandchildren included; kill -9 of jailrun takes the
jail down too; concurrent jobs get different host uids."""
import os
import subprocess
import signal
import time

import pytest

from conftest import JAILRUN
from hostprobe import slack
from jr_helpers import (UID_PROBE, _unheld, assert_job_gone, final_json, finish,  # noqa: F401
                        host_stays_clean, jail_procs, kill_pids, lock_path, reap,
                        remove_stale_locks, set_subreaper, start, stop, wait_line)

# Profile exec prelude: reports the host uid, then leaves three setsid'd
# children (each with a child of its own) sleeping in the jail.
EXEC_PRELUDE = """\
import os, sys, time
print("UID", %s, flush=True)
for i in range(3):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        time.sleep(60)
        os._exit(0)
deadline = time.time() + 5  # until init, 3 session leaders and 3 grandchildren all run
while len([d for d in os.listdir("/proc") if d.isdigit()]) < 7 and time.time() < deadline:
    time.sleep(0.01)
""" % UID_PROBE

WORKER_PRELUDE = """\
import os, sys, time
os.write(1, b"UID %%d\\n" %% %s)
""" % UID_PROBE

EXEC_ENDINGS = {
    # name: (source after the prelude, extra options, expected exit status)
    "exec-ok": ("print('done')\n", [], 0),
    "exec-exit-3": ("sys.exit(3)\n", [], 3),
    "exec-exception": ("raise ValueError('x')\n", [], 1),
    "exec-seccomp": ("os.chroot('/')\n", [], 159),
    "exec-protocol-error": ("import socket\nsocket.socket(fileno=3).send(b'{bad')\ntime.sleep(30)\n",
                            [], 1),
    "exec-timeout": ("time.sleep(30)\n", ["--timeout", "1"], 124),
}

WORKER_ENDINGS = {
    "worker-ok": ("def tick(ctx):\n    ctx.log.info('ok')\n", ["--ticks", "2"], 0),
    "worker-error": ("def tick(ctx):\n    raise KeyError('k')\n", [], 1),
    "worker-load-error": ("raise ImportError('x')\n", [], 1),
    "worker-seccomp": ("def tick(ctx):\n    os.chroot('/')\n", [], 159),
    "worker-protocol-error": ("import socket\ndef tick(ctx):\n    socket.socket(fileno=3).send(b'[]')\n"
                              "    time.sleep(30)\n", [], 1),
    "worker-timeout": ("def tick(ctx):\n    while True:\n        pass\n", ["--timeout", "1"], 124),
}


def stretched(opts):
    """opts with a --timeout of 1 s made 1 s past what this host needs to
    start the job (its UID line must come before the timeout)."""
    return [("%.1f" % (1 + slack(1)) if a == "1" and i and opts[i - 1] == "--timeout" else a)
            for i, a in enumerate(opts)]


def run_and_get_uid(tmp_path, source, opts):
    opts = stretched(opts)
    p = start(tmp_path, source, *opts)
    t0 = time.monotonic()
    res, _ = finish(p, timeout=20)
    elapsed = time.monotonic() - t0
    # exec output passes through on stdout; a worker's native output is
    # relayed to stderr (stdout is kept for the --json result)
    # (a worker's native lines arrive as "OUTPUT <line>")
    lines = [l.removeprefix("OUTPUT ") for l in (res.out + "\n" + res.err).splitlines()]
    lines = [l for l in lines if l.startswith("UID ")]
    first = lines[0] if lines else ""
    assert first.startswith("UID "), res
    return res, int(first.split()[1]), elapsed


@pytest.mark.parametrize("name", sorted(EXEC_ENDINGS))
def test_exec_endings_leave_nothing(tmp_path, name):
    tail, opts, code = EXEC_ENDINGS[name]
    res, uid, elapsed = run_and_get_uid(tmp_path, EXEC_PRELUDE + tail, ["--profile", "exec", *opts])
    assert res.code == code, res
    assert elapsed < slack(5) + (1 + slack(1) if "--timeout" in opts else 0)
    assert_job_gone(uid, "after %s" % name)


@pytest.mark.parametrize("name", sorted(WORKER_ENDINGS))
def test_worker_endings_leave_nothing(tmp_path, name):
    tail, opts, code = WORKER_ENDINGS[name]
    res, uid, elapsed = run_and_get_uid(tmp_path, WORKER_PRELUDE + tail, opts)
    assert res.code == code, res
    assert elapsed < slack(5) + (1 + slack(1) if "--timeout" in opts else 0)
    assert_job_gone(uid, "after %s" % name)


def test_timeout_kills_setsid_children(tmp_path):
    p = start(tmp_path, EXEC_PRELUDE + """
time.sleep(0.2)
print("CHILDREN", len([d for d in os.listdir("/proc") if d.isdigit()]), flush=True)
time.sleep(60)
""", "--profile", "exec", "--timeout", "%.1f" % (1 + slack(1)), "--json")
    try:
        lines = wait_line(p.stdout, "CHILDREN", timeout=slack(10))
        uid = int(lines[0].split()[1])
        assert int(lines[-1].split()[1]) == 7, "init + 3 session leaders + 3 grandchildren"
        assert len(jail_procs(uid)) == 7
        res, elapsed = finish(p, timeout=slack(10))
    finally:
        stop(p)
    assert res.code == 124, res
    assert elapsed < 1 + slack(1) + slack(3)
    j = final_json(res)
    assert j["status"] == "timeout"
    assert j["error"]["type"] == "TimeoutError"
    assert_job_gone(uid, "after the timeout")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT],
                         ids=lambda s: s.name)
def test_signal_to_jailrun_kills_the_jail(tmp_path, sig):
    p = start(tmp_path, EXEC_PRELUDE + "print('READY', flush=True)\ntime.sleep(60)\n",
              "--profile", "exec", "--json")
    try:
        lines = wait_line(p.stdout, "READY", timeout=10)
        uid = int(lines[0].split()[1])
        assert len(jail_procs(uid)) == 7
        t0 = time.monotonic()
        p.send_signal(sig)
        res, _ = finish(p, timeout=slack(10))
    finally:
        stop(p)
    assert time.monotonic() - t0 < slack(2), "jailrun must end quickly on %s" % sig.name
    assert res.code == 128 + sig, res
    j = final_json(res)
    assert j["status"] == "signal"
    assert j["error"]["type"] == "Interrupted"
    assert_job_gone(uid, "after %s" % sig.name)


def test_sigterm_during_a_busy_worker_tick(tmp_path):
    p = start(tmp_path, WORKER_PRELUDE + """
def tick(ctx):
    os.write(1, b"TICKING\\n")
    while True:
        pass
""", "--ticks", "5")
    try:
        lines = wait_line(p.stderr, "TICKING", timeout=10)  # worker native output: stderr
        uid = int([l for l in lines if l.startswith("OUTPUT UID ")][0].split()[2])
        t0 = time.monotonic()
        p.terminate()
        res, _ = finish(p, timeout=slack(10))
    finally:
        stop(p)
    assert res.code == 143, res
    assert time.monotonic() - t0 < slack(2)
    assert "Interrupted" in res.err
    assert_job_gone(uid, "after SIGTERM")


def test_sigterm_right_at_start(tmp_path):
    """A signal that lands while the jail is being set up still ends the job
    cleanly (or kills jailrun before it made anything)."""
    for delay in (0.0, 0.005, 0.02):
        p = start(tmp_path, "import time\ntime.sleep(30)\n", "--profile", "exec")
        time.sleep(delay)
        p.terminate()
        res, elapsed = finish(p, timeout=slack(10))
        assert res.code in (143, -signal.SIGTERM), res
        assert elapsed < slack(3)


def test_kill_9_of_jailrun_kills_the_jail(tmp_path):
    """PR_SET_PDEATHSIG on the jail's init (and the pid namespace) make the
    whole jail die with jailrun, even when jailrun cannot clean up."""
    set_subreaper(True)  # the orphaned jail init is reparented to us, not to pid 1
    p = None
    uid = None
    pids = {}
    try:
        p = start(tmp_path, EXEC_PRELUDE + "print('READY', flush=True)\ntime.sleep(60)\n",
                  "--profile", "exec")
        lines = wait_line(p.stdout, "READY", timeout=10)
        uid = int(lines[0].split()[1])
        pids = jail_procs(uid)
        assert len(pids) == 7
        p.kill()
        p.wait(timeout=5)
        deadline = time.monotonic() + 2.0
        while jail_procs(uid) and time.monotonic() < deadline:
            reap(pids)
            time.sleep(0.05)
        left = jail_procs(uid)
        assert not left, "jail processes survived kill -9 of jailrun: %r" % left
        # jailrun could not remove its cgroup or its lock; the next one does
        killed = p.pid
        sweep = tmp_path / "sweep.py"
        sweep.write_text("pass\n")
        assert subprocess.run([JAILRUN, "--profile", "exec", str(sweep)], capture_output=True,
                              timeout=30).returncode == 0
        stale = [d for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids")
                 if os.path.isdir(os.path.join(root, "jailrun", "job-%d" % killed))
                 for d in [os.path.join(root, "jailrun", "job-%d" % killed)]]
        assert stale == [], "the next jailrun left the killed one's cgroup: %r" % stale
        assert not os.path.exists(lock_path(uid)), "the next jailrun left the killed one's uid lock"
    finally:
        if p is not None:
            stop(p)
        kill_pids(pids)  # whatever survived (only pids this test started)
        time.sleep(0.1)
        reap(pids)
        set_subreaper(False)
        if uid is not None:
            # jailrun could not unlink its lock: the file stays, unheld.
            remove_stale_locks([os.path.basename(lock_path(uid))])


def test_concurrent_jobs_get_different_uids(tmp_path):
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    # each job runs until it is told to end (SIGTERM), not for a time the
    # other might not start within on a busy host
    src = ("import time\nprint('UID', %s, flush=True)\ntime.sleep(120)\n" % UID_PROBE)
    pa = start(a_dir, src, "--profile", "exec")
    pb = start(b_dir, src, "--profile", "exec")
    try:
        ua = int(wait_line(pa.stdout, "UID", timeout=slack(10))[-1].split()[1])
        ub = int(wait_line(pb.stdout, "UID", timeout=slack(10))[-1].split()[1])
        assert ua != ub
        for u in (ua, ub):
            assert 100000 <= u <= 165535
            assert os.path.exists(lock_path(u)), "a running job holds its uid's lock file"
            assert not _unheld(lock_path(u)), "and the lock is held"
            assert jail_procs(u)
        pa.send_signal(signal.SIGTERM)
        pb.send_signal(signal.SIGTERM)
        ra, _ = finish(pa, timeout=slack(10))
        rb, _ = finish(pb, timeout=slack(10))
    finally:
        stop(pa)
        stop(pb)
    assert ra.code == 143 and rb.code == 143, (ra, rb)
    assert_job_gone(ua)
    assert_job_gone(ub)


def test_many_concurrent_jobs(tmp_path):
    procs = []
    for i in range(6):
        d = tmp_path / str(i)
        d.mkdir()
        procs.append(start(d, "import time\nprint('UID', %s, flush=True)\ntime.sleep(0.5)\n" % UID_PROBE,
                           "--profile", "exec"))
    try:
        results = [finish(p, timeout=slack(10))[0] for p in procs]
    finally:
        for p in procs:
            stop(p)
    assert all(r.code == 0 for r in results), results
    uids = [int(r.out.split()[1]) for r in results]
    assert len(set(uids)) == 6, uids
    for u in uids:
        assert_job_gone(u)
