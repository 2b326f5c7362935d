"""Kernel limits per job, on whichever cgroup backend the host has (v1 on a
hybrid host, v2 in tests/vm): memory, tasks, CPU share, CPU time, the kill
that reaches every process, and no group left behind."""
import json
import os
import select
import signal
import subprocess
import textwrap
import time

import pytest

from hostprobe import slack
from cgtools import backend, groups_of, mem_available
import conftest
from conftest import JAILRUN, run_script

MEMORY_BOMB = """
chunks = []
while True:
    chunks.append(bytearray(8 << 20))   # touched: bytearray zero-fills
"""


@pytest.fixture(autouse=True)
def no_groups_left():
    """No group of a job this test ran survives it. (Other suites run jobs
    alongside; their groups are theirs to check.)"""
    first = len(conftest.SPAWNED)
    yield
    mine = conftest.SPAWNED[first:]
    deadline = time.monotonic() + 2
    while any(groups_of(pid) for pid in mine) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [g for pid in mine for g in groups_of(pid)] == [], "job cgroups left behind"


def result(r):
    return json.loads(r.out.strip().splitlines()[-1])


def test_backend_is_known():
    name, roots = backend()
    assert name in ("cgroup v1", "cgroup v2") and roots


def test_memory_bomb_is_a_memory_error(tmp_path):
    before = mem_available()
    t0 = time.monotonic()
    r = run_script(tmp_path, MEMORY_BOMB, "--profile", "exec", "--memory", "96M", "--json")
    took = time.monotonic() - t0
    j = result(r)
    assert r.code == 137, r
    assert j["status"] == "memory"
    assert j["error"]["type"] == "MemoryError"
    assert j["error"]["message"] == "memory limit of 96 MiB exceeded"
    # ended by the limit at once, not after minutes of reclaim or swap (a
    # liveness bound, generous for the VM's software emulation: 2.3 s seen)
    assert took < slack(15), "MemoryError after %.1f s" % took
    # charged to the job and capped at its limit (the kernel's own count)
    assert j["stats"]["peak_memory_bytes"] <= 96 << 20
    # and given back to the host (other work on this shared machine moves
    # MemAvailable too, hence the margin; an unlimited bomb would take GiBs)
    deadline = time.monotonic() + 2
    while mem_available() < before - (512 << 20) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mem_available() >= before - (512 << 20)


def test_worker_memory_bomb(tmp_path):
    r = run_script(tmp_path, """
        def tick(ctx):
            chunks = []
            while True:
                chunks.append(b"x" * (8 << 20))  # filled, so touched
    """, "--memory", "64M", "--json")
    j = result(r)
    assert r.code == 137, r
    assert (j["status"], j["error"]["type"]) == ("memory", "MemoryError")
    assert j["error"]["message"] == "memory limit of 64 MiB exceeded"


def test_a_worker_lives_on_after_its_jail_hit_the_memory_limit(tmp_path):
    """--interval: the jail killed at the limit is replaced and the next one
    ticks (red team: on v1 the limit's event stayed readable and killed
    every later jail at once); the job's status is its ticks', not the
    limit's (on v2 the group's OOM count of an earlier jail ended it so)."""
    r = run_script(tmp_path, """
        import time
        n = 0
        keep = []
        def tick(ctx):
            global n
            n += 1
            ctx.log.info("tick", n)
            if n == 3:
                time.sleep(0.3)  # the log goes out (at 100 ms) before the jail dies
                while True:
                    keep.append(b"x" * (8 << 20))
        def on_error(ctx, error):
            ctx.log.info("on_error", error["type"], error["message"])
    """, "--memory", "64M", "--interval", "50ms", "--ticks", "6", "--json", timeout=120)
    j = result(r)
    logs = [json.loads(x)["message"] for x in r.err.splitlines() if x.startswith('{"type":"log"')]
    oom = "on_error MemoryError memory limit of 64 MiB exceeded"
    assert logs == ["tick 1", "tick 2", "tick 3", oom, "tick 1", "tick 2", "tick 3", oom], r.err
    assert r.code == 1 and j["status"] == "error", j
    assert (j["error"]["type"], j["stats"]["ticks_failed"], j["stats"]["restarts"]) == ("MemoryError", 2, 2), j


def test_sigterm_then_the_tick_in_flight_hits_the_memory_limit(tmp_path):
    """The gentle stop's tick died of the limit: a failed tick (exit 1),
    as any tick's death is under --interval, not the job's memory end."""
    path = tmp_path / "w.py"
    path.write_text(textwrap.dedent("""
        import time
        keep = []
        def tick(ctx):
            ctx.log.info("begin")
            time.sleep(1.5)  # the log goes out at 100 ms; SIGTERM comes meanwhile
            while True:
                keep.append(b"x" * (8 << 20))
    """))
    p = subprocess.Popen([JAILRUN, "--memory", "64M", "--interval", "100ms", "--json", str(path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        seen, end = b"", time.monotonic() + 20
        while b"begin" not in seen and time.monotonic() < end:
            if select.select([p.stderr], [], [], 1)[0]:
                seen += os.read(p.stderr.fileno(), 65536)
        assert b"begin" in seen, seen
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        p.kill()
    j = json.loads(out.decode().strip().splitlines()[-1])
    assert p.returncode == 1 and j["status"] == "error", (j, err)
    assert (j["error"]["type"], j["stats"]["ticks"], j["stats"]["ticks_failed"]) == ("MemoryError", 1, 1), j


def test_memory_under_the_limit_is_fine(tmp_path):
    r = run_script(tmp_path, "b = bytearray(40 << 20)\nprint(len(b))\n", "--profile", "exec",
                   "--memory", "128M", "--json")
    j = result(r)
    assert r.code == 0, r
    assert j["stats"]["peak_memory_bytes"] >= 40 << 20


def test_fork_bomb_is_stopped_by_the_task_limit(tmp_path):
    r = run_script(tmp_path, """
        import os, time
        while True:
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
    """, "--profile", "exec", "--pids", "20", "--json", "--timeout", "20")
    j = result(r)
    assert r.code == 1, r                       # BlockingIOError, uncaught
    assert j["status"] == "pids"
    assert j["error"]["type"] == "ProcessLimitError"
    assert j["error"]["message"].startswith("task limit of 20 reached")
    if "pids_peak" in j["stats"]:
        assert j["stats"]["pids_peak"] <= 20


def spin_share(tmp_path, cpus):
    """The share of a core a spinning script in a job at --cpus gets (2 s)."""
    r = run_script(tmp_path, """
        import time
        t0, c0 = time.monotonic(), time.process_time()
        while time.monotonic() - t0 < 2:
            pass
        print("%.3f" % ((time.process_time() - c0) / (time.monotonic() - t0)))
    """, "--profile", "exec", "--cpus", cpus)
    assert r.code == 0, r
    return float(r.out.split()[0])


def test_cpu_share(tmp_path):
    # The cap is what the limit promises, whatever else runs. Below it, the
    # share is what the host has to give: measured first, the same spinner
    # under a limit it cannot reach (a busy host gave a capped job 0.38).
    free = spin_share(tmp_path, "2")
    share = spin_share(tmp_path, "0.5")
    assert min(0.425, 0.75 * free) <= share <= 0.575, (share, free)


def test_cpu_time_limit(tmp_path):
    t0 = time.monotonic()
    r = run_script(tmp_path, "while True:\n    pass\n", "--profile", "exec", "--cpu-time", "0.5",
                   "--cpus", "0.5", "--json")
    took = time.monotonic() - t0
    j = result(r)
    assert r.code == 124, r
    assert j["status"] == "cpu-time"
    assert j["error"]["message"] == "CPU-time limit of 0.5 s exceeded"
    assert took >= 0.9, "0.5 s of CPU at half a core takes about 1 s of wall time"
    # the job is ended once its group's precise count passes the limit; the
    # user/system figures are the kernel's split of it, to a tick (v1: 10 ms)
    assert j["stats"]["cpu_user_us"] + j["stats"]["cpu_system_us"] >= 500000 - 10000, j["stats"]


def test_timeout_kills_daemonised_children(tmp_path):
    r = run_script(tmp_path, """
        import os, time
        for _ in range(3):
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    time.sleep(60)
                os._exit(0)
        time.sleep(60)
    """, "--profile", "exec", "--timeout", "2")
    assert r.code == 124, r


@pytest.mark.parametrize("args, word", [
    (["--memory", "3G"], "maximum of 2 GiB"),
    (["--cpus", "4.5"], "maximum of 4"),
    (["--pids", "2000"], "maximum of 1024"),
    (["--memory", "1M"], "minimum of 32 MiB"),
])
def test_limit_beyond_the_profile(tmp_path, args, word):
    r = run_script(tmp_path, "pass\n", "--profile", "exec", *args)
    assert r.code == 2, r
    assert word in r.err


def test_worker_maximum_is_its_own(tmp_path):
    r = run_script(tmp_path, "def tick(ctx): pass\n", "--memory", "2G")
    assert r.code == 2 and "worker profile's maximum of 1 GiB" in r.err, r


@pytest.mark.parametrize("source, args, code", [
    ("pass\n", [], 0),
    ("raise ValueError('x')\n", [], 1),
    ("import time\ntime.sleep(30)\n", ["--timeout", "1"], 124),
    (MEMORY_BOMB, ["--memory", "64M"], 137),
    ("import os\nos.chroot('/')\n", [], 159),
])
def test_groups_removed_after_every_ending(tmp_path, source, args, code):
    r = run_script(tmp_path, source, "--profile", "exec", *args)
    assert r.code == code, r
    assert groups_of(conftest.SPAWNED[-1]) == []


def test_group_removed_after_sigterm(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("import time\ntime.sleep(30)\n")
    p = subprocess.Popen([JAILRUN, "--profile", "exec", str(script)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    assert groups_of(p.pid), "the job's group exists while it runs"
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=10) == 143
    assert groups_of(p.pid) == []


def test_two_jobs_limited_independently(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text(MEMORY_BOMB)
    b.write_text("import time\nx = bytearray(100 << 20)\ntime.sleep(1)\nprint('kept', len(x))\n")
    pb = subprocess.Popen([JAILRUN, "--profile", "exec", "--memory", "256M", str(b)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.2)
    pa = subprocess.run([JAILRUN, "--profile", "exec", "--memory", "64M", str(a)],
                        capture_output=True, text=True, timeout=30)
    out, err = pb.communicate(timeout=30)
    assert pa.returncode == 137, pa
    assert pb.returncode == 0, err
    assert out.strip() == "kept %d" % (100 << 20)


def test_stale_group_of_a_killed_jailrun_is_swept(tmp_path):
    name, roots = backend()
    stale = [os.path.join(r, "jailrun", "job-999999999") for r in roots]
    for d in stale:
        os.makedirs(d, exist_ok=True)
    r = run_script(tmp_path, "pass\n", "--profile", "exec")
    assert r.code == 0, r
    assert not any(os.path.exists(d) for d in stale)


def test_custom_parent(tmp_path):
    r = run_script(tmp_path, "import time\ntime.sleep(0.3)\n", "--profile", "exec",
                   "--cgroup-parent", "jailrun-test/nested")
    assert r.code == 0, r
    name, roots = backend()
    for root in roots:
        d = os.path.join(root, "jailrun-test", "nested")
        if os.path.isdir(d):
            assert [n for n in os.listdir(d) if n.startswith("job-")] == []
            os.rmdir(d)
            os.rmdir(os.path.dirname(d))


def test_jail_sees_only_its_own_group(jail):
    r = jail("print(open('/proc/self/cgroup').read())")
    assert r.code == 0, r
    lines = [l for l in r.out.splitlines() if l]
    assert lines and all(l.endswith(":/") for l in lines), lines


def test_supervisor_outside_the_jobs_group(tmp_path):
    """The job's limits are the job's: jailrun itself is not in its group,
    so a job at its limits cannot stall the supervisor."""
    script = tmp_path / "s.py"
    script.write_text("import time\nb = bytearray(40 << 20)\ntime.sleep(30)\n")
    p = subprocess.Popen([JAILRUN, "--profile", "exec", "--memory", "48M", str(script)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        members = set()
        while not members and time.monotonic() < deadline:  # moved in after the clone on v1
            time.sleep(0.05)
            for g in groups_of(p.pid):
                members |= set(open(os.path.join(g, "cgroup.procs")).read().split())
        assert str(p.pid) not in members, "jailrun is inside its job's group"
        assert members, "the jail is inside it"
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == 143
        assert time.monotonic() - t0 < slack(5)   # not stalled by the job at its limit
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_cgroup_files_unreachable_from_the_jail(jail):
    r = jail("""
        import os
        print(os.path.exists("/sys"), os.path.exists("/sys/fs/cgroup"))
        try:
            os.mkdir("/sys")
        except OSError as e:
            print(e.errno)
    """)
    assert r.code == 0, r
    assert r.out.split() == ["False", "False", "30"]  # EROFS: nothing to mount it on either


@pytest.mark.parametrize("parent", ["/", "", "a//b", "job-1", "x/job-12", "a/../b", "..", "sp ace"])
def test_cgroup_parent_refused(tmp_path, parent):
    """Never the root (its other groups are not ours), never a name the
    stale-group sweep would take for a job's."""
    r = run_script(tmp_path, "pass\n", "--profile", "exec", "--cgroup-parent", parent)
    assert r.code == 2, r
    assert "--cgroup-parent wants" in r.err


def test_cpu_ms_counts_killed_children(tmp_path):
    """cpu_ms is the group's count: children killed at the end (never
    reaped by the job) are in it. Each child says when it has used 0.4 s
    of CPU and spins on; the job ends once both have (a condition, not a
    sleep: on a busy host 1.5 s of wall time may hold far less CPU)."""
    r = run_script(tmp_path, """
        import os, time
        r, w = os.pipe()
        for _ in range(2):
            if os.fork() == 0:
                while time.process_time() < 0.4:
                    pass
                os.write(w, b"x")
                while True:
                    pass
        os.close(w)
        assert os.read(r, 1) and os.read(r, 1)
        os._exit(0)
    """, "--profile", "exec", "--cpus", "2", "--json", timeout=120)
    j = result(r)
    assert r.code == 0, r
    # Two children used 0.4 s of CPU each at least; the script itself a few
    # ms. cpu_ms is the group's exact total (v2 usage_usec, v1
    # cpuacct.usage): were the children not counted, it would be the
    # script's own few ms.
    assert j["stats"]["cpu_ms"] >= 800, j["stats"]
    # The user/system split is sampled by the kernel (v1: at its tick), so
    # its sum is only near the total: half of it at least.
    group_ms = (j["stats"]["cpu_user_us"] + j["stats"]["cpu_system_us"]) // 1000
    assert group_ms >= 400, j["stats"]
