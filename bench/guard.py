#!/usr/bin/python3.11
"""bench/guard.py: the cost of the Python layer (issue 5).

1. Guard overhead: the same tick(ctx) in profile worker with its Python
   layer on (the default) and off (a policy with python.guard false: the
   Python surface of profile exec, the same kernel jail). Each tick times
   itself with time.perf_counter inside the jail and logs it; we compare
   the medians of the per-tick times. Two ticks: CPU-bound pure Python, and
   pandas-heavy.
2. Validator: wall time of `jailrun --profile strategy --check` on a
   100 KB strategy, minus the same on a 1-line one (the jail and the
   interpreter cost the same in both), and the validator alone timed in
   python3.11 outside any jail.

Writes bench/out/guard.json and prints a summary. Knobs: GUARD_TICKS
(default 30), GUARD_REPS (default 15).
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
JAILRUN = os.path.realpath(os.environ.get("JAILRUN") or os.path.join(HERE, "..", "supervisor", "jailrun"))
TICKS = int(os.environ.get("GUARD_TICKS", "30"))
REPS = int(os.environ.get("GUARD_REPS", "15"))

CPU_TICK = """
import time
def work():
    total = 0
    for i in range(200000):
        total += (i * i) % 7
    d = {}
    for i in range(20000):
        d[str(i)] = [i, i + 1]
    return total + len(d)
def tick(ctx):
    t0 = time.perf_counter()
    work()
    ctx.log.info("T", time.perf_counter() - t0)
"""

PANDAS_TICK = """
import time
import numpy as np
import pandas as pd
rows = np.arange(20000, dtype=float)
def tick(ctx):
    t0 = time.perf_counter()
    df = pd.DataFrame({"close": np.sin(rows / 50.0) + rows / 1000.0, "g": rows.astype(int) % 10})
    df["sma"] = df["close"].rolling(20).mean()
    df["ema"] = df["close"].ewm(span=12).mean()
    s = df.groupby("g")["close"].agg(["mean", "std"])
    out = df.describe().to_json() + s.to_csv()
    ctx.log.info("T", time.perf_counter() - t0, len(out))
"""


def tick_times(path, policy):
    args = [JAILRUN, "--json", "--ticks", str(TICKS)] + (["--policy", policy] if policy else []) + [path]
    p = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise SystemExit("bench/guard.py: %s failed: %s" % (" ".join(args), p.stderr[-2000:]))
    out = []
    for line in p.stderr.splitlines():
        if line.startswith("{"):
            msg = json.loads(line)["message"]
            if msg.startswith("T "):
                out.append(float(msg.split()[1]))
    return out[1:]  # the first tick warms caches


def overhead(tmp, name, src, off):
    path = os.path.join(tmp, name + ".py")
    with open(path, "w") as f:
        f.write(src)
    on_t, off_t = [], []
    for _ in range(max(1, REPS // 5)):  # interleaved, so drift hits both
        on_t += tick_times(path, None)
        off_t += tick_times(path, off)
    on, offm = statistics.median(on_t), statistics.median(off_t)
    return {"tick": name, "guard_on_median_ms": on * 1e3, "guard_off_median_ms": offm * 1e3,
            "ticks": [len(on_t), len(off_t)], "overhead": on / offm - 1}


def load(tmp, off):
    """Wall time of a whole one-tick job (clone, jail, interpreter, load,
    one empty tick, teardown), guard on and off: what the layer adds to a
    job's start."""
    path = os.path.join(tmp, "tiny.py")
    with open(path, "w") as f:
        f.write("import json\ndef tick(ctx):\n    pass\n")
    on, offt = [], []
    for _ in range(REPS * 2):
        for policy, acc in ((None, on), (off, offt)):
            args = [JAILRUN] + (["--policy", policy] if policy else []) + [path]
            t0 = time.perf_counter()
            subprocess.run(args, check=True, capture_output=True, timeout=60)
            acc.append((time.perf_counter() - t0) * 1e3)
    return {"job_guard_on_median_ms": statistics.median(on), "job_guard_off_median_ms": statistics.median(offt),
            "runs": len(on)}


def big_strategy():
    """About 100 KB of ordinary strategy code."""
    unit = '''
def helper_@@(sdk, params):
    closes = [c["close"] for c in sdk.candles[-50:]]
    if len(closes) < 20:
        return None
    mean = sum(closes) / len(closes)
    var = sum((x - mean) ** 2 for x in closes) / len(closes)
    signal = {"mean": mean, "var": var, "name": "helper_@@"}
    if closes[-1] > mean + 2 * math.sqrt(var):
        signal["side"] = "sell"
    elif closes[-1] < mean - 2 * math.sqrt(var):
        signal["side"] = "buy"
    return signal
'''
    parts, n = [], 0
    while sum(map(len, parts)) < 100 * 1024 - 600:
        parts.append(unit.replace("@@", str(n)))
        n += 1
    return "".join(parts) + "\ndef on_bar_strategy(sdk, params):\n    return helper_0(sdk, params)\n"


def check_ms(path, policy):
    t0 = time.perf_counter()
    p = subprocess.run([JAILRUN, "--profile", "strategy", "--check", "--policy", policy, path],
                       capture_output=True, text=True, timeout=120)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit("bench/guard.py: check failed: %s %s" % (p.stdout[-500:], p.stderr[-500:]))
    return dt * 1e3


def validator(tmp):
    src = big_strategy()
    big = os.path.join(tmp, "big.py")
    small = os.path.join(tmp, "small.py")
    pol = os.path.join(tmp, "nodes.json")
    with open(big, "w") as f:
        f.write(src)
    with open(small, "w") as f:
        f.write("def on_bar_strategy(sdk, params):\n    return None\n")
    with open(pol, "w") as f:  # every node walked: no early "too complex"
        json.dump({"validator": {"max_nodes": 10000000}}, f)
    bigs, smalls = [], []
    for _ in range(REPS):
        bigs.append(check_ms(big, pol))
        smalls.append(check_ms(small, pol))
    # The validator alone, in this interpreter (the one the jail embeds).
    sys.path.insert(0, os.path.join(HERE, "..", "jail"))
    import validate  # noqa: E402
    policy = json.loads(subprocess.run([JAILRUN, "--profile", "strategy", "--policy", pol, "--print-policy"],
                                       capture_output=True, text=True, check=True).stdout)
    data = src.encode()
    inproc = []
    for _ in range(REPS):
        t0 = time.perf_counter()
        items = validate.check(policy, data, "big.py")
        inproc.append((time.perf_counter() - t0) * 1e3)
    assert not items, items[:3]
    import ast
    nodes = sum(1 for _ in ast.walk(ast.parse(src)))
    return {"source_bytes": len(data), "ast_nodes": nodes,
            "check_big_median_ms": statistics.median(bigs), "check_small_median_ms": statistics.median(smalls),
            "validator_in_jail_ms": statistics.median(bigs) - statistics.median(smalls),
            "validator_alone_median_ms": statistics.median(inproc), "validator_alone_min_ms": min(inproc)}


def main():
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        off = os.path.join(tmp, "off.json")
        with open(off, "w") as f:
            json.dump({"python": {"guard": False}}, f)
        res = {"overhead": [overhead(tmp, "cpu", CPU_TICK, off), overhead(tmp, "pandas", PANDAS_TICK, off)],
               "load": load(tmp, off), "validator": validator(tmp),
               "loadavg": open("/proc/loadavg").read().split()[:3]}
    with open(os.path.join(HERE, "out", "guard.json"), "w") as f:
        json.dump(res, f, indent=2)
    for o in res["overhead"]:
        print("guard overhead, %-6s tick: on %.2f ms, off %.2f ms (medians of %d/%d ticks): %+.1f%%"
              % (o["tick"], o["guard_on_median_ms"], o["guard_off_median_ms"], o["ticks"][0], o["ticks"][1],
                 o["overhead"] * 100))
    ld = res["load"]
    print("one-tick job, wall: guard on %.1f ms, off %.1f ms (medians of %d): %+.1f ms"
          % (ld["job_guard_on_median_ms"], ld["job_guard_off_median_ms"], ld["runs"],
             ld["job_guard_on_median_ms"] - ld["job_guard_off_median_ms"]))
    v = res["validator"]
    print("validator, %d bytes, %d nodes: in the jail %.1f ms (check %.1f - %.1f ms), alone %.1f ms (min %.1f)"
          % (v["source_bytes"], v["ast_nodes"], v["validator_in_jail_ms"], v["check_big_median_ms"],
             v["check_small_median_ms"], v["validator_alone_median_ms"], v["validator_alone_min_ms"]))


if __name__ == "__main__":
    main()
