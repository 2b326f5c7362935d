#!/usr/bin/python3.11
"""bench/soak.py: jaild under a long run of ticks (issue 18), looking for leaks.

N workers (--workers, default 100) on one jaild, each ticking until it has
done T working ticks (--ticks, default 10 000); every tick reads and writes
ctx.state (jaild's SQLite store), writes and reads a file with ctx.files,
GETs a page from an HTTP server this script runs on 127.0.0.1 (opened to
the workers by the operator's policy, jaild(8) "policy") and logs a line.
The tick checks what it got back and raises otherwise (ticks_failed).

Measured at each stage, and every --sample seconds between:
  jaild's VmRSS / VmHWM / threads, its memory cgroup (a group of this
  script's own below the script's; jaild is moved in with its charges),
  its open fds (/proc/PID/fd), its child processes, zombies (children of
  jaild, or of the jails' uid range), job cgroups (job-*, or pool groups
  with a process) and idle pool groups under the cgroup parent in every
  hierarchy, mounts (the host's /proc/self/mountinfo, jaild's namespace,
  and every other mount namespace of jaild's descendants), uid lock files
  of the uid range in /run/jailrun/uids and uids in use by processes.
Stages: base (jaild up, no worker), up (every worker idle), warm (every
worker past --warm working ticks), end (every worker past --ticks), removed
(every worker deleted, --settle seconds later), again (as many new workers,
--again ticks each, deleted: what the first round freed is reused, not
added to), stopped (jaild gone).

jaild's files (state, registry, workspaces) go in a temp dir under --dir
(/tmp by default). jaild serves ctx.state and ctx.files on its one loop and
both are durable (fsync before they answer), so on a disk every tick waits
for about three fsyncs in turn with every other worker's: this host's disk
gives ~250 ticks/s for 100 workers, ~1 M ticks in over an hour. The soak
looks for leaks, not at the disk: run it with --dir /dev/shm (a tmpfs,
~1000 ticks/s here) for the full count.

Targets: jaild's VmRSS at end within 1 % of warm; fds, job groups, mounts,
uid locks, uids, child processes and zombies at removed back to base;
nothing of jaild left once stopped; every tick counted, none failed, the
HTTP server served one GET per working tick.

Writes bench/out/soak.json (every figure and the sample series) and
bench/out/soak.txt (the summary, also printed). Needs root and httpx.

  bench/soak.py [--workers N] [--ticks T] [--warm W] [--interval S]
"""
import argparse
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import jaild as jb  # noqa: E402  (bench/jaild.py: the bench's Jaild and /proc helpers)

PY = "/usr/bin/python3.11"
OUT = os.path.join(HERE, "out")
# A parent and a uid range of the soak's own (bench/jaild.py: 400000-401999).
jb.CGROUP_PARENT = "jaild-soak"
jb.UID_LO, jb.UID_HI = 402000, 402999
UIDLOCK_DIR = "/run/jailrun/uids"
MEMCG_NAME = "jaild-soak-daemon"

TICK = """\
T = %(ticks)d
URL = "http://127.0.0.1:%(port)d/p"
PAYLOAD = "x" * 512

def ok(what, r):
    if not (isinstance(r, dict) and r.get("ok")):
        raise RuntimeError("%%s: %%r" %% (what, r))

def tick(ctx):
    n = ctx.state.get("n", 0)
    if n >= T:
        return
    ok("ctx.state.set", ctx.state.set("n", n + 1))
    name = "f%%d.txt" %% (n %% 4)
    text = "%%d %%s" %% (n, PAYLOAD)
    ok("ctx.files.write", ctx.files.write(name, text))
    got = ctx.files.read(name)
    if got.get("content") != text:
        raise RuntimeError("ctx.files.read: %%r" %% (got,))
    r = ctx.http.get(URL, params={"n": n})
    if r.get("status") != 200 or r.get("text") != "ok %%d" %% n:
        raise RuntimeError("ctx.http.get: %%r" %% (r,))
    if n %% 100 == 98:
        ok("ctx.state.set", ctx.state.set("k%%d" %% n, {"n": n, "p": PAYLOAD}))
    if n %% 100 == 99:
        ok("ctx.state.delete", ctx.state.delete("k%%d" %% (n - 1)))
        ok("ctx.files.delete", ctx.files.delete("f0.txt"))
    ctx.log.info("tick %%d" %% (n + 1))
"""


def die(msg):
    sys.exit("bench/soak.py: " + msg)


# ---------------------------------------------------------------- the HTTP server

class Page(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real service would
    count = 0
    lock = threading.Lock()

    def do_GET(self):
        if self.path == "/_count":
            body = str(Page.count).encode()
        else:
            n = self.path.partition("?n=")[2]
            with Page.lock:
                Page.count += 1
            body = ("ok %s" % n).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def serve():
    """--serve: the page server, in a process of its own (so that its work
    is not this script's): prints its port, serves until killed."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    srv.daemon_threads = True
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


# ---------------------------------------------------------------- what is measured

def read(path, default=None):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def status(pid):
    out = {}
    for line in (read("/proc/%d/status" % pid) or "").splitlines():
        k, _, v = line.partition(":")
        out[k] = v.split()
    return out


def procs():
    """{pid: (ppid, state, real uid)} of every process."""
    out = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            s = status(int(p))
            if s.get("PPid") and s.get("Uid"):
                out[int(p)] = (int(s["PPid"][0]), s["State"][0], int(s["Uid"][0]))
    return out


def descendants(pid, table):
    kids = {}
    for p, (pp, _, _) in table.items():
        kids.setdefault(pp, []).append(p)
    out, stack = [], [pid]
    while stack:
        for k in kids.get(stack.pop(), []):
            out.append(k)
            stack.append(k)
    return out


def mount_counts(jpid, table):
    """Mounts: the host's (this script's namespace), jaild's, and those of
    every other mount namespace among jaild's descendants (zygotes, jails)."""
    def ns(pid):
        try:
            return os.readlink("/proc/%d/ns/mnt" % pid)
        except OSError:
            return None
    host_ns, seen = ns(os.getpid()), {}
    for p in [jpid] + descendants(jpid, table):
        n = ns(p)
        if n and n not in seen:
            text = read("/proc/%d/mountinfo" % p)
            if text is not None:
                seen[n] = len(text.splitlines())
    jns = ns(jpid)
    return {"host": len(read("/proc/self/mountinfo").splitlines()), "jaild_same_ns_as_host": jns == host_ns,
            "jaild": seen.get(jns), "other_namespaces": len([n for n in seen if n not in (jns, host_ns)]),
            "other_mounts": sum(c for n, c in seen.items() if n not in (jns, host_ns))}


def groups():
    """(job groups, idle pool groups) under the soak's parent, all hierarchies."""
    job, idle = set(), set()
    for d in jb.cgroup_dirs():
        for top, dirs, _ in os.walk(d):
            for e in dirs:
                if not e.startswith(("job-", "pool-")):
                    continue
                rel = os.path.relpath(os.path.join(top, e), d)
                busy = bool((read(os.path.join(top, e, "cgroup.procs")) or "").strip())
                (job if e.startswith("job-") or busy else idle).add(rel)
    return sorted(job), sorted(idle)


def uid_locks():
    out = []
    for e in os.listdir(UIDLOCK_DIR) if os.path.isdir(UIDLOCK_DIR) else []:
        u = e.partition(".")[0]
        if u.isdigit() and jb.UID_LO <= int(u) <= jb.UID_HI:
            out.append(int(u))
    return sorted(out)


class Memcg:
    """A v1 (or v2) memory cgroup of jaild's own, below this script's."""

    def __init__(self):
        self.dir = None
        self.v2 = False
        for line in (read("/proc/self/cgroup") or "").splitlines():
            hid, ctrl, path = line.split(":", 2)
            if "memory" in ctrl.split(","):
                self.dir = os.path.join("/sys/fs/cgroup/memory" + path, MEMCG_NAME)
        if not self.dir:
            path = (read("/proc/self/cgroup") or "0::/").splitlines()[-1].split(":", 2)[2]
            root = "/sys/fs/cgroup" + path
            if "memory" in (read(os.path.join(root, "cgroup.controllers")) or ""):
                self.dir, self.v2 = os.path.join(root, MEMCG_NAME), True
        self.note = None

    def take(self, pid):
        if not self.dir:
            self.note = "no memory controller for this script's group"
            return
        try:
            os.makedirs(self.dir, exist_ok=True)
            if not self.v2:  # its pages come with it where the kernel still can (v1)
                try:
                    with open(os.path.join(self.dir, "memory.move_charge_at_immigrate"), "w") as f:
                        f.write("3")
                except OSError:
                    self.note = "charges made before jaild moved in stay behind (move_charge_at_immigrate refused)"
            with open(os.path.join(self.dir, "cgroup.procs"), "w") as f:
                f.write(str(pid))
        except OSError as e:
            self.note = "cannot use %s: %s" % (self.dir, e)
            self.dir = None

    def figures(self):
        if not self.dir:
            return None
        stat = dict(line.split() for line in (read(os.path.join(self.dir, "memory.stat")) or "").splitlines())
        if self.v2:
            return {"usage": int(read(os.path.join(self.dir, "memory.current"), "0")),
                    "anon": int(stat.get("anon", 0)), "file": int(stat.get("file", 0))}
        return {"usage": int(read(os.path.join(self.dir, "memory.usage_in_bytes"), "0")),
                "anon": int(stat.get("rss", 0)), "file": int(stat.get("cache", 0))}

    def remove(self):
        if self.dir:
            for _ in range(50):
                try:
                    os.rmdir(self.dir)
                    return
                except FileNotFoundError:
                    return
                except OSError:
                    time.sleep(0.1)
            print("bench/soak.py: cannot remove %s" % self.dir, file=sys.stderr)


def fd_kinds(pid):
    """{kind: count} of a process's open fds: socket, pipe, anon_inode:[x],
    or the file's path."""
    out = {}
    d = "/proc/%d/fd" % pid
    for e in os.listdir(d):
        try:
            t = os.readlink(os.path.join(d, e))
        except OSError:
            continue
        k = t.split(":[")[0] if t.startswith(("socket:", "pipe:")) else t
        out[k] = out.get(k, 0) + 1
    return out


def pool_fds(kinds):
    """fds on the soak's cgroup files, and eventfds: what each cgroup a
    job or the pool holds keeps open (a v1 group: its OOM eventfd and the
    control file it watches)."""
    cg = sum(n for k, n in kinds.items() if k.startswith("/sys/fs/cgroup/") and "/%s/" % jb.CGROUP_PARENT in k)
    return cg, kinds.get("anon_inode:[eventfd]", 0)


def snapshot(jd, memcg, stage, ticks=None):
    pid = jd.proc.pid
    table = procs()
    st = status(pid)
    mine = descendants(pid, table)
    in_range = [p for p, (_, _, u) in table.items() if jb.UID_LO <= u <= jb.UID_HI]
    zombies = sorted({p for p in mine + in_range if table.get(p, (0, ""))[1] == "Z"})
    job, idle = groups()
    kinds = fd_kinds(pid)
    cg_fds, efds = pool_fds(kinds)
    return {"stage": stage, "t": time.monotonic(), "ticks": ticks, "vmrss_kib": int(st["VmRSS"][0]),
            "vmhwm_kib": int(st["VmHWM"][0]), "rss_anon_kib": int(st["RssAnon"][0]),
            "threads": int(st["Threads"][0]), "fds": sum(kinds.values()), "fd_kinds": kinds,
            "fds_cgroup": cg_fds, "fds_eventfd": efds, "fds_other": sum(kinds.values()) - cg_fds - efds,
            "memcg": memcg.figures(), "children": len([p for p, (pp, _, _) in table.items() if pp == pid]),
            "descendants": len(mine), "jail_procs": len(in_range),
            "uids_in_use": len({table[p][2] for p in in_range}), "zombies": zombies,
            "job_groups": len(job), "idle_pool_groups": len(idle), "uid_locks": len(uid_locks()),
            "mounts": mount_counts(pid, table), "loadavg": jb.loadavg()}


# ---------------------------------------------------------------- the run

def all_workers(jd):
    return jd.ok("GET", "/v1/workers").json()["workers"]


def wait_ticks(jd, least, samples, memcg, every, deadline):
    """Until every worker has counted `least` ticks; samples meanwhile.
    Returns the workers' records."""
    last = 0.0
    while True:
        ws = all_workers(jd)
        bad = [w for w in ws if w["stats"]["ticks_failed"] or w["stats"]["restarts"] or
               w["state"] not in ("idle", "busy")]
        if bad:
            logs = jd.ok("GET", "/v1/workers/%s/logs" % bad[0]["id"]).text.splitlines()[-5:]
            die("worker %s: %s; its last log lines: %s" % (bad[0]["name"], json.dumps(bad[0])[:600], logs))
        done = min(w["stats"]["ticks"] for w in ws)
        total = sum(w["stats"]["ticks"] for w in ws)
        if time.monotonic() - last >= every:
            samples.append(snapshot(jd, memcg, "sample", total))
            last = time.monotonic()
            print("  %6.0f s: ticks %d (slowest worker %d), VmRSS %d KiB, fds %d, load %s"
                  % (last - samples[0]["t"], total, done, samples[-1]["vmrss_kib"], samples[-1]["fds"],
                     samples[-1]["loadavg"]), flush=True)
        if done >= least:
            return ws
        if time.monotonic() > deadline:
            die("the run took longer than its limit (%d ticks done)" % total)
        time.sleep(1)


def http_count(port):
    import httpx
    return int(httpx.get("http://127.0.0.1:%d/_count" % port, timeout=10).text)


def run(args):
    srv = subprocess.Popen([PY, os.path.abspath(__file__), "--serve"], stdout=subprocess.PIPE, text=True)
    memcg = Memcg()
    res = {"args": vars(args), "machine": machine()}
    try:
        port = int(srv.stdout.readline())
        policy = {"worker": {"http": {"allow_addresses": ["127.0.0.1"], "rate_per_second": 0}}}
        jd = jb.Jaild(policy=policy, max_live_jobs=8)
        try:
            res.update(soak(jd, memcg, port, args))
        finally:
            jd.close()  # stops jaild, checks no jail and no job group is left
            memcg.remove()
        res["stopped"] = {"jail_procs": len(jb.jail_pids()), "job_groups": len(jb.job_groups()),
                          "uid_locks": len(uid_locks()), "host_mounts": len(read("/proc/self/mountinfo").splitlines())}
        res["memcg_note"] = memcg.note
    finally:
        srv.send_signal(signal.SIGTERM)
        srv.wait()
        jb.remove_parents()
    return res


def soak(jd, memcg, port, args):
    memcg.take(jd.proc.pid)
    time.sleep(1)
    samples = [snapshot(jd, memcg, "base", 0)]
    stages = {"base": samples[0]}
    src = TICK % {"ticks": args.ticks, "port": port}
    t_create = time.monotonic()
    ids = [jd.create("soak-%03d" % i, src, {"interval": args.interval})["id"] for i in range(args.workers)]
    jd.wait_idle(ids)
    stages["up"] = snapshot(jd, memcg, "up", sum(w["stats"]["ticks"] for w in all_workers(jd)))
    print("  %d workers up in %.1f s" % (args.workers, time.monotonic() - t_create), flush=True)
    deadline = time.monotonic() + args.limit
    wait_ticks(jd, args.warm, samples, memcg, args.sample, deadline)
    stages["warm"] = snapshot(jd, memcg, "warm", sum(w["stats"]["ticks"] for w in all_workers(jd)))
    ws = wait_ticks(jd, args.ticks, samples, memcg, args.sample, deadline)
    stages["end"] = snapshot(jd, memcg, "end", sum(w["stats"]["ticks"] for w in ws))
    served = http_count(port)
    health = jd.ok("GET", "/v1/health").json()
    dones = []
    for w in ws:  # each worker's last working tick logged "tick T"
        lines = [json.loads(x) for x in jd.ok("GET", "/v1/workers/%s/logs" % w["id"]).text.splitlines() if x]
        dones.append(any(e.get("message") == "tick %d" % args.ticks for e in lines))
    t_del = time.monotonic()
    jd.delete_all()
    time.sleep(args.settle)
    stages["removed"] = snapshot(jd, memcg, "removed", None)
    stages["removed"]["delete_s"] = time.monotonic() - t_del - args.settle
    if args.again:  # a second round: what the first freed is used again, not more
        src2 = TICK % {"ticks": args.again, "port": port}
        ids = [jd.create("again-%03d" % i, src2, {"interval": args.interval})["id"] for i in range(args.workers)]
        jd.wait_idle(ids)
        wait_ticks(jd, args.again, samples, memcg, args.sample, time.monotonic() + args.limit)
        served2 = http_count(port) - served
        jd.delete_all()
        time.sleep(args.settle)
        stages["again"] = snapshot(jd, memcg, "again", None)
        stages["again"]["http_served"] = served2
    return {"stages": stages, "samples": samples, "http_served": served, "health_end": health,
            "workers_logged_last_tick": sum(dones), "slots_skipped": sum(w["stats"]["slots_skipped"] for w in ws),
            "ticks_counted": sum(w["stats"]["ticks"] for w in ws), "ticks_failed": sum(w["stats"]["ticks_failed"] for w in ws),
            "restarts": sum(w["stats"]["restarts"] for w in ws), "run_s": stages["end"]["t"] - stages["up"]["t"],
            "warm_to_end_s": stages["end"]["t"] - stages["warm"]["t"]}


def machine():
    with open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    commit = subprocess.run(["git", "-C", jb.TOP, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "nproc": os.cpu_count(), "cpu": cpu,
            "kernel": os.uname().release, "loadavg": jb.loadavg(), "commit": commit}


# ---------------------------------------------------------------- the summary

def summary(r):
    a, s = r["args"], r["stages"]
    m = r["machine"]
    work = a["workers"] * a["ticks"]
    out = ["machine: %s; %d cores, %s; kernel %s; load %s at start; build %s"
           % (m["date"], m["nproc"], m["cpu"], m["kernel"], m["loadavg"], m["commit"]),
           "soak: %d workers x %d working ticks (interval %g s), warm-up %d ticks each"
           % (a["workers"], a["ticks"], a["interval"], a["warm"]),
           "run: %.0f s from all up to all done (%.1f min); %d working ticks, %.0f ticks/s overall, "
           "%.0f ticks/s from warm to end" % (r["run_s"], r["run_s"] / 60, work, work / r["run_s"],
                                              (s["end"]["ticks"] - s["warm"]["ticks"]) / r["warm_to_end_s"]),
           "ticks counted by jaild %d (extra no-op ticks past %d each included), failed %d, restarts %d, "
           "slots skipped %d; HTTP GETs served %d (expected %d); workers that logged their last tick %d of %d"
           % (r["ticks_counted"], a["ticks"], r["ticks_failed"], r["restarts"], r["slots_skipped"], r["http_served"],
              work, r["workers_logged_last_tick"], a["workers"]), ""]
    keys = ["vmrss_kib", "vmhwm_kib", "rss_anon_kib", "threads", "fds", "fds_cgroup", "fds_eventfd", "fds_other",
            "children", "jail_procs", "uids_in_use",
            "uid_locks", "job_groups", "idle_pool_groups"]
    order = ["base", "up", "warm", "end", "removed"] + (["again"] if "again" in s else [])
    out.append("%-17s" % "" + "".join("%11s" % k for k in order))
    for k in keys:
        out.append("%-17s" % k + "".join("%11s" % s[st][k] for st in order))
    for k in ("host", "jaild", "other_namespaces", "other_mounts"):
        out.append("%-17s" % ("mounts." + k) + "".join("%11s" % s[st]["mounts"][k] for st in order))
    out.append("%-17s" % "zombies" + "".join("%11s" % len(s[st]["zombies"]) for st in order))
    if s["base"]["memcg"]:
        for k in ("usage", "anon", "file"):
            out.append("%-17s" % ("memcg.%s KiB" % k) + "".join("%11d" % (s[st]["memcg"][k] // 1024) for st in order))
    if r.get("memcg_note") or not s["base"]["memcg"]:
        out.append("memory cgroup: %s" % r.get("memcg_note"))
    after = [x for x in r["samples"] if x["stage"] == "sample" and s["warm"]["t"] <= x["t"] <= s["end"]["t"]] + [s["end"]]
    w, e = s["warm"]["vmrss_kib"], s["end"]["vmrss_kib"]
    growth = 100.0 * (e - w) / w
    peak = max(x["vmrss_kib"] for x in after)
    out += ["", "jaild VmRSS: warm %d KiB, end %d KiB: %+.2f %% (target <= 1 %%): %s; highest sample after warm-up "
            "%d KiB (%+.2f %%)" % (w, e, growth, "met" if growth <= 1.0 else "NOT MET", peak, 100.0 * (peak - w) / w)]
    checks = {k: (s["base"][k], s["removed"][k]) for k in ("fds_other", "children", "jail_procs", "uids_in_use",
                                                          "uid_locks", "job_groups", "threads")}
    checks["zombies"] = (len(s["base"]["zombies"]), len(s["removed"]["zombies"]))
    for k in ("host", "jaild", "other_namespaces", "other_mounts"):
        checks["mounts." + k] = (s["base"]["mounts"][k], s["removed"]["mounts"][k])
    leaks = {k: v for k, v in checks.items() if v[1] != v[0]}
    groups_held = s["removed"]["idle_pool_groups"] + s["removed"]["job_groups"]
    if not s["removed"]["fds_cgroup"] == s["removed"]["fds_eventfd"] == groups_held:
        leaks["fds of cgroups"] = ("%d groups" % groups_held, "%d cgroup files, %d eventfds"
                                   % (s["removed"]["fds_cgroup"], s["removed"]["fds_eventfd"]))
    if "fds_other" in leaks:
        b, e = s["base"]["fd_kinds"], s["removed"]["fd_kinds"]
        more = {k: e.get(k, 0) - b.get(k, 0) for k in set(b) | set(e) if e.get(k, 0) != b.get(k, 0)}
        out.append("fds at removed, less those at base: %s" % json.dumps(more, sort_keys=True))
    out.append("back to base after the workers were removed (%.1f s to delete, %g s settle; fds_other: fds less "
               "those of the pool's cgroups, one file and one eventfd each): %s"
               % (s["removed"]["delete_s"], a["settle"], "all" if not leaks else
                  "NOT: " + ", ".join("%s %s -> %s" % (k, v[0], v[1]) for k, v in leaks.items())))
    again_ok = True
    if "again" in s:
        g = s["again"]
        dr = 100.0 * (g["vmrss_kib"] - s["removed"]["vmrss_kib"]) / s["removed"]["vmrss_kib"]
        back = all(g[k] == s["base"][k] for k in ("fds_other", "children", "jail_procs", "uids_in_use", "uid_locks",
                                                   "job_groups", "threads")) and not g["zombies"] and \
            all(g["mounts"][k] == s["base"]["mounts"][k] for k in ("host", "jaild", "other_namespaces", "other_mounts"))
        again_ok = dr <= 1.0 and back and g["http_served"] == a["workers"] * a["again"]
        out.append("second round (%d new workers x %d ticks, then removed): VmRSS %d KiB against %d after the "
                   "first: %+.2f %% (<= 1 %%: %s); fds, processes, uids, groups, mounts back to base: %s; "
                   "HTTP GETs %d of %d" % (a["workers"], a["again"], g["vmrss_kib"], s["removed"]["vmrss_kib"], dr,
                                           "met" if dr <= 1.0 else "NOT MET", "yes" if back else "NO",
                                           g["http_served"], a["workers"] * a["again"]))
    st = r["stopped"]
    out.append("after jaild stopped: jail processes %d, job groups %d, uid locks %d, host mounts %d (base %d)"
               % (st["jail_procs"], st["job_groups"], st["uid_locks"], st["host_mounts"], s["base"]["mounts"]["host"]))
    ok = (growth <= 1.0 and not leaks and again_ok and r["ticks_failed"] == 0 and r["restarts"] == 0 and
          r["http_served"] == work and r["workers_logged_last_tick"] == a["workers"] and
          not any(st[k] for k in ("jail_procs", "job_groups", "uid_locks")))
    out.append("verdict: %s" % ("PASS" if ok else "FAIL"))
    return "\n".join(out) + "\n", ok


def main():
    if "--serve" in sys.argv[1:]:
        return serve()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=100)
    ap.add_argument("--ticks", type=int, default=10000, help="working ticks per worker")
    ap.add_argument("--warm", type=int, default=1000, help="working ticks per worker before the warm figures")
    ap.add_argument("--interval", type=float, default=0.05, help="each worker's schedule.interval, seconds")
    ap.add_argument("--again", type=int, default=1000,
                    help="working ticks per worker of a second round of as many new workers, after the first "
                    "is removed (0: none)")
    ap.add_argument("--sample", type=float, default=15, help="seconds between samples")
    ap.add_argument("--settle", type=float, default=5, help="seconds after the workers are deleted")
    ap.add_argument("--dir", default="/tmp", help="where jaild's files go (state, registry, workspaces); "
                    "/dev/shm takes the disk's fsyncs out of the tick")
    ap.add_argument("--limit", type=float, default=3600, help="seconds the ticks may take at most")
    args = ap.parse_args()
    if not 0 < args.warm < args.ticks:
        die("--warm must be above 0 and below --ticks")
    if os.geteuid() != 0:
        die("needs root (jaild jails as root)")
    if not os.access(jb.JAILD, os.X_OK):
        die("no jaild at %s (build it, or set JAILD)" % jb.JAILD)
    if jb.jail_pids() or jb.job_groups() or uid_locks():
        die("uids %d-%d or cgroup parent %s already in use" % (jb.UID_LO, jb.UID_HI, jb.CGROUP_PARENT))
    jb.TMP = args.dir
    r = run(args)
    text, ok = summary(r)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "soak.json"), "w") as f:
        json.dump(r, f, indent=1)
    with open(os.path.join(OUT, "soak.txt"), "w") as f:
        f.write(text)
    print(text, end="")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
