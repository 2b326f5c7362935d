"""Two jailds on one machine as two nodes of a cluster (docs/deploy.md): each
with its own socket, uid range, cgroup parent, registry and workspaces,
both keeping ctx.state on one Redis started by the test on 127.0.0.1. A
worker's state follows its name from node to node; two workers of one name
on both nodes never corrupt each other's writes; different names never see
each other's keys."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import hostprobe  # noqa: E402
from jdaemon import JAILD, Jaild  # noqa: E402

pytestmark = [pytest.mark.skipif(not os.path.exists(JAILD), reason="jaild is not built"),
              pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed")]

# Each node's host uids: apart from each other and from every other suite's.
UIDS = {"A": {"lo": 320000, "hi": 320999}, "B": {"lo": 321000, "hi": 321999}}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_cli(port, *args):
    p = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--raw", *args], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout


def start_redis(d, port):
    """redis-server on 127.0.0.1:port, writes fsync'd (ctx.state refuses a
    server that does not); None if it ended (the port was taken since)."""
    log = open(os.path.join(d, "redis.log"), "w")
    p = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", d,
                          "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
                         stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + hostprobe.slack(10)
    while time.monotonic() < deadline:
        if p.poll() is not None:
            return None
        r = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "ping"], capture_output=True, text=True,
                           timeout=30)
        if r.stdout.strip() == "PONG":
            return p
        time.sleep(0.05)
    p.kill()
    p.wait()
    raise AssertionError("redis-server did not answer on port %d" % port)


@pytest.fixture(scope="module")
def redis():
    d = tempfile.mkdtemp(prefix="jd-redis-", dir="/tmp")
    try:
        for _ in range(5):  # another program may take the free port before redis does
            port = free_port()
            p = start_redis(d, port)
            if p:
                break
        else:
            with open(os.path.join(d, "redis.log")) as f:
                raise AssertionError("redis-server did not start:\n" + f.read())
        try:
            yield port
        finally:
            p.terminate()
            p.wait(timeout=60)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def nodes(redis):
    """Two jailds, A and B, on the test's Redis (emptied first)."""
    redis_cli(redis, "FLUSHALL")
    state = {"backend": "redis", "redis": {"host": "127.0.0.1", "port": redis}}
    started = {}
    try:
        for name in ("A", "B"):
            started[name] = Jaild(state=state, uid_range=UIDS[name]).start()
        yield started
    finally:
        left = {name: d.cleanup() for name, d in started.items()}
        assert left == {name: [] for name in started}, "cgroups left: %s" % left


def create(node, name, source, **kw):
    r = node.post("/v1/workers", dict(name=name, source=source, **kw))
    assert r.status_code == 201, r.text
    w = r.json()
    deadline = time.monotonic() + hostprobe.slack(10)
    while w["state"] != "idle":
        assert w["state"] == "starting" and time.monotonic() < deadline, w
        time.sleep(0.02)
        w = node.get("/v1/workers/%s" % w["id"]).json()
    return w["id"]


def tick(node, wid, timeout=60):
    r = node.post("/v1/workers/%s/tick" % wid, timeout=timeout)
    assert r.status_code == 200, r.text
    t = r.json()
    assert t["ok"], (t, node.get("/v1/workers/%s/logs" % wid).text)
    return t


def logged(node, wid):
    """The worker's log lines, each parsed as JSON."""
    r = node.get("/v1/workers/%s/logs" % wid)
    assert r.status_code == 200, r.text
    lines = [json.loads(x) for x in r.text.splitlines() if x]
    return [json.loads(e["message"]) for e in lines if e.get("type") == "log"]


def delete(node, wid):
    r = node.request("DELETE", "/v1/workers/%s" % wid)
    assert r.status_code == 200, r.text
    assert node.get("/v1/workers/%s" % wid).status_code == 404


def store_is_whole(port, name):
    """The namespace's hash, key index and byte count agree (the three
    change together in one script, jailrun:state:NAME...)."""
    h = "jailrun:state:" + name
    keys = sorted(redis_cli(port, "HKEYS", h).splitlines())
    index = redis_cli(port, "ZRANGE", h + ":keys", "0", "-1").splitlines()
    assert keys == sorted(index), (keys, index)
    size = sum(len(k.encode()) + int(redis_cli(port, "HSTRLEN", h, k)) for k in keys)
    assert int(redis_cli(port, "GET", h + ":bytes").strip() or 0) == size
    return keys


WRITER = """
import json
def tick(ctx):
    for k, v in [("balance", {"units": 42, "from": "A"}), ("orders:1", [1, 2.5, "x"]), ("orders:2", None)]:
        r = ctx.state.set(k, v)
        if "error" in r:
            raise RuntimeError(r["error"])
    r = ctx.files.write("node.txt", "A")
    if "error" in r:
        raise RuntimeError(r["error"])
"""

READER = """
import json
def tick(ctx):
    ctx.log.info(json.dumps({"keys": ctx.state.keys(), "balance": ctx.state.get("balance"),
                             "orders": [ctx.state.get("orders:1"), ctx.state.get("orders:2", "absent")],
                             "file": ctx.files.exists("node.txt")}))
"""


def test_state_follows_a_worker_to_another_node(nodes, redis):
    a, b = nodes["A"], nodes["B"]
    wid = create(a, "mover", WRITER)
    tick(a, wid)
    delete(a, wid)
    wid = create(b, "mover", READER)
    tick(b, wid)
    got = logged(b, wid)
    assert got == [{"keys": ["balance", "orders:1", "orders:2"], "balance": {"units": 42, "from": "A"},
                    "orders": [[1, 2.5, "x"], None],
                    "file": False}], got  # ctx.state moved; the workspace (ctx.files) is the node's own
    assert os.path.exists(os.path.join(a.dir, "ws", "mover", "node.txt"))
    assert store_is_whole(redis, "mover") == ["balance", "orders:1", "orders:2"]


# One worker of the same name on each node. Each writes values that check
# themselves ({"node", "seq", "pad", "sum"}: pad made from node and seq,
# sum a digest of the three) to a key both write and to a key of its own,
# reading each back after its write. Writes overlap for sure: each starts
# once it has seen the other ready, and goes on past WRITES until it has
# read a value of the other's and the other has said it read one of its.
RACER = """
import hashlib
import json
import time

ME, OTHER, WRITES, MAX_WRITES, WAIT_S = %r, %r, %d, %d, %r

def pad(node, seq):
    return hashlib.sha256(("%%s:%%d" %% (node, seq)).encode()).hexdigest() * 16

def digest(node, seq, p):
    return hashlib.sha256(json.dumps([node, seq, p]).encode()).hexdigest()

def value(seq):
    p = pad(ME, seq)
    return {"node": ME, "seq": seq, "pad": p, "sum": digest(ME, seq, p)}

def whole(v):
    if not isinstance(v, dict) or sorted(v) != ["node", "pad", "seq", "sum"] or v["node"] not in (ME, OTHER):
        raise ValueError("not a value either node wrote: %%.200r" %% (v,))
    if v["pad"] != pad(v["node"], v["seq"]) or v["sum"] != digest(v["node"], v["seq"], v["pad"]):
        raise ValueError("a value that does not check: %%.200r" %% (v,))
    return v

def put(k, v):
    r = ctx.state.set(k, v)
    if "error" in r:
        raise RuntimeError("set %%s: %%s" %% (k, r["error"]))

def tick(ctx):
    put("ready-" + ME, True)
    deadline = time.monotonic() + WAIT_S
    while ctx.state.get("ready-" + OTHER) is not True:
        if time.monotonic() > deadline:
            raise TimeoutError("the other node's worker never started")
        time.sleep(0.001)
    n = seen = 0
    last_other = -1
    while n < WRITES or not seen or ctx.state.get("saw-" + OTHER) is not True:
        if n == MAX_WRITES:
            raise RuntimeError("%%d writes and no overlap with the other node's" %% n)
        n += 1
        put("shared", value(n))
        put("own-" + ME, value(n))
        v = whole(ctx.state.get("shared"))
        if v["node"] == ME and v["seq"] != n:
            raise ValueError("read my write %%d back as my %%d" %% (n, v["seq"]))
        if v["node"] == OTHER:
            if v["seq"] < last_other:
                raise ValueError("the other's writes went back: %%d after %%d" %% (v["seq"], last_other))
            last_other = v["seq"]
            if not seen:
                put("saw-" + ME, True)
            seen += 1
        if ctx.state.get("own-" + ME) != value(n):
            raise ValueError("my own key does not hold my write %%d" %% n)
    ctx.log.info(json.dumps({"node": ME, "writes": n, "seen_other": seen}))
"""

WRITES = 200


def test_same_name_on_two_nodes_never_corrupts(nodes, redis):
    wait_s = hostprobe.slack(30)
    ids = {}
    for me, other in (("A", "B"), ("B", "A")):
        src = RACER % (me, other, WRITES, 50 * WRITES, wait_s)
        ids[me] = create(nodes[me], "racer", src, schedule={"tick_timeout": min(86400, hostprobe.slack(120))})
    out = {}

    def run(me):
        try:
            out[me] = tick(nodes[me], ids[me], timeout=hostprobe.slack(180))
        except BaseException as e:  # said by the assert below
            out[me] = e

    threads = [threading.Thread(target=run, args=(me,)) for me in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(out[me], dict) for me in ids), out
    reports = {me: logged(nodes[me], ids[me]) for me in ids}
    for me, rep in reports.items():
        assert len(rep) == 1 and rep[0]["node"] == me, rep
        assert rep[0]["writes"] >= WRITES and rep[0]["seen_other"] >= 1, rep
    # In Redis: the last value of each is whole, and the hash, its key index
    # and its byte count agree after both nodes' writes.
    assert store_is_whole(redis, "racer") == ["own-A", "own-B", "ready-A", "ready-B", "saw-A", "saw-B",
                                                      "shared"]
    for me in ids:
        v = json.loads(redis_cli(redis, "HGET", "jailrun:state:racer", "own-" + me))
        assert v["node"] == me and v["seq"] == reports[me][0]["writes"]
    assert json.loads(redis_cli(redis, "HGET", "jailrun:state:racer", "shared"))["node"] in ids


KEEPER = """
import json
def tick(ctx):
    for i in range(3):
        r = ctx.state.set("%s-%%d" %% i, {"by": "%s", "i": i})
        if "error" in r:
            raise RuntimeError(r["error"])
    ctx.log.info(json.dumps({"keys": ctx.state.keys(), "theirs": ctx.state.get("%s-0", "absent"),
                             "mine": ctx.state.get("%s-0")}))
"""


def test_different_names_do_not_see_each_other(nodes, redis):
    a, b = nodes["A"], nodes["B"]
    wa = create(a, "left", KEEPER % ("l", "left", "r", "l"))
    wb = create(b, "right", KEEPER % ("r", "right", "l", "r"))
    tick(a, wa)
    tick(b, wb)
    tick(a, wa)  # again, now that the other's keys exist
    assert logged(a, wa)[-1] == {"keys": ["l-0", "l-1", "l-2"], "theirs": "absent", "mine": {"by": "left", "i": 0}}
    assert logged(b, wb)[-1] == {"keys": ["r-0", "r-1", "r-2"], "theirs": "absent", "mine": {"by": "right", "i": 0}}
    assert store_is_whole(redis, "left") == ["l-0", "l-1", "l-2"]
    assert store_is_whole(redis, "right") == ["r-0", "r-1", "r-2"]
