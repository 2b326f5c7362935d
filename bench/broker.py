#!/usr/bin/python3.11
"""bench/broker.py: the cost of a ctx call (issue 6).

A worker times its own ctx calls with time.perf_counter_ns inside the
jail: ctx.state.get of a small value, ctx.state.set (durable: fsync'd
before it returns), ctx.files.read of a 50 KB file. Next to them, the floor:
bench/pingpong.c, two processes bouncing a datagram of the same size over a
SOCK_SEQPACKET pair. Both in two placements: "same" (jailrun and its jail
pinned to CPU 0; the ping-pong pair on CPU 0) and "cross" (jailrun on
CPU 1, its jail moved to CPU 0 before it starts timing; the pair on CPUs 0
and 1).

Writes bench/out/broker.json and prints a summary. Knobs: BROKER_N (gets,
default 20000), BROKER_SETS (default 2000), BROKER_READS (default 2000),
BROKER_STATE (a --state URL such as unix:///PATH/redis.sock instead of a
SQLite file), BROKER_PLACEMENTS (default same,cross).
"""
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
JAILRUN = os.path.realpath(os.environ.get("JAILRUN") or os.path.join(HERE, "..", "supervisor", "jailrun"))
N = int(os.environ.get("BROKER_N", "20000"))
SETS = int(os.environ.get("BROKER_SETS", "2000"))
READS = int(os.environ.get("BROKER_READS", "2000"))
STATE = os.environ.get("BROKER_STATE")  # a --state (redis://..., unix://...) instead of a SQLite file
PLACEMENTS = os.environ.get("BROKER_PLACEMENTS", "same,cross").split(",")

WORKER = """
import time
def stats(ts):
    ts.sort()
    return {"p50_us": ts[len(ts) // 2] / 1000, "p99_us": ts[len(ts) * 99 // 100] / 1000,
            "mean_us": sum(ts) / len(ts) / 1000, "n": len(ts)}
def timed(n, fn):
    ts = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        fn(i)
        ts.append(time.perf_counter_ns() - t0)
    return stats(ts)
def tick(ctx):
    time.sleep(0.5)  # the bench moves this process to its CPU meanwhile
    ctx.state.set("counter", 12345)
    ctx.files.write("fifty", "x" * 51200)
    out = {}
    timed(1000, lambda i: ctx.state.get("counter"))
    out["state.get"] = timed(N, lambda i: ctx.state.get("counter"))
    out["state.set"] = timed(SETS, lambda i: ctx.state.set("k%d" % (i % 100), {"i": i}))
    out["files.read_50k"] = timed(READS, lambda i: ctx.files.read("fifty"))
    ctx.log.info(json.dumps(out))
"""


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def run_worker(tmp, placement):
    src = WORKER.replace("N,", "%d," % N).replace("SETS,", "%d," % SETS).replace("READS,", "%d," % READS)
    src = "import json\n" + src.replace("lambda i: ", "lambda i: ")
    path = os.path.join(tmp, "bench_worker.py")
    with open(path, "w") as f:
        f.write(src)
    pol = os.path.join(tmp, "p.json")
    with open(pol, "w") as f:  # the bench's lambdas are fine in profile worker; only limits matter
        json.dump({"limits": {"timeout": 600}}, f)
    cpu = "0" if placement == "same" else "1"
    cmd = ["taskset", "-c", cpu, JAILRUN, "--json", "--policy", pol, "--state", STATE or os.path.join(tmp, "s.sqlite"),
           "--workspace", os.path.join(tmp, "ws"), "--name", "bench-" + placement, path]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if placement == "cross":
        deadline = time.monotonic() + 5
        jail = []
        while not jail and time.monotonic() < deadline:
            jail = children(p.pid)
            time.sleep(0.01)
        for pid in jail:  # the jail's init is the interpreter: move it to CPU 0
            subprocess.run(["taskset", "-a", "-p", "-c", "0", str(pid)], check=True, capture_output=True)
    out, err = p.communicate(timeout=900)
    if p.returncode != 0:
        raise SystemExit("bench/broker.py: worker failed: %s %s" % (out[-2000:], err[-2000:]))
    for line in err.splitlines():
        if line.startswith("{") and json.loads(line).get("type") == "log":
            return json.loads(json.loads(line)["message"])
    raise SystemExit("bench/broker.py: no result from the worker: " + err[-2000:])


def pingpong(tmp, placement):
    exe = os.path.join(tmp, "pingpong")
    if not os.path.exists(exe):
        subprocess.run(["cc", "-O2", "-o", exe, os.path.join(HERE, "pingpong.c")], check=True)
    return json.loads(subprocess.run([exe, placement, str(N)], capture_output=True, text=True, check=True).stdout)


def main():
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    res = {"loadavg": open("/proc/loadavg").read().split()[:3]}
    with tempfile.TemporaryDirectory() as tmp:
        for placement in PLACEMENTS:
            res[placement] = {"pingpong": pingpong(tmp, placement), "worker": run_worker(tmp, placement)}
    out = "broker-redis.json" if STATE else "broker.json"
    with open(os.path.join(HERE, "out", out), "w") as f:
        json.dump(res, f, indent=2)
    for placement in PLACEMENTS:
        pp, w = res[placement]["pingpong"], res[placement]["worker"]
        g = w["state.get"]
        print("%-5s ping-pong p50 %.1f us p99 %.1f | state.get p50 %.1f us p99 %.1f (%.2fx the floor) | "
              "state.set p50 %.1f us p99 %.1f | files.read 50 KB p50 %.1f us p99 %.1f"
              % (placement, pp["p50_us"], pp["p99_us"], g["p50_us"], g["p99_us"], g["p50_us"] / pp["p50_us"],
                 w["state.set"]["p50_us"], w["state.set"]["p99_us"], w["files.read_50k"]["p50_us"],
                 w["files.read_50k"]["p99_us"]))


if __name__ == "__main__":
    main()
