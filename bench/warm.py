#!/usr/bin/python3.11
"""bench/warm.py: warm zygotes and scale (issue 16).

Three parts, each selectable by name on the command line (default: all):

  spawn   Spawn to the jail's first instruction with numpy and pandas
          loaded. warm: POST /v1/jobs (profile exec) of a script whose
          first line prints time.monotonic(), on a jaild with its warm
          zygotes, against the client's time.monotonic() just before the
          request (the jail has no time namespace: its CLOCK_MONOTONIC is
          the host's). cold: the same on a jaild with zygote.enabled false,
          whose script first imports numpy and pandas and then prints the
          time. Beside them, in the same rounds, `unshare -Urmnpiu -f true`
          and bare `python3.11 -c 'import numpy, pandas'` (each started by
          subprocess.run and timed to its exit); the four kinds are
          shuffled together in rounds, so that a shared host's drift hits
          all alike. Each job's jaild-side spawn time (clone to "jailed",
          the set-up checks passed) is read from the jaild_spawn_seconds
          histogram of /metrics after it. Then `unshare -Urmnpiu -f true`
          under hyperfine -N. p50/p99 of each, the ratios.
  uss     JAILD_BENCH_USS (e.g. "100,1000") idle workers on one jaild (a
          script importing numpy and pandas at its top, a tick that does
          nothing, schedule {"interval": 60}): the time to create them;
          once all are idle, each jail's USS (Private_Clean + Private_Dirty
          of /proc/PID/smaps_rollup; the jails are jaild's children other
          than its zygotes, whose comm is jailrun-zygote), jaild's RSS,
          the total PSS, the drop of MemAvailable, and jaild's own CPU (and
          the jails') over JAILD_BENCH_IDLE_SECONDS of idling.
  jitter  JAILD_BENCH_JITTER workers with schedule {"interval": 1} for
          JAILD_BENCH_SECONDS (bench/jaild.py's ticks part, warm):
          lateness of each tick against its slot, skipped slots, overlaps.

Each jaild runs with a temp config of its own (socket, registry, state,
workspaces in a temp dir), the cgroup parent "jaild-bench" (the spawn
part's two jailds: jaild-bench/warm and jaild-bench/cold) and uids in
400000-401999, so it shares nothing with the test suites' daemons. Every
jaild, zygote, worker, cgroup and temp dir made here is removed before the
script ends, and the script checks it. The host's load average and how
busy its CPUs were are recorded with each part's figures.

Writes bench/out/warm.json (every figure) and prints a summary (also in
bench/out/warm.txt). Needs root, hyperfine, unshare, python3-httpx, and
numpy and pandas for /usr/bin/python3.11.

Knobs: JAILD_BENCH_SPAWNS (warm jobs and unshare runs, 200),
JAILD_BENCH_COLD (cold jobs and bare imports, 40), JAILD_BENCH_ROUND
(warm jobs a round, 20), JAILD_BENCH_RUNS (hyperfine --min-runs, 200),
JAILD_BENCH_USS ("100,1000"), JAILD_BENCH_SETTLE (seconds between the last
worker up and the idle window, 5), JAILD_BENCH_IDLE_SECONDS (60),
JAILD_BENCH_JITTER (200), JAILD_BENCH_SECONDS (60). JAILRUN and JAILD name
the binaries under test.

  bench/warm.py [spawn] [uss] [jitter]
"""
import contextlib
import io
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time

import httpx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import jaild as jb  # noqa: E402  (the daemon benchmark's jaild, helpers and ticks part)

PY = jb.PY
OUT = jb.OUT
SPAWNS = int(os.environ.get("JAILD_BENCH_SPAWNS", "200"))
COLD = int(os.environ.get("JAILD_BENCH_COLD", "40"))
ROUND = int(os.environ.get("JAILD_BENCH_ROUND", "20"))
RUNS = int(os.environ.get("JAILD_BENCH_RUNS", "200"))
USS = [int(x) for x in os.environ.get("JAILD_BENCH_USS", "100,1000").split(",")]
SETTLE = float(os.environ.get("JAILD_BENCH_SETTLE", "5"))
IDLE_SECONDS = float(os.environ.get("JAILD_BENCH_IDLE_SECONDS", "60"))
JITTER = int(os.environ.get("JAILD_BENCH_JITTER", "200"))
SECONDS = float(os.environ.get("JAILD_BENCH_SECONDS", "60"))

PARTS = ("spawn", "uss", "jitter")
UNSHARE = ["unshare", "-Urmnpiu", "-f", "true"]
IMPORT = [PY, "-c", "import numpy, pandas"]
LOADED = "import sys; print('numpy' in sys.modules and 'pandas' in sys.modules)\n"
# The first line is the first instruction; the second checks numpy and
# pandas really are there (in the warm jail, from the zygote).
WARM_SOURCE = "import time; print(repr(time.monotonic()))\n" + LOADED
COLD_SOURCE = "import numpy, pandas, time; print(repr(time.monotonic()))\n" + LOADED
IDLE_SOURCE = "import numpy as np\nimport pandas as pd\n\n\ndef tick(ctx):\n    pass\n"
SPAWN_HIST = re.compile(r"^jaild_spawn_seconds_(sum|count) (\S+)$", re.M)


def die(msg):
    jb.die(msg)


def pct(xs, p):
    return jb.pct(xs, p)


def summary(xs, scale=1e3):
    """p50/p99/mean/min/max of xs (seconds) in ms."""
    return {"n": len(xs), "p50_ms": pct(xs, 50) * scale, "p99_ms": pct(xs, 99) * scale,
            "mean_ms": statistics.mean(xs) * scale, "min_ms": min(xs) * scale, "max_ms": max(xs) * scale}


def meminfo(key):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    die("no %s in /proc/meminfo" % key)


def cpu_busy():
    """(busy, total) jiffies of all the host's CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    return sum(v) - idle, sum(v)


class HostLoad:
    """The host's load while a part runs: load averages sampled every 2 s,
    and how busy its CPUs were (/proc/stat) from start to stop."""

    def __init__(self):
        self.samples = []
        self.stopped = threading.Event()
        self.cpu0 = cpu_busy()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped.is_set():
            self.samples.append(float(jb.loadavg().split()[0]))
            self.stopped.wait(2)

    def stop(self):
        self.stopped.set()
        self.thread.join()
        b1, t1 = cpu_busy()
        busy = 100 * (b1 - self.cpu0[0]) / max(1, t1 - self.cpu0[1])
        return {"load1_min": min(self.samples), "load1_max": max(self.samples),
                "load1_mean": statistics.mean(self.samples), "host_cpu_busy_pct": busy,
                "host_cores_busy": busy * os.cpu_count() / 100}


def rollup(pid):
    """smaps_rollup of a process, KiB by field."""
    out = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            p = line.split()
            if len(p) >= 2 and p[0].endswith(":") and p[1].isdigit():
                out[p[0][:-1]] = int(p[1])
    return out


def cgroup_memory_kib():
    """Memory charged to the bench's cgroup parent (every job group below
    it): memory.usage_in_bytes on v1, memory.current on v2; None without."""
    for f in ("/sys/fs/cgroup/memory/%s/memory.usage_in_bytes", "/sys/fs/cgroup/%s/memory.current"):
        with contextlib.suppress(OSError):
            with open(f % jb.CGROUP_PARENT) as fh:
                return int(fh.read()) // 1024
    return None


def metrics_workers(jd):
    """Workers with a memory and a CPU figure in /metrics."""
    text = jd.ok("GET", "/metrics").text
    return (len(re.findall(r"^jaild_worker_memory_peak_bytes\{", text, re.M)),
            len(re.findall(r"^jaild_worker_cpu_seconds_total\{", text, re.M)))


def comm(pid):
    with open("/proc/%d/comm" % pid) as f:
        return f.read().strip()


def children(pid):
    out = []
    for t in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, t)) as f:
            out += [int(x) for x in f.read().split()]
    return out


def jails_and_zygotes(jaild_pid):
    """jaild's children: (jails, zygotes)."""
    jails, zygotes = [], []
    for c in children(jaild_pid):
        try:
            (zygotes if comm(c) == "jailrun-zygote" else jails).append(c)
        except FileNotFoundError:
            pass
    return jails, zygotes


class Daemon(jb.Jaild):
    """bench/jaild.py's jaild, whose close also checks that its zygotes
    went with it."""

    def zygote_pids(self):
        z = self.ok("GET", "/v1/health").json().get("zygotes") or {}
        return [v["pid"] for v in z.values() if v.get("pid")]

    def close(self):
        zyg = []
        with contextlib.suppress(Exception):
            zyg = jails_and_zygotes(self.proc.pid)[1] if self.proc.poll() is None else []
        super().close()
        left = []
        for pid in zyg:
            with contextlib.suppress(FileNotFoundError):
                if comm(pid) == "jailrun-zygote":
                    left.append(pid)
        if left:
            die("zygotes left after jaild stopped: %s" % left)

    def workers(self):
        return self.ok("GET", "/v1/workers").json()["workers"]

    def wait_all(self, n, states=("idle",)):
        """Until n workers are in states (one list request a poll)."""
        deadline = time.monotonic() + jb.WAIT_LIMIT
        while True:
            ws = self.workers()
            bad = [w for w in ws if w["state"] in ("stopped", "restarting")]
            if bad:
                die("worker %s is %s: %s" % (bad[0]["name"], bad[0]["state"], json.dumps(bad[0])[:500]))
            if len(ws) == n and all(w["state"] in states for w in ws):
                return ws
            if time.monotonic() > deadline:
                die("%d of %d workers not up after %d s" % (n - sum(w["state"] in states for w in ws), n,
                                                            jb.WAIT_LIMIT))
            time.sleep(0.2)


# ---------------------------------------------------------------- part 1: spawn

def spawn_hist(jd):
    """(sum s, count) of jaild_spawn_seconds."""
    got = dict(SPAWN_HIST.findall(jd.ok("GET", "/metrics").text))
    return float(got["sum"]), int(got["count"])


class JobKind:
    """POST /v1/jobs of one source on one jaild: the first instruction's
    time against the request's, the whole request, jaild's spawn."""

    def __init__(self, jd, source):
        self.jd, self.source = jd, source
        self.c = jd.client()
        self.hist = spawn_hist(jd)
        self.first, self.total, self.spawn = [], [], []

    def run(self, keep=True):
        t0 = time.monotonic()
        r = self.c.post("/v1/jobs", json={"source": self.source, "profile": "exec"})
        t2 = time.monotonic()
        j = r.json() if r.status_code == 200 else {}
        out = j.get("stdout", "").split()
        if j.get("status") != "ok" or j.get("exit_code") != 0 or j.get("stderr") or out[1:] != ["True"]:
            die("POST /v1/jobs: %d %s" % (r.status_code, r.text[:500]))
        h = spawn_hist(self.jd)
        if h[1] != self.hist[1] + 1:
            die("jaild_spawn_seconds counted %d jails for one job" % (h[1] - self.hist[1]))
        if keep:
            self.first.append(float(out[0]) - t0)
            self.total.append(t2 - t0)
            self.spawn.append(h[0] - self.hist[0])
        self.hist = h


class CmdKind:
    """A command started by subprocess.run, timed to its exit."""

    def __init__(self, cmd):
        self.cmd = cmd
        self.total = []

    def run(self, keep=True):
        t0 = time.perf_counter()
        p = subprocess.run(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=jb.WAIT_LIMIT)
        dt = time.perf_counter() - t0
        if p.returncode != 0 or p.stderr:
            die("%s: exit %d %s" % (self.cmd, p.returncode, p.stderr[:300]))
        if keep:
            self.total.append(dt)


def hyperfine(cmd, name):
    os.makedirs(OUT, exist_ok=True)
    js = os.path.join(OUT, name)
    subprocess.run(["hyperfine", "-N", "--warmup", "10", "--min-runs", str(RUNS), "--export-json", js, cmd],
                   check=True, timeout=3600, stdout=subprocess.DEVNULL)
    with open(js) as f:
        h = json.load(f)["results"][0]
    return {"command": cmd, "n": len(h["times"])} | {k + "_ms": h[k] * 1e3 for k in ("mean", "stddev", "median",
                                                                                       "min", "max")}


def part_spawn():
    res = {"warm_jobs": SPAWNS, "cold_jobs": COLD, "round": ROUND, "loadavg_start": jb.loadavg()}
    load = HostLoad()
    warm = Daemon(max_live_jobs=8, cgroup_parent=jb.CGROUP_PARENT + "/warm",
                  uid_range={"lo": jb.UID_LO, "hi": jb.UID_LO + 499})
    cold = None
    try:
        cold = Daemon(max_live_jobs=8, cgroup_parent=jb.CGROUP_PARENT + "/cold", zygote={"enabled": False},
                      uid_range={"lo": jb.UID_LO + 500, "hi": jb.UID_LO + 999})
        z0 = warm.ok("GET", "/v1/health").json()["zygotes"]["exec"]
        if not z0["ready"]:
            die("the warm jaild's exec zygote is not ready: %s" % z0)
        if cold.ok("GET", "/v1/health").json().get("zygotes"):
            die("the cold jaild has zygotes")
        kinds = {"warm": JobKind(warm, WARM_SOURCE), "cold": JobKind(cold, COLD_SOURCE),
                 "unshare": CmdKind(UNSHARE), "python": CmdKind(IMPORT)}
        for k in kinds.values():  # warm-up, not counted
            for _ in range(3):
                k.run(keep=False)
        # Rounds of ROUND warm jobs and unshares with their share of the
        # slow kinds, shuffled (seeded) so no kind keeps a place.
        rng = random.Random(16)
        rounds = math.ceil(SPAWNS / ROUND)
        done = {k: 0 for k in kinds}
        for r in range(rounds):
            order = []
            for k, n in (("warm", SPAWNS), ("unshare", SPAWNS), ("cold", COLD), ("python", COLD)):
                share = n * (r + 1) // rounds - done[k]
                order += [k] * share
                done[k] += share
            rng.shuffle(order)
            for k in order:
                kinds[k].run()
        z1 = warm.ok("GET", "/v1/health").json()["zygotes"]["exec"]
        res["zygote"] = {"spawned": z1["spawned"] - z0["spawned"], "fallbacks": z1["fallbacks"] - z0["fallbacks"],
                         "generation": z1["generation"], "ended": z1["ended"]}
        if res["zygote"]["fallbacks"] or res["zygote"]["spawned"] != SPAWNS + 3:
            die("warm jobs not all cloned from the zygote: %s" % res["zygote"])
        for k in ("warm", "cold"):
            res[k] = {"first": summary(kinds[k].first), "request": summary(kinds[k].total),
                      "spawn": summary(kinds[k].spawn),
                      "rest": summary([a - b for a, b in zip(kinds[k].first, kinds[k].spawn)])}
        for k in ("unshare", "python"):
            res[k] = summary(kinds[k].total)
    finally:
        for d in (warm, cold):
            if d:
                d.close()
    res["hyperfine_unshare"] = hyperfine(" ".join(UNSHARE), "warm_unshare.json")
    w, u, hu = res["warm"]["first"]["p50_ms"], res["unshare"]["p50_ms"], res["hyperfine_unshare"]["median_ms"]
    res["ratios"] = {"warm_over_unshare": w / u, "warm_over_unshare_hyperfine": w / hu,
                     "warm_p99_over_unshare_p99": res["warm"]["first"]["p99_ms"] / res["unshare"]["p99_ms"],
                     "cold_over_warm": res["cold"]["first"]["p50_ms"] / w,
                     "python_import_over_warm": res["python"]["p50_ms"] / w}
    res["targets"] = {"warm_p50_le_5ms": w <= 5, "warm_p50_le_2x_unshare": w <= 2 * u,
                      "warm_p50_le_2x_unshare_hyperfine": w <= 2 * hu}
    res["host"] = load.stop()
    res["loadavg_end"] = jb.loadavg()
    return res


def show_host(h):
    return "load1 %.2f-%.2f (mean %.2f), host CPUs %.0f%% busy (%.2f of %d cores)" % (
        h["load1_min"], h["load1_max"], h["load1_mean"], h["host_cpu_busy_pct"], h["host_cores_busy"],
        os.cpu_count())


def show_spawn(r):
    print("== spawn to the first instruction with numpy+pandas loaded (%d warm jobs and unshares, %d cold jobs and "
          "bare imports, shuffled in rounds; load %s at start, %s at end)"
          % (r["warm_jobs"], r["cold_jobs"], r["loadavg_start"], r["loadavg_end"]))
    print("   during: " + show_host(r["host"]))
    print("%-58s %8s %8s %8s %8s %8s" % ("", "p50 ms", "p99 ms", "mean ms", "min ms", "max ms"))

    def row(name, m):
        print("%-58s %8.2f %8.2f %8.2f %8.2f %8.2f" % (name, m["p50_ms"], m["p99_ms"], m["mean_ms"], m["min_ms"],
                                                     m["max_ms"]))
    for k, what in (("warm", "warm (zygotes on)"), ("cold", "cold (zygotes off, script imports)")):
        row("%s: request to first instruction" % what, r[k]["first"])
        row("  jaild_spawn_seconds (start_jail to jailed read)", r[k]["spawn"])
        row("  first instruction minus that", r[k]["rest"])
        row("  whole request (to the answer)", r[k]["request"])
    row("unshare -Urmnpiu -f true (subprocess.run)", r["unshare"])
    row("python3.11 -c 'import numpy, pandas' (subprocess.run)", r["python"])
    h = r["hyperfine_unshare"]
    print("%-58s %8.2f %8s %8.2f %8.2f %8.2f  (median; mean ± sd %.2f ± %.2f, %d runs)"
          % ("unshare -Urmnpiu -f true (hyperfine -N)", h["median_ms"], "", h["mean_ms"], h["min_ms"], h["max_ms"],
             h["mean_ms"], h["stddev_ms"], h["n"]))
    q = r["ratios"]
    print("  warm p50 / unshare p50: %.2f (subprocess), %.2f (hyperfine median); p99/p99 %.2f; cold / warm %.1f; "
          "bare import / warm %.1f" % (q["warm_over_unshare"], q["warm_over_unshare_hyperfine"],
                                       q["warm_p99_over_unshare_p99"], q["cold_over_warm"],
                                       q["python_import_over_warm"]))
    t = r["targets"]
    print("  targets: warm p50 <= 5 ms: %s; <= 2x unshare: %s (subprocess), %s (hyperfine)"
          % tuple("met" if t[k] else "MISSED" for k in ("warm_p50_le_5ms", "warm_p50_le_2x_unshare",
                                                        "warm_p50_le_2x_unshare_hyperfine")))
    z = r["zygote"]
    print("  exec zygote: %d jails cloned, %d fallbacks, generation %d" % (z["spawned"], z["fallbacks"],
                                                                       z["generation"]))


# ---------------------------------------------------------------- part 2: uss

def jail_memory(jaild_pid):
    """Per jail and per zygote: USS, PSS, RSS (KiB); their CPU seconds."""
    jails, zygotes = jails_and_zygotes(jaild_pid)
    out = {"jails": [], "zygotes": [], "jails_cpu_s": 0.0, "zygotes_cpu_s": 0.0, "descendants": 0}
    for kind, pids in (("jails", jails), ("zygotes", zygotes)):
        for pid in pids:
            try:
                r = rollup(pid)
                out[kind + "_cpu_s"] += jb.proc_cpu_s(pid)
                out["descendants"] += len(children(pid))
            except (FileNotFoundError, ProcessLookupError):
                continue
            out[kind].append({"pid": pid, "uss": r["Private_Clean"] + r["Private_Dirty"], "pss": r["Pss"],
                              "rss": r["Rss"], "dirty": r["Private_Dirty"]})
    return out


def part_uss():
    res = {"levels": [], "idle_seconds": IDLE_SECONDS, "settle_s": SETTLE, "loadavg_start": jb.loadavg()}
    mem_before = meminfo("MemAvailable")
    jd = Daemon(max_live_jobs=8)
    try:
        res["jaild_up_mem_drop_kib"] = mem_before - meminfo("MemAvailable")
        ids, post_s = [], []
        for level in sorted(USS):
            load = HostLoad()
            start = len(post_s)
            t0 = time.monotonic()
            while len(ids) < level:
                t = time.monotonic()
                ids.append(jd.create("idle-%04d" % len(ids), IDLE_SOURCE, {"interval": 60})["id"])
                post_s.append(time.monotonic() - t)
            created = time.monotonic() - t0
            jd.wait_all(level)
            up = time.monotonic() - t0
            time.sleep(SETTLE)
            cpu0, w0 = jb.proc_cpu_s(jd.proc.pid), time.monotonic()
            m0 = jail_memory(jd.proc.pid)
            time.sleep(IDLE_SECONDS)
            cpu1, w1 = jb.proc_cpu_s(jd.proc.pid), time.monotonic()
            m1 = jail_memory(jd.proc.pid)
            mem_avail = meminfo("MemAvailable")
            cg_mem = cgroup_memory_kib()
            per_worker_metrics = metrics_workers(jd)
            ws = jd.workers()
            health = jd.ok("GET", "/v1/health").json()
            host = load.stop()
            if len(m1["jails"]) != level or health["workers"] != level:
                die("%d jails, health %d workers; expected %d" % (len(m1["jails"]), health["workers"], level))
            uss = [j["uss"] for j in m1["jails"]]
            mine = post_s[start:] or [math.nan]
            res["levels"].append({
                "workers": level, "create_s": created, "up_s": up,
                "post_ms_first_100": statistics.mean(mine[:100]) * 1e3,
                "post_ms_last_100": statistics.mean(mine[-100:]) * 1e3,
                "uss_kib": {"mean": statistics.mean(uss), "p50": pct(uss, 50), "max": max(uss), "min": min(uss)},
                "uss_kib_before_window_mean": statistics.mean(j["uss"] for j in m0["jails"]),
                "pss_kib_mean": statistics.mean(j["pss"] for j in m1["jails"]),
                "rss_kib_mean": statistics.mean(j["rss"] for j in m1["jails"]),
                "private_dirty_kib_mean": statistics.mean(j["dirty"] for j in m1["jails"]),
                "jails_pss_kib": sum(j["pss"] for j in m1["jails"]),
                "zygotes": [{k: z[k] for k in ("uss", "pss", "rss")} for z in m1["zygotes"]],
                "zygotes_pss_kib": sum(z["pss"] for z in m1["zygotes"]),
                "jaild_vmrss_kib": int(jb.proc_status(jd.proc.pid, "VmRSS")[0]),
                "jaild_vmhwm_kib": int(jb.proc_status(jd.proc.pid, "VmHWM")[0]),
                "jaild_pss_kib": rollup(jd.proc.pid)["Pss"],
                "mem_available_drop_kib": mem_before - mem_avail, "cgroup_memory_kib": cg_mem,
                "metrics_workers_memory_cpu": per_worker_metrics,
                "jaild_cpu_pct": 100 * (cpu1 - cpu0) / (w1 - w0),
                "jails_cpu_pct": 100 * (m1["jails_cpu_s"] - m0["jails_cpu_s"]) / (w1 - w0),
                "descendants": m1["descendants"],
                "ticks": sum(w["stats"]["ticks"] for w in ws),
                "ticks_failed": sum(w["stats"]["ticks_failed"] for w in ws),
                "restarts": sum(w["stats"]["restarts"] for w in ws),
                "worker_zygote": health["zygotes"]["worker"] if health.get("zygotes") else None,
                "host": host, "loadavg": jb.loadavg()})
        t0 = time.monotonic()
        jd.delete_all()
        res["delete_all_s"] = time.monotonic() - t0
        deadline = time.monotonic() + jb.WAIT_LIMIT
        while jb.jail_pids() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        jd.close()
    res["loadavg_end"] = jb.loadavg()
    return res


def show_uss(r):
    print("== idle workers (numpy and pandas imported at the top, a tick every 60 s); measured after %g s of settling "
          "and %g s of idling; load %s at start" % (r["settle_s"], r["idle_seconds"], r["loadavg_start"]))
    print("   jaild with its two zygotes up: MemAvailable -%d KiB" % r["jaild_up_mem_drop_kib"])
    print("%8s %9s %9s %9s %9s %9s %11s %11s %11s %12s %10s %10s" % (
        "workers", "USS mean", "USS p50", "USS max", "PSS mean", "RSS mean", "jaild RSS", "total PSS", "MemAvail -",
        "jaild CPU %", "jails CPU%", "create s"))
    for x in r["levels"]:
        total = x["jails_pss_kib"] + x["zygotes_pss_kib"] + x["jaild_pss_kib"]
        print("%8d %9.0f %9.0f %9.0f %9.0f %9.0f %11d %11d %11d %12.3f %10.3f %10.1f" % (
            x["workers"], x["uss_kib"]["mean"], x["uss_kib"]["p50"], x["uss_kib"]["max"], x["pss_kib_mean"],
            x["rss_kib_mean"], x["jaild_vmrss_kib"], total, x["mem_available_drop_kib"], x["jaild_cpu_pct"],
            x["jails_cpu_pct"], x["up_s"]))
    print("   (KiB; total PSS: the jails', the zygotes' and jaild's; MemAvail -: MemAvailable's drop since before "
          "jaild started, the whole host's)")
    for x in r["levels"]:
        print("  %d workers: the job groups' memory (cgroup) %s KiB, %.0f KiB a worker; /metrics has a memory figure "
              "for %d workers, a CPU figure for %d" % (x["workers"], x["cgroup_memory_kib"],
                                                       (x["cgroup_memory_kib"] or 0) / x["workers"],
                                                       *x["metrics_workers_memory_cpu"]))
    for x in r["levels"]:
        print("  %d workers: USS mean %.2f MiB (%s the 3 MiB target), %.2f MiB before the idle window; "
              "jaild CPU %.3f%% of a core (%s the 2%% target); created in %.1f s (%.1f ms a POST for the first 100 "
              "of this level, %.1f for the last 100), %d ticks, %d failed, %d restarts; zygotes' PSS %d KiB; "
              "during: %s" % (x["workers"], x["uss_kib"]["mean"] / 1024, "within" if x["uss_kib"]["mean"] <= 3072
                              else "OVER", x["uss_kib_before_window_mean"] / 1024, x["jaild_cpu_pct"],
                              "within" if x["jaild_cpu_pct"] <= 2 else "OVER", x["create_s"],
                              x["post_ms_first_100"], x["post_ms_last_100"], x["ticks"], x["ticks_failed"],
                              x["restarts"], x["zygotes_pss_kib"], show_host(x["host"])))
    print("  all deleted in %.1f s; load %s at end" % (r["delete_all_s"], r["loadavg_end"]))


# ---------------------------------------------------------------- part 3: jitter

def part_jitter():
    load = HostLoad()
    res = jb.part_ticks(JITTER, SECONDS, "import numpy, pandas\n" + jb.TICK_SOURCE)
    res["host"] = load.stop()
    return res


def show_jitter(r):
    jb.show_ticks(r)
    print("  during: " + show_host(r["host"]))
    z = (r.get("zygotes") or {}).get("worker")
    if z:
        print("  worker zygote: %d jails cloned, %d fallbacks, generation %d" % (z["spawned"], z["fallbacks"],
                                                                              z["generation"]))


# ---------------------------------------------------------------- main

def cgroup_kind():
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "v2 (unified)"
    v1 = sorted(e for e in os.listdir("/sys/fs/cgroup") if os.path.exists(os.path.join("/sys/fs/cgroup", e, "tasks")))
    return "v1 (%s)" % ", ".join(v1)


def machine():
    m = jb.machine()
    m["cgroup"] = cgroup_kind()
    m["mem_total_kib"] = meminfo("MemTotal")
    m["versions"] = subprocess.run([PY, "-c", "import sys, numpy, pandas; print(sys.version.split()[0], "
                                    "numpy.__version__, pandas.__version__)"], capture_output=True,
                                   text=True).stdout.split()
    m["unshare"] = subprocess.run(["unshare", "--version"], capture_output=True, text=True).stdout.strip()
    return m


def main():
    parts = sys.argv[1:] or list(PARTS)
    bad = [p for p in parts if p not in PARTS]
    if bad or any(p.startswith("-") for p in parts):
        die("usage: bench/warm.py [spawn] [uss] [jitter]")
    if os.geteuid() != 0:
        die("needs root (jaild jails as root)")
    for p in (jb.JAILRUN, jb.JAILD):
        if not os.access(p, os.X_OK):
            die("no binary at %s (build it, or set JAILRUN / JAILD)" % p)
    if jb.jail_pids() or jb.job_groups():
        die("uids %d-%d or cgroup parent %s already in use: %s %s"
            % (jb.UID_LO, jb.UID_HI, jb.CGROUP_PARENT, jb.jail_pids(), jb.job_groups()))
    if "uss" in parts and max(USS) + 8 > jb.UID_HI - jb.UID_LO + 1:
        die("%d workers do not fit uids %d-%d" % (max(USS), jb.UID_LO, jb.UID_HI))
    m = machine()
    res = {"machine": m}
    run = {"spawn": part_spawn, "uss": part_uss, "jitter": part_jitter}
    try:
        for p in parts:
            res[p] = run[p]()
    finally:
        jb.remove_parents()
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "warm.json"), "w") as f:
        json.dump(res, f, indent=1)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        print("machine: %s; %d cores, %s; %.1f GiB; kernel %s; python %s, numpy %s, pandas %s; load %s at start; "
              "build %s; cgroup %s" % (m["date"], m["nproc"], m["cpu"], m["mem_total_kib"] / 2**20, m["kernel"],
                                       *(m["versions"] + ["?"] * 3)[:3], m["loadavg"], m["commit"], m["cgroup"]))
        for p in parts:
            print()
            {"spawn": show_spawn, "uss": show_uss, "jitter": show_jitter}[p](res[p])
    lines = buf.getvalue()
    print(lines, end="")
    with open(os.path.join(OUT, "warm.txt"), "w") as f:
        f.write(lines)


if __name__ == "__main__":
    try:
        main()
    except httpx.HTTPError as e:
        die("HTTP: %r" % e)
