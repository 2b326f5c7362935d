"""ctx.state: the contract (JSON values, per-worker namespaces, limits,
errors as dicts), the store on disk (SQLite, WAL, private), hostile calls,
and durability: every acknowledged set survives kill -9 of jailrun."""
import json
import os
import random
import signal
import sqlite3
import subprocess
import time

import pytest

from hostprobe import slack
from conftest import JAIL_MEMORY_SCAN, JAILRUN, NATIVE_POLICY, not_under_sanitizers, run_script


def logs(r):
    return [json.loads(x)["message"] for x in r.err.splitlines() if x.startswith('{"type":"log"')]


def final(r):
    return json.loads(r.out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """A real redis-server on a private unix socket, writes fsync'd."""
    d = tmp_path_factory.mktemp("redis")
    sock = str(d / "redis.sock")
    p = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
                          "--dir", str(d), "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not os.path.exists(sock) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.path.exists(sock), "redis-server did not start"
    yield sock
    p.terminate()
    p.wait(timeout=10)


def redis_cli(sock, *args):
    return subprocess.run(["redis-cli", "-s", sock, *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture(params=["sqlite", "redis"])
def db(request, tmp_path):
    """The --state of a test: a SQLite file, or the test Redis, emptied."""
    if request.param == "sqlite":
        return str(tmp_path / "data" / "state.sqlite")
    sock = request.getfixturevalue("redis_server")
    redis_cli(sock, "FLUSHALL")
    return "unix://" + sock


def stored(db):
    """{(namespace, key): JSON text} of a store."""
    if db.startswith("unix://"):
        sock = db[len("unix://"):]
        out = {}
        for h in filter(None, redis_cli(sock, "--raw", "KEYS", "jailrun:state:*").splitlines()):
            if h.endswith((":bytes", ":keys")):  # the namespace's byte count and key index
                continue
            items = redis_cli(sock, "--raw", "HGETALL", h).splitlines()
            for k, v in zip(items[::2], items[1::2]):
                out[(h[len("jailrun:state:"):], k)] = v
        return out
    if not os.path.exists(db):
        return {}
    con = sqlite3.connect(db)
    rows = con.execute("SELECT ns, key, value FROM kv").fetchall()
    con.close()
    return {(ns, k): v for ns, k, v in rows}


@pytest.fixture
def sqlite_db(tmp_path):
    return str(tmp_path / "data" / "state.sqlite")


def worker(tmp_path, db, src, *args, name="w.py", timeout=60):
    return run_script(tmp_path, src, "--profile", "worker", "--state", db, "--json", *args, name=name,
                      timeout=timeout)


def test_values_round_trip_as_json(tmp_path, db):
    r = worker(tmp_path, db, """
        def tick(ctx):
            v = {"s": "é\\u0000x", "i": 2 ** 62, "f": 1.5, "l": [1, [2, [3]]], "n": None, "b": True, "t": (1, 2)}
            ctx.log.info(ctx.state.set("v", v))
            ctx.log.info(ctx.state.get("v"))
            ctx.log.info(ctx.state.get("absent"), ctx.state.get("absent", 7))
            ctx.log.info(ctx.state.set("n", 3), ctx.state.get("n") + 1)
    """)
    assert r.code == 0, r
    assert logs(r) == ["{'ok': True}",
                       "{'s': 'é\\x00x', 'i': 4611686018427387904, 'f': 1.5, 'l': [1, [2, [3]]], 'n': None, "
                       "'b': True, 't': [1, 2]}",
                       "None 7", "{'ok': True} 4"]


def test_persists_across_jobs_and_ticks(tmp_path, db):
    src = """
        def tick(ctx):
            n = ctx.state.get("count", 0)
            ctx.state.set("count", n + 1)
            ctx.log.info(n)
    """
    assert logs(worker(tmp_path, db, src, "--ticks", "3")) == ["0", "1", "2"]
    assert logs(worker(tmp_path, db, src, "--ticks", "2")) == ["3", "4"]


def test_namespaces_keep_workers_apart(tmp_path, db):
    set_src = "def tick(ctx):\n    ctx.state.set('k', ctx.state.get('k', '') + 'x')\n    ctx.log.info(ctx.state.get('k'), ctx.state.keys())\n"
    assert logs(worker(tmp_path, db, set_src, "--name", "alpha")) == ["x ['k']"]
    assert logs(worker(tmp_path, db, set_src, "--name", "beta")) == ["x ['k']"]
    assert logs(worker(tmp_path, db, set_src, name="alpha.py")) == ["xx ['k']"], "default name: the script's"
    assert stored(db) == {("alpha", "k"): '"xx"', ("beta", "k"): '"x"'}


def test_delete_and_keys(tmp_path, db):
    r = worker(tmp_path, db, """
        def tick(ctx):
            for k in ("b:2", "a:1", "b:1", "c"):
                ctx.state.set(k, 1)
            ctx.log.info(ctx.state.keys(), ctx.state.keys("b:"), ctx.state.keys("zz"))
            ctx.log.info(ctx.state.delete("b:1"), ctx.state.delete("b:1"), ctx.state.keys("b"))
    """)
    assert logs(r) == ["['a:1', 'b:1', 'b:2', 'c'] ['b:1', 'b:2'] []",
                       "{'ok': True, 'deleted': True} {'ok': True, 'deleted': False} ['b:2']"]


@pytest.mark.parametrize("call,error", [
    ("ctx.state.set('k', 'x' * 600000)", "value is 600002 bytes as JSON; the limit is 524288"),
    ("ctx.state.set('', 1)", "key must be 1 to 1024 bytes of text without NUL"),
    ("ctx.state.set('k' * 1025, 1)", "key must be 1 to 1024 bytes of text without NUL"),
    ("ctx.state.set('a\\x00b', 1)", "key must be 1 to 1024 bytes of text without NUL"),
    ("ctx.state.get(3)", "key must be a str, not int"),
    ("ctx.state.set('k', float('nan'))", "value cannot be stored as JSON: NaN and infinity are not JSON"),
    ("ctx.state.set('k', {1: 2})", "value cannot be stored as JSON: keys must be str, not int"),
    ("ctx.state.set('k', {1, 2})", "value cannot be stored as JSON: cannot send set"),
    ("ctx.state.set('k', 10 ** 30)", "value cannot be stored as JSON: "),
    ("ctx.state.keys(5)", "prefix must be a str, not int"),
])
def test_user_errors_are_dicts(tmp_path, db, call, error):
    r = worker(tmp_path, db, "def tick(ctx):\n    r = %s\n    ctx.log.info(r['error'])\n" % call)
    assert r.code == 0, r
    assert logs(r)[0].startswith(error), logs(r)


def test_value_limit_comes_from_the_policy(tmp_path, sqlite_db):
    pol = tmp_path / "p.json"
    pol.write_text('{"state": {"max_value_bytes": 100}}')
    r = worker(tmp_path, sqlite_db, "def tick(ctx):\n    ctx.log.info(ctx.state.set('k', 'x' * 99)['error'])\n",
               "--policy", str(pol))
    assert logs(r) == ["value is 101 bytes as JSON; the limit is 100"]


def test_deep_values(tmp_path, sqlite_db):
    r = worker(tmp_path, sqlite_db, """
        def tick(ctx):
            v = []
            for _ in range(11):
                v = [v]
            ctx.log.info(ctx.state.set("ok", v))
            for _ in range(10):
                v = [v]
            ctx.log.info(ctx.state.set("deep", v)["error"])
    """)
    assert logs(r) == ["{'ok': True}", "value cannot be stored as JSON: message nested too deeply"]


def test_store_file_is_private(tmp_path, sqlite_db):
    worker(tmp_path, sqlite_db, "def tick(ctx):\n    ctx.state.set('k', 1)\n")
    assert os.stat(sqlite_db).st_mode & 0o777 == 0o600
    assert os.stat(os.path.dirname(sqlite_db)).st_mode & 0o777 == 0o700
    assert sqlite3.connect(sqlite_db).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_store_unavailable_is_an_error_dict(tmp_path):
    r = worker(tmp_path, "/proc/no/state.sqlite", "def tick(ctx):\n    ctx.log.info(ctx.state.get('k'))\n")
    assert r.code == 0
    # the worker learns that it failed; the operator, where and why
    assert logs(r)[0] == "{'error': \"the state store is unavailable (the operator's log says why)\"}", logs(r)
    assert "jailrun: ctx.state: mkdir /proc/no" in r.err


def test_no_state_file_without_state_calls(tmp_path, sqlite_db):
    worker(tmp_path, sqlite_db, "def tick(ctx):\n    pass\n")
    assert not os.path.exists(sqlite_db), "the store is opened by the first call only"


# --- hostile calls: straight onto the channel -----------------------------------------

HOSTILE = """
import socket, time
def send(b):
    s = socket.socket(fileno=3)
    try:
        s.send(b)
    finally:
        s.detach()
def tick(ctx):
    %s
    time.sleep(20)
"""


@pytest.mark.parametrize("body,reason", [
    ('send(b\'{"type":"call","id":1,"op":"state.nuke","args":{}}\')', "unknown call 'state.nuke'"),
    ('send(b\'{"type":"call","id":1,"op":"state.get","args":{"key":1}}\')', "state.get call:"),
    ('send(b\'{"type":"call","id":1,"op":"state.get","args":{"key":"k","ns":"other"}}\')', "state.get call:"),
    ('send(b\'{"type":"call","id":0,"op":"state.get","args":{"key":"k"}}\')', "call id must be positive"),
    ('send(b\'{"type":"call","id":1,"op":"state.get","args":[]}\')', "call args must be an object"),
    ('send(b\'{"type":"call","id":1,"op":"state.set","args":{"key":"k"}}\')', "state.set call:"),
    ('send(b\'{"type":"call","id":1,"op":"state.keys","args":{"prefix":"","cursor":5}}\')', "state.keys call:"),
    ('send(b\'{"type":"call","id":1,"op":"state.keys","args":{"prefix":"","limit":"9"}}\')', "state.keys call:"),
    ('send(b\'{"type":"call","id":1,"op":"state.keys","args":{"prefix":"","after":"a"}}\')', "state.keys call:"),
])
def test_malformed_calls_are_protocol_errors(tmp_path, sqlite_db, body, reason):
    r = run_script(tmp_path, HOSTILE % body, "--policy", NATIVE_POLICY, "--state", sqlite_db, "--json", "--timeout", "%d" % (slack(5) + 5))
    res = final(r)
    assert r.code == 1 and res["error"]["type"] == "ProtocolError", r
    assert reason in res["error"]["message"], res
    assert res["stats"]["wall_ms"] < slack(5) * 1000


def test_namespace_cannot_be_chosen_by_the_jail(tmp_path, sqlite_db):
    """A forged call can only name a key: the namespace is the supervisor's."""
    run_script(tmp_path, "def tick(ctx):\n    ctx.state.set('secret', 'A')\n", "--state", sqlite_db, "--name", "alice")
    r = run_script(tmp_path, HOSTILE.replace("time.sleep(20)", "pass") %
                   'send(b\'{"type":"call","id":1,"op":"state.get","args":{"key":"secret"}}\')',
                   "--policy", NATIVE_POLICY, "--state", sqlite_db, "--name", "mallory", "--json")
    assert "alice" not in r.err and '"A"' not in r.err


def test_call_flood_without_reading_replies_ends_the_job(tmp_path, sqlite_db):
    body = 'for i in range(100000):\n        send(b\'{"type":"call","id":%d,"op":"state.get","args":{"key":"k"}}\' % (i + 1))'
    t0 = time.monotonic()
    r = run_script(tmp_path, HOSTILE % body, "--policy", NATIVE_POLICY, "--state", sqlite_db, "--json", "--timeout", "%d" % (slack(25) + 5), timeout=slack(25) + 30)
    res = final(r)
    assert res["error"]["type"] == "ProtocolError" and "does not read its channel" in res["error"]["message"], res
    assert time.monotonic() - t0 < slack(25)


@not_under_sanitizers(JAIL_MEMORY_SCAN)
def test_jail_memory_holds_no_other_workers_state(tmp_path, sqlite_db):
    """The jail is cloned before the store is opened: another worker's
    value is nowhere in its memory, even after it used the store itself."""
    head, tail = "neverseen-", "b1a4c0ffee-42"
    run_script(tmp_path, "def tick(ctx):\n    ctx.state.set('s', %r + %r)\n" % (head, tail),
               "--state", sqlite_db, "--name", "alice")
    r = run_script(tmp_path, """
import ctypes, os
def readable(a, n):
    # copied by the kernel through a pipe: memory unmapped since the maps
    # were read (the heap trimmed meanwhile) is EFAULT, not a crash
    r, w = os.pipe()
    out = []
    try:
        for off in range(0, n, 65536):
            k = min(65536, n - off)
            try:
                got = os.write(w, (ctypes.c_char * k).from_address(a + off))
            except OSError:
                break
            out.append(os.read(r, got))
    finally:
        os.close(r)
        os.close(w)
    return b"".join(out)
def tick(ctx):
    ctx.state.set("mine", 1)
    ctx.state.get("mine")
    head, tail = %r.encode(), %r.encode()
    found = False
    for line in open("/proc/self/maps").read().splitlines():
        parts = line.split()
        if "r" not in parts[1] or (len(parts) > 5 and parts[5].startswith(("[vvar", "[vsyscall"))):
            continue
        a, b = (int(x, 16) for x in parts[0].split("-"))
        data = readable(a, b - a)
        i = data.find(head)
        while i >= 0 and not found:
            found = data[i + len(head):i + len(head) + len(tail)] == tail
            i = data.find(head, i + 1)
    ctx.log.info("FOUND" if found else "CLEAN")
""" % (head, tail), "--policy", NATIVE_POLICY, "--state", sqlite_db, "--name", "mallory", "--json")
    assert logs(r) == ["CLEAN"], r


def test_two_jobs_share_one_store(tmp_path, db):
    src = "def tick(ctx):\n    for i in range(50):\n        ctx.state.set('k%d' % i, i)\n"
    script = tmp_path / "c.py"
    script.write_text(src)
    ps = [subprocess.Popen([JAILRUN, "--state", db, "--name", "n%d" % k, str(script)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE) for k in range(2)]
    assert [p.wait(timeout=60) for p in ps] == [0, 0]
    assert len(stored(db)) == 100


# --- durability --------------------------------------------------------------------

STORM = """
import os
def tick(ctx):
    i = 0
    while True:
        r = ctx.state.set("k%d" % i, {"i": i})
        if r != {"ok": True}:
            os.write(2, b"FAILED %r\\n" % r)
            return
        os.write(2, b"acked %d\\n" % i)
        i += 1
"""


def storm_trial(script, db, rnd):
    want = rnd.randint(1, 30)
    p = subprocess.Popen([JAILRUN, "--policy", NATIVE_POLICY, "--state", db, "--name", "storm", script],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    acked = -1
    deadline = time.monotonic() + 30
    try:
        for line in p.stderr:
            line = line.decode(errors="replace")
            assert "FAILED" not in line, line
            if line.startswith("OUTPUT acked "):
                acked = int(line.split()[2])
                if acked + 1 >= want:
                    break
            assert time.monotonic() < deadline
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        p.stderr.close()
    return acked


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_acknowledged_sets_survive_kill_9(tmp_path, request, backend):
    """200 trials per backend: jailrun killed with SIGKILL in the middle of
    a storm of sets; every set whose acknowledgement the worker printed is
    there afterwards."""
    script = tmp_path / "storm.py"
    script.write_text(STORM)
    rnd = random.Random(5)
    sock = request.getfixturevalue("redis_server") if backend == "redis" else None
    for trial in range(200):
        if sock:
            redis_cli(sock, "FLUSHALL")
            db = "unix://" + sock
        else:
            db = str(tmp_path / ("t%d.sqlite" % trial))
        acked = storm_trial(str(script), db, rnd)
        assert acked >= 0, "trial %d saw no acknowledgement" % trial
        rows = {k: v for (ns, k), v in stored(db).items() if ns == "storm"}
        for i in range(acked + 1):
            assert json.loads(rows["k%d" % i]) == {"i": i}, (trial, i, acked)
        if not sock:
            os.unlink(db)


def test_redis_that_does_not_fsync_is_refused(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    sock = str(d / "r.sock")
    p = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", sock, "--dir", str(d), "--save", ""],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        r = worker(tmp_path, "unix://" + sock, "def tick(ctx):\n    ctx.log.info(ctx.state.set('k', 1))\n")
        assert "the state store is unavailable" in logs(r)[0], r
        assert "does not make a write durable before answering (it needs appendonly yes and appendfsync always)" \
            in r.err, r
    finally:
        p.terminate()
        p.wait(timeout=10)


@pytest.mark.parametrize("url", ["redis://", "redis://h:0", "redis://h:99999", "redis://h/x", "unix://rel",
                                 "unix:///s?db=x", "unix:///s?x=1"])
def test_bad_redis_urls_are_usage_errors(tmp_path, url):
    r = run_script(tmp_path, "def tick(ctx):\n    pass\n", "--state", url)
    assert r.code == 2 and "--state wants a file path, redis://" in r.err, r


def sock_hidden(messages):
    return all("none.sock" not in m for m in messages)


def test_redis_unreachable_is_an_error_dict(tmp_path):
    r = worker(tmp_path, "unix://" + str(tmp_path / "none.sock"), "def tick(ctx):\n    ctx.log.info(ctx.state.get('k'))\n")
    assert r.code == 0 and "the state store is unavailable" in logs(r)[0], r
    assert "jailrun: ctx.state: state: redis: " in r.err and sock_hidden(logs(r)), r


def test_total_per_worker(tmp_path, db):
    pol = tmp_path / "total.json"
    pol.write_text('{"state": {"max_total_bytes": 1000}}')
    r = worker(tmp_path, db, """
        def tick(ctx):
            ctx.log.info(ctx.state.set("a", "x" * 598))
            ctx.log.info(ctx.state.set("b", "x" * 598)["error"])
            ctx.log.info(ctx.state.set("a", "y" * 398), ctx.state.set("b", "z" * 398))
            ctx.log.info(ctx.state.delete("a"), ctx.state.set("c", "w" * 398))
    """, "--policy", str(pol))
    assert logs(r) == ["{'ok': True}",
                       "the worker's state would hold more than 1000 bytes; delete some",
                       "{'ok': True} {'ok': True}",
                       "{'ok': True, 'deleted': True} {'ok': True}"], r


def test_keys_prefix_is_literal(tmp_path, db):
    r = worker(tmp_path, db, """
        def tick(ctx):
            for k in ("a*", "a*b", "ab", "a?c", "a[x]", "a\\\\b", "%_"):
                ctx.state.set(k, 1)
            ctx.log.info(ctx.state.keys("a*"), ctx.state.keys("a?"), ctx.state.keys("a["), ctx.state.keys("a\\\\"),
                         ctx.state.keys("%"))
    """)
    assert logs(r) == ["['a*', 'a*b'] ['a?c'] ['a[x]'] ['a\\\\b'] ['%_']"], r


def test_keys_come_in_pages(tmp_path, db):
    """keys(prefix, cursor=, limit=) is one page and the cursor to the next
    (None after the last); keys(prefix) every key, as a list, as before."""
    r = worker(tmp_path, db, """
        def tick(ctx):
            for i in range(25):
                ctx.state.set("p:%02d" % i, i)
            for k in ("o", "p", "q", "p;"):  # either side of the prefix ("p;" sorts after every "p:...")
                ctx.state.set(k, 0)
            page, seen = ctx.state.keys("p:", limit=10), []
            while True:
                seen.append(page["keys"])
                if page["cursor"] is None:
                    break
                page = ctx.state.keys("p:", cursor=page["cursor"], limit=10)
            ctx.log.info([len(s) for s in seen], sum(seen, []) == ["p:%02d" % i for i in range(25)])
            ctx.log.info(ctx.state.keys("p:", cursor="p:07", limit=3))
            ctx.log.info(ctx.state.keys(limit=2), ctx.state.keys("p;", limit=5), ctx.state.keys("zz", cursor="zzz"))
            ctx.state.delete("p:10")
            ctx.log.info(ctx.state.keys("p:", cursor="p:10", limit=1), ctx.state.keys("p:", cursor="p:24"))
            ctx.log.info(len(ctx.state.keys()), ctx.state.keys("p:")[:2], len(ctx.state.keys(cursor="p")["keys"]))
            for bad in (dict(prefix="p:", cursor="o"), dict(limit=0), dict(limit=10001), dict(limit=True),
                        dict(cursor=5), dict(cursor="")):
                ctx.log.info(ctx.state.keys(**bad)["error"])
    """)
    assert r.code == 0, r
    assert logs(r) == [
        "[10, 10, 5] True",
        "{'keys': ['p:08', 'p:09', 'p:10'], 'cursor': 'p:10'}",
        "{'keys': ['o', 'p'], 'cursor': 'p'} {'keys': ['p;'], 'cursor': None} {'keys': [], 'cursor': None}",
        "{'keys': ['p:11'], 'cursor': 'p:11'} {'keys': [], 'cursor': None}",
        "28 ['p:00', 'p:01'] 26",
        "cursor must be one keys() returned for this prefix",
        "limit must be an int from 1 to 10000",
        "limit must be an int from 1 to 10000",
        "limit must be an int from 1 to 10000",
        "cursor must be a str or None, not int",
        "cursor must be one keys() returned for this prefix",
    ], r


def test_a_page_fits_one_reply(tmp_path, db):
    """Long keys: a page stops at 128 KiB of key text, so it always fits a
    reply; keys() without a cursor gathers the pages."""
    r = worker(tmp_path, db, """
        def tick(ctx):
            for i in range(300):
                ctx.state.set("%04d" % i + "k" * 1000, 1)
            page = ctx.state.keys(limit=10000)
            ctx.log.info(len(page["keys"]), page["cursor"] == page["keys"][-1])
            ctx.log.info(len(ctx.state.keys()), len(ctx.state.keys("0001")))
    """, timeout=120)
    assert r.code == 0, r
    assert logs(r) == ["130 True", "300 1"], r


def fill(db, ns, keys):
    """Writes keys (value 1) into namespace ns behind jailrun's back, as an
    older jailrun would have left them (Redis: no key index)."""
    if db.startswith("unix://"):
        sock, h = db[len("unix://"):], "jailrun:state:" + ns
        for i in range(0, len(keys), 5000):
            redis_cli(sock, "HSET", h, *[x for k in keys[i:i + 5000] for x in (k, "1")])
        redis_cli(sock, "INCRBY", h + ":bytes", str(sum(len(k) + 1 for k in keys)))
        redis_cli(sock, "DEL", h + ":keys")
        return
    con = sqlite3.connect(db)
    with con:
        con.executemany("INSERT INTO kv (ns, key, value) VALUES (?, ?, '1')", [(ns, k) for k in keys])
        con.execute("UPDATE usage SET bytes = bytes + ? WHERE ns = ?", (sum(len(k) + 1 for k in keys), ns))
    con.close()


def test_keys_past_ten_thousand(tmp_path, db):
    """keys() without a cursor keeps its limit (an error past 10000 keys);
    pages reach every key. On Redis the key index is made on first use."""
    assert worker(tmp_path, db, "def tick(ctx):\n    ctx.state.set('a', 1)\n", name="big.py").code == 0
    fill(db, "big", ["k%06d" % i for i in range(10001)])
    r = worker(tmp_path, db, """
        def tick(ctx):
            ctx.log.info(ctx.state.keys()["error"])
            ctx.log.info(ctx.state.keys("k00999"), ctx.state.keys("zz"), len(ctx.state.keys(limit=10000)["keys"]))
            n, page = 0, ctx.state.keys(limit=3000)
            while True:
                n += len(page["keys"])
                if page["cursor"] is None:
                    break
                page = ctx.state.keys(cursor=page["cursor"], limit=3000)
            ctx.log.info(n)
    """, name="big.py", timeout=120)
    assert r.code == 0, r
    assert logs(r) == [
        "more than 10000 keys; ask for a longer prefix, or page through them with keys(prefix, cursor=..., limit=...)",
        str(["k00999%d" % i for i in range(10)]) + " [] 10000",
        "10002",
    ], r


def test_default_names_do_not_collide(tmp_path, sqlite_db):
    for name in ("a b.py", "a+b.py", "a_b.py"):
        worker(tmp_path, sqlite_db, "def tick(ctx):\n    ctx.state.set('k', %r)\n" % name, name=name)
    names = {ns for ns, _ in stored(sqlite_db)}
    assert len(names) == 3 and "a_b" in names, names


def test_wal_files_are_private_while_in_use(tmp_path, sqlite_db):
    script = tmp_path / "w.py"
    script.write_text("import time\ndef tick(ctx):\n    ctx.state.set('k', 1)\n    time.sleep(3)\n")
    p = subprocess.Popen([JAILRUN, "--state", sqlite_db, str(script)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + slack(10)
        # SQLite makes -wal and -shm one after the other: both, then stat
        while not all(os.path.exists(sqlite_db + sfx) for sfx in ("-wal", "-shm")) \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        modes = [os.stat(sqlite_db + sfx).st_mode & 0o777 for sfx in ("", "-wal", "-shm")]
    finally:
        p.wait(timeout=30)
    assert modes == [0o600, 0o600, 0o600]
