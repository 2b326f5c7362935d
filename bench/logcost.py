"""Log cost of jailrun's ctx.log.info, for bench/run.

Two measurements, each repeated --reps times (medians reported):

inside   the jailed script times N ctx.log.info("x") calls with
         time.perf_counter(), and N calls of a no-op method of the same shape.
         This is what the caller in the jail sees: building the entry, the
         batching, json.dumps of each 20-entry batch and the send() (which
         blocks when the supervisor falls behind).
outside  wall time of a whole jailrun run with N calls minus one with 0 calls
         (same script), divided by N. Includes the supervisor decoding each
         datagram and printing each line (to /dev/null here). The runs are
         interleaved (0, N, 0, N, ...) so drift hits both alike. CPU time per
         call (jail + supervisor, from the children's rusage) is reported too.

jailrun's stderr goes to /dev/null: the supervisor prints every log line.

A run that exits 1 after the script printed its last line is counted, not
dropped: that is the supervisor's spurious "ProtocolError: empty message"
at end of channel (supervisor/engine/job.c, drain_chan: recv() returns 0 for the
dead jail's channel while the epoll events in hand carry no HUP yet), which
hits when the supervisor is still draining log datagrams as the jail exits.
All the work was done by then, so the timing stands. Any other failure stops
the benchmark.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


SPURIOUS = {"count": 0, "runs": 0}


def run(cmd):
    """Wall seconds, children's CPU seconds and stdout of one run."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = p.stdout.decode()
    SPURIOUS["runs"] += 1
    last = out.rstrip().rpartition("\n")[2]
    if p.returncode == 1 and (last == "done" or last.startswith("log_us=")):
        SPURIOUS["count"] += 1  # ran to its end; see the docstring
    elif p.returncode != 0:
        sys.exit("logcost: %s exited with %d" % (" ".join(cmd), p.returncode))
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jailrun", required=True)
    ap.add_argument("--script", required=True)
    ap.add_argument("--n", type=int, default=200000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    base = [a.jailrun, "--profile", "exec", a.script, "--"]

    # Inside the jail.
    inside = []
    for _ in range(a.reps):
        _, _, out = run(base + [str(a.n), "inside"])
        kv = dict(f.split("=") for f in out.split())
        inside.append({"log_us": float(kv["log_us"]), "noop_us": float(kv["noop_us"])})
    log_in = statistics.median(x["log_us"] for x in inside)
    nop_in = statistics.median(x["noop_us"] for x in inside)
    print("inside the jail (perf_counter, median of %d): ctx.log.info %.3f us/call, "
          "no-op %.3f us/call, difference %.3f us/call" % (a.reps, log_in, nop_in, log_in - nop_in))

    # From outside: interleaved 0-call and N-call runs, after one of each as warm-up.
    run(base + ["0"])
    run(base + [str(a.n)])
    zero, full = [], []
    for _ in range(a.reps):
        zero.append(run(base + ["0"])[:2])
        full.append(run(base + [str(a.n)])[:2])
    w0 = statistics.median(w for w, _ in zero)
    wn = statistics.median(w for w, _ in full)
    c0 = statistics.median(c for _, c in zero)
    cn = statistics.median(c for _, c in full)
    per_wall = (wn - w0) / a.n * 1e6
    per_cpu = (cn - c0) / a.n * 1e6
    print("from outside (median of %d): run with 0 calls %.1f ms, with %d calls %.1f ms "
          "-> %.3f us/call wall, %.3f us/call CPU (jail + supervisor)"
          % (a.reps, w0 * 1e3, a.n, wn * 1e3, per_wall, per_cpu))

    if SPURIOUS["count"]:
        print("note: %d of %d jailrun runs exited 1 after the script had finished (the "
              "supervisor's spurious end-of-channel ProtocolError); their timings are kept"
              % (SPURIOUS["count"], SPURIOUS["runs"]))

    with open(a.out, "w") as f:
        json.dump({
            "n": a.n, "reps": a.reps,
            "spurious_exit1": SPURIOUS["count"], "jailrun_runs": SPURIOUS["runs"],
            "inside": {"runs": inside, "log_us_median": log_in, "noop_us_median": nop_in},
            "outside": {
                "zero_wall_s": [w for w, _ in zero], "zero_cpu_s": [c for _, c in zero],
                "full_wall_s": [w for w, _ in full], "full_cpu_s": [c for _, c in full],
                "zero_wall_ms_median": w0 * 1e3, "full_wall_ms_median": wn * 1e3,
                "per_call_wall_us": per_wall, "per_call_cpu_us": per_cpu,
            },
        }, f, indent=2)


if __name__ == "__main__":
    main()
