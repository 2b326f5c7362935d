#!/usr/bin/python3.11
"""bench/sessions.py: exec sessions from the Python client (issue 17).

On one jaild of its own (warm zygotes on, the bench's cgroup parent and
uids), through clients/python's SandboxClient, the way a code-execution
service's users drive it:

  setup     `await client.setup()` (POST /v1/sessions: a session's jail
            cloned from the exec zygote, numpy and pandas imported in it,
            answered once its interpreter is ready) timed in the client;
            each session is cleaned up after it (not timed).
  execute   `await client.execute_code("1+1")` on one session, round trip
            in the client (the answer carries "2").
  cold      `python3.11 -c "1+1"` started and waited for (subprocess).
  bwrap     `bwrap --unshare-all --die-with-parent --ro-bind / / --dev /dev
            --proc /proc python3.11 -c "1+1"`: a fresh interpreter in a
            fresh sandbox of another tool.

The four kinds are interleaved in rounds so a shared host's drift hits all
alike. Prints p50/p99 of each and the ratios, and writes
bench/out/sessions.json. Knobs: JAILD_BENCH_SETUPS (200),
JAILD_BENCH_EXECS (2000), JAILD_BENCH_STARTS (100 cold and bwrap starts),
JAILD_BENCH_ROUNDS (10). JAILD names the binary under test.

  bench/sessions.py
"""
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "clients", "python"))
import jaild as jb  # noqa: E402  (the daemon benchmark's jaild and helpers)
from jailrun_client import SandboxClient  # noqa: E402

PY = jb.PY
SETUPS = int(os.environ.get("JAILD_BENCH_SETUPS", "200"))
EXECS = int(os.environ.get("JAILD_BENCH_EXECS", "2000"))
STARTS = int(os.environ.get("JAILD_BENCH_STARTS", "100"))
ROUNDS = int(os.environ.get("JAILD_BENCH_ROUNDS", "10"))
COLD = [PY, "-c", "1+1"]
BWRAP = ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
         PY, "-c", "1+1"]


def summary(xs):
    return {"n": len(xs), "p50_ms": jb.pct(xs, 50) * 1e3, "p99_ms": jb.pct(xs, 99) * 1e3,
            "mean_ms": statistics.mean(xs) * 1e3, "min_ms": min(xs) * 1e3, "max_ms": max(xs) * 1e3}


def start(cmd):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if p.returncode:
        jb.die("%s: exit %d: %s" % (cmd[0], p.returncode, p.stderr.decode(errors="replace")[:300]))
    return dt


async def setups(sock, n, out):
    for _ in range(n):
        c = SandboxClient(socket=sock)
        t0 = time.perf_counter()
        await c.setup()
        out.append(time.perf_counter() - t0)
        await c.cleanup()


async def executes(client, n, out):
    for _ in range(n):
        t0 = time.perf_counter()
        r = await client.execute_code("1+1")
        out.append(time.perf_counter() - t0)
        if not r.success or r.result != "2":
            jb.die("execute_code('1+1') answered %r" % (r.data,))


async def bench(sock):
    res = {"setup": [], "execute": [], "cold": [], "bwrap": []}
    async with SandboxClient(socket=sock) as warmup:  # the first request's costs are nobody's
        await warmup.execute_code("1+1")
    await setups(sock, 3, [])
    [start(COLD) for _ in range(3)]
    [start(BWRAP) for _ in range(3)]
    async with SandboxClient(socket=sock) as c:
        await executes(c, 20, [])
        for _ in range(ROUNDS):
            await setups(sock, SETUPS // ROUNDS, res["setup"])
            await executes(c, EXECS // ROUNDS, res["execute"])
            res["cold"] += [start(COLD) for _ in range(STARTS // ROUNDS)]
            res["bwrap"] += [start(BWRAP) for _ in range(STARTS // ROUNDS)]
    return res


def main():
    if os.geteuid() != 0:
        jb.die("needs root (jaild)")
    if not shutil.which("bwrap"):
        jb.die("needs bubblewrap (apt-get install bubblewrap)")
    jb.remove_parents()
    jd = jb.Jaild()
    try:
        health = jd.ok("GET", "/v1/health").json()
        if not (health.get("zygotes") or {}).get("exec", {}).get("ready"):
            jb.die("the exec zygote is not ready: %s" % json.dumps(health)[:400])
        load0 = jb.loadavg()
        raw = asyncio.run(bench(jd.socket))
        spawned = jd.ok("GET", "/v1/health").json()["zygotes"]["exec"]["spawned"]
    finally:
        jd.close()
    r = {k: summary(v) for k, v in raw.items()}
    r["warm_sessions"] = spawned
    r["loadavg_before"] = load0
    r["ratios"] = {
        "setup_p50_vs_cold": r["setup"]["p50_ms"] / r["cold"]["p50_ms"],
        "setup_p50_vs_bwrap": r["setup"]["p50_ms"] / r["bwrap"]["p50_ms"],
        "execute_p50_vs_cold": r["execute"]["p50_ms"] / r["cold"]["p50_ms"],
        "execute_p50_vs_bwrap": r["execute"]["p50_ms"] / r["bwrap"]["p50_ms"],
    }
    r["host"] = {"kernel": platform.release(), "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    os.makedirs(jb.OUT, exist_ok=True)
    with open(os.path.join(jb.OUT, "sessions.json"), "w") as f:
        json.dump(r, f, indent=1)
    print("%-34s %8s %8s %8s %6s" % ("", "p50 ms", "p99 ms", "max ms", "n"))
    names = {"setup": "setup() (warm session)", "execute": "execute_code(\"1+1\") round trip",
             "cold": "python3.11 -c 1+1 (cold)", "bwrap": "bwrap + python3.11 -c 1+1"}
    for k in ("setup", "execute", "cold", "bwrap"):
        s = r[k]
        print("%-34s %8.2f %8.2f %8.2f %6d" % (names[k], s["p50_ms"], s["p99_ms"], s["max_ms"], s["n"]))
    for k, v in r["ratios"].items():
        print("%-34s %8.3f" % (k, v))
    print("sessions cloned from the warm zygote: %d; load average before: %s" % (spawned, load0))


if __name__ == "__main__":
    main()
