#!/usr/bin/python3.11
"""bench/backtest_scale.py: backtests at millions of bars (issue 14).

End-to-end bars/s (jailrun started to jailrun exited: start-up, the jail's
parse of the bars, the run, the report written) at 10 k, 100 k, 1 M and
5 M bars, for `return None` and a small dict returned every bar
(`return {"c": sdk.candles[-1]["close"]}`), with and without --report; and
for each, jailrun's own peak resident memory (supervisor_peak_rss_bytes of
the --json stats: its VmHWM, its jails not included) and the jail's (the
cgroup's peak_memory_bytes).

Where the time goes, per run: "start-up and parse" is the wall time less
backtest.run_us (from the supervisor's run message to the run's result);
"jail CPU" is the job's cgroup CPU (cpu_ms); "supervisor CPU" is the CPU
of jailrun itself (this script's RUSAGE_CHILDREN over the run, less the
jail's).

The machine is shared (other builds run on it): every point is run REPS
times and the minimum (the run least disturbed) is reported with the
median. 5 M bars run with --memory 1G (the strategy profile's default is
256 MiB). Writes bench/out/backtest_scale.json and prints a table.
Knobs: BT_REPS (default 3), BT_SIZES (default 10000,100000,1000000,5000000).
"""
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
JAILRUN = os.path.realpath(os.environ.get("JAILRUN") or os.path.join(HERE, "..", "supervisor", "jailrun"))
REPS = int(os.environ.get("BT_REPS", "3"))
SIZES = [int(x) for x in os.environ.get("BT_SIZES", "10000,100000,1000000,5000000").split(",")]

STRATEGIES = {
    "none": "def on_bar_strategy(sdk, params):\n    return None\n",
    "dict": 'def on_bar_strategy(sdk, params):\n    return {"c": sdk.candles[-1]["close"]}\n',
}


def write_bars(path, n):
    with open(path, "w") as f:
        f.write("time,open,high,low,close,volume\n")
        for k in range(0, n, 100000):
            f.write("".join("%d,%d.5,%d.75,%d.25,%d.5,%d\n" % (1700000000 + 60 * i, 100 + i % 97, 101 + i % 97,
                                                              99 + i % 97, 100 + i % 89, 1 + i % 1000)
                            for i in range(k, min(n, k + 100000))))


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def one(script, bars, n, report):
    args = [JAILRUN, "--profile", "strategy", "--timeout", "0", "--bars", bars, "--json"]
    if n > 1000000:
        args += ["--memory", "1G"]
    if report:
        args += ["--report", report]
    c0 = children_cpu()
    t0 = time.perf_counter()
    p = subprocess.run(args + [script], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    cpu = children_cpu() - c0
    res = json.loads(p.stdout.strip().splitlines()[-1])
    if res["status"] != "ok":
        sys.exit("backtest failed: %s %s" % (p.stdout[-2000:], p.stderr[-2000:]))
    st, bt = res["stats"], res["backtest"]
    return {"wall_s": wall, "run_s": bt["run_us"] / 1e6, "startup_parse_s": wall - bt["run_us"] / 1e6,
            "jail_cpu_s": st["cpu_ms"] / 1e3, "supervisor_cpu_s": cpu - st["cpu_ms"] / 1e3,
            "supervisor_peak_rss": st["supervisor_peak_rss_bytes"], "jail_peak_memory": st.get("peak_memory_bytes"),
            "report_bytes": os.path.getsize(report) if report else 0}


def main():
    out = {"machine": {"nproc": os.cpu_count(), "loadavg_start": open("/proc/loadavg").read().split()[:3],
                       "kernel": os.uname().release, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
           "reps": REPS, "points": []}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BT_TMP")) as d:
        scripts = {}
        for name, src in STRATEGIES.items():
            scripts[name] = os.path.join(d, name + ".py")
            with open(scripts[name], "w") as f:
                f.write(src)
        for n in SIZES:
            bars = os.path.join(d, "bars.csv")
            write_bars(bars, n)
            for name in STRATEGIES:
                for rep in (False, True):
                    runs = [one(scripts[name], bars, n, os.path.join(d, "r.json") if rep else None)
                            for _ in range(REPS)]
                    best = min(runs, key=lambda r: r["wall_s"])
                    pt = {"bars": n, "strategy": name, "report": rep,
                          "bars_per_s_best": n / best["wall_s"],
                          "bars_per_s_median": n / statistics.median(r["wall_s"] for r in runs),
                          "best": best, "runs": runs}
                    out["points"].append(pt)
                    print("%8d bars  %-4s %-9s %9.0f bars/s (median %9.0f)  wall %6.2f s: start-up+parse %5.2f, "
                          "run %6.2f; CPU jail %6.2f s, supervisor %5.2f s; RSS supervisor %5.1f MB, jail %6.1f MB"
                          % (n, name, "--report" if rep else "", pt["bars_per_s_best"], pt["bars_per_s_median"],
                             best["wall_s"], best["startup_parse_s"], best["run_s"], best["jail_cpu_s"],
                             best["supervisor_cpu_s"], best["supervisor_peak_rss"] / 1e6,
                             (best["jail_peak_memory"] or 0) / 1e6), flush=True)
            os.unlink(bars)
    out["machine"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "backtest_scale.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
