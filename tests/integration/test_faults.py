"""Faults from outside the jail, each with its documented outcome (jailrun(1)
FAULTS, docs/faults.md) and nothing acknowledged lost: the Redis store
going away and coming back, a full disk under the workspace and the SQLite
store, HTTP servers that hang or reset, a jail killed in the middle of a
large message, and a cgroup write the kernel refuses."""
import json
import os
import signal
import socket
import sqlite3
import subprocess
import time

import pytest

from conftest import JAILRUN, NATIVE_POLICY
from hostprobe import slack
from jr_helpers import finish, host_stays_clean, start, stop, wait_line  # noqa: F401


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
