"""Faults from outside the jail, each with its documented outcome (jailrun(1)
FAULTS, docs/faults.md) and nothing acknowledged lost: the Redis store
going away and coming back, a full disk under the workspace and the SQLite
store, HTTP servers that hang or reset, a jail killed in the middle of a
large message, and a cgroup write the kernel refuses."""
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import struct
import threading
import time

import pytest

from conftest import JAILRUN, run_script
from hostprobe import slack
from jr_helpers import finish, host_stays_clean, private_tmpfs, start, stop, wait_line  # noqa: F401


def ok_lines(lines, word):
    """{n: reply} of the lines "INFO WORD n REPLY" among `lines`."""
    out = {}
    for line in lines:
        parts = line.rstrip("\n").split(" ", 3)
        if len(parts) == 4 and parts[:2] == ["INFO", word]:
            out[int(parts[2])] = json.loads(parts[3])
    return out


# --- Redis down mid-run ---------------------------------------------------------

class Redis:
    """A redis-server of the test's own, on a unix socket or a 127.0.0.1
    port, writes fsync'd (as jailrun requires); stopped with SIGKILL and
    started again on the same address and data directory."""

    def __init__(self, d, tcp):
        self.dir = d
        self.sock = str(d / "redis.sock")
        self.port = 0
        if tcp:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
        self.url = "redis://127.0.0.1:%d" % self.port if tcp else "unix://" + self.sock
        self.proc = None

    def cli(self, *args):
        where = ["-h", "127.0.0.1", "-p", str(self.port)] if self.port else ["-s", self.sock]
        return subprocess.run(["redis-cli", *where, *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout

    def start(self):
        where = ["--port", str(self.port), "--bind", "127.0.0.1"] if self.port else \
            ["--port", "0", "--unixsocket", self.sock, "--unixsocketperm", "700"]
        self.proc = subprocess.Popen(["redis-server", *where, "--dir", str(self.dir), "--appendonly", "yes",
                                      "--appendfsync", "always", "--save", ""],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + slack(10)
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "redis-server exited"
            try:
                if self.cli("PING").strip() == "PONG":
                    return
            except subprocess.CalledProcessError:
                pass
            time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


REDIS_WORKER = """
import json
n = 0
def tick(ctx):
    global n
    ctx.log.info("set", n, json.dumps(ctx.state.set("k%d" % n, {"n": n})))
    n += 1
"""


@pytest.mark.parametrize("tcp", [False, True], ids=["unix", "tcp"])
def test_redis_down_mid_run(tmp_path, tcp):
    """Redis is killed under a ticking worker and started again: the calls
    in between return {"error": ...}, the worker goes on in the same jail
    (its counter never starts over), the calls after succeed without a
    restart of the job, and every set that returned ok is in the store."""
    (tmp_path / "redis").mkdir()
    redis = Redis(tmp_path / "redis", tcp)
    redis.start()
    p = start(tmp_path, REDIS_WORKER, "--state", redis.url, "--name", "rw", "--interval", "50ms")
    seen = []
    try:
        for want in range(3):
            seen += wait_line(p.stderr, "INFO set %d " % want, timeout=slack(20))
        redis.kill()
        down = []
        while len([v for v in ok_lines(down, "set").values() if "error" in v]) < 3:
            down += wait_line(p.stderr, "INFO set ", timeout=slack(20))
        seen += down
        redis.start()
        up = []
        while len([v for v in ok_lines(up, "set").values() if v == {"ok": True}]) < 3:
            up += wait_line(p.stderr, "INFO set ", timeout=slack(20))
        seen += up
        p.send_signal(signal.SIGTERM)
        res, _ = finish(p, timeout=slack(30))
    finally:
        stop(p)
        redis.kill()
    assert res.code == 0, res
    replies = ok_lines(seen + res.err.splitlines(), "set")
    # one jail all along: its counter went 0, 1, 2, ... without starting over
    assert sorted(replies) == list(range(len(replies))), replies
    errors = {n: v for n, v in replies.items() if v != {"ok": True}}
    assert errors, replies
    for v in errors.values():
        assert list(v) == ["error"] and "state" in v["error"] and "redis" in v["error"], v
    assert max(replies) > max(errors), "no set succeeded after Redis came back: %r" % replies
    err = "".join(seen) + res.err
    assert "jailrun: ctx.state: redis: lost the server" in err and "jailrun: ctx.state: redis: connected again" in err, err
    redis.start()
    try:
        for n, v in replies.items():
            if v == {"ok": True}:
                assert json.loads(redis.cli("--raw", "HGET", "jailrun:state:rw", "k%d" % n)) == {"n": n}, n
    finally:
        redis.kill()


def test_redis_that_hangs(tmp_path):
    """Redis stops answering (SIGSTOP) under a ticking worker: each call
    returns {"error": ...} naming the silence once the store's 5 s timeout
    has passed, the worker goes on in the same jail, and once the server
    answers again (SIGCONT) calls succeed without a restart; every set that
    returned ok is in the store."""
    (tmp_path / "redis").mkdir()
    redis = Redis(tmp_path / "redis", False)
    redis.start()
    p = start(tmp_path, REDIS_WORKER, "--state", redis.url, "--name", "rh", "--interval", "50ms",
              "--tick-timeout", "60")
    seen = []
    try:
        seen += wait_line(p.stderr, "INFO set 2 ", timeout=slack(20))
        redis.proc.send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        down = []
        while len([v for v in ok_lines(down, "set").values() if "error" in v]) < 2:
            down += wait_line(p.stderr, "INFO set ", timeout=slack(30))
        hung = time.monotonic() - t0
        seen += down
        redis.proc.send_signal(signal.SIGCONT)
        up = []
        while len([v for v in ok_lines(up, "set").values() if v == {"ok": True}]) < 3:
            up += wait_line(p.stderr, "INFO set ", timeout=slack(30))
        seen += up
        p.send_signal(signal.SIGTERM)
        res, _ = finish(p, timeout=slack(30))
    finally:
        if redis.proc and redis.proc.poll() is None:
            redis.proc.send_signal(signal.SIGCONT)
        stop(p)
    try:
        assert res.code == 0, res
        replies = ok_lines(seen + res.err.splitlines(), "set")
        assert sorted(replies) == list(range(len(replies))), replies  # one jail all along
        errors = {n: v for n, v in replies.items() if v != {"ok": True}}
        assert len(errors) >= 2, replies
        for v in errors.values():
            # the call that found it silent, or the next one's connection
            assert list(v) == ["error"] and v["error"].startswith(("state set: redis: connection lost: ",
                                                                   "state: redis: cannot connect: ")), v
            assert v["error"].endswith("no answer within 5 s (the server is stopped or overloaded)"), v
        # two calls, each waiting out the timeout (at least 5 s each, less the
        # part of the first one spent before the stop)
        assert hung >= 5, hung
        assert max(replies) > max(errors), "no set succeeded after Redis answered again: %r" % replies
        err = "".join(seen) + res.err
        assert "jailrun: ctx.state: redis: lost the server (no answer within 5 s" in err and \
            "jailrun: ctx.state: redis: connected again" in err, err
        for n, v in replies.items():
            if v == {"ok": True}:
                assert json.loads(redis.cli("--raw", "HGET", "jailrun:state:rh", "k%d" % n)) == {"n": n}, n
    finally:
        redis.kill()


def test_state_calls_under_way_are_capped(tmp_path):
    """A jail that sends state calls without waiting for their answers (to
    a Redis that does not answer) gets the 9th and later refused at once
    (the supervisor holds at most 8 values of a job's in its queue); the 8
    under way fail once the store gives up on the server, and the job goes
    on."""
    (tmp_path / "redis").mkdir()
    redis = Redis(tmp_path / "redis", False)
    redis.start()
    redis.proc.send_signal(signal.SIGSTOP)
    pol = tmp_path / "noguard.json"
    pol.write_text('{"python": {"guard": false}}')
    src = """
import json, socket
def tick(ctx):
    s = socket.socket(fileno=3)
    for i in range(1, 13):
        s.send(json.dumps({"type": "call", "id": i, "op": "state.set",
                           "args": {"key": "k%d" % i, "value": "v" * 100000}}).encode())
    got = {}
    for _ in range(12):
        m = json.loads(s.recv(1 << 20))
        got[m["id"]] = m["result"].get("error", "ok")
    s.detach()
    refused = sorted(i for i, e in got.items() if "8 calls are under way; one must return first" in e)
    waited = sorted(i for i, e in got.items() if "the state store is unavailable" in e)
    ctx.log.info(json.dumps([refused, waited]))
    ctx.log.info("then", ctx.state.get("k1"))
"""
    try:
        r = run_script(tmp_path, src, "--policy", str(pol), "--state", redis.url, "--json", "--tick-timeout", "60",
                       timeout=slack(120))
    finally:
        redis.proc.send_signal(signal.SIGCONT)
        redis.kill()
    lines = [json.loads(x)["message"] for x in r.err.splitlines() if x.startswith('{"type":"log"')]
    assert len(lines) == 2, r
    refused, waited = json.loads(lines[0])
    assert refused == list(range(9, 13)) and waited == list(range(1, 9)), (refused, waited, r)
    assert lines[1].startswith("then {'error': "), r  # the next call connects again, and is answered
    assert r.code == 0, r


ORPHANS = r"""
import json, os, socket
n = 0
first = None
def tick(ctx):
    global n, first
    n += 1
    if n == 1:
        first = ctx.state.get("phase") is None
        if first:
            ctx.state.set("phase", 1)
            ctx.log.info("ready")
            return
    if first and n == 2:  # 8 calls sent to a silent Redis, and the jail ends with them under way
        s = socket.socket(fileno=3)
        for i in range(1, 9):
            s.send(json.dumps({"type": "call", "id": 1000 + i, "op": "state.set",
                               "args": {"key": "k%d" % i, "value": i}}).encode())
        os._exit(3)
    ctx.log.info("later %r" % (ctx.state.get("phase"),))
"""


def test_a_jail_that_ends_with_calls_under_way_leaves_none(tmp_path):
    """A jail ends with 8 state calls sent to a Redis that does not answer:
    its calls are dropped with the connection, so the worker's next jail
    is not refused as having 8 calls under way, and its calls succeed once
    Redis answers again."""
    (tmp_path / "redis").mkdir()
    redis = Redis(tmp_path / "redis", False)
    redis.start()
    pol = tmp_path / "noguard.json"
    pol.write_text('{"python": {"guard": false}}')
    p = start(tmp_path, ORPHANS, "--policy", str(pol), "--state", redis.url, "--name", "orph", "--interval", "200ms")
    seen = []
    try:
        seen += wait_line(p.stderr, "INFO ready", timeout=slack(20))
        redis.proc.send_signal(signal.SIGSTOP)
        seen += wait_line(p.stderr, "a new jail for the worker", timeout=slack(30))
        redis.proc.send_signal(signal.SIGCONT)
        seen += wait_line(p.stderr, "INFO later 1", timeout=slack(30))
        p.send_signal(signal.SIGTERM)
        res, _ = finish(p, timeout=slack(30))
    finally:
        stop(p)
        redis.proc.send_signal(signal.SIGCONT)
        redis.kill()
    text = "".join(seen) + res.err
    assert "calls are under way" not in text, text[-3000:]


FAKE_REDIS = r"""
import os, socket, sys
srv = socket.socket(socket.AF_UNIX)
srv.bind(sys.argv[1])
srv.listen(5)
def cmds(f):
    while True:
        line = f.readline()
        if not line:
            return
        args = []
        for _ in range(int(line[1:])):
            n = int(f.readline()[1:])
            args.append(f.read(n + 2)[:-2].decode())
        yield args
while True:
    c, _ = srv.accept()
    f = c.makefile("rb")
    for a in cmds(f):
        if a[0].upper() == "CONFIG":  # durable, as the store asks
            v = {"appendonly": "yes", "appendfsync": "always"}[a[2]]
            c.sendall(b"*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(a[2]), a[2].encode(), len(v), v.encode()))
        else:  # the answer, then one nobody asked for
            c.sendall(b"$-1\r\n+OK\r\n")
    c.close()
"""


def test_a_server_that_answers_what_was_not_asked(tmp_path):
    """A Redis (or what listens at its address) that sends an answer no
    call asked for: the connection is dropped with that reason, the next
    call connects again, and the supervisor goes on (hiredis's own
    asynchronous interface aborts the process on such an answer)."""
    sock = str(tmp_path / "fake.sock")
    srv = subprocess.Popen([sys.executable, "-c", FAKE_REDIS, sock])
    try:
        deadline = time.monotonic() + slack(10)
        while not os.path.exists(sock):
            assert time.monotonic() < deadline and srv.poll() is None, "the fake server did not start"
            time.sleep(0.02)
        r = run_script(tmp_path, "def tick(ctx):\n    for _ in range(3):\n"
                       "        ctx.log.info('got %r' % (ctx.state.get('x'),))\n",
                       "--state", "unix://" + sock, "--json", timeout=slack(60))
    finally:
        srv.kill()
        srv.wait(timeout=30)
    got = [json.loads(x)["message"] for x in r.err.splitlines() if x.startswith('{"type":"log"')]
    assert r.code == 0 and len(got) == 3, r
    # each call is answered (None: the key is absent) before the stray answer is read
    assert all(g in ("got None", "got {'error': 'state get: redis: connection lost: the server sent an answer "
                                  "nobody asked for'}") for g in got), got
    assert "lost the server (the server sent an answer nobody asked for)" in r.err, r


def test_a_redis_host_name_is_resolved_once_at_start(tmp_path):
    """--state redis://NAME:PORT: the name is resolved as jailrun starts,
    not at each connection (that would wait on DNS on the loop). Run in a
    mount namespace whose /etc/hosts the test controls: after the start the
    name is made to point elsewhere and the connection is dropped; the
    worker's next call connects again, to the address found at start."""
    if not shutil.which("unshare"):
        pytest.skip("needs unshare(1) (util-linux)")
    (tmp_path / "redis").mkdir()
    redis = Redis(tmp_path / "redis", True)
    redis.start()
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 jr-redis-test\n")
    script = tmp_path / "w.py"
    script.write_text(REDIS_WORKER)
    p = subprocess.Popen(["unshare", "-m", "sh", "-c", 'mount --make-rprivate / && mount --bind "$0" /etc/hosts && '
                          'exec "$@"', str(hosts), JAILRUN, "--state", "redis://jr-redis-test:%d" % redis.port,
                          "--name", "rn", "--interval", "50ms", str(script)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    seen = []
    try:
        seen += wait_line(p.stderr, "INFO set 1 ", timeout=slack(20))
        with open(hosts, "r+") as f:  # the same file (inode) the namespace sees
            f.write("127.0.0.2 jr-redis-test\n")
        redis.cli("CLIENT", "KILL", "TYPE", "normal")
        n = max(ok_lines(seen, "set"))
        while True:
            seen += wait_line(p.stderr, "INFO set ", timeout=slack(20))
            if max(ok_lines(seen, "set")) >= n + 5:
                break
        p.send_signal(signal.SIGTERM)
        res, _ = finish(p, timeout=slack(30))
    finally:
        stop(p)
        redis.kill()
    replies = ok_lines(seen + res.err.splitlines(), "set")
    assert all(v == {"ok": True} for v in replies.values()), replies


FLOOD8 = r"""
import json, os, socket, time
s = socket.socket(fileno=os.dup(3))
def tick(ctx):
    t, i, oks, errors, last = time.monotonic(), 0, 0, set(), None
    # always 8 sets under way, for DURATION s and until they succeed again (4 DURATION at most)
    while time.monotonic() - t < DURATION or (last != {"ok": True} and time.monotonic() - t < 4 * DURATION):
        for k in range(8):
            i += 1
            s.send(json.dumps({"type": "call", "id": i, "op": "state.set",
                               "args": {"key": "u%d" % k, "value": "q" * 2000}}).encode())
        for k in range(8):
            last = json.loads(s.recv(1 << 20))["result"]
            if "error" not in last:
                oks += 1
                if oks == 1:
                    os.write(2, b"FIRST OK\n")
            elif not errors:
                os.write(2, b"FIRST ERROR\n")
            errors |= {last["error"]} if "error" in last else set()
    os.write(2, b"SUMMARY %s\n" % json.dumps({"oks": oks, "errors": sorted(errors)[:50], "last": last}).encode())
"""


def test_redis_killed_with_calls_under_way(tmp_path):
    """Redis SIGKILLed while a jail keeps 8 sets under way: each of those
    gets an error saying the connection was lost, in words (the reason is
    copied before the connection that held it is freed), and later calls
    connect again once Redis is back."""
    (tmp_path / "redis").mkdir()
    redis = Redis(tmp_path / "redis", False)
    redis.start()
    pol = tmp_path / "noguard.json"
    pol.write_text('{"python": {"guard": false}}')
    p = start(tmp_path, FLOOD8.replace("DURATION", str(slack(3))), "--policy", str(pol), "--state", redis.url,
              "--tick-timeout", "300")
    seen = []
    try:
        seen += wait_line(p.stderr, "FIRST OK", timeout=slack(20))
        redis.kill()
        seen += wait_line(p.stderr, "FIRST ERROR", timeout=slack(20))
        redis.start()
        seen += wait_line(p.stderr, "SUMMARY ", timeout=slack(60))
        res, _ = finish(p, timeout=slack(60))
    finally:
        stop(p)
        redis.kill()
    got = json.loads(seen[-1].split("SUMMARY ", 1)[1])
    assert got["errors"] and got["last"] == {"ok": True}, got
    for e in got["errors"]:
        # a reason in words (freed bytes read as one would be a character or two), or the server's own error
        assert re.fullmatch(r"state(: redis: cannot connect| set: redis: connection lost): [A-Za-z][A-Za-z ,.()'0-9/-]{9,}",
                            e) or re.fullmatch(r"state set: redis: [A-Z]+ [ -~]+", e) or \
            e == "the state store is unavailable (the operator's log says why)", e
    assert res.code == 0, res


UNRESOLVED = """
import time
def tick(ctx):
    t = time.monotonic()
    got = [ctx.state.get("k") for _ in range(200)]
    ctx.log.info("%d %s %.3f" % (len(set(map(str, got))), got[0], time.monotonic() - t))
"""


def test_a_redis_host_that_cannot_be_resolved_at_start(tmp_path):
    """A Redis host name that cannot be resolved when jailrun starts (in a
    mount namespace whose resolver is a closed port on 127.0.0.1, and no
    hosts entry): never looked up again, so no call waits on DNS; every
    call is an error at once, and the operator's log says why once, not
    at every call."""
    if not shutil.which("unshare"):
        pytest.skip("needs unshare(1) (util-linux)")
    hosts, resolv = tmp_path / "hosts", tmp_path / "resolv.conf"
    hosts.write_text("127.0.0.1 localhost\n")
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    script = tmp_path / "w.py"
    script.write_text(UNRESOLVED)
    r = subprocess.run(["unshare", "-m", "sh", "-c", 'mount --make-rprivate / && mount --bind "$0" /etc/hosts && '
                        'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"', str(hosts), str(resolv),
                        JAILRUN, "--state", "redis://jr-no-such-redis:6379", "--json", str(script)],
                       capture_output=True, text=True, timeout=slack(120))
    logs = [json.loads(x)["message"] for x in r.stderr.splitlines() if x.startswith('{"type":"log"')]
    assert r.returncode == 0 and len(logs) == 1, r
    kinds, first, _ = logs[0].split(" ", 2)
    assert kinds == "1" and "the state store is unavailable" in logs[0], logs
    assert r.stderr.count("cannot resolve jr-no-such-redis") == 1, r.stderr
    assert r.stderr.count("was not resolved when this program started") == 1, r.stderr


def test_an_answer_to_a_jail_that_closed_its_channel_is_dropped(tmp_path):
    """A jail that sends state calls and exits before their answers: the
    answers are dropped, not taken for a jail that does not read its
    channel (a ProtocolError would hide how the jail ended)."""
    (tmp_path / "redis").mkdir()
    redis = Redis(tmp_path / "redis", False)
    redis.start()
    pol = tmp_path / "noguard.json"
    pol.write_text('{"python": {"guard": false}}')
    src = r"""
import json, os, socket, threading, time
def tick(ctx):
    s = socket.socket(fileno=3)
    for i in range(1, 9):
        s.send(json.dumps({"type": "call", "id": i, "op": "state.set",
                           "args": {"key": "k%d" % i, "value": "v" * 200000}}).encode())
    time.sleep(0.03)
    os._exit(5)
"""
    try:
        r = run_script(tmp_path, src, "--policy", str(pol), "--state", redis.url, "--json", timeout=slack(60))
    finally:
        redis.kill()
    assert "does not read its channel" not in r.err, r
    assert json.loads(r.out.strip().splitlines()[-1])["error"]["type"] != "ProtocolError", r


# --- a full disk ------------------------------------------------------------------

@pytest.fixture
def small_fs(tmp_path):
    """A 2 MiB tmpfs of the test's own, unmounted at the end."""
    with private_tmpfs(tmp_path / "small", "2m") as d:
        yield d


DISK_WORKER = """
import json
def say(what, r):
    ctx_.log.info(what, 0, json.dumps(r))
def tick(ctx):
    global ctx_
    ctx_ = ctx
    say("write", ctx.files.write("keep.txt", "A" * 40000))
    say("set", ctx.state.set("keep", "S" * 1000))
    big = 0
    while big < 100 and "error" not in ctx.files.write("fill%d" % big, "x" * 262144):
        big += 1
    small = 0
    while small < 1000 and "error" not in ctx.files.write("small%d" % small, "x" * 4096):
        small += 1
    say("full", [big, small])
    say("overwrite", ctx.files.write("keep.txt", "B" * 200000))
    say("newfile", ctx.files.write("new.txt", "N" * 100000))
    say("reset", ctx.state.set("keep", "T" * 400000))
    say("newkey", ctx.state.set("new", "T" * 400000))
    say("read", ctx.files.read("keep.txt")["content"] == "A" * 40000)
    say("get", ctx.state.get("keep") == "S" * 1000)
    for k in range(big):
        ctx.files.delete("fill%d" % k)
    say("overwrite2", ctx.files.write("keep.txt", "C" * 50000))
    say("reset2", ctx.state.set("keep", "U" * 400000))
    say("get2", ctx.state.get("keep") == "U" * 400000)
"""


def test_disk_full(tmp_path, small_fs):
    """The workspace and the SQLite store on a 2 MiB file system that the
    worker fills: writes and sets that need space return errors naming
    ENOSPC, what was stored before is intact (a write goes to a temporary
    file renamed over the old one; a set is one SQLite transaction), the
    job goes on, and once files are deleted writes and sets work again."""
    ws, db = small_fs / "ws", small_fs / "state.sqlite"
    p = start(tmp_path, DISK_WORKER, "--workspace", str(ws), "--state", str(db), "--name", "df")
    res, _ = finish(p, timeout=slack(60))
    assert res.code == 0, res
    said = {}
    for line in res.err.splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[0] == "INFO":
            said[parts[1]] = json.loads(parts[3])
    assert said["write"] == {"ok": True, "size": 40000} and said["set"] == {"ok": True}, res
    assert said["full"][1] < 1000, "the file system never filled: %r" % res
    for what in ("overwrite", "newfile"):
        assert said[what] == {"error": "%s: the host's disk is full (ENOSPC)" %
                              ("keep.txt" if what == "overwrite" else "new.txt")}, (what, res)
    for what in ("reset", "newkey"):
        assert said[what] == {"error": "state set: the host's disk is full (ENOSPC); nothing was changed"}, res
    assert said["read"] is True and said["get"] is True, res
    assert said["overwrite2"] == {"ok": True, "size": 50000} and said["reset2"] == {"ok": True}, res
    assert said["get2"] is True, res
    # what the host sees: the last writes, no temporary file, a sound store
    assert (ws / "keep.txt").read_text() == "C" * 50000
    assert not (ws / "new.txt").exists()
    assert not [n for n in os.listdir(ws) if n.startswith(".jailrun-tmp")], os.listdir(ws)
    con = sqlite3.connect(str(db))
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert dict(con.execute("SELECT key, value FROM kv WHERE ns = 'df'")) == {"keep": json.dumps("U" * 400000)}
    finally:
        con.close()


# --- HTTP servers that hang or reset ---------------------------------------------

class BadServer:
    """A raw HTTP server on 127.0.0.1 that misbehaves by path: /hang reads
    the request and never answers, /stall sends the headers and part of the
    body then nothing, /reset sends part of a response then a TCP reset,
    /cut closes in the middle of the headers; /gate?n=K answers only when
    the test lets tick K go. `backlog` is a port that listens and never
    accepts (the kernel completes the handshake; nobody reads)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.quiet = socket.socket()
        self.quiet.bind(("127.0.0.1", 0))
        self.quiet.listen(64)
        self.backlog = self.quiet.getsockname()[1]
        self.held = []
        self.gates = {}
        self.lock = threading.Lock()
        threading.Thread(target=self.serve, daemon=True).start()

    def gate(self, n):
        with self.lock:
            return self.gates.setdefault(n, (threading.Event(), threading.Event()))

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.one, args=(c,), daemon=True).start()

    def one(self, c):
        req = b""
        while b"\r\n\r\n" not in req:
            data = c.recv(4096)
            if not data:
                c.close()
                return
            req += data
        path = req.split(b" ")[1].decode()
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n"
        if path == "/hang":
            self.held.append(c)
        elif path == "/stall":
            c.sendall(head + b"x" * 10)
            self.held.append(c)
        elif path == "/reset":
            c.sendall(head + b"x" * 10)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        elif path == "/short":
            c.sendall(head + b"x" * 10)
            c.close()
        elif path == "/cut":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Ty")
            c.close()
        elif path.startswith("/gate?n="):
            arrived, go = self.gate(int(path.partition("=")[2]))
            arrived.set()
            go.wait(600)
            c.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            c.close()
        else:
            c.close()

    def close(self):
        self.sock.close()
        self.quiet.close()
        for c in self.held:
            c.close()
        for _, go in self.gates.values():
            go.set()


HTTP_WORKER = """
import json, time
n = 0
def tick(ctx):
    global n
    for what in ("hang", "stall", "reset", "short", "cut", "backlog"):
        url = "http://127.0.0.1:%d/" % (BACKLOG if what == "backlog" else PORT) + what
        t0 = time.monotonic()
        r = ctx.http.get(url, timeout=T)
        ctx.log.info("got", what, json.dumps({"n": n, "r": r, "s": time.monotonic() - t0}))
    ctx.log.info("gate", n, json.dumps(ctx.http.get("http://127.0.0.1:%d/gate?n=%d" % (PORT, n))))
    n += 1
"""


def fds_and_threads(pid):
    return len(os.listdir("/proc/%d/fd" % pid)), len(os.listdir("/proc/%d/task" % pid))


def test_http_servers_that_hang_or_reset(tmp_path):
    """Against servers that hang (no answer; headers then a stalled body;
    a listener that never accepts) every request returns {"error": "timed
    out"} once its own timeout has passed, and against ones that reset or
    close mid-response an error saying so at once (libcurl calls a response
    cut in its headers a success: jailrun does not); four ticks of that in one jail,
    and jailrun's fds and threads are the same at the end of each (taken
    while the tick waits on a gate the test holds)."""
    t = round(max(0.8, slack(0.5)), 2)  # an immediate error must come well within it, on this host too
    srv = BadServer()
    pol = tmp_path / "http.json"
    pol.write_text('{"http": {"allow_addresses": ["127.0.0.1"], "rate_per_second": 0}}')
    src = "PORT, BACKLOG, T = %d, %d, %r\n" % (srv.port, srv.backlog, t) + HTTP_WORKER
    ticks = 4
    p = start(tmp_path, src, "--policy", str(pol), "--ticks", str(ticks), "--interval", "10ms")
    counts = []
    try:
        for n in range(ticks):
            arrived, go = srv.gate(n)
            assert arrived.wait(slack(30)), "tick %d never reached its gate" % n
            counts.append(fds_and_threads(p.pid))
            go.set()
        res, _ = finish(p, timeout=slack(30))
    finally:
        stop(p)
        srv.close()
    assert res.code == 0, res
    assert counts[1:] == counts[1:2] * (ticks - 1), "jailrun's (fds, threads) at each gate: %r" % counts
    got = {}
    for line in res.err.splitlines():
        if line.startswith("INFO got "):
            _, _, what, rest = line.split(" ", 3)
            v = json.loads(rest)
            got.setdefault(what, []).append(v)
    assert sorted(got) == ["backlog", "cut", "hang", "reset", "short", "stall"], res
    said = {"cut": "the connection closed in the middle of the response's headers",
            "short": "the connection closed before the end of the response's body"}
    for what, vs in got.items():
        assert [v["n"] for v in vs] == list(range(ticks)), (what, vs)
        for v in vs:
            assert list(v["r"]) == ["error"], (what, v)
            if what in ("hang", "stall", "backlog"):
                assert v["r"]["error"] == "timed out" and t * 0.9 <= v["s"] < t + slack(2), (what, v)
            elif what == "reset":  # libcurl's words: on the answer, or, reset sooner, on the request
                assert ("Connection reset by peer" in v["r"]["error"] or
                        v["r"]["error"].startswith("Failed sending data to the peer")) and v["s"] < t, (what, v)
            else:
                assert v["r"]["error"] == said[what] and v["s"] < t, (what, v)


# --- a jail killed in the middle of a message -------------------------------------

BIG_WORKER = """
big = "x" * 400000
def tick(ctx):
    ctx.log.info("ready")
    while True:
        ctx.state.set("big", big)
        ctx.state.get("big")
"""


def job_groups(pid):
    """The job's cgroup directories that exist, in any hierarchy."""
    roots = ["/sys/fs/cgroup"] + [os.path.join("/sys/fs/cgroup", e) for e in os.listdir("/sys/fs/cgroup")]
    return [d for d in (os.path.join(r, "jailrun", "job-%d" % pid) for r in roots) if os.path.isdir(d)]


def jail_children(pid):
    """jailrun's children that run as a jail's uid (not its own helper)."""
    out = []
    for t in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, t)) as f:
            for c in f.read().split():
                with open("/proc/%s/status" % c) as s:
                    uid = next(int(line.split()[1]) for line in s if line.startswith("Uid:"))
                if uid != 0:
                    out.append(int(c))
    return out


def test_jail_killed_mid_message(tmp_path):
    """The jail is SIGKILLed while it sends 400 KB sets and reads 400 KB
    replies as fast as it can: jailrun reports the death (exit 137,
    --json status "signal", "jail killed by signal 9 (Killed)") without
    waiting, and leaves no process, cgroup or uid lock; the store holds
    the value whole or not at all. Eight trials at random moments."""
    import random
    rnd = random.Random(4)
    for trial in range(8):
        db = tmp_path / ("t%d.sqlite" % trial)
        p = start(tmp_path, BIG_WORKER, "--json", "--state", str(db))
        try:
            wait_line(p.stderr, '"ready"', timeout=slack(20))
            time.sleep(rnd.uniform(0, 0.3))
            kids = jail_children(p.pid)
            assert len(kids) == 1, kids
            os.kill(kids[0], signal.SIGKILL)
            res, _ = finish(p, timeout=slack(20))
        finally:
            stop(p)
        assert res.code == 137, res
        out = res.json
        assert out["status"] == "signal" and out["error"]["message"] == "jail killed by signal 9 (Killed)", out
        assert job_groups(p.pid) == [], job_groups(p.pid)
        if not db.exists():  # killed before its first call
            continue
        con = sqlite3.connect(str(db))
        try:
            assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            if con.execute("SELECT 1 FROM sqlite_master WHERE name = 'kv'").fetchone():
                assert [len(v) for v, in con.execute("SELECT value FROM kv")] in ([], [400002]), trial
        finally:
            con.close()


# --- a cgroup write the kernel refuses ----------------------------------------------

CPU_V1 = "/sys/fs/cgroup/cpu"


def cgroup_roots():
    return ["/sys/fs/cgroup"] + [os.path.join("/sys/fs/cgroup", e) for e in os.listdir("/sys/fs/cgroup")]


def jailrun_backend():
    out = subprocess.run([JAILRUN, "--version", "--verbose"], capture_output=True, text=True, timeout=60).stdout
    return next((line for line in out.splitlines() if line.startswith("cgroup backend:")), "")


@pytest.fixture
def quota_parent():
    """A cgroup parent whose cpu.cfs_quota_us (v1) is half a core: the
    kernel then refuses a child's quota of a whole core (EINVAL; a v1 rule,
    cgroup v2 clamps instead). Skips where the host does not refuse it."""
    if "cpu at " + CPU_V1 not in jailrun_backend():
        pytest.skip("jailrun does not use a cgroup v1 cpu hierarchy at %s here (%s)" % (CPU_V1, jailrun_backend()))
    parent = "jailrun-faults-%d" % os.getpid()
    d = os.path.join(CPU_V1, parent)
    os.mkdir(d)
    try:
        with open(os.path.join(d, "cpu.cfs_quota_us"), "w") as f:
            f.write("50000")
        os.mkdir(os.path.join(d, "probe"))
        try:
            with open(os.path.join(d, "probe", "cpu.cfs_quota_us"), "w") as f:
                f.write("100000")
            refused = None
        except OSError as e:
            refused = e.errno
        finally:
            os.rmdir(os.path.join(d, "probe"))
        if refused != 22:
            pytest.skip("the host's kernel takes a child quota above its parent's (errno %s)" % refused)
        yield parent
    finally:
        for root in cgroup_roots():
            try:
                os.rmdir(os.path.join(root, parent))
            except OSError:
                pass


def test_a_refused_cgroup_write_refuses_the_job(tmp_path, quota_parent):
    """The kernel refuses the job's cpu limit: jailrun runs nothing, exits
    3 with a SetupError naming the file, the value and the errno, and
    leaves no group; the same job within the parent's quota runs."""
    import re
    script = tmp_path / "s.py"
    script.write_text("print('ran')\n")
    p = subprocess.run([JAILRUN, "--json", "--profile", "exec", "--cgroup-parent", quota_parent, str(script)],
                       capture_output=True, text=True, timeout=slack(60))
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert p.returncode == 3 and out["status"] == "setup" and out["error"]["type"] == "SetupError", p
    assert re.fullmatch(r"jail set-up failed: write 100000 to %s/%s/job-\d+/cpu\.cfs_quota_us: Invalid argument"
                        % (re.escape(CPU_V1), quota_parent), out["error"]["message"]), out
    assert "ran" not in p.stdout, p
    left = [e for r in cgroup_roots() if os.path.isdir(os.path.join(r, quota_parent))
            for e in os.listdir(os.path.join(r, quota_parent)) if e.startswith("job-")]
    assert left == [], left
    p = subprocess.run([JAILRUN, "--profile", "exec", "--cpus", "0.25", "--cgroup-parent", quota_parent, str(script)],
                       capture_output=True, text=True, timeout=slack(60))
    assert p.returncode == 0 and p.stdout == "ran\n", p
