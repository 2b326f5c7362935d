"""Faults under jaild, each with its documented outcome (jaild(8) FAULTS,
docs/faults.md): a worker's jail SIGKILLed in the middle of a large
message, jaild itself killed with SIGKILL while it writes (the registry,
workers' state and files, a new source), a cgroup write the kernel
refuses for one worker, a full disk under jaild's registry, and a Redis
store that stops answering."""
import contextlib
import errno
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
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


# --- a full disk under the registry -------------------------------------------------

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))
from jr_helpers import private_tmpfs  # noqa: E402

COUNTING = "def tick(ctx):\n    ctx.state.set('n', ctx.state.get('n', 0) + 1)\n"
QUIET = "def tick(ctx):\n    pass\n"
CHANGED = "# changed\ndef tick(ctx):\n    ctx.log.info('changed')\n"


def fill(path):
    """Writes to path (appending) until the file system refuses: ENOSPC."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        while True:
            os.write(fd, b"x" * 65536)
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    assert os.statvfs(os.path.dirname(path)).f_bavail == 0


def refused(r):
    """A change the full disk refused: 507, saying so, nothing changed."""
    assert r.status_code == 507, r.text
    e = r.json()["error"]
    assert e["type"] == "InsufficientStorageError", r.text
    assert "is full (ENOSPC); nothing was changed" in e["message"], r.text
    return e["message"]


class Acked:
    """What jaild acknowledged (a 2xx answer): the workers, their sources
    and generations, and which are paused."""

    def __init__(self, d, reg):
        self.d, self.reg = d, reg
        self.workers = {}

    def created(self, r, source):
        assert r.status_code == 201, r.text
        w = r.json()
        self.workers[w["id"]] = {"name": w["name"], "source": source, "generation": 1, "paused": False}
        return w["id"]

    def check(self, rows_too=True, cut=None):
        """The API lists them as acknowledged, each script holds its source
        (but the one the test cut), no other file (NAME.new) is in the
        scripts' directory, and the registry passes integrity_check with
        the same rows."""
        listed = {w["id"]: w for w in self.d.get("/v1/workers").json()["workers"]}
        assert {i: (w["name"], w["generation"], w["paused"]) for i, w in listed.items()} == \
            {i: (w["name"], w["generation"], w["paused"]) for i, w in self.workers.items()}, listed
        scripts = os.path.join(self.reg, "scripts")
        assert sorted(os.listdir(scripts)) == sorted(i + ".py" for i in self.workers), os.listdir(scripts)
        for i, w in self.workers.items():
            with open(os.path.join(scripts, i + ".py")) as f:
                assert f.read() == ("" if i == cut else w["source"]), i
        if rows_too:
            self.check_rows("file:%s?mode=ro" % os.path.join(self.reg, "registry.db"))

    def check_rows(self, uri):
        con = sqlite3.connect(uri, uri=True)
        try:
            assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            rows = {r[0]: {"name": r[1], "source": r[2], "generation": r[3], "paused": bool(r[4])}
                    for r in con.execute("SELECT id, name, source, generation, paused FROM workers")}
        finally:
            con.close()
        assert rows == self.workers, rows


def ticks_go_on(d, wid):
    before = d.get("/v1/workers/%s" % wid).json()["stats"]["ticks"]
    until("worker %s stopped ticking" % wid, hostprobe.slack(20),
          lambda: d.get("/v1/workers/%s" % wid).json()["stats"]["ticks"] >= before + 2)


def refused_all(d, ids):
    """Every change through the API refused, jaild serving on: a create (a
    small source and a large one), a change of the source, of the schedule,
    of both, a pause, a resume, a delete; a one-shot job runs; health."""
    refused(d.post("/v1/workers", worker_spec("late", QUIET)))
    refused(d.post("/v1/workers", worker_spec("late-big", "# " + "y" * 60000 + "\n" + QUIET)))
    for change in ({"source": CHANGED}, {"schedule": {"interval": 7}},
                   {"source": CHANGED, "schedule": {"interval": 5}}):
        refused(d.request("PATCH", "/v1/workers/%s" % ids["quiet"], json=change))
    refused(d.post("/v1/workers/%s/pause" % ids["counting"]))
    refused(d.post("/v1/workers/%s/resume" % ids["sleeper"]))
    refused(d.request("DELETE", "/v1/workers/%s" % ids["quiet"]))
    r = d.post("/v1/jobs", {"source": "print('job ran')\n"}, timeout=hostprobe.slack(60))
    assert r.status_code == 200 and "job ran" in r.text, r.text
    assert d.get("/v1/health").status_code == 200
    assert d.get("/v1/workers/%s" % ids["sleeper"]).json()["state"] == "paused"
    ticks_go_on(d, ids["counting"])


def small_fs_or_skip(stack, path, size):
    try:
        return stack.enter_context(private_tmpfs(path, size))
    except (subprocess.CalledProcessError, OSError) as e:
        pytest.skip("this host cannot mount a tmpfs for the test: %s" % e)


def test_a_full_disk_under_the_registry(tmp_path):
    """jaild's registry and workers' scripts on a 1 MiB tmpfs that a file
    fills. Every change is refused 507 InsufficientStorageError naming
    ENOSPC, with nothing changed: the registry passes integrity_check with
    the acknowledged rows, every script holds its worker's source, no
    NAME.new is left. jaild serves on (health, a one-shot job, a session,
    whose registry record alone is not kept) and the workers tick. Stopped
    (SIGTERM) and started on the full disk, it serves the same workers, but
    one whose script it would have to write again: that one is stopped, its
    error saying why, until it is resumed with room. Once the file is gone
    the same changes are made. Stopped with room and
    started on a disk filled meanwhile (no room for SQLite's -shm index),
    it opens the registry for itself alone, says so, and serves. A new
    registry on the full disk is refused at start, saying why."""
    with contextlib.ExitStack() as stack:
        small = small_fs_or_skip(stack, tmp_path / "small", "1m")
        reg, filler = str(small / "reg"), str(small / "filler")
        d = Jaild(registry=os.path.join(reg, "registry.db"))
        try:
            full_disk_story(d, reg, filler)
        finally:
            left = d.cleanup()  # (before the tmpfs is unmounted)
        a_new_registry_is_refused(str(small), filler)
    assert left == [], left


def full_disk_story(d, reg, filler):
    d.start()
    acked = Acked(d, reg)
    ids = {"counting": acked.created(d.post("/v1/workers", worker_spec("counting", COUNTING,
                                                                       schedule={"interval": 0.2})), COUNTING),
           "quiet": acked.created(d.post("/v1/workers", worker_spec("quiet", QUIET)), QUIET),
           "sleeper": acked.created(d.post("/v1/workers", worker_spec("sleeper", QUIET)), QUIET)}
    assert d.post("/v1/workers/%s/pause" % ids["sleeper"]).status_code == 200
    acked.workers[ids["sleeper"]]["paused"] = True
    d.wait_idle(ids["quiet"])

    fill(filler)
    refused_all(d, ids)
    r = d.post("/v1/sessions", {}, timeout=hostprobe.slack(60))
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert "session %s: registry session add '%s': the disk under" % (sid, sid) in d.logs()
    acked.check()

    # stopped and started again on the full disk: the same workers run but
    # one whose script is not its source (cut here, the room refilled),
    # stopped until it is resumed with room, its error saying why
    assert d.stop() == 0
    os.truncate(os.path.join(reg, "scripts", ids["quiet"] + ".py"), 0)
    fill(filler)
    d.start()
    acked.check(cut=ids["quiet"])
    assert d.get("/v1/sessions/%s" % sid).status_code == 404  # not recorded: not known as lost (410)
    for _ in range(2):
        w = d.get("/v1/workers/%s" % ids["quiet"]).json()
        assert w["state"] == "stopped" and w["error"].startswith("its script cannot be written: write ") and \
            w["error"].endswith(": the disk is full (ENOSPC)"), w
        r = d.post("/v1/workers/%s/resume" % ids["quiet"])  # it tries again
        assert r.status_code == 200, r.text
    refused_all(d, ids)
    acked.check(cut=ids["quiet"])

    # room again: the same changes are made
    os.unlink(filler)
    assert d.post("/v1/workers/%s/resume" % ids["quiet"]).status_code == 200
    d.wait_idle(ids["quiet"])
    acked.check()
    late = acked.created(d.post("/v1/workers", worker_spec("late", QUIET)), QUIET)
    r = d.request("PATCH", "/v1/workers/%s" % ids["quiet"], json={"source": CHANGED, "schedule": {"interval": 5}})
    assert r.status_code == 200 and r.json()["generation"] == 2, r.text
    acked.workers[ids["quiet"]].update(source=CHANGED, generation=2)
    for what in ("pause", "resume"):
        assert d.post("/v1/workers/%s/%s" % (ids["counting"], what)).status_code == 200, what
    r = d.request("DELETE", "/v1/workers/%s" % late, timeout=hostprobe.slack(60))
    assert r.status_code == 200, r.text
    del acked.workers[late]
    r = d.post("/v1/sessions", {}, timeout=hostprobe.slack(60))
    assert r.status_code == 201 and "session %s: registry" % r.json()["id"] not in d.logs(), r.text
    assert d.request("DELETE", "/v1/sessions/%s" % r.json()["id"]).status_code == 200
    acked.check()
    ticks_go_on(d, ids["counting"])

    # stopped with room (its -shm index removed), started on a disk filled meanwhile
    assert d.stop() == 0
    assert not os.path.exists(os.path.join(reg, "registry.db-shm"))
    fill(filler)
    d.start()
    assert "opened for jaild alone" in d.logs()
    acked.check(rows_too=False)  # (no other process may read it now)
    d.wait_idle(ids["quiet"])
    refused_all(d, ids)
    os.unlink(filler)
    acked.created(d.post("/v1/workers", worker_spec("later", QUIET)), QUIET)
    assert d.stop() == 0
    acked.check_rows("file:%s" % os.path.join(reg, "registry.db"))


def a_new_registry_is_refused(small, filler):
    """A registry jaild would create on the full disk: it exits 3 at
    start, saying why."""
    fill(filler)
    fresh = Jaild(registry=os.path.join(small, "fresh", "registry.db"))
    try:
        with pytest.raises(AssertionError, match="jaild exited with 3"):
            fresh.start()
        assert "registry setup: the disk under %s is full (ENOSPC)" % fresh.config["registry"] \
            in fresh.logs(), fresh.logs()
    finally:
        fresh.cleanup()


# --- a Redis that stops answering ----------------------------------------------

@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of the test's own on a unix socket, writes fsync'd
    (as ctx.state requires); sent SIGCONT and ended at the end."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    sock = str(tmp_path / "redis.sock")
    p = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
                          "--dir", str(tmp_path), "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        until("redis-server did not start", hostprobe.slack(10), lambda: os.path.exists(sock))
        yield p, sock
    finally:
        p.send_signal(signal.SIGCONT)
        p.kill()
        p.wait(timeout=30)


SETTER = """
n = 0
def tick(ctx):
    global n
    n += 1
    ctx.log.info("set %d %s" % (n, ctx.state.set("k", n)))
"""


def sets(d, wid):
    """[(n, reply text)] of the setter's log lines, in order."""
    out = []
    for e in entries(d, wid):
        m = e.get("message") or ""
        if m.startswith("set "):
            n, reply = m[4:].split(" ", 1)
            out.append((int(n), reply))
    return out


def test_a_silent_redis_holds_up_only_the_calls_that_wait_on_it(private_redis):
    """Redis stops answering (SIGSTOP) under a worker that sets state: that
    worker's calls wait their 5 s and fail, while jaild answers its API
    and a worker that makes no state call ticks on (the store is driven
    from jaild's loop, never waited on there); once Redis answers again
    (SIGCONT) the worker's sets succeed, in the same jail."""
    redis, sock = private_redis
    d = Jaild(state={"backend": "redis", "redis": {"unix": sock}}).start()
    try:
        setter = create(d, "setter", SETTER, schedule={"interval": 0.05})
        other = create(d, "other", "def tick(ctx):\n    ctx.log.info('tick')\n", schedule={"interval": 0.05})
        until("no set succeeded", hostprobe.slack(30), lambda: any(r == "{'ok': True}" for _, r in sets(d, setter["id"])))
        redis.send_signal(signal.SIGSTOP)
        worst = [0.0]

        def timed(call):
            t = time.monotonic()
            got = call()
            worst[0] = max(worst[0], time.monotonic() - t)
            return got
        ticks = lambda: timed(lambda: sum(e.get("message") == "tick" for e in entries(d, other["id"])))  # noqa: E731
        t0, before = time.monotonic(), ticks()
        while time.monotonic() - t0 < 6:  # past one whole 5 s wait of the setter's
            assert timed(lambda: d.get("/v1/health").status_code) == 200
            time.sleep(0.1)
        # jaild waited on Redis, it would have stalled 5 s at a time
        assert worst[0] < 4, worst
        assert ticks() >= before + 5, (before, ticks())
        failed = until("no set failed", hostprobe.slack(30), lambda: [
            n for n, r in sets(d, setter["id"]) if "no answer within 5 s (the server is stopped or overloaded)" in r])
        redis.send_signal(signal.SIGCONT)
        until("no set succeeded after Redis answered again", hostprobe.slack(30), lambda: [
            n for n, r in sets(d, setter["id"]) if r == "{'ok': True}" and n > max(failed)])
        ns = [n for n, _ in sets(d, setter["id"])]
        assert ns == list(range(1, len(ns) + 1)), ns  # one jail all along: its counter never started over
        assert "ctx.state: redis: lost the server (no answer within 5 s" in d.logs(), d.logs()[-3000:]
    finally:
        redis.send_signal(signal.SIGCONT)
        assert d.cleanup() == []
