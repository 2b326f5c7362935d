"""jaild end to end: the real daemon, started by the test, driven with curl
and httpx over its socket; workers with real jails, state in SQLite, the
registry across restarts (clean and kill -9), the pool, draining."""
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import hostprobe  # noqa: E402
from jdaemon import JAILD, Jaild, jd, worker_spec  # noqa: E402, F401 (jd: a fixture)

pytestmark = pytest.mark.skipif(not os.path.exists(JAILD), reason="jaild is not built")

COUNTER = """
def tick(ctx):
    n = ctx.state.get("n", 0) + 1
    ctx.state.set("n", n)
    ctx.log.info("tick %d" % n)
"""


def create(jd, name, source=COUNTER, **kw):
    r = jd.post("/v1/workers", worker_spec(name, source, **kw))
    assert r.status_code == 201, r.text
    return r.json()


def wait_state(jd, wid, states, limit=None):
    deadline = time.monotonic() + (limit or hostprobe.slack(10))
    while time.monotonic() < deadline:
        w = jd.get("/v1/workers/%s" % wid).json()
        if w["state"] in states:
            return w
        time.sleep(0.02)
    raise AssertionError("worker %s stayed %s" % (wid, w["state"]))


def tick(jd, wid):
    r = jd.post("/v1/workers/%s/tick" % wid)
    assert r.status_code == 200, r.text
    return r.json()


def logs(jd, wid):
    r = jd.get("/v1/workers/%s/logs" % wid)
    assert r.status_code == 200
    return [json.loads(line) for line in r.text.splitlines() if line]


def messages(jd, wid):
    return [e.get("message") for e in logs(jd, wid) if e.get("type") == "log"]


def test_health(jd):
    status, body = jd.curl("http://jaild/v1/health")
    assert status == 200
    h = json.loads(body)
    assert h["status"] == "ok" and h["workers"] == 0


def test_worker_lifecycle_with_curl(jd):
    spec = json.dumps(worker_spec("counter", COUNTER))
    status, body = jd.curl("-X", "POST", "-H", "Content-Type: application/json", "--data-binary", spec,
                           "http://jaild/v1/workers")
    assert status == 201, body
    w = json.loads(body)
    assert w["name"] == "counter" and w["id"].startswith("w-") and w["generation"] == 1
    wait_state(jd, w["id"], {"idle"})
    for n in (1, 2):
        status, body = jd.curl("-X", "POST", "http://jaild/v1/workers/%s/tick" % w["id"])
        assert status == 200, body
        assert json.loads(body)["ok"] is True
    assert messages(jd, w["id"]) == ["tick 1", "tick 2"]
    status, body = jd.curl("http://jaild/v1/workers")
    assert [x["name"] for x in json.loads(body)["workers"]] == ["counter"]
    got = jd.get("/v1/workers/counter").json()  # by name too
    assert got["stats"]["ticks"] == 2 and got["state"] == "idle"
    status, body = jd.curl("-X", "DELETE", "http://jaild/v1/workers/%s" % w["id"])
    assert status == 200, body
    assert jd.get("/v1/workers/%s" % w["id"]).status_code == 404
    assert jd.job_groups() == []


def test_tick_error_is_reported(jd):
    w = create(jd, "failing", "def tick(ctx):\n    raise ValueError('no')\n")
    wait_state(jd, w["id"], {"idle"})
    t = tick(jd, w["id"])
    assert t["ok"] is False and t["error"]["type"] == "ValueError" and t["error"]["message"] == "no"
    metrics = jd.get("/metrics").text
    assert 'jaild_errors_total{type="ValueError"} 1' in metrics
    assert 'jaild_ticks_total{result="error"} 1' in metrics


def test_scheduled_worker_and_reload(jd):
    w = create(jd, "sched", COUNTER, schedule={"interval": 0.2})
    deadline = time.monotonic() + hostprobe.slack(10)
    while len(messages(jd, w["id"])) < 3:
        assert time.monotonic() < deadline, messages(jd, w["id"])
        time.sleep(0.05)
    r = jd.request("PATCH", "/v1/workers/%s" % w["id"],
                   json={"source": COUNTER.replace('"tick %d"', '"reloaded %d"')})
    assert r.status_code == 200 and r.json()["generation"] == 2
    deadline = time.monotonic() + hostprobe.slack(10)
    while not any(m.startswith("reloaded") for m in messages(jd, w["id"])):
        assert time.monotonic() < deadline, logs(jd, w["id"])
        time.sleep(0.05)
    ms = messages(jd, w["id"])
    n_before = int(ms[-1].split()[-1])  # state went on across the reload
    assert n_before >= 4


def test_pause_resume(jd):
    w = create(jd, "pausing")
    wait_state(jd, w["id"], {"idle"})
    r = jd.post("/v1/workers/%s/pause" % w["id"])
    assert r.status_code == 200 and r.json()["state"] == "paused", r.text
    assert jd.post("/v1/workers/%s/tick" % w["id"]).json()["error"]["type"] == "WorkerStopped"
    assert jd.job_groups() == []
    r = jd.post("/v1/workers/%s/resume" % w["id"])
    assert r.status_code == 200
    wait_state(jd, w["id"], {"idle"})
    assert tick(jd, w["id"])["ok"]


def test_bad_requests_leave_the_daemon_serving(jd):
    cases = [
        (("-X", "POST", "-H", "Content-Type: application/json", "--data-binary", "{not json"), 400),
        (("-X", "POST", "-H", "Content-Type: application/json", "--data-binary",
          json.dumps({"name": "x", "source": "", "colour": "red"})), 400),
        (("-X", "POST", "-H", "Content-Type: application/json", "--data-binary",
          json.dumps({"name": "../x", "source": "def tick(ctx): pass"})), 400),
        (("-X", "POST", "-H", "Content-Type: application/json", "--data-binary",
          json.dumps({"name": "x", "source": "def tick(ctx): pass", "policy": {"limits": {"memory": -1}}})), 400),
        (("-X", "POST", "-H", "Content-Type: application/json", "--data-binary",
          json.dumps({"name": "x", "source": "pass", "profile": "exec"})), 400),
    ]
    for args, want in cases:
        status, body = jd.curl(*args, "http://jaild/v1/workers")
        assert status == want, (args, body)
        assert set(json.loads(body)["error"]) == {"type", "message"}
    big = os.path.join(jd.dir, "big.json")
    with open(big, "w") as f:
        json.dump({"name": "big", "source": "#" * (3 << 20)}, f)
    status, body = jd.curl("-X", "POST", "-H", "Content-Type: application/json", "--data-binary", "@" + big,
                           "http://jaild/v1/workers")
    assert status == 413, body
    assert jd.get("/v1/health").json()["status"] == "ok"
    assert jd.get("/v1/workers").json()["workers"] == []


def test_unauthorised_peer_is_refused(jd):
    status, body = jd.curl("http://jaild/v1/workers", user=65534)
    assert status == 403, body
    assert json.loads(body)["error"]["type"] == "PermissionError"
    assert "refused" in jd.logs() or "65534" in jd.logs()


def test_job_runs_a_script(jd):
    r = jd.post("/v1/jobs", {"source": "import sys\nprint('out', sys.argv[1:])\nsys.exit(3)\n", "args": ["a", "b"]})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["stdout"] == "out ['a', 'b']\n"
    assert j["exit_code"] == 3 and j["status"] == "error"
    assert j["stats"]["wall_ms"] >= 0
    ok = jd.post("/v1/jobs", {"source": "print(6 * 7)"}).json()
    assert ok["status"] == "ok" and ok["exit_code"] == 0 and ok["stdout"] == "42\n"


def test_pool_full_answers_worker_pool_timeout():
    d = Jaild(max_live_jobs=1, queue_wait=0.5).start()
    try:
        results = {}
        slow = threading.Thread(target=lambda: results.update(
            slow=d.post("/v1/jobs", {"source": "import time\ntime.sleep(%g)\n" % hostprobe.slack(3)})))
        slow.start()
        deadline = time.monotonic() + hostprobe.slack(10)
        while d.get("/v1/health").json()["jobs_running"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        t0 = time.monotonic()
        r = d.post("/v1/jobs", {"source": "print(1)"})
        waited = time.monotonic() - t0
        assert r.status_code == 503, r.text
        assert r.json()["error"]["type"] == "WorkerPoolTimeout"
        assert waited >= 0.45
        slow.join()
        assert results["slow"].status_code == 200 and results["slow"].json()["status"] == "ok"
        assert "jaild_pool_timeouts_total 1" in d.get("/metrics").text
    finally:
        assert d.cleanup() == []


def jail_pids(uid_lo=100000, uid_hi=165535):
    """Live processes running as a jail's host uid (a zombie runs nothing:
    whoever inherited it reaps it when it will)."""
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/status" % pid) as f:
                    st = dict(line.split(":", 1) for line in f if ":" in line)
            except OSError:
                continue
            if st.get("State", "Z").split()[0] in ("Z", "X") or "Uid" not in st:
                continue
            if uid_lo <= int(st["Uid"].split()[0]) <= uid_hi:
                out.append(int(pid))
    return out


def test_kill9_and_restart_keeps_workers_and_state():
    d = Jaild(uid_range={"lo": 300000, "hi": 300999}).start()
    try:
        w = create(d, "survivor")
        wait_state(d, w["id"], {"idle"})
        assert tick(d, w["id"])["ok"] and tick(d, w["id"])["ok"]
        p = create(d, "sleeper")
        d.post("/v1/workers/%s/pause" % p["id"])
        def doomed_job():
            try:
                d.post("/v1/jobs", {"source": "import time\ntime.sleep(60)\n"})
            except Exception:  # jaild is killed under it
                pass
        threading.Thread(target=doomed_job, daemon=True).start()
        deadline = time.monotonic() + hostprobe.slack(10)
        while d.get("/v1/health").json()["jobs_running"] < 1:  # a job's script is on disk when it dies
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert jail_pids(300000, 300999)
        d.kill9()
        deadline = time.monotonic() + hostprobe.slack(5)
        while jail_pids(300000, 300999):  # the jails die with their supervisor
            assert time.monotonic() < deadline, jail_pids(300000, 300999)
            time.sleep(0.02)
        d.start()
        assert all(g.startswith(("job-w-", "pool-")) for g in d.job_groups())
        scripts = os.path.join(d.dir, "reg", "scripts")
        assert [f for f in os.listdir(scripts) if f.startswith("j-")] == []  # the dead job's script went
        ws = {x["name"]: x for x in d.get("/v1/workers").json()["workers"]}
        assert set(ws) == {"survivor", "sleeper"}
        assert ws["sleeper"]["state"] == "paused"
        wait_state(d, w["id"], {"idle"})
        tick(d, w["id"])
        assert messages(d, w["id"])[-1] == "tick 3"  # the state was kept
    finally:
        left = d.cleanup()
    assert left == []


def test_sigterm_drains_the_tick_in_flight():
    d = Jaild().start()
    try:
        w = create(d, "slow", "import time\ndef tick(ctx):\n    time.sleep(%g)\n    ctx.log.info('done')\n"
                   % hostprobe.slack(1))
        wait_state(d, w["id"], {"idle"})
        out = {}
        t = threading.Thread(target=lambda: out.update(r=d.post("/v1/workers/%s/tick" % w["id"])))
        t.start()
        wait_state(d, w["id"], {"busy"})
        assert d.stop(signal.SIGTERM) == 0
        t.join()
        assert out["r"].status_code == 200 and out["r"].json()["ok"] is True
    finally:
        left = d.cleanup()
    assert left == []


def test_metrics_text(jd):
    w = create(jd, "m")
    wait_state(jd, w["id"], {"idle"})
    tick(jd, w["id"])
    m = jd.get("/metrics")
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    text = m.text
    for name in ("jaild_workers{state=\"idle\"} 1", "jaild_ticks_total{result=\"ok\"} 1", "jaild_tick_seconds_count 1",
                 "jaild_worker_cpu_seconds_total{worker=\"m\"}", "jaild_queue_depth 0"):
        assert name in text, text
    # the worker's jail counted when it passed its checks, not when it ends
    assert "jaild_spawn_seconds_count 1\n" in text, text


def test_config_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"socket": {"path": "/tmp/x.sock"}, "max_live_jobs": "many"}))
    p = subprocess.run([JAILD, "--config", str(bad)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2
    assert "max_live_jobs" in p.stderr, p.stderr


def test_a_worker_whose_jail_dies_gets_a_new_one(jd):
    # The Python layer off (as tests/policies/native-worker.json): the tick
    # ends its own jail the first time, as native code could.
    src = """
import os
def tick(ctx):
    n = ctx.state.get("deaths", 0)
    if n == 0:
        ctx.state.set("deaths", 1)
        os._exit(7)
    ctx.log.info("alive after %d" % n)
"""
    w = create(jd, "phoenix", src, policy={"python": {"guard": False}}, schedule={"interval": 0.2})
    deadline = time.monotonic() + hostprobe.slack(15)
    while "alive after 1" not in messages(jd, w["id"]):
        assert time.monotonic() < deadline, (jd.get("/v1/workers/%s" % w["id"]).json(), logs(jd, w["id"]))
        time.sleep(0.05)
    got = jd.get("/v1/workers/%s" % w["id"]).json()
    assert got["stats"]["restarts"] == 1, got
    notes = [e["message"] for e in logs(jd, w["id"]) if e.get("type") == "note"]
    assert any("a new jail for the worker" in n for n in notes), notes
    # the jail is jaild's only child besides its two warm zygotes (one per
    # profile): no process per worker
    kids = [p for p in os.listdir("/proc") if p.isdigit() and _ppid(p) == jd.proc.pid]
    zygotes = [p for p in kids if _comm(p) == "jailrun-zygote"]
    assert len(zygotes) == 2 and len(kids) == 3, [(p, _comm(p)) for p in kids]


def _comm(pid):
    try:
        with open("/proc/%s/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return None


def _ppid(pid):
    try:
        with open("/proc/%s/stat" % pid) as f:
            return int(f.read().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def test_a_job_never_shares_a_workers_namespace(jd):
    w = create(jd, "victim", 'def tick(ctx):\n    ctx.state.set("secret", "VICTIM")\n    ctx.files.write("f.txt", "VICTIM")\n')
    wait_state(jd, w["id"], {"idle"})
    assert tick(jd, w["id"])["ok"]
    probe = ('def tick(ctx):\n    ctx.log.info(repr(ctx.state.get("secret")))\n'
             '    ctx.log.info(repr(ctx.files.read("f.txt")))\n')
    for body in ({"source": probe, "profile": "worker", "name": "victim"}, {"source": probe, "profile": "worker"}):
        r = jd.post("/v1/jobs", body)
        assert r.status_code == 200, r.text
        assert "VICTIM" not in r.text, r.text
    # jobs' ids are random, never reused after a restart
    a, b = (jd.post("/v1/jobs", {"source": "pass"}).json()["id"] for _ in range(2))
    assert a != b and len(a) == 18


@pytest.mark.parametrize("name", ["w-0123456789abcdef", "job.victim"])
def test_reserved_worker_names_are_refused(jd, name):
    r = jd.post("/v1/workers", worker_spec(name, COUNTER))
    assert r.status_code == 400 and "reserved" in r.json()["error"]["message"], r.text


@pytest.mark.parametrize("policy", [{"limits": {"memory_max": 1 << 40}}, {"limits": {"pids_max": 5000}},
                                    {"http": {"allow_addresses": ["127.0.0.0/8"]}}, {"http": {"proxy": "http://127.0.0.1:1"}},
                                    {"adapters": {}}, {"exec": {"programs": ["/usr/bin/id"]}}])
def test_operator_keys_cannot_be_overridden_through_the_api(jd, policy):
    for path, body in (("/v1/workers", worker_spec("over", COUNTER, policy=policy)),
                       ("/v1/jobs", {"source": "pass", "policy": policy})):
        r = jd.post(path, body)
        assert r.status_code == 400, r.text
        assert "set by the operator" in r.json()["error"]["message"], r.text


@pytest.mark.parametrize("profile,policy,key", [
    ("worker", {"validator": {"enabled": False}}, "validator.enabled"),
    ("strategy", {"validator": {"forbid": []}}, "validator.forbid"),
    ("worker", {"python": {"attribute_guard": False}}, "python.attribute_guard"),
])
def test_a_partial_python_layer_is_refused_through_the_api(jd, profile, policy, key):
    # jailrun-policy(5), "The Python layer is whole or off": jaild has no
    # way around it (jailrun's --unsafe-python-layer is the CLI's alone).
    for path, body in (("/v1/workers", worker_spec("partial", COUNTER, policy=policy)),
                       ("/v1/jobs", {"source": "pass", "profile": profile, "policy": policy})):
        if path == "/v1/workers" and profile != "worker":
            continue
        r = jd.post(path, body)
        assert r.status_code == 400, r.text
        msg = r.json()["error"]["message"]
        assert "$.%s" % key in msg and "set python.guard to false" in msg, msg
    # the whole layer off is a declared choice, and runs
    r = jd.post("/v1/jobs", {"source": "import os\nprint(os.getpid() > 0)\ndef tick(ctx):\n    pass\n",
                             "policy": {"python": {"guard": False}, "validator": {"enabled": False}}})
    assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello from the host"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_the_operators_policy_opens_loopback_to_workers_and_the_api_cannot():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    fetch = ('def tick(ctx):\n'
             '    try:\n'
             '        ctx.log.info("got " + ctx.http.get("http://127.0.0.1:%d/")["text"])\n'
             '    except Exception as e:\n'
             '        ctx.log.info("refused " + str(e))\n' % srv.server_address[1])
    opened = {"worker": {"http": {"allow_addresses": ["127.0.0.1"]}}}
    d = Jaild().start()
    try:
        # without the operator's policy: refused; then the policy is added
        # to the file and read at SIGHUP, for the jails started after it
        for name, want in (("before", "refused "), ("after", "got hello from the host")):
            w = create(d, name, fetch)
            wait_state(d, w["id"], {"idle"})
            assert tick(d, w["id"])["ok"]
            got = messages(d, w["id"])
            assert len(got) == 1 and got[0].startswith(want), got
            if name == "before":
                d.config["policy"] = opened
                with open(d.config_path, "w") as f:
                    json.dump(d.config, f)
                d.proc.send_signal(signal.SIGHUP)
                deadline = time.monotonic() + hostprobe.slack(10)
                while "configuration reloaded (log level, max_live_jobs, queue_wait, policy)" not in d.logs():
                    assert time.monotonic() < deadline, d.logs()
                    time.sleep(0.05)
        # still the operator's alone: an override through the API is refused
        r = d.post("/v1/workers", worker_spec("again", fetch, policy=opened["worker"]))
        assert r.status_code == 400 and "set by the operator" in r.text, r.text
    finally:
        left = d.cleanup()
        srv.shutdown()
        srv.server_close()
    assert left == []


def test_refused_peers_cannot_crowd_out_allowed_ones(jd):
    # uid 65534 opens many idle connections; root is still served at once
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("this host's hard limit of open files (%d) is below the 1100 connections held" % hard)
    holder = subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
         "import resource, socket, sys, time\n"
         "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
         "resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a soft 1024 would stop it short\n"
         "ss = []\n"
         "for _ in range(1100):\n"
         "    s = socket.socket(socket.AF_UNIX); s.settimeout(%g); s.connect(sys.argv[1]); ss.append(s)\n"
         "print('held', flush=True); time.sleep(%g)\n" % (hostprobe.slack(10), hostprobe.slack(20)), jd.socket],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        limit, bound = hostprobe.slack(5), hostprobe.slack(1)
        t0 = time.monotonic()
        assert jd.get("/v1/health", timeout=limit).status_code == 200
        assert time.monotonic() - t0 < bound
        fds = len(os.listdir("/proc/%d/fd" % jd.proc.pid))
        assert fds < 100, fds  # the refused are closed, not kept
    finally:
        holder.kill()
        holder.wait()


def test_followed_log_streams_are_capped(jd):
    import socket
    w = create(jd, "followed")
    socks = []
    try:
        for _ in range(64):
            s = socket.socket(socket.AF_UNIX)
            s.connect(jd.socket)
            s.sendall(b"GET /v1/workers/followed/logs?follow=1 HTTP/1.1\r\nHost: jaild\r\n\r\n")
            socks.append(s)
        deadline = time.monotonic() + hostprobe.slack(10)
        while True:  # the 64 are served (in turn) before the 65th asks
            r = jd.get("/v1/workers/followed/logs?follow=1", timeout=hostprobe.slack(5))
            if r.status_code == 503 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert r.status_code == 503 and "followed already" in r.json()["error"]["message"], r.text
        assert jd.get("/v1/workers/followed/logs").status_code == 200  # a plain read still works
    finally:
        for s in socks:
            s.close()


def test_a_drain_stops_a_job_that_would_never_end():
    d = Jaild().start()
    try:
        out = {}
        t = threading.Thread(target=lambda: out.update(r=d.post(
            "/v1/jobs", {"source": "import time\ntime.sleep(3600)\n", "policy": {"limits": {"timeout": 0}}},
            timeout=120)))
        t.start()
        deadline = time.monotonic() + hostprobe.slack(10)
        while d.get("/v1/health").json()["jobs_running"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        t0 = time.monotonic()
        assert d.stop(signal.SIGTERM, timeout=120) == 0
        took = time.monotonic() - t0
        assert 24 < took < 25 + hostprobe.slack(10), took
        t.join()
        assert "stopped now" in d.logs()
    finally:
        assert d.cleanup() == []


def test_two_jailds_cannot_share_a_cgroup_parent(jd):
    w = create(jd, "first")
    wait_state(jd, w["id"], {"idle"})
    groups = jd.job_groups()
    assert groups
    other = Jaild(cgroup_parent=jd.cgroup_parent)
    try:
        p = subprocess.run([JAILD, "--config", other.config_path], capture_output=True, text=True,
                           timeout=hostprobe.slack(60))
        assert p.returncode == 3 and "another jaild uses the cgroup parent" in p.stderr, p
    finally:
        shutil.rmtree(other.dir, ignore_errors=True)  # its parent is jd's: not removed
    assert jd.job_groups() == groups  # the first's running worker was not swept
    assert tick(jd, w["id"])["ok"]


def _switches(pid):
    with open("/proc/%d/status" % pid) as f:
        return sum(int(l.split()[1]) for l in f if l.startswith(("voluntary_ctxt", "nonvoluntary_ctxt")))


def test_an_idle_workers_jail_is_not_woken(jd):
    # its tick clock runs only while a tick runs or a log entry waits
    w = create(jd, "sleepy")
    wait_state(jd, w["id"], {"idle"})
    assert tick(jd, w["id"])["ok"]  # it logged: the clock ran, then stopped
    kids = [int(p) for p in os.listdir("/proc")
            if p.isdigit() and _ppid(p) == jd.proc.pid and _comm(p) != "jailrun-zygote"]
    assert len(kids) == 1, kids
    time.sleep(hostprobe.slack(0.3))  # the tick's log sent, its clock stopped
    before = _switches(kids[0])
    time.sleep(2)
    woken = _switches(kids[0]) - before
    assert woken < 10, woken  # the 50 ms clock would make it ~40


def test_a_long_non_ascii_log_line_reaches_the_log_whole(jd):
    # 4000 characters, each escaped as \\uXXXX in the JSON line: ~24 KB
    w = create(jd, "wordy", 'def tick(ctx):\n    ctx.log.info("\u00e9" * 4000)\n')
    wait_state(jd, w["id"], {"idle"})
    assert tick(jd, w["id"])["ok"]
    assert messages(jd, w["id"]) == ["\u00e9" * 4000]
