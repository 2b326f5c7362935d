#!/usr/bin/python3.11
"""bench/cgpool.py: a job's cgroup cost under jaild, per job.

Runs `pass` jobs (POST /v1/jobs, profile exec) one at a time, GAP seconds
apart (an idle host between starts, as a daemon mostly sees them), through
jaild with its pool of groups (cgroup_pool.size 4) and with a group made
and removed per job (size 0), and, with --before OLD_JAILD, through an
older jaild (one whose v1 jails were moved into their groups by the
supervisor). The jailds run side by side and take turns job by job, so
drift of a shared host hits all alike.

Per variant: the job's cgroup set-up and teardown on the supervisor's
clock (stats.cgroup_setup_us, cgroup_teardown_us: take/return for the
pool, mkdir+limits/kill+rmdir without; absent from older builds), the
jail's set-up from clone to its "jailed" message (jaild_spawn_seconds'
mean), the job's wall time (stats.wall_ms) and the request's round trip
on the client. Medians and p90.

Writes bench/out/cgpool.json and prints a summary. Needs root and
python3-httpx. JAILD names the binary under test.

  bench/cgpool.py [--before OLD_JAILD] [--jobs N] [--gap SECONDS]
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time

import httpx

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
PARENT = "jaild-bench-cgpool"


class Daemon:
    def __init__(self, name, binary, uid_lo, pool):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="cgpool-bench-", dir="/tmp")
        self.sock = os.path.join(self.dir, "s.sock")
        cfg = {"socket": {"path": self.sock, "mode": "0600"}, "cgroup_parent": "%s/%s" % (PARENT, name),
               "state": {"backend": "sqlite", "sqlite": {"path": os.path.join(self.dir, "state.db")}},
               "workspace_root": os.path.join(self.dir, "ws"), "registry": os.path.join(self.dir, "reg", "r.db"),
               "uid_range": {"lo": uid_lo, "hi": uid_lo + 999}, "log_level": "warning"}
        if pool is not None:
            cfg["cgroup_pool"] = {"size": pool}
        path = os.path.join(self.dir, "c.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        os.chmod(path, 0o600)
        self.log = open(os.path.join(self.dir, "log"), "wb")
        self.proc = subprocess.Popen([binary, "--config", path], stdout=self.log, stderr=self.log)
        self.client = httpx.Client(transport=httpx.HTTPTransport(uds=self.sock), base_url="http://j", timeout=60)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.client.get("/v1/health").status_code == 200:
                    break
            except (httpx.TransportError, FileNotFoundError):
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("cgpool: jaild %s did not start" % name)
            time.sleep(0.05)
        self.rows = []

    def job(self):
        t0 = time.monotonic()
        r = self.client.post("/v1/jobs", json={"source": "pass\n", "profile": "exec"})
        rtt = (time.monotonic() - t0) * 1e6
        if r.status_code != 200 or r.json()["status"] != "ok":
            raise SystemExit("cgpool: %s: %s" % (self.name, r.text))
        s = r.json()["stats"]
        self.rows.append({"rtt_us": rtt, "wall_us": s["wall_ms"] * 1000, "setup_us": s.get("cgroup_setup_us"),
                          "teardown_us": s.get("cgroup_teardown_us")})

    def metrics(self):
        m = {}
        for line in self.client.get("/metrics").text.splitlines():
            if line.startswith(("jaild_spawn_seconds_sum", "jaild_spawn_seconds_count", "jaild_cgroup_pool_")):
                k, v = line.rsplit(" ", 1)
                m[k] = float(v)
        return m

    def spawn_mean_us(self):
        """The jails' set-up (clone to jailed), mean since mark()."""
        m = self.metrics()
        n = m["jaild_spawn_seconds_count"] - self.mark_m["jaild_spawn_seconds_count"]
        return ((m["jaild_spawn_seconds_sum"] - self.mark_m["jaild_spawn_seconds_sum"]) / n * 1e6 if n else None), m

    def mark(self):
        self.rows.clear()
        self.mark_m = self.metrics()

    def stop(self):
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def pct(v, p):
    v = sorted(x for x in v if x is not None)
    return v[min(len(v) - 1, int(len(v) * p))] if v else None


def remove_parents(names):
    for root in ["/sys/fs/cgroup"] + [os.path.join("/sys/fs/cgroup", e) for e in os.listdir("/sys/fs/cgroup")]:
        for n in names:
            try:
                os.rmdir(os.path.join(root, PARENT, n))
            except OSError:
                pass
        try:
            os.rmdir(os.path.join(root, PARENT))
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before")
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("CGPOOL_BENCH_JOBS", "100")))
    ap.add_argument("--gap", type=float, default=0.1)
    a = ap.parse_args()
    binary = os.environ.get("JAILD") or os.path.join(TOP, "supervisor", "jaild", "jaild")
    specs = [("pool", binary, 410000, 4), ("per-job", binary, 411000, 0)]
    if a.before:
        specs.append(("before", a.before, 412000, None))
    ds = []
    try:
        for name, b, uid, pool in specs:
            ds.append(Daemon(name, b, uid, pool))
        for d in ds:  # warm-up: the interpreter's pages, the pool's first take
            for _ in range(3):
                d.job()
            d.mark()
        for _ in range(a.jobs):
            for d in ds:
                time.sleep(a.gap)
                d.job()
        out = {"jobs": a.jobs, "gap_s": a.gap, "kernel": os.uname().release, "variants": {}}
        for d in ds:
            spawn, m = d.spawn_mean_us()
            v = {k: {"p50": pct([r[k] for r in d.rows], 0.5), "p90": pct([r[k] for r in d.rows], 0.9)}
                 for k in ("setup_us", "teardown_us", "wall_us", "rtt_us")}
            v["spawn_mean_us"] = spawn
            v["pool_metrics"] = {k: v for k, v in m.items() if k.startswith("jaild_cgroup_pool_")}
            out["variants"][d.name] = v
    finally:
        for d in ds:
            d.stop()
        remove_parents([s[0] for s in specs])
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "cgpool.json"), "w") as f:
        json.dump(out, f, indent=1)
    print("%d `pass` jobs each, %.2f s apart, kernel %s" % (a.jobs, a.gap, out["kernel"]))
    print("%-8s %18s %18s %16s %14s %14s" % ("variant", "cg set-up p50/p90", "cg teardown p50/90", "jail set-up mean",
                                             "wall p50", "rtt p50"))
    for name, v in out["variants"].items():
        def f(k):
            x = v[k]
            return "%s/%s us" % (int(x["p50"]), int(x["p90"])) if x["p50"] is not None else "n/a"
        sp = v["spawn_mean_us"]
        print("%-8s %18s %18s %16s %11.1f ms %11.1f ms" % (name, f("setup_us"), f("teardown_us"),
                                                           "%.2f ms" % (sp / 1000) if sp else "n/a",
                                                           v["wall_us"]["p50"] / 1000, v["rtt_us"]["p50"] / 1000))


if __name__ == "__main__":
    main()
