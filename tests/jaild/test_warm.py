"""Warm zygotes (jaild(8) ZYGOTES): jails cloned from a process that has the
jail's root built and numpy and pandas imported. Each child still gets its
own host uid, namespaces and checks; none holds anything of another
worker's; a zygote is replaced after its fork budget and after a crash."""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import hostprobe  # noqa: E402
from jdaemon import JAILD, Jaild, jd, worker_spec  # noqa: E402, F401 (jd: a fixture)
from conftest import not_under_sanitizers  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.exists(JAILD), reason="jaild is not built")


def zygote(jd, profile="exec"):
    return jd.get("/v1/health").json()["zygotes"][profile]


def wait_zygote(jd, profile, pred, what):
    deadline = time.monotonic() + hostprobe.slack(60)
    while True:
        z = zygote(jd, profile)
        if pred(z):
            return z
        assert time.monotonic() < deadline, "the %s zygote never %s: %s\n%s" % (profile, what, z, jd.logs()[-3000:])
        time.sleep(0.05)


def job(jd, source, **kw):
    body = {"source": source}
    body.update(kw)
    r = jd.post("/v1/jobs", body, timeout=hostprobe.slack(120))
    assert r.status_code == 200, r.text
    return r.json()


def test_jobs_and_workers_start_warm(jd):
    for p in ("worker", "exec"):
        z = zygote(jd, p)
        assert z["ready"] and z["pid"] > 0 and z["generation"] == 1, z
    before = zygote(jd)["spawned"]
    j = job(jd, "import sys\nprint('numpy' in sys.modules, 'pandas' in sys.modules)\n")
    assert j["status"] == "ok" and j["stdout"] == "True True\n", j
    assert zygote(jd)["spawned"] == before + 1
    # a worker too: its ticks run on the preloaded numpy
    w = jd.post("/v1/workers", worker_spec("np", "import numpy as np\ndef tick(ctx):\n"
                                           "    ctx.log.info(str(np.arange(4).sum()))\n")).json()
    jd.wait_idle(w["id"])
    r = jd.post("/v1/workers/%s/tick" % w["id"], timeout=hostprobe.slack(60))
    assert r.status_code == 200 and r.json()["ok"], r.text
    assert zygote(jd, "worker")["spawned"] >= 1
    # the zygote runs as no user's: root without a capability, one thread
    pid = zygote(jd)["pid"]
    with open("/proc/%d/status" % pid) as f:
        st = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
    assert st["CapEff"].strip() == "0000000000000000" and st["CapBnd"].strip() == "0000000000000000", st
    assert st["Threads"].strip() == "1" and st["NoNewPrivs"].strip() == "1", st


# The jail's own memory scanned for markers given as halves (profile exec,
# ctypes): the security suite's scanner, args as jailrun's.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "security"))
from test_leaks import SCAN  # noqa: E402


def in_memory(pid, marker):
    """Whether the host process pid holds marker anywhere in its memory."""
    hit = False
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            parts = line.split()
            if "r" not in parts[1] or (len(parts) > 5 and parts[5].startswith(("[vvar", "[vsyscall"))):
                continue
            a, b = (int(x, 16) for x in parts[0].split("-"))
            try:
                mem.seek(a)
                if marker in mem.read(b - a):
                    hit = True
            except OSError:
                continue
    return hit


@not_under_sanitizers("the scan of jaild's own memory (/proc/PID/mem) would read ASan's terabytes of shadow")
def test_a_warm_child_holds_nothing_of_another_worker():
    """Worker A's script, state value and log lines are in jaild's
    memory when the zygote is made again (after it was killed); a job
    cloned from the new zygote finds none of them in its own memory, and
    finds its own marker (the scan works)."""
    tag = uuid.uuid4().hex[:12]
    marks = {k: "%s-%s-%s" % (k, tag, "x" * 8) for k in ("SCRIPTMARK", "STATEMARK", "LOGMARK", "OWNMARK")}
    jd = Jaild().start()
    try:
        src = ("def tick(ctx):\n    ctx.state.set('v', '%s' + '%s')\n    ctx.log.info('%s' + '%s')\n    # %s\n"
               % (marks["STATEMARK"][:6], marks["STATEMARK"][6:], marks["LOGMARK"][:6], marks["LOGMARK"][6:],
                  marks["SCRIPTMARK"]))
        w = jd.post("/v1/workers", worker_spec("victim", src)).json()
        jd.wait_idle(w["id"])
        r = jd.post("/v1/workers/%s/tick" % w["id"], timeout=hostprobe.slack(60))
        assert r.status_code == 200 and r.json()["ok"], r.text
        # the daemon holds them now (positive control for what a clone of it would hold)
        for k in ("SCRIPTMARK", "STATEMARK", "LOGMARK"):
            assert in_memory(jd.proc.pid, marks[k].encode()), "%s is not in jaild's memory" % k
        # a new exec zygote, made from a jaild that holds them
        old = zygote(jd)
        os.kill(old["pid"], signal.SIGKILL)
        z = wait_zygote(jd, "exec", lambda z: z["ready"] and z["generation"] == old["generation"] + 1, "came back")
        args = [x for k in ("SCRIPTMARK", "STATEMARK", "LOGMARK", "OWNMARK") for x in (marks[k][:6], marks[k][6:])]
        own = "keep = (%r + %r).encode()\n" % (marks["OWNMARK"][:6], marks["OWNMARK"][6:])
        j = job(jd, own + SCAN, args=args)
        assert j["status"] == "ok", j
        assert zygote(jd)["spawned"] == z["spawned"] + 1, "the job did not start warm"
        found = [l for l in j["stdout"].splitlines() if l.startswith("FOUND:")][-1]
        assert found == "FOUND:3", j  # its own marker only (the fourth pair)
    finally:
        left = jd.cleanup()
        assert left == []


def test_children_are_isolated_from_each_other(jd):
    """Two warm jobs at once: each its own host uid, pid 1 of its own pid
    namespace seeing no other process, its own scratch directory. Each
    says when (the host's monotonic clock) it wrote its file and when it
    looked for the other's, so the test knows they overlapped."""
    src = """
import json, os, time
me = ME
open("/scratch/" + me, "w").write(me)
wrote = time.monotonic()
time.sleep(PAUSE)
print(json.dumps({"uid_map": open("/proc/self/uid_map").read().split(), "pid": os.getpid(),
                  "procs": sorted(p for p in os.listdir("/proc") if p.isdigit()),
                  "scratch": sorted(os.listdir("/scratch")), "wrote": wrote, "looked": time.monotonic()}))
"""
    pause = 0.5 * hostprobe.pace()
    for attempt in range(4):
        out = {}

        def run(me):
            out[me] = job(jd, src.replace("ME", repr(me)).replace("PAUSE", repr(pause)))

        before = zygote(jd)["spawned"]
        ts = [threading.Thread(target=run, args=(me,)) for me in ("a", "b")]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert zygote(jd)["spawned"] == before + 2
        got = {k: json.loads(v["stdout"]) for k, v in out.items()}
        if got["a"]["wrote"] < got["b"]["looked"] and got["b"]["wrote"] < got["a"]["looked"]:
            break
        pause *= 2  # they did not overlap (a slow host): again, longer
    else:
        pytest.fail("the two jobs never ran at the same time: %s" % got)
    assert got["a"]["uid_map"][1] != got["b"]["uid_map"][1], got
    for me in ("a", "b"):
        assert got[me]["pid"] == 1 and got[me]["procs"] == ["1"], got
        assert got[me]["scratch"] == [me], got


def test_zygote_replaced_after_its_fork_budget():
    """zygote.max_forks 2: generations follow one another, every job is
    served, no zygote clones more than twice its budget; the children of
    one generation share its hash secret, those of different generations
    do not (docs/security.md)."""
    jd = Jaild(zygote={"max_forks": 2}).start()
    try:
        by_gen = {}  # generation -> the hashes of the jobs it cloned
        deadline = time.monotonic() + hostprobe.slack(60)
        while len(by_gen) < 3:
            assert time.monotonic() < deadline, ("three generations never served a job", by_gen, zygote(jd))
            before = zygote(jd)
            j = job(jd, "print(hash('jailrun'))")
            assert j["status"] == "ok", j
            after = zygote(jd)
            assert after["forks"] <= 4, after
            if after["generation"] == before["generation"] and after["spawned"] == before["spawned"] + 1:
                by_gen.setdefault(after["generation"], set()).add(j["stdout"])  # this generation cloned it
            elif not after["ready"]:
                time.sleep(0.05)  # its replacement is being made: jobs start cold meanwhile
        assert all(len(h) == 1 for h in by_gen.values()), by_gen
        assert len({h for hs in by_gen.values() for h in hs}) == len(by_gen), by_gen
        assert zygote(jd)["ended"] == 0  # replaced, not crashed
        # the replacement is watched as the first was: killed, it is made again
        z = wait_zygote(jd, "exec", lambda z: z["ready"], "was ready")
        os.kill(z["pid"], signal.SIGKILL)
        z2 = wait_zygote(jd, "exec", lambda n: n["ready"] and n["pid"] != z["pid"], "came back")
        assert z2["ended"] == 1, z2
        assert job(jd, "print(1)")["stdout"] == "1\n"
    finally:
        assert jd.cleanup() == []


def test_zygote_recreated_after_a_crash(jd):
    z = zygote(jd)
    os.kill(z["pid"], signal.SIGKILL)
    # served meanwhile: warm if the new one is ready, else cold (jaild may
    # see the death as the request's failure before its pidfd: either way
    # it counts the zygote as ended)
    assert job(jd, "print('still here')")["stdout"] == "still here\n"
    z2 = wait_zygote(jd, "exec", lambda n: n["ready"] and n["pid"] != z["pid"], "came back")
    assert z2["ended"] == 1 and z2["generation"] == z["generation"] + 1, z2
    assert "ended" in z2["last_error"], z2
    j = job(jd, "import sys\nprint('numpy' in sys.modules)")
    assert j["stdout"] == "True\n" and zygote(jd)["spawned"] == z2["spawned"] + 1, j


def test_a_hung_zygote_is_replaced(jd):
    """A zygote that stops answering (stopped here) costs one request the
    reply timeout (5 s): that job starts cold, the zygote is replaced."""
    z = zygote(jd)
    os.kill(z["pid"], signal.SIGSTOP)
    try:
        j = job(jd, "import sys\nprint('numpy' in sys.modules)")
        assert j["status"] == "ok" and j["stdout"] == "False\n", j  # cold
    finally:
        try:
            os.kill(z["pid"], signal.SIGCONT)
        except ProcessLookupError:
            pass
    z2 = wait_zygote(jd, "exec", lambda n: n["ready"] and n["pid"] != z["pid"], "was replaced")
    assert z2["fallbacks"] == z["fallbacks"] + 1 and "did not answer" in z2["last_error"], z2
    j = job(jd, "import sys\nprint('numpy' in sys.modules)")
    assert j["stdout"] == "True\n", j


def _children(pid):
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                st = f.read()
        except OSError:
            continue
        fields = st.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            out.append((int(p), fields[0], st.split("(", 1)[1].rsplit(")", 1)[0]))
    return out


@pytest.mark.skipif(not shutil.which("strace"), reason="needs strace to kill the zygote at its answer")
def test_a_zygote_that_dies_before_it_answers_leaves_nothing(jd):
    """The zygote is killed at its answer, after the clone (strace's fault
    injection): the job runs cold on descriptors of its own (the lost
    child must not write into its channel), the zygote is made again, and
    the lost child is gone, whether it had run before its zygote died or
    not (a busy host): found among jaild's children by its zygote's name
    and the pidfd jaild lacks, killed, counted, reaped: no process, no
    zombie."""
    z, zw = zygote(jd), zygote(jd, "worker")
    tracer = subprocess.Popen(["strace", "-qq", "-p", str(z["pid"]), "-e", "trace=sendmsg",
                               "-e", "inject=sendmsg:signal=SIGKILL", "-o", "/dev/null"])
    try:
        deadline = time.monotonic() + hostprobe.slack(10)
        while True:  # attached: the zygote has a tracer
            with open("/proc/%d/status" % z["pid"]) as f:
                if [l for l in f if l.startswith("TracerPid:")][0].split()[1] != "0":
                    break
            assert time.monotonic() < deadline, "strace did not attach"
            time.sleep(0.02)
        j = job(jd, "print('the job ran')")
        assert j["status"] == "ok" and j["stdout"] == "the job ran\n", j
    finally:
        tracer.kill()
        tracer.wait()
    after = zygote(jd)
    assert after["lost"] == z["lost"] + 1 and after["fallbacks"] == z["fallbacks"] + 1, after
    # the other zygote, a child of jaild's of the same name, is not taken for a stray
    w = zygote(jd, "worker")
    assert (w["pid"], w["ended"], w["lost"]) == (zw["pid"], zw["ended"], zw["lost"]), (zw, w)
    deadline = time.monotonic() + hostprobe.slack(10)
    zygotes = (zygote(jd, "worker")["pid"], zygote(jd)["pid"])
    while True:  # reaped once it has ended, which a busy host may delay
        left = [c for c in _children(jd.proc.pid) if c[1] == "Z" or (c[2] == "jailrun-zygote" and c[0] not in zygotes)]
        if not left:
            break
        assert time.monotonic() < deadline, left
        time.sleep(0.05)
        zygotes = (zygote(jd, "worker")["pid"], zygote(jd)["pid"])
    wait_zygote(jd, "exec", lambda n: n["ready"] and n["pid"] != z["pid"], "came back")
    assert job(jd, "import sys\nprint('numpy' in sys.modules)")["stdout"] == "True\n"


def test_a_module_that_cannot_be_preloaded_is_reported():
    # and one that prints on import (`this`): what it printed is not
    # inherited by every child and flushed into each job's output
    jd = Jaild(zygote={"preload": ["numpy", "no_such_module_jr", "this"]}).start()
    try:
        z = zygote(jd)
        assert z["ready"] and "no_such_module_jr" in z["last_error"], z
        j = job(jd, "import sys\nprint('numpy' in sys.modules, 'no_such_module_jr' in sys.modules, 'this' in sys.modules)")
        assert j["stdout"] == "True False True\n", j
    finally:
        assert jd.cleanup() == []


def test_zygotes_off():
    jd = Jaild(zygote={"enabled": False}).start()
    try:
        assert jd.get("/v1/health").json()["zygotes"] is None
        j = job(jd, "import sys\nprint('numpy' in sys.modules)")
        assert j["stdout"] == "False\n", j
    finally:
        assert jd.cleanup() == []
