#!/usr/bin/python3.11
"""bench/jaild.py: the daemon's benchmark (issue 15).

Four parts, each selectable by name on the command line (default: all):

  jobs     POST /v1/jobs of `pass` against `jailrun --profile exec pass.py`
           per job and bare `python3.11 -I pass.py`, all in one run:
           sequential and with JAILD_BENCH_CONC clients at once, in rounds
           that interleave the three so that drift of a shared host hits all
           of them alike; latency p50/p99 and requests/s.
  ticks    JAILD_BENCH_WORKERS workers with schedule {"interval": 1}, a tick
           that logs time.monotonic() (the jail has no time namespace, so its
           CLOCK_MONOTONIC is the host's), run for JAILD_BENCH_SECONDS;
           lateness of each tick against its slot, skipped slots, overlaps.
  rss      jaild's VmRSS with 0, 50 and 200 idle (manual-tick) workers, and
           its CPU while they idle (JAILD_BENCH_IDLE_SECONDS).
  startup  the start-up command of bench/run (`jailrun --profile exec
           pass.py`) for this build and for another jailrun binary
           (--before PATH, e.g. a build of the commit before the engine
           restructuring), in ONE hyperfine invocation, with bare
           `python3.11 -I pass.py` beside them; then the two jailruns
           alternated run by run (ABBA), as a check on hyperfine's blocks.
           Skipped without --before.

Each jaild runs with a temp config of its own (socket, registry, state,
workspaces in a temp dir), cgroup parent "jaild-bench" (or a group below
it) and uids in 400000-401999, so it shares nothing with the test suite's
daemons. Every
jaild, worker, cgroup and temp dir made here is removed before the script
ends, and the script checks it.

Writes bench/out/jaild.json (every figure) and prints a summary (also in
bench/out/jaild.txt). Needs root, hyperfine, python3-httpx.

Knobs: JAILD_BENCH_JOBS (jobs per kind and mode, 200), JAILD_BENCH_CONC (4),
JAILD_BENCH_WORKERS (50), JAILD_BENCH_SECONDS (60), JAILD_BENCH_IDLE
("0,50,200"), JAILD_BENCH_IDLE_SECONDS (20), JAILD_BENCH_RUNS (hyperfine
--min-runs, 50), JAILD_BENCH_PAIRS (alternated start-up pairs, 300).
JAILRUN and JAILD name the binaries under test.

  bench/jaild.py [--before OLD_JAILRUN] [jobs] [ticks] [rss] [startup]
"""
import argparse
import contextlib
import io
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import httpx

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.normpath(os.path.join(HERE, ".."))
JAILRUN = os.path.realpath(os.environ.get("JAILRUN") or os.path.join(TOP, "supervisor", "jailrun"))
JAILD = os.path.realpath(os.environ.get("JAILD") or os.path.join(TOP, "supervisor", "jaild", "jaild"))
PY = "/usr/bin/python3.11"
OUT = os.path.join(HERE, "out")

N_JOBS = int(os.environ.get("JAILD_BENCH_JOBS", "200"))
CONC = int(os.environ.get("JAILD_BENCH_CONC", "4"))
N_WORKERS = int(os.environ.get("JAILD_BENCH_WORKERS", "50"))
SECONDS = float(os.environ.get("JAILD_BENCH_SECONDS", "60"))
IDLE = [int(x) for x in os.environ.get("JAILD_BENCH_IDLE", "0,50,200").split(",")]
IDLE_SECONDS = float(os.environ.get("JAILD_BENCH_IDLE_SECONDS", "20"))
RUNS = int(os.environ.get("JAILD_BENCH_RUNS", "50"))
PAIRS = int(os.environ.get("JAILD_BENCH_PAIRS", "300"))

CGROUP_PARENT = "jaild-bench"
TMP = "/tmp"           # where each jaild's files go (socket, state, registry, workspaces)
UID_LO, UID_HI = 400000, 401999  # every jail of bench/jaild.py and bench/warm.py
ROUND = 50             # jobs of one kind in a row before the next kind's turn
WAIT_LIMIT = 300       # seconds any wait for the daemon may take, at most
CLK_TCK = os.sysconf("SC_CLK_TCK")

TICK_SOURCE = """\
import time
_s = {"end": 0.0}
def tick(ctx):
    t = time.monotonic()
    ctx.log.info("T %.6f %.6f" % (t, _s["end"]))
    _s["end"] = time.monotonic()
"""
IDLE_SOURCE = "def tick(ctx):\n    pass\n"


def die(msg):
    sys.exit("bench/%s: %s" % (os.path.basename(sys.argv[0]), msg))


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def pct(xs, p):
    """The p-th percentile (inclusive method), p in 0..100."""
    xs = sorted(xs)
    if len(xs) == 1:
        return xs[0]
    return statistics.quantiles(xs, n=100, method="inclusive")[p - 1] if 0 < p < 100 else \
        (xs[0] if p == 0 else xs[-1])


def proc_cpu_s(pid):
    """utime + stime of a process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split()[1:]
    return None


def jail_pids():
    """Processes whose real uid is in this bench's jail uid range."""
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                uid = int(proc_status(int(p), "Uid")[0])
            except (OSError, TypeError):
                continue
            if UID_LO <= uid <= UID_HI:
                out.append(int(p))
    return out


def jails_usage():
    """(total PSS in KiB, total CPU seconds) of the jails' processes."""
    pss, cpu = 0, 0.0
    for pid in jail_pids():
        try:
            with open("/proc/%d/smaps_rollup" % pid) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
            cpu += proc_cpu_s(pid)
        except OSError:
            pass
    return pss, cpu


def cgroup_dirs():
    """The bench's cgroup parent in every hierarchy it exists in (v1 and
    v2 mounts alike: jaild makes it in each hierarchy it uses)."""
    out = []
    roots = ["/sys/fs/cgroup"] + sorted(os.path.join("/sys/fs/cgroup", e) for e in os.listdir("/sys/fs/cgroup"))
    for root in roots:
        d = os.path.join(root, CGROUP_PARENT)
        if os.path.isdir(d) and os.path.realpath(d) not in [os.path.realpath(x) for x in out]:
            out.append(d)
    return out


def job_groups():
    """Job groups anywhere below the bench's parent (a jaild of the bench
    may have a group below it as its own parent)."""
    return sorted({os.path.relpath(os.path.join(top, e), d) for d in cgroup_dirs() for top, dirs, _ in os.walk(d)
                   for e in dirs if e.startswith("job-")})


def remove_parents():
    """The parent groups the bench's jailds made (now empty), deepest first."""
    for d in cgroup_dirs():
        for top, _, _ in sorted(os.walk(d), key=lambda x: -x[0].count("/")):
            try:
                os.rmdir(top)
            except OSError as e:
                print("bench: cannot remove %s: %s" % (top, e), file=sys.stderr)


class Jaild:
    """A jaild of this bench's own, in a temp dir."""

    def __init__(self, **config):
        self.dir = tempfile.mkdtemp(prefix="jdb-", dir=TMP)
        os.chmod(self.dir, 0o755)
        self.socket = os.path.join(self.dir, "jaild.sock")
        cfg = {"socket": {"path": self.socket, "mode": "0600"}, "cgroup_parent": CGROUP_PARENT,
               "uid_range": {"lo": UID_LO, "hi": UID_HI},
               "state": {"backend": "sqlite", "sqlite": {"path": os.path.join(self.dir, "state.sqlite")}},
               "workspace_root": os.path.join(self.dir, "ws"),
               "registry": os.path.join(self.dir, "reg", "registry.db"), "log_level": "warning"}
        cfg.update(config)
        self.config_path = os.path.join(self.dir, "jaild.json")
        with open(self.config_path, "w") as f:
            json.dump(cfg, f)
        self.log_path = os.path.join(self.dir, "jaild.log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([JAILD, "--config", self.config_path], stdout=self.log, stderr=self.log)
        self.http = httpx.Client(transport=httpx.HTTPTransport(uds=self.socket), base_url="http://jaild",
                                 timeout=WAIT_LIMIT)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                die("jaild exited with %s: %s" % (self.proc.returncode, self.logs()))
            try:
                if self.http.get("/v1/health").status_code == 200:
                    break
            except (httpx.ConnectError, httpx.RemoteProtocolError, FileNotFoundError):
                pass
            if time.monotonic() > deadline:
                die("jaild did not answer within 30 s: " + self.logs())
            time.sleep(0.05)

    def logs(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()[-4000:]

    def client(self):
        return httpx.Client(transport=httpx.HTTPTransport(uds=self.socket), base_url="http://jaild",
                            timeout=WAIT_LIMIT)

    def ok(self, method, path, body=None, status=200):
        r = self.http.request(method, path, json=body)
        if r.status_code != status:
            die("%s %s: %d %s" % (method, path, r.status_code, r.text[:500]))
        return r

    def create(self, name, source, schedule=None):
        spec = {"name": name, "source": source}
        if schedule is not None:
            spec["schedule"] = schedule
        return self.ok("POST", "/v1/workers", spec, 201).json()

    def wait_idle(self, ids, states=("idle", "busy")):
        """Until every worker has its jail up (idle, or busy in a tick)."""
        deadline = time.monotonic() + WAIT_LIMIT
        pending = set(ids)
        while pending:
            for wid in list(pending):
                w = self.ok("GET", "/v1/workers/" + wid).json()
                if w["state"] in states:
                    pending.discard(wid)
                elif w["state"] in ("stopped", "restarting"):
                    die("worker %s is %s: %s" % (wid, w["state"], json.dumps(w)[:500]))
            if pending:
                if time.monotonic() > deadline:
                    die("%d workers not up after %d s" % (len(pending), WAIT_LIMIT))
                time.sleep(0.1)

    def delete_all(self):
        for w in self.ok("GET", "/v1/workers").json()["workers"]:
            self.ok("DELETE", "/v1/workers/" + w["id"])

    def close(self):
        """Stop it (SIGTERM, then SIGKILL after 60 s), remove its files and
        check that nothing of it is left: jails, job groups."""
        try:
            self.http.close()
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
                    print("bench/jaild.py: jaild ignored SIGTERM for 60 s; killed", file=sys.stderr)
            self.log.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
        deadline = time.monotonic() + 10
        while (jail_pids() or job_groups()) and time.monotonic() < deadline:
            time.sleep(0.1)
        if jail_pids() or job_groups():
            die("left behind after jaild stopped: jails %s, job groups %s" % (jail_pids(), job_groups()))


# ---------------------------------------------------------------- part 1: jobs

def run_kind(kind, n, conc, jd, tmp):
    """n jobs of one kind by conc clients at once: (latencies s, wall s)."""
    lat = []
    lock = threading.Lock()
    errors = []

    def client(count):
        try:
            mine = []
            if kind == "jaild":
                with jd.client() as c:
                    for _ in range(count):
                        t0 = time.perf_counter()
                        r = c.post("/v1/jobs", json={"source": "pass\n", "profile": "exec"})
                        dt = time.perf_counter() - t0
                        j = r.json() if r.status_code == 200 else {}
                        if j.get("status") != "ok" or j.get("exit_code") != 0 or j.get("stderr"):
                            raise RuntimeError("POST /v1/jobs: %d %s" % (r.status_code, r.text[:300]))
                        mine.append(dt)
            else:
                cmd = [JAILRUN, "--profile", "exec", "pass.py"] if kind == "jailrun" else [PY, "-I", "pass.py"]
                for _ in range(count):
                    t0 = time.perf_counter()
                    p = subprocess.run(cmd, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                       timeout=WAIT_LIMIT)
                    dt = time.perf_counter() - t0
                    if p.returncode != 0 or p.stderr:
                        raise RuntimeError("%s: exit %d %s" % (cmd, p.returncode, p.stderr[:300]))
                    mine.append(dt)
            with lock:
                lat.extend(mine)
        except Exception as e:  # reported by the caller
            with lock:
                errors.append(repr(e))

    shares = [n // conc + (1 if i < n % conc else 0) for i in range(conc)]
    ts = [threading.Thread(target=client, args=(s,)) for s in shares]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        die("jobs (%s): %s" % (kind, errors[0]))
    return lat, wall


def part_jobs():
    kinds = ["jaild", "jailrun", "python"]
    res = {"n": N_JOBS, "conc": CONC, "round": ROUND, "loadavg_start": loadavg()}
    with tempfile.TemporaryDirectory(prefix="jdb-jobs-") as tmp:
        with open(os.path.join(tmp, "pass.py"), "w") as f:
            f.write("pass\n")
        jd = Jaild(max_live_jobs=max(CONC, 8), queue_wait=60)
        try:
            for conc in (1, CONC):
                for k in kinds:  # warm-up, not counted
                    run_kind(k, 2 * conc, conc, jd, tmp)
                got = {k: {"lat": [], "wall": 0.0} for k in kinds}
                left = N_JOBS
                while left > 0:
                    step = min(ROUND, left)
                    for k in kinds:
                        lat, wall = run_kind(k, step, conc, jd, tmp)
                        got[k]["lat"] += lat
                        got[k]["wall"] += wall
                    left -= step
                for k in kinds:
                    lat = got[k]["lat"]
                    res["%s_c%d" % (k, conc)] = {
                        "jobs": len(lat), "p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3,
                        "mean_ms": statistics.mean(lat) * 1e3, "min_ms": min(lat) * 1e3, "max_ms": max(lat) * 1e3,
                        "per_s": len(lat) / got[k]["wall"]}
            h = jd.ok("GET", "/v1/health").json()
            res["jaild_health_after"] = h
        finally:
            jd.close()
    res["loadavg_end"] = loadavg()
    return res


def show_jobs(r):
    print("== POST /v1/jobs of `pass` vs jailrun per job (%d jobs per kind and mode, in rounds of %d; "
          "load %s at start)" % (r["n"], r["round"], r["loadavg_start"]))
    print("%-42s %8s %8s %8s %8s %9s" % ("", "p50 ms", "p99 ms", "mean ms", "min ms", "req/s"))
    labels = {"jaild": "jaild POST /v1/jobs", "jailrun": "jailrun --profile exec pass.py",
              "python": "python3.11 -I pass.py"}
    for conc in (1, r["conc"]):
        for k in ("jaild", "jailrun", "python"):
            m = r["%s_c%d" % (k, conc)]
            print("%-42s %8.2f %8.2f %8.2f %8.2f %9.1f" % ("%s, %d client%s" % (labels[k], conc, "s" * (conc > 1)),
                                                          m["p50_ms"], m["p99_ms"], m["mean_ms"], m["min_ms"],
                                                          m["per_s"]))
        a, b, c = (r["%s_c%d" % (k, conc)] for k in ("jaild", "jailrun", "python"))
        print("  %d client%s: jaild/jailrun p50 %.2f, req/s %.2fx; jaild/python p50 %.2f; jailrun/python p50 %.2f"
              % (conc, "s" * (conc > 1), a["p50_ms"] / b["p50_ms"], a["per_s"] / b["per_s"],
                 a["p50_ms"] / c["p50_ms"], b["p50_ms"] / c["p50_ms"]))
    print("load %s at end" % r["loadavg_end"])


# ---------------------------------------------------------------- part 2: ticks

NOTE_SKIP = re.compile(r"^(\d+) slots? of [0-9.e+-]+ s skipped")


def analyse_worker(entries, iv, win):
    """Ticks of one worker from its log, in order: lateness of each against
    its slot, slots skipped (the engine's notes), overlaps.

    The slot of each tick: the first tick is slot 0, each later one the
    slot after the previous tick's, plus the slots a note says were
    skipped. The schedule's origin (the engine's clock reading before the
    first tick) is not visible from outside; it is taken as the earliest
    t - slot * interval over the worker's ticks, so lateness is measured
    from the worker's most punctual tick (>= 0; the true figure is higher
    by that tick's own dispatch time, a constant per worker)."""
    ticks = []  # (slot, t, prev_end)
    slot, skipped, pending_skip = -1, 0, 0
    for e in entries:
        msg = e.get("message", "")
        if e.get("type") == "note":
            m = NOTE_SKIP.match(msg)
            if m:
                pending_skip += int(m.group(1))
                skipped += int(m.group(1))
            continue
        if e.get("type") == "log" and msg.startswith("T "):
            _, t, prev_end = msg.split()
            slot += 1 + pending_skip
            pending_skip = 0
            ticks.append((slot, float(t), float(prev_end)))
    if not ticks:
        return None
    origin = min(t - s * iv for s, t, _ in ticks)
    late, overlaps, doubles, gaps = [], 0, 0, 0
    for i, (s, t, prev_end) in enumerate(ticks):
        if win[0] <= t <= win[1]:
            late.append(t - origin - s * iv)
        if i:
            ps, pt, _ = ticks[i - 1]
            if prev_end and t < prev_end:
                overlaps += 1
            if s == ps:
                doubles += 1
            if t - pt > 1.5 * iv and s - ps == 1:  # a gap the slot count does not explain
                gaps += 1
    in_win = [s for s, t, _ in ticks if win[0] <= t <= win[1]]
    expected = math.floor((win[1] - origin) / iv) - math.ceil((win[0] - origin) / iv) + 1  # slot starts in it
    return {"ticks": len(ticks), "ticks_in_window": len(in_win), "expected_in_window": expected,
            "late": late, "skipped": skipped, "overlaps": overlaps, "doubles": doubles, "gaps": gaps}


def part_ticks(workers=N_WORKERS, seconds=SECONDS, source=TICK_SOURCE, **config):
    """workers ticking every second for seconds, on a jaild with config."""
    iv = 1.0
    res = {"workers": workers, "interval": iv, "seconds": seconds, "loadavg_start": loadavg()}
    jd = Jaild(max_live_jobs=8, **config)
    try:
        ids = []
        t_create = time.monotonic()
        for i in range(workers):
            ids.append(jd.create("tick-%03d" % i, source, {"interval": iv})["id"])
        jd.wait_idle(ids)
        res["all_up_s"] = time.monotonic() - t_create
        cpu0, w0 = proc_cpu_s(jd.proc.pid), time.monotonic()
        _, jcpu0 = jails_usage()
        time.sleep(seconds)
        cpu1, w1 = proc_cpu_s(jd.proc.pid), time.monotonic()
        _, jcpu1 = jails_usage()
        res["jaild_cpu_pct"] = 100 * (cpu1 - cpu0) / (w1 - w0)
        res["jails_cpu_pct"] = 100 * (jcpu1 - jcpu0) / (w1 - w0)
        res["jaild_vmrss_kib"] = int(proc_status(jd.proc.pid, "VmRSS")[0])
        per, stats = [], []
        for wid in ids:
            w = jd.ok("GET", "/v1/workers/" + wid).json()
            stats.append(w["stats"])
            lines = jd.ok("GET", "/v1/workers/%s/logs" % wid).text.splitlines()
            a = analyse_worker([json.loads(x) for x in lines if x], iv, (w0, w1))
            if a is None:
                die("worker %s logged no tick: %s" % (wid, lines[-5:]))
            a["stats_ticks"] = w["stats"]["ticks"]
            per.append(a)
        res["zygotes"] = jd.ok("GET", "/v1/health").json().get("zygotes")
        jd.delete_all()
    finally:
        jd.close()
    late = [x for a in per for x in a["late"]]
    res.update({
        "ticks_in_window": len(late), "expected_in_window": sum(a["expected_in_window"] for a in per),
        "late_p50_ms": pct(late, 50) * 1e3, "late_p99_ms": pct(late, 99) * 1e3, "late_max_ms": max(late) * 1e3,
        "late_mean_ms": statistics.mean(late) * 1e3,
        "slots_skipped": sum(a["skipped"] for a in per), "overlaps": sum(a["overlaps"] for a in per),
        "doubles": sum(a["doubles"] for a in per), "unexplained_gaps": sum(a["gaps"] for a in per),
        "ticks_logged": sum(a["ticks"] for a in per), "ticks_counted_by_jaild": sum(s["ticks"] for s in stats),
        "ticks_failed": sum(s["ticks_failed"] for s in stats), "restarts": sum(s["restarts"] for s in stats),
        "worker_late_max_ms": sorted(max(a["late"]) * 1e3 for a in per if a["late"]),
        "loadavg_end": loadavg()})
    return res


def show_ticks(r):
    print("== tick dispatch: %d workers, interval %g s, %g s window (load %s at start, %s at end)"
          % (r["workers"], r["interval"], r["seconds"], r["loadavg_start"], r["loadavg_end"]))
    print("  all %d workers up %.1f s after the first create" % (r["workers"], r["all_up_s"]))
    print("  ticks in the window: %d (slots in the window: %d)" % (r["ticks_in_window"], r["expected_in_window"]))
    print("  lateness against the slot: p50 %.2f ms, p99 %.2f ms, max %.2f ms (mean %.2f ms)"
          % (r["late_p50_ms"], r["late_p99_ms"], r["late_max_ms"], r["late_mean_ms"]))
    print("  slots skipped: %d; ticks overlapping the previous: %d; two ticks in one slot: %d; "
          "gaps > 1.5 slots without a skip note: %d" % (r["slots_skipped"], r["overlaps"], r["doubles"],
                                                      r["unexplained_gaps"]))
    print("  ticks logged %d, counted by jaild %d, failed %d, restarts %d"
          % (r["ticks_logged"], r["ticks_counted_by_jaild"], r["ticks_failed"], r["restarts"]))
    print("  jaild CPU %.2f%% of a core, the jails' %.2f%%, jaild VmRSS %d KiB"
          % (r["jaild_cpu_pct"], r["jails_cpu_pct"], r["jaild_vmrss_kib"]))


# ---------------------------------------------------------------- part 3: rss

def part_rss():
    res = {"levels": [], "idle_seconds": IDLE_SECONDS, "loadavg_start": loadavg()}
    jd = Jaild(max_live_jobs=8)
    try:
        ids = []
        for level in sorted(IDLE):
            t0 = time.monotonic()
            while len(ids) < level:
                ids.append(jd.create("idle-%03d" % len(ids), IDLE_SOURCE)["id"])
            jd.wait_idle(ids, ("idle",))
            up = time.monotonic() - t0
            time.sleep(2)  # let the start-ups' allocations settle
            cpu0, w0 = proc_cpu_s(jd.proc.pid), time.monotonic()
            _, jcpu0 = jails_usage()
            time.sleep(IDLE_SECONDS)
            cpu1, w1 = proc_cpu_s(jd.proc.pid), time.monotonic()
            pss, jcpu1 = jails_usage()
            h = jd.ok("GET", "/v1/health").json()
            if h["workers"] != level:
                die("health says %d workers, expected %d" % (h["workers"], level))
            res["levels"].append({
                "workers": level, "up_s": up, "vmrss_kib": int(proc_status(jd.proc.pid, "VmRSS")[0]),
                "vmhwm_kib": int(proc_status(jd.proc.pid, "VmHWM")[0]),
                "jaild_cpu_pct": 100 * (cpu1 - cpu0) / (w1 - w0),
                "jails_cpu_pct": 100 * (jcpu1 - jcpu0) / (w1 - w0), "jails_pss_kib": pss,
                "jails": len(jail_pids()), "loadavg": loadavg()})
        jd.delete_all()
    finally:
        jd.close()
    return res


def show_rss(r):
    print("== jaild memory and idle CPU (load %s at start); CPU over %g s of idling, read from /proc in clock "
          "ticks of %g ms (0.000 is under %.3f%%)" % (r["loadavg_start"], r["idle_seconds"], 1e3 / CLK_TCK,
                                                     100 / CLK_TCK / r["idle_seconds"]))
    print("%8s %12s %12s %14s %14s %16s %8s" % ("workers", "VmRSS KiB", "VmHWM KiB", "jaild CPU %",
                                               "jails' CPU %", "jails' PSS KiB", "up s"))
    base = r["levels"][0]["vmrss_kib"]
    for x in r["levels"]:
        print("%8d %12d %12d %14.3f %14.3f %16d %8.1f" % (x["workers"], x["vmrss_kib"], x["vmhwm_kib"],
                                                          x["jaild_cpu_pct"], x["jails_cpu_pct"],
                                                          x["jails_pss_kib"], x["up_s"]))
    for x in r["levels"][1:]:
        print("  %d workers: jaild +%d KiB over %d workers (%.1f KiB each); jails %.1f MiB PSS each"
              % (x["workers"], x["vmrss_kib"] - base, r["levels"][0]["workers"],
                 (x["vmrss_kib"] - base) / max(1, x["workers"] - r["levels"][0]["workers"]),
                 x["jails_pss_kib"] / 1024 / max(1, x["jails"])))


# ---------------------------------------------------------------- part 4: start-up

def part_startup(before):
    res = {"loadavg_start": loadavg(), "before": before, "after": JAILRUN}
    cmds = ["%s --profile exec pass.py" % JAILRUN, "%s --profile exec pass.py" % before, "%s -I pass.py" % PY]
    with tempfile.TemporaryDirectory(prefix="jdb-start-") as tmp:
        with open(os.path.join(tmp, "pass.py"), "w") as f:
            f.write("pass\n")
        for c in cmds:  # each must really run before it is timed
            p = subprocess.run(c.split(), cwd=tmp, capture_output=True, timeout=60)
            if p.returncode != 0 or p.stderr:
                die("sanity run failed: %s: %s" % (c, p.stderr[:300]))
        os.makedirs(OUT, exist_ok=True)
        js = os.path.join(OUT, "jaild_startup.json")
        subprocess.run(["hyperfine", "-N", "--warmup", "5", "--min-runs", str(RUNS), "--export-json", js] + cmds,
                       cwd=tmp, check=True, timeout=3600)
        # A cross-check hyperfine cannot give: the two jailruns alternated run
        # by run (hyperfine times each command's runs in one block, so a
        # shared host's drift between blocks lands in the ratio).
        # Pairs in the order ABBA ABBA ..., so neither goes first more often.
        alt = {0: [], 1: []}
        for i in range(2 * PAIRS):
            k = (i + i // 2) % 2
            t0 = time.perf_counter()
            p = subprocess.run(cmds[k].split(), cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               timeout=60)
            alt[k].append(time.perf_counter() - t0)
            if p.returncode != 0 or p.stderr:
                die("%s: exit %d %s" % (cmds[k], p.returncode, p.stderr[:300]))
        diffs = sorted((a - b) * 1e3 for a, b in zip(alt[0], alt[1]))
        res["alternated"] = {"runs_each": len(alt[0]), "after_median_ms": statistics.median(alt[0]) * 1e3,
                             "before_median_ms": statistics.median(alt[1]) * 1e3,
                             "after_mean_ms": statistics.mean(alt[0]) * 1e3,
                             "before_mean_ms": statistics.mean(alt[1]) * 1e3,
                             "diff_median_ms": statistics.median(diffs),
                             "diff_p25_ms": pct(diffs, 25), "diff_p75_ms": pct(diffs, 75),
                             "pairs_after_faster": sum(d < 0 for d in diffs)}
        # 95% interval of the median difference, free of any distribution:
        # the order statistics the sign test puts around it.
        k = max(0, int(len(diffs) / 2 - 1.96 * math.sqrt(len(diffs)) / 2))
        res["alternated"]["diff_median_ci95_ms"] = [diffs[k], diffs[len(diffs) - 1 - k]]
    with open(js) as f:
        hres = json.load(f)["results"]
    res["results"] = [{"command": h["command"], "n": len(h["times"])} |
                      {k: h[k] * 1e3 for k in ("mean", "stddev", "median", "min")} for h in hres]
    a, b, c = res["results"]
    r = a["mean"] / b["mean"]
    res["after_over_before"] = r
    res["after_over_before_sd"] = r * math.hypot(a["stddev"] / a["mean"], b["stddev"] / b["mean"])
    res["after_over_before_median"] = a["median"] / b["median"]
    res["after_over_python"] = a["mean"] / c["mean"]
    res["before_over_python"] = b["mean"] / c["mean"]
    res["loadavg_end"] = loadavg()
    return res


def show_startup(r):
    print("== start-up, one hyperfine invocation (load %s at start, %s at end)"
          % (r["loadavg_start"], r["loadavg_end"]))
    names = ["after: " + r["after"], "before: " + r["before"], "python3.11 -I"]
    for name, x in zip(names, r["results"]):
        print("  %-60s %7.2f ± %5.2f ms, median %7.2f, min %7.2f, %d runs"
              % (name[-60:], x["mean"], x["stddev"], x["median"], x["min"], x["n"]))
    print("  after / before = %.3f ± %.3f (of means), %.3f (of medians); after / python %.2f, before / python %.2f"
          % (r["after_over_before"], r["after_over_before_sd"], r["after_over_before_median"],
             r["after_over_python"], r["before_over_python"]))
    a = r["alternated"]
    print("  alternated run by run, ABBA (%d each, subprocess from Python): after median %.2f ms, before %.2f ms, "
          "after / before %.3f (medians), %.3f (means)" % (a["runs_each"], a["after_median_ms"], a["before_median_ms"],
                                                           a["after_median_ms"] / a["before_median_ms"],
                                                           a["after_mean_ms"] / a["before_mean_ms"]))
    lo, hi = a["diff_median_ci95_ms"]
    print("  paired difference after - before: median %+.2f ms (95%% interval %+.2f to %+.2f ms, i.e. %+.1f%% to "
          "%+.1f%% of before's median; quartiles %+.2f, %+.2f); after faster in %d of %d pairs"
          % (a["diff_median_ms"], lo, hi, 100 * lo / a["before_median_ms"], 100 * hi / a["before_median_ms"],
             a["diff_p25_ms"], a["diff_p75_ms"], a["pairs_after_faster"], a["runs_each"]))


# ---------------------------------------------------------------- main

def machine():
    def cmd(*a):
        return subprocess.run(a, capture_output=True, text=True).stdout.strip()
    with open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "nproc": os.cpu_count(), "cpu": cpu,
            "kernel": os.uname().release, "loadavg": loadavg(), "jailrun": JAILRUN, "jaild": JAILD,
            "commit": cmd("git", "-C", TOP, "rev-parse", "--short", "HEAD"),
            "hyperfine": cmd("hyperfine", "--version")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", help="the jailrun binary to compare start-up against")
    ap.add_argument("parts", nargs="*", help="jobs, ticks, rss, startup (default: all)")
    args = ap.parse_args()
    parts = args.parts or ["jobs", "ticks", "rss", "startup"]
    bad = [p for p in parts if p not in ("jobs", "ticks", "rss", "startup")]
    if bad:
        die("unknown part %s (jobs, ticks, rss, startup)" % bad[0])
    if os.geteuid() != 0:
        die("needs root (jaild and jailrun jail as root)")
    for p in (JAILRUN, JAILD):
        if not os.access(p, os.X_OK):
            die("no binary at %s (build it, or set JAILRUN / JAILD)" % p)
    if jail_pids() or job_groups():
        die("uids %d-%d or cgroup parent %s already in use: %s %s"
            % (UID_LO, UID_HI, CGROUP_PARENT, jail_pids(), job_groups()))
    if "startup" in parts and not args.before:
        print("bench/jaild.py: no --before binary: the start-up comparison is skipped", file=sys.stderr)
        parts.remove("startup")
    m = machine()
    res = {"machine": m}
    try:
        for p in parts:
            res[p] = part_jobs() if p == "jobs" else part_ticks() if p == "ticks" else part_rss() if p == "rss" \
                else part_startup(os.path.realpath(args.before))
    finally:
        remove_parents()
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "jaild.json"), "w") as f:
        json.dump(res, f, indent=1)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        print("machine: %s; %d cores, %s; kernel %s; load %s at start; build %s"
              % (m["date"], m["nproc"], m["cpu"], m["kernel"], m["loadavg"], m["commit"]))
        for p in parts:
            print()
            {"jobs": show_jobs, "ticks": show_ticks, "rss": show_rss, "startup": show_startup}[p](res[p])
    lines = buf.getvalue()
    print(lines, end="")
    with open(os.path.join(OUT, "jaild.txt"), "w") as f:
        f.write(lines)


if __name__ == "__main__":
    main()
