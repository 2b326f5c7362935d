"""Summary of bench/run's results: python3.11 bench/summary.py bench/out"""
import json
import math
import os
import sys

LABELS = ["(a) jailrun --profile exec", "(b) python3.11 -I", "(c) python3.11 -I -S",
          "(d) bwrap + python3.11 -I"]
TARGET_VS_PY = 1.10


def ratio(x, y):
    """x/y with the stddev propagated (independent samples)."""
    r = x["mean"] / y["mean"]
    return r, r * math.hypot(x["stddev"] / x["mean"], y["stddev"] / y["mean"])


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "out")
    with open(os.path.join(out, "startup.json")) as f:
        res = json.load(f)["results"]
    if len(res) != 4:
        sys.exit("summary: expected 4 commands in startup.json, found %d" % len(res))
    with open(os.path.join(out, "machine.txt")) as f:
        print(f.read().rstrip())
    print()
    ms = [{k: r[k] * 1e3 for k in ("mean", "stddev", "median", "min", "max")} | {"n": len(r["times"])}
          for r in res]
    a, b, c, d = ms
    print("%-28s %16s %8s %8s %5s %8s %8s" % ("start-up of `pass`", "mean ± sd (ms)", "median",
                                              "min", "runs", "vs (b)", "vs (c)"))
    for label, m in zip(LABELS, ms):
        print("%-28s %8.2f ± %5.2f %8.2f %8.2f %5d %7.2fx %7.2fx"
              % (label, m["mean"], m["stddev"], m["median"], m["min"], m["n"],
                 m["mean"] / b["mean"], m["mean"] / c["mean"]))
    print()
    rb, sb = ratio(a, b)
    rc, sc = ratio(a, c)
    rd, sd = ratio(d, b)
    print("ratios (of means, ± propagated sd):")
    print("  jailrun / python3.11 -I     = %.2f ± %.2f" % (rb, sb))
    print("  jailrun / python3.11 -I -S  = %.2f ± %.2f" % (rc, sc))
    print("  bwrap   / python3.11 -I     = %.2f ± %.2f" % (rd, sd))
    print("  jailrun / bwrap             = %.2f ± %.2f" % ratio(a, d))
    print("targets:")
    print("  jailrun <= %.2fx python3.11 -I : %s (%.2fx; %.1f ms over bare, budget %.1f ms)"
          % (TARGET_VS_PY, "MET" if rb <= TARGET_VS_PY else "NOT MET", rb, a["mean"] - b["mean"],
             (TARGET_VS_PY - 1) * b["mean"]))
    print("  jailrun faster than bwrap    : %s (%.2f ms vs %.2f ms)"
          % ("MET" if a["mean"] < d["mean"] else "NOT MET", a["mean"], d["mean"]))

    lp = os.path.join(out, "log.json")
    if os.path.exists(lp):
        with open(lp) as f:
            lg = json.load(f)
        i, o = lg["inside"], lg["outside"]
        print()
        print("log cost, %d calls of ctx.log.info(\"x\"), median of %d:" % (lg["n"], lg["reps"]))
        print("  inside the jail (perf_counter): %.3f us/call   (no-op method: %.3f us/call; "
              "difference %.3f)" % (i["log_us_median"], i["noop_us_median"],
                                    i["log_us_median"] - i["noop_us_median"]))
        print("  from outside (wall, N - 0 calls): %.3f us/call; CPU jail + supervisor %.3f us/call"
              % (o["per_call_wall_us"], o["per_call_cpu_us"]))
        print("  (whole runs: %.1f ms with 0 calls, %.1f ms with %d)"
              % (o["zero_wall_ms_median"], o["full_wall_ms_median"], lg["n"]))
        if lg.get("spurious_exit1"):
            print("  note: %d of %d jailrun runs here exited 1 after the script had finished: the "
                  "supervisor's spurious\n  end-of-channel 'ProtocolError: empty message' "
                  "(a bug; timings kept)" % (lg["spurious_exit1"], lg["jailrun_runs"]))


if __name__ == "__main__":
    main()
