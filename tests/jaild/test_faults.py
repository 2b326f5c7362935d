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
