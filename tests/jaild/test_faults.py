"""Faults under jaild, each with its documented outcome (jaild(8) FAULTS,
docs/faults.md): a worker's jail SIGKILLed in the middle of a large
message, jaild itself killed with SIGKILL while it writes (the registry,
workers' state and files, a new source), and a cgroup write the kernel
refuses for one worker."""
import json
import os
import random
import signal
import sqlite3
import threading
import time

import httpx
import pytest

import hostprobe
from jdaemon import JAILD, Jaild, jd, worker_spec  # noqa: F401 (jd: a fixture)

pytestmark = pytest.mark.skipif(not os.path.exists(JAILD), reason="jaild is not built")

NO_GUARD = {"python": {"guard": False}}


def create(d, name, source, **kw):
    r = d.post("/v1/workers", worker_spec(name, source, **kw))
    assert r.status_code == 201, r.text
    return r.json()


def entries(d, wid):
    r = d.get("/v1/workers/%s/logs" % wid)
    assert r.status_code == 200, r.text
    return [json.loads(line) for line in r.text.splitlines() if line]


def until(what, limit, check):
    deadline = time.monotonic() + limit
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def pids_of_uid(uid):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open("/proc/%s/status" % p) as f:
                    if any(line.startswith("Uid:") and int(line.split()[1]) == uid for line in f):
                        out.append(int(p))
            except OSError:
                pass
    return out


# --- a worker's jail killed in the middle of a message -----------------------------

VICTIM = """
big = "x" * 400000
said = False
def tick(ctx):
    global said
    if not said:
        ctx.log.info("uid %d" % int(open("/proc/self/uid_map").read().split()[1]))
        said = True
    while True:
        ctx.state.set("big", big)
        ctx.state.get("big")
"""

COUNTER = """
def tick(ctx):
    n = ctx.state.get("n", 0) + 1
    ctx.state.set("n", n)
"""


def test_a_jail_killed_mid_message_is_replaced_and_others_go_on(jd):
    """A worker's jail, sending 400 KB sets and reading 400 KB replies in
    a loop (each tick ended by its 1 s limit), is SIGKILLed three times at random moments: each time jaild
    notes "the worker's jail was killed by signal 9 (Killed)" and starts a
    new jail (restart N); a second worker ticking beside it never fails
    nor restarts; no group but the two workers' holds a process; once the
    first worker is paused nothing runs as its uid."""
    rnd = random.Random(8)
    victim = create(jd, "victim", VICTIM, policy=NO_GUARD, schedule={"interval": 0.2, "tick_timeout": 1})
    other = create(jd, "bystander", COUNTER, schedule={"interval": 0.1})
    uid = None
    for kill in range(1, 4):
        def uid_said():
            said = [e for e in entries(jd, victim["id"]) if e.get("message", "").startswith("uid ")]
            return said if len(said) >= kill else None
        said = until("the victim's jail %d never ran" % kill, hostprobe.slack(30), uid_said)
        uid = int(said[-1]["message"].split()[1])
        time.sleep(rnd.uniform(0, 0.3))
        before = jd.get("/v1/workers/%s" % other["id"]).json()["stats"]["ticks"]
        pids = pids_of_uid(uid)
        assert len(pids) == 1, pids
        os.kill(pids[0], signal.SIGKILL)
        until("no restart %d" % kill, hostprobe.slack(30),
              lambda: jd.get("/v1/workers/%s" % victim["id"]).json()["stats"]["restarts"] == kill)
        until("the bystander stopped ticking", hostprobe.slack(10),
              lambda: jd.get("/v1/workers/%s" % other["id"]).json()["stats"]["ticks"] > before + 2)
    notes = [e["message"] for e in entries(jd, victim["id"]) if e.get("type") == "note"]
    assert notes.count("the worker's jail was killed by signal 9 (Killed)") == 3, notes
    assert [n for n in notes if n.startswith("a new jail for the worker")][:1] == \
        ["a new jail for the worker (restart 1)"], notes
    st = jd.get("/v1/workers/%s" % other["id"]).json()["stats"]
    assert st["ticks_failed"] == 0 and st["restarts"] == 0, st
    until("no fourth jail", hostprobe.slack(30),
          lambda: sum(e.get("message", "").startswith("uid ") for e in entries(jd, victim["id"])) == 4)
    assert len(jd.job_groups()) == 2, jd.job_groups()
    assert jd.post("/v1/workers/%s/pause" % victim["id"]).status_code == 200
    until("the victim's jail outlived its pause", hostprobe.slack(30), lambda: not pids_of_uid(uid))
    assert jd.get("/v1/health").status_code == 200


# --- jaild killed while it writes ---------------------------------------------------

TICKER = """
def tick(ctx):
    n = ctx.state.get("n", 0)
    w = ctx.files.write("f%d" % n, ("%d " % n) * 5000)
    assert w.get("ok"), w
    assert ctx.state.set("k%d" % n, n) == {"ok": True}
    assert ctx.state.set("n", n + 1) == {"ok": True}
"""


class Storm:
    """Threads writing through the API until jaild dies under them; each
    keeps what was acknowledged (a 2xx answer)."""

    def __init__(self, d, ticker, deployed, trial):
        self.d, self.trial = d, trial
        self.ticks = 0
        self.pause = max(0.01, 2 * hostprobe.jail_seconds())  # between source changes (deploy)
        self.created = {}
        self.deployed = []
        self.stop = threading.Event()
        self.errors = []
        self.unexpected = []
        self.threads = [threading.Thread(target=self.guard, args=(f,), daemon=True) for f in
                        (lambda c: self.tick(c, ticker), self.create, lambda c: self.deploy(c, deployed))]

    def guard(self, fn):
        try:
            with self.d.client(timeout=hostprobe.slack(60)) as c:
                fn(c)
        except (httpx.HTTPError, OSError) as e:  # jaild died under the call
            self.errors.append(repr(e)[:200])
        except AssertionError as e:  # an answer the storm did not expect: the test fails on it
            self.unexpected.append(str(e)[:300])

    def tick(self, c, wid):
        while not self.stop.is_set():
            r = c.post("/v1/workers/%s/tick" % wid)
            if r.status_code == 409 and r.json()["error"]["type"] == "WorkerBusy":
                time.sleep(0.05)  # its jail is still starting (after a restart of jaild): as documented
                continue
            assert r.status_code == 200 and r.json()["ok"], r.text
            self.ticks += 1

    def create(self, c):
        for i in range(6):
            if self.stop.is_set():
                return
            name = "c%d-%d" % (self.trial, i)
            r = c.post("/v1/workers", json=worker_spec(name, "def tick(ctx):\n    pass\n"))
            assert r.status_code == 201, r.text
            self.created[r.json()["id"]] = name

    def deploy(self, c, wid):
        k = 0
        while not self.stop.is_set():
            k += 1
            src = "# version %d.%d\ndef tick(ctx):\n    pass\n" % (self.trial, k)
            r = c.patch("/v1/workers/%s" % wid, json={"source": src})
            assert r.status_code == 200, r.text
            self.deployed.append((r.json()["generation"], src))
            # each change restarts that worker's jail: one change per two
            # trivial jails' time leaves jaild's loop half its time for the
            # others (unthrottled, 35 000 changes starved the ticker)
            time.sleep(self.pause)


def ticker_state(d, name):
    path = os.path.join(d.dir, "state.sqlite")
    if not os.path.exists(path):
        return {}
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'kv'").fetchone():
            return {}
        return {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM kv WHERE ns = ?", (name,))}
    finally:
        con.close()


def test_jaild_killed_while_it_writes():
    """Three times: jaild is killed with SIGKILL while clients tick a
    worker that writes a workspace file and state on each tick, create
    workers and change another's source. On restart the registry opens,
    every worker whose creation was answered 201 is there, every source
    change answered 200 is (generation and script), every tick answered
    ok left its file whole and its state, and no half-written file (of a
    worker's workspace, or a script) is visible."""
    rnd = random.Random(5)
    d = Jaild(cgroup_pool={"size": 0}).start()
    try:
        ticker = create(d, "ticker", TICKER)
        deployed = create(d, "deployed", "def tick(ctx):\n    pass\n")
        created = {ticker["id"]: "ticker", deployed["id"]: "deployed"}
        last_deploy = (1, None)
        for trial in range(3):
            before = ticker_state(d, "ticker").get("n", 0)
            storm = Storm(d, ticker["id"], deployed["id"], trial)
            for t in storm.threads:
                t.start()
            try:
                until("the storm acknowledged nothing", hostprobe.slack(60),
                      lambda: storm.unexpected or (storm.ticks >= 1 and storm.created and storm.deployed))
                assert not storm.unexpected
            except AssertionError:
                raise AssertionError("trial %d: the storm acknowledged %d ticks, %d creations, %d deployments; "
                                     "its threads' errors: %s %s; jaild's log ends:\n%s"
                                     % (trial, storm.ticks, len(storm.created), len(storm.deployed), storm.errors,
                                        storm.unexpected,
                                        d.logs()[-4000:])) from None
            time.sleep(rnd.uniform(0, 0.5))
            d.kill9()
            storm.stop.set()
            for t in storm.threads:
                t.join(timeout=hostprobe.slack(60))
            assert not storm.unexpected, storm.unexpected
            d.start()
            created.update(storm.created)
            if storm.deployed:
                last_deploy = storm.deployed[-1]
            listed = {w["id"]: w for w in d.get("/v1/workers").json()["workers"]}
            assert {i: w["name"] for i, w in listed.items()} == created, (listed, created)
            assert listed[deployed["id"]]["generation"] >= last_deploy[0], (listed[deployed["id"]], last_deploy)
            with open(os.path.join(d.dir, "reg", "scripts", deployed["id"] + ".py")) as f:
                script = f.read()
            assert script.startswith("# version ") and script.endswith("    pass\n"), script
            got = tuple(map(int, script.split()[2].split(".")))
            assert got >= tuple(map(int, last_deploy[1].split()[2].split("."))), (script, last_deploy)
            scripts = os.listdir(os.path.join(d.dir, "reg", "scripts"))
            assert not [s for s in scripts if not s.endswith(".py")], scripts
            state = ticker_state(d, "ticker")
            acked = before + storm.ticks
            assert state["n"] >= acked, (state["n"], before, storm.ticks)
            ws = os.path.join(d.dir, "ws", "ticker")
            for i in range(state["n"]):
                assert state["k%d" % i] == i, i
            for name in os.listdir(ws):
                if name.startswith(".jailrun-"):
                    continue  # jailrun's own (a temporary file cut short): no worker sees it
                i = int(name[1:])
                with open(os.path.join(ws, name)) as f:
                    assert f.read() == ("%d " % i) * 5000, name
                assert i <= state["n"], name
            assert {"f%d" % i for i in range(acked)} <= set(os.listdir(ws))
    finally:
        left = d.cleanup()
    assert left == []


# --- a cgroup write the kernel refuses ----------------------------------------------

CPU_V1 = "/sys/fs/cgroup/cpu"


def test_a_refused_cgroup_write_stops_that_worker_only(jd):
    """The daemon's cpu parent (cgroup v1) is given half a core: the kernel
    then refuses a worker's quota of a whole core (EINVAL). That worker is
    stopped with a SetupError naming the file and the errno, and runs
    nothing; a worker of a quarter core beside it ticks; jaild serves on.
    Skips where the host has no v1 cpu hierarchy or does not refuse."""
    parent = os.path.join(CPU_V1, jd.cgroup_parent)
    if not os.path.isdir(parent):
        pytest.skip("no cgroup v1 cpu hierarchy at %s (the backend is v2 here)" % CPU_V1)
    try:
        with open(os.path.join(parent, "cpu.cfs_quota_us"), "w") as f:
            f.write("50000")
    except OSError as e:
        pytest.skip("the host refuses a quota on the daemon's parent: %s" % e)
    try:
        src = "def tick(ctx):\n    ctx.log.info('ran')\n"
        full = create(jd, "full", src)
        quarter = create(jd, "quarter", src, policy={"limits": {"cpus": 0.25}})
        w = until("the full worker never stopped", hostprobe.slack(30),
                  lambda: (lambda w: w if w["state"] == "stopped" else None)(
                      jd.get("/v1/workers/%s" % full["id"]).json()))
        err = w["last_end"]["error"]
        assert w["last_end"]["status"] == "setup" and err["type"] == "SetupError", w
        assert err["message"].startswith("jail set-up failed: write 100000 to %s/" % parent) and \
            err["message"].endswith("/cpu.cfs_quota_us: Invalid argument"), err
        assert not [e for e in entries(jd, full["id"]) if e.get("message") == "ran"]
        jd.wait_idle(quarter["id"])
        r = jd.post("/v1/workers/%s/tick" % quarter["id"])
        assert r.status_code == 200 and r.json()["ok"], r.text
        assert "ran" in [e.get("message") for e in entries(jd, quarter["id"])]
        assert "stopped: SetupError: jail set-up failed: write 100000" in jd.logs()
        assert jd.get("/v1/health").status_code == 200
    finally:
        for w in jd.get("/v1/workers").json()["workers"]:
            jd.request("DELETE", "/v1/workers/%s" % w["id"])
        with open(os.path.join(parent, "cpu.cfs_quota_us"), "w") as f:
            f.write("-1")
