#!/usr/bin/python3.11
"""bench/backtest.py: the backtest runner (issue 7).

1. Throughput: a trivial strategy (return None) over 100 000 bars, end to
   end (`jailrun --profile strategy --bars`: the jail, parsing the CSV,
   the run, the report), and the run alone (backtest.run_us of the --json
   result). Target >= 50 000 bars/s.
2. Seed 002's example (np.std over the last 20 of 500 closes) over BARS2
   bars: jailed (read-only candles), against the same loop in plain
   python3.11 (candles as a list of dicts, a 500-bar window sliced per
   bar, the same function).
   Both without start-up and parsing: the jailed loop's time is the
   result's backtest.run_us (from the supervisor's run message to the
   run's result: every bar, the runtime's work around each, the reports
   to the supervisor). Target <= 10 % overhead.
3. Streaming Rsi (indicators.Rsi, one update per bar) against recomputing
   ta.rsi over the 500 closes of the window on every bar, both jailed, per
   bar of the run alone.

4. Where the rest of 2. goes: the seed 002 loop on plain dicts, on the
   read-only candles (jailed only: a C type of the jail's runtime) and on a
   read-only dict class written in Python (what the candles were before),
   and a pure-Python loop, each in plain python3.11 and in a jail (profile
   exec), timed inside.

Median of REPS runs each. Writes bench/out/backtest.json and prints a
summary. Knobs: BT_REPS (default 7), BT_BARS2 (default 20000).
"""
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
JAILRUN = os.path.realpath(os.environ.get("JAILRUN") or os.path.join(HERE, "..", "supervisor", "jailrun"))
REPS = int(os.environ.get("BT_REPS", "7"))
BARS2 = int(os.environ.get("BT_BARS2", "20000"))
PY = "/usr/bin/python3.11"

TRIVIAL = "def on_bar_strategy(sdk, params):\n    return None\n"

SEED002 = """
def on_bar_strategy(sdk, params):
    closes = np.array([c["close"] for c in sdk.candles])
    vol = np.std(closes[-20:])  # standard deviation of the last 20 closes
    return None
"""

STREAM_RSI = """
import indicators
_rsi = indicators.Rsi(14)
def on_bar_strategy(sdk, params):
    _rsi.update(sdk.candles[-1]["close"])
    return None
"""

RECOMPUTE_RSI = """
def on_bar_strategy(sdk, params):
    closes = np.array([c["close"] for c in sdk.candles])
    r = ta.rsi(pd.Series(closes), 14)
    return None
"""

PLAIN = """
import csv, sys, time
import numpy as np
rows = []
with open(sys.argv[1]) as f:
    for r in csv.DictReader(f):
        rows.append({"time": int(r["time"]), "open": float(r["open"]), "high": float(r["high"]),
                     "low": float(r["low"]), "close": float(r["close"]), "volume": float(r["volume"])})
class Sdk:
    pass
sdk = Sdk()
sdk.state = {}
def on_bar_strategy(sdk, params):
    closes = np.array([c["close"] for c in sdk.candles])
    vol = np.std(closes[-20:])  # standard deviation of the last 20 closes
    return None
t0 = time.perf_counter()
for i in range(len(rows)):
    sdk.candles = rows[max(0, i - 499):i + 1]
    on_bar_strategy(sdk, dict())
print(time.perf_counter() - t0)
"""


PARTS = """
import random, sys, time
import numpy as np
class Candle(dict):
    __slots__ = ()
    def _ro(self, *a, **k):
        raise TypeError
    __setitem__ = __delitem__ = _ro
r = random.Random(1)
c = 100.0
rows = []
for i in range(5000):
    c += r.gauss(0, 1)
    rows.append({"time": i, "open": c, "high": c, "low": c, "close": c, "volume": 1.0})
crow = tuple(Candle(x) for x in rows)
sets = [("dicts_us", rows), ("pyclass_dicts_us", crow)]
try:
    import _jailrun  # in a jail: the candles' own type
    sets.append(("readonly_dicts_us", tuple(_jailrun.Candle(**x) for x in rows)))
except ImportError:
    pass
def f(candles):
    closes = np.array([c["close"] for c in candles])
    return np.std(closes[-20:])
def pure():
    t = 0
    for i in range(2000000):
        t += (i * i) % 7
    return t
out = {}
for name, data in sets:
    t0 = time.perf_counter()
    for i in range(len(data)):
        f(data[max(0, i - 499):i + 1])
    out[name] = (time.perf_counter() - t0) / len(data) * 1e6
t0 = time.perf_counter()
pure()
out["pure_ms"] = (time.perf_counter() - t0) * 1e3
print(out)
"""


def parts(path, jail):
    cmd = [JAILRUN, "--profile", "exec", path] if jail else [PY, "-I", path]
    runs = [eval(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
            for _ in range(REPS)]
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def write_bars(path, n, seed=1):
    rnd = random.Random(seed)
    c = 100.0
    with open(path, "w") as f:
        f.write("time,open,high,low,close,volume\n")
        for i in range(n):
            o = c
            c = round(c + rnd.gauss(0, 1), 4)
            f.write("%d,%r,%r,%r,%r,%d\n" % (1700000000 + 60 * i, o, round(max(o, c) + 0.25, 4),
                                           round(min(o, c) - 0.25, 4), c, rnd.randint(1, 1000)))


def jailed(script, bars):
    """Wall seconds of one backtest, and its --json result."""
    t0 = time.perf_counter()
    p = subprocess.run([JAILRUN, "--profile", "strategy", "--timeout", "0", "--bars", bars, "--json", script],
                       capture_output=True, text=True)
    dt = time.perf_counter() - t0
    res = json.loads(p.stdout.strip().splitlines()[-1])
    if res["status"] != "ok":
        sys.exit("backtest failed: %s" % p.stdout[-2000:])
    return dt, res


def median_run(script, bars):
    return statistics.median(jailed(script, bars)[0] for _ in range(REPS))


def median_loop(script, bars):
    """The run alone (backtest.run_us), seconds."""
    return statistics.median(jailed(script, bars)[1]["backtest"]["run_us"] / 1e6 for _ in range(REPS))


def main():
    out = {}
    with tempfile.TemporaryDirectory() as d:
        b1, b100k, b2 = (os.path.join(d, n) for n in ("b1.csv", "b100k.csv", "b2.csv"))
        write_bars(b1, 1)
        write_bars(b100k, 100000)
        write_bars(b2, BARS2)
        scripts = {}
        for name, src in (("trivial", TRIVIAL), ("seed002", SEED002), ("stream", STREAM_RSI),
                          ("recompute", RECOMPUTE_RSI)):
            scripts[name] = os.path.join(d, name + ".py")
            with open(scripts[name], "w") as f:
                f.write(src)
        plain = os.path.join(d, "plain.py")
        with open(plain, "w") as f:
            f.write(PLAIN)

        # 1. throughput
        t1 = median_run(scripts["trivial"], b1)
        t100k = median_run(scripts["trivial"], b100k)
        loop = median_loop(scripts["trivial"], b100k)
        out["trivial"] = {"one_bar_s": t1, "bars_100k_s": t100k, "end_to_end_bars_per_s": 100000 / t100k,
                          "loop_s": loop, "loop_bars_per_s": 100000 / loop, "us_per_bar": loop / 100000 * 1e6}

        # 2. seed 002 example, jailed vs plain, interleaved so that a burst
        # of load on this shared machine hits both
        jl_t, pl_t = [], []
        for _ in range(REPS):
            jl_t.append(jailed(scripts["seed002"], b2)[1]["backtest"]["run_us"] / 1e6)
            pl_t.append(float(subprocess.run([PY, "-I", plain, b2], capture_output=True, text=True,
                                             check=True).stdout))
        s2, plain_s = statistics.median(jl_t), statistics.median(pl_t)
        out["seed002"] = {"bars": BARS2, "jailed_loop_s": s2, "plain_loop_s": plain_s, "overhead": s2 / plain_s - 1}

        # 3. streaming vs recomputing RSI, per bar
        r2 = median_loop(scripts["stream"], b2)
        q2 = median_loop(scripts["recompute"], b2)
        out["rsi"] = {"bars": BARS2, "stream_us_per_bar": r2 / BARS2 * 1e6, "recompute_us_per_bar": q2 / BARS2 * 1e6}
        out["rsi"]["speedup"] = out["rsi"]["recompute_us_per_bar"] / out["rsi"]["stream_us_per_bar"]

        # 4. the parts
        pp = os.path.join(d, "parts.py")
        with open(pp, "w") as f:
            f.write(PARTS)
        out["parts"] = {"plain": parts(pp, False), "jailed": parts(pp, True)}

    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "backtest.json"), "w") as f:
        json.dump(out, f, indent=1)
    t, s, r = out["trivial"], out["seed002"], out["rsi"]
    print("trivial strategy, 100000 bars: %.3f s end to end (%.0f bars/s; 1 bar: %.3f s); the run alone %.3f s: "
          "%.0f bars/s, %.2f us/bar" % (t["bars_100k_s"], t["end_to_end_bars_per_s"], t["one_bar_s"], t["loop_s"],
                                        t["loop_bars_per_s"], t["us_per_bar"]))
    print("seed 002 example, %d bars: jailed loop %.3f s, plain python3.11 %.3f s: overhead %+.1f %%"
          % (s["bars"], s["jailed_loop_s"], s["plain_loop_s"], s["overhead"] * 100))
    print("RSI per bar: streaming %.2f us, recomputing ta.rsi over 500 closes %.1f us: %.0fx"
          % (r["stream_us_per_bar"], r["recompute_us_per_bar"], r["speedup"]))
    p, j = out["parts"]["plain"], out["parts"]["jailed"]
    print("seed 002 step on plain dicts: python3.11 %.1f us, jailed %.1f us; jailed on the read-only candles: %.1f us;"
          " on a read-only dict class written in Python: %.1f us, %.1f us"
          % (p["dicts_us"], j["dicts_us"], j["readonly_dicts_us"], p["pyclass_dicts_us"], j["pyclass_dicts_us"]))
    print("pure-Python loop: python3.11 %.1f ms, jailed %.1f ms (%+.0f %%)"
          % (p["pure_ms"], j["pure_ms"], (j["pure_ms"] / p["pure_ms"] - 1) * 100))


if __name__ == "__main__":
    main()
