#!/usr/bin/python3.11
"""bench/warm_profile.py: where a warm spawn's time and a warm worker's
memory go (issue 16). A profile, not a benchmark: the probes cost a few
microseconds each.

  time    JAILD_PROFILE_JOBS (50) warm POST /v1/jobs, as bench/warm.py's
          spawn part, under perf record with uprobes on jaild's and the
          zygote's steps (start_jail, uidlock_acquire, cg_job_create,
          warm_ask, spawn_release, cg_job_attach; warm_clone, the child's
          set-up steps one by one) on CLOCK_MONOTONIC, the clock the job's
          first instruction prints: each step's wall time, p50 and mean.
          jaild's context switches inside cg_job_attach, with their stack
          (what a cgroup v1 attach waits for).
  faults  The same jobs with every page fault recorded: the child's faults
          by step (copy-on-write of the zygote's pages).
  cpu     The same jobs sampled at 10 kHz with call graphs: the zygote's
          kernel time in clone3 by function, the child's by step.
  memory  An idle worker's private memory (Private_Clean + Private_Dirty)
          for an exec job at its first instruction, a worker with an empty
          script, and one importing numpy and pandas; how much of a
          worker's private memory is byte-identical in a sibling's (pages
          read through /proc/PID/mem; what the children of one zygote
          write alike).

Everything runs on a jaild of bench/jaild.py's kind (temp config, cgroup
parent jaild-bench, uids 400000-401999); the probes are added in group
"jrprof" and removed at the end. Writes bench/out/warm_profile.txt.
Needs root and perf with uprobe support.

  bench/warm_profile.py [time] [faults] [cpu] [memory]
"""
import collections
import contextlib
import hashlib
import io
import os
import re
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import jaild as jb  # noqa: E402
import warm as wb  # noqa: E402

JOBS = int(os.environ.get("JAILD_PROFILE_JOBS", "50"))
# the zygote program beside the jaild under test (jail.c program_path: supervisor/jaild/jaild -> jail/)
ZYGOTE = os.path.normpath(os.path.join(os.path.dirname(jb.JAILD), "..", "..", "jail", "jailrun-zygote"))
GROUP = "jrprof"
PARTS = ("time", "faults", "cpu", "memory")
JAILD_FUNCS = ["api_job_submit", "uidlock_acquire", "uidlock_acquire%return", "cg_job_create", "cg_job_create%return",
               "start_jail", "warm_ask", "warm_ask%return", "spawn_release", "cg_job_attach", "cg_job_attach%return"]
ZYGOTE_FUNCS = ["warm_clone", "warm_clone%return", "pyrt_before_fork", "pyrt_after_fork_parent",
                "pyrt_after_fork_parent%return", "jail_read_sync", "jail_read_sync%return", "jail_become_root",
                "mnt_warm_child", "net_setup_lo", "net_setup_lo%return", "jail_wait_attached",
                "jail_wait_attached%return", "jail_set_env", "caps_drop_all", "verify_world", "verify_world%return",
                "pyrt_after_fork_child", "pyrt_after_fork_child%return", "filt_install", "filt_install%return",
                "verify_process", "verify_process%return", "jail_notify", "jail_notify%return", "pyrt_run_forked"]
# (name, from (who, event), to (who, event)): who is jaild, zyg (the
# zygote) or child; t0/t1 are the request and the first instruction.
SEGMENTS = [
    ("request sent -> jaild's handler", ("", "t0"), ("jaild", "api_job_submit")),
    ("job prepared (script file, policy) -> uid lock", ("jaild", "api_job_submit"), ("jaild", "uidlock_acquire")),
    ("uid lock", ("jaild", "uidlock_acquire"), ("jaild", "uidlock_acquire__return")),
    ("cgroup made (mkdir, limits)", ("jaild", "cg_job_create"), ("jaild", "cg_job_create__return")),
    ("-> warm_ask (fds)", ("jaild", "cg_job_create__return"), ("jaild", "warm_ask")),
    ("ask -> zygote (config memfd, send)", ("jaild", "warm_ask"), ("zyg", "warm_clone")),
    ("zygote: clone3 (7 namespaces, the mm)", ("zyg", "pyrt_before_fork"), ("zyg", "pyrt_after_fork_parent")),
    ("zygote: reply -> jaild", ("zyg", "pyrt_after_fork_parent"), ("jaild", "warm_ask__return")),
    ("id maps written, go", ("jaild", "warm_ask__return"), ("jaild", "cg_job_attach")),
    ("cgroup attach (cgroup.procs)", ("jaild", "cg_job_attach"), ("jaild", "cg_job_attach__return")),
    ("attach -> child past its wait", ("jaild", "cg_job_attach__return"), ("child", "jail_wait_attached__return")),
    ("child: env, rlimits, capabilities", ("child", "jail_wait_attached__return"), ("child", "verify_world")),
    ("child: verify_world", ("child", "verify_world"), ("child", "verify_world__return")),
    ("child: interpreter after-fork (reseeds)", ("child", "pyrt_after_fork_child"),
     ("child", "pyrt_after_fork_child__return")),
    ("child: seccomp filter", ("child", "filt_install"), ("child", "filt_install__return")),
    ("child: verify_process", ("child", "verify_process"), ("child", "verify_process__return")),
    ("child: notify jailed", ("child", "jail_notify"), ("child", "jail_notify__return")),
    ("child: runtime main -> first instruction", ("child", "pyrt_run_forked"), ("", "t1")),
    ("TOTAL request -> first instruction", ("", "t0"), ("", "t1")),
]
# Steps of the child that overlap the attach (not on the critical path
# while the attach takes longer).
PARALLEL = [
    ("child: clone -> its first step", ("zyg", "pyrt_before_fork"), ("child", "jail_read_sync")),
    ("child: waits for go (the id maps)", ("child", "jail_read_sync"), ("child", "jail_read_sync__return")),
    ("child: setresuid, mounts (/proc, scratch)", ("child", "jail_become_root"), ("child", "net_setup_lo")),
    ("child: lo up (netlink)", ("child", "net_setup_lo"), ("child", "net_setup_lo__return")),
    ("child: waits for the attach", ("child", "jail_wait_attached"), ("child", "jail_wait_attached__return")),
]


def die(msg):
    sys.exit("bench/warm_profile.py: " + msg)


def probes_add():
    for binary, funcs in ((jb.JAILD, JAILD_FUNCS), (ZYGOTE, ZYGOTE_FUNCS)):
        for f in funcs:
            name = f.split("%")[0]  # perf names a return probe NAME__return itself
            p = subprocess.run(["perf", "probe", "-q", "-x", binary, "-a", "%s:%s=%s" % (GROUP, name, f)],
                               capture_output=True, text=True)
            if p.returncode != 0:
                die("perf probe %s in %s: %s" % (f, binary, p.stderr.strip()[-300:]))


def probes_del():
    subprocess.run(["perf", "probe", "-q", "-d", GROUP + ":*"], capture_output=True)
    left = subprocess.run(["perf", "probe", "-l"], capture_output=True, text=True).stdout
    if GROUP + ":" in left:
        print("bench/warm_profile.py: probes left: " + left, file=sys.stderr)


def record(extra, data):
    """JOBS warm jobs under perf record: (meta, perf script text)."""
    jd = wb.Daemon(max_live_jobs=8)
    try:
        z = jd.ok("GET", "/v1/health").json()["zygotes"]["exec"]
        perf = subprocess.Popen(["perf", "record", "-q", "-k", "CLOCK_MONOTONIC", "-a", "-o", data, "-e",
                                 GROUP + ":*"] + extra, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(2)
        if perf.poll() is not None:
            die("perf record: " + perf.stderr.read().decode()[-500:])
        k = wb.JobKind(jd, wb.WARM_SOURCE)
        t0 = []
        for _ in range(JOBS):
            t0.append(time.monotonic())
            k.run()
            time.sleep(0.05)  # the job's end (exit, cgroup removal) off the next one's start
        perf.send_signal(signal.SIGINT)
        perf.wait()
        meta = {"jaild": jd.proc.pid, "zygote": z["pid"], "t0": t0, "t1": [a + b for a, b in zip(t0, k.first)],
                "first": k.first, "spawn": k.spawn}
    finally:
        jd.close()
    txt = subprocess.run(["perf", "script", "-i", data, "-F", "comm,pid,time,period,event,ip,sym"], capture_output=True,
                         text=True).stdout
    return meta, txt


EVENT = re.compile(r"\s*(\S+)\s+(\d+)\s+([\d.]+):\s+(\d+)\s+(\S+?):?\s")


def parse(meta, txt):
    """Per job: {who: {event: [times]}}; samples: pid -> [(t, event, stack,
    period)] (a cpu-clock sample's period: the ns it stands for)."""
    jaild, zyg = meta["jaild"], meta["zygote"]
    jobs, samples, cur, stack = [], collections.defaultdict(list), None, None
    for line in txt.splitlines():
        m = EVENT.match(line + " ")
        if not m:
            if stack is not None and line.strip():
                p = line.split(None, 1)
                stack.append(p[1].split("+")[0] if len(p) > 1 else "?")
            continue
        t, pid, ev = float(m.group(3)), int(m.group(2)), m.group(5).split(":")[-1]
        stack = None
        if not m.group(5).startswith(GROUP + ":"):
            stack = []
            samples[pid].append((t, ev, stack, int(m.group(4))))
            continue
        if pid == jaild and ev == "api_job_submit":
            cur = {"jaild": {}, "zyg": {}, "child": {}, "child_pid": None}
            jobs.append(cur)
        if cur is None:
            continue
        who = "jaild" if pid == jaild else "zyg" if pid == zyg else "child"
        if who == "child":
            cur["child_pid"] = cur["child_pid"] or pid
            if pid != cur["child_pid"]:
                continue
        cur[who].setdefault(ev, []).append(t)
    if len(jobs) != len(meta["t0"]):
        die("%d jobs in the trace, %d made" % (len(jobs), len(meta["t0"])))
    for j, t0, t1 in zip(jobs, meta["t0"], meta["t1"]):
        j[""] = {"t0": [t0], "t1": [t1]}
    return jobs, samples


def seg_table(jobs, segs):
    out = []
    for name, (wa, ea), (wb_, eb) in segs:
        v = [(j[wb_][eb][0] - j[wa][ea][0]) * 1e3 for j in jobs if ea in j[wa] and eb in j[wb_]]
        if v:
            out.append((name, len(v), statistics.median(v), statistics.mean(v), min(v), max(v)))
    return out


def show_segs(title, rows):
    print(title)
    print("  %-48s %5s %8s %8s %8s %8s" % ("", "jobs", "p50 ms", "mean ms", "min ms", "max ms"))
    for r in rows:
        print("  %-48s %5d %8.3f %8.3f %8.3f %8.3f" % r)


def phases_of(j):
    """The child's probe events in order: [(t, event)]."""
    return sorted((t, e) for e, ts in j["child"].items() for t in ts) + [(j[""]["t1"][0], "first_instruction")]


def phase_at(marks, t):
    name = "clone"
    for tm, e in marks:
        if tm <= t:
            name = e
    return name


def part_time():
    with tempfile.TemporaryDirectory(prefix="jdp-") as tmp:
        meta, txt = record(["-e", "sched:sched_switch", "-g"], os.path.join(tmp, "perf.data"))
    jobs, samples = parse(meta, txt)
    print("== time: %d warm jobs (profile exec) under uprobes; load %s" % (len(jobs), jb.loadavg()))
    print("  unprobed-comparable: first instruction p50 %.2f ms, jaild_spawn_seconds p50 %.2f ms"
          % (statistics.median(meta["first"]) * 1e3, statistics.median(meta["spawn"]) * 1e3))
    show_segs("  the critical path, step by step (wall):", seg_table(jobs, SEGMENTS))
    show_segs("  the child's steps beside the attach (wall):", seg_table(jobs, PARALLEL))
    waits = collections.Counter()
    for j in jobs:
        a, b = j["jaild"].get("cg_job_attach", [0])[0], j["jaild"].get("cg_job_attach__return", [0])[0]
        for t, ev, st, _ in samples[meta["jaild"]]:
            if ev == "sched_switch" and a <= t <= b:
                waits[" < ".join(st[:10])] += 1
    print("  jaild's context switches inside cg_job_attach: %d in %d jobs" % (sum(waits.values()), len(jobs)))
    for s, n in waits.most_common(3):
        print("    %d x %s" % (n, s))


def part_faults():
    with tempfile.TemporaryDirectory(prefix="jdp-") as tmp:
        meta, txt = record(["-e", "page-faults/period=1/"], os.path.join(tmp, "perf.data"))
    jobs, samples = parse(meta, txt)
    by = collections.defaultdict(list)
    zyg = []
    for j in jobs:
        marks = phases_of(j)
        c = collections.Counter(phase_at(marks, t) for t, _, _, _ in samples[j["child_pid"]])
        for ph in set(e for _, e in marks) | {"clone"}:
            by[ph].append(c.get(ph, 0))
        by["TOTAL (to exit)"].append(sum(c.values()))
        bf, af = j["zyg"]["pyrt_before_fork"][0], j["zyg"]["warm_clone__return"][0]
        zyg.append(sum(bf <= t <= af for t, _, _, _ in samples[meta["zygote"]]))
    print("== faults: page faults of each warm child (4 KiB each), by the step they fell in; %d jobs" % len(jobs))
    for ph, v in sorted(by.items(), key=lambda kv: -statistics.mean(kv[1])):
        if statistics.mean(v) >= 1:
            print("  after %-40s mean %7.1f  p50 %6d" % (ph, statistics.mean(v), statistics.median(v)))
    print("  the zygote, from before_fork to its reply: mean %.1f" % statistics.mean(zyg))


def part_cpu():
    with tempfile.TemporaryDirectory(prefix="jdp-") as tmp:
        meta, txt = record(["-e", "cpu-clock", "-F", "10000", "-g"], os.path.join(tmp, "perf.data"))
    jobs, samples = parse(meta, txt)
    ms = 1e-6 / len(jobs)  # sample periods are ns
    z = collections.Counter()
    n = 0
    for j in jobs:
        a, b = j["zyg"]["pyrt_before_fork"][0], j["zyg"]["pyrt_after_fork_parent"][0]
        for t, _, st, period in samples[meta["zygote"]]:
            if a <= t <= b:
                n += period
                for fr in set(st):
                    z[fr] += period
    print("== cpu: %d warm jobs sampled at 10 kHz (cpu-clock); CPU a job, in ms" % len(jobs))
    print("  the zygote's clone3: %.3f ms CPU while sampled (sampling slows it: its wall time is in the time part; "
          "the shares are what count); by function (inclusive):" % (n * ms))
    for fr in ("copy_process", "dup_mmap", "copy_page_range", "anon_vma_fork", "vm_area_dup", "copy_namespaces",
               "copy_net_ns", "copy_ipcs", "copy_mnt_ns", "create_user_ns", "copy_pid_ns", "copy_utsname"):
        print("    %-22s %7.3f  %3.0f%%" % (fr, z.get(fr, 0) * ms, 100 * z.get(fr, 0) / max(1, n)))
    by = collections.defaultdict(collections.Counter)
    for j in jobs:
        marks = phases_of(j)
        for t, _, st, period in samples[j["child_pid"]]:
            ph = phase_at(marks, t)
            by[ph]["ALL"] += period
            for fr in set(st):
                by[ph][fr] += period
    print("  each child, by step: CPU, of it in page faults (copy-on-write do_wp_page)")
    for ph, c in sorted(by.items(), key=lambda kv: -kv[1]["ALL"]):
        if c["ALL"] * ms >= 0.02:
            print("    after %-38s %7.3f  faults %7.3f  cow %7.3f" % (ph, c["ALL"] * ms, c["asm_exc_page_fault"] * ms,
                                                                   c["do_wp_page"] * ms))


# ---------------------------------------------------------------- memory

USS_SCRIPT = ("d = {l.split()[0][:-1]: int(l.split()[1]) for l in open('/proc/self/smaps_rollup') "
              "if l.split()[1:2] and l.split()[1].isdigit()}\nprint(d['Private_Clean'] + d['Private_Dirty'])\n")


def private_pages(pid):
    """{address: sha1} of the process's present pages mapped by it alone
    (pagemap: present, exclusively mapped), in its writable mappings."""
    out = {}
    with open("/proc/%d/maps" % pid) as f:
        maps = [ln.split() for ln in f]
    with open("/proc/%d/pagemap" % pid, "rb") as pm, open("/proc/%d/mem" % pid, "rb") as mem:
        for m in maps:
            if "w" not in m[1]:
                continue
            a, b = (int(x, 16) for x in m[0].split("-"))
            pm.seek(a // 4096 * 8)
            ents = pm.read((b - a) // 4096 * 8)
            for i in range(len(ents) // 8):
                e = struct.unpack_from("<Q", ents, i * 8)[0]
                if e >> 63 and (e >> 56) & 1:
                    with contextlib.suppress(OSError):
                        mem.seek(a + i * 4096)
                        out[a + i * 4096] = hashlib.sha1(mem.read(4096)).digest()
    return out


def part_memory():
    jd = wb.Daemon(max_live_jobs=8)
    try:
        r = jd.ok("POST", "/v1/jobs", {"source": USS_SCRIPT, "profile": "exec"}).json()
        exec_uss = int(r["stdout"])
        uss = {}
        for name, src in (("empty", "def tick(ctx):\n    pass\n"), ("numpy-pandas", wb.IDLE_SOURCE)):
            w = jd.create(name, src)
            jd.wait_all(len(jd.workers()))
            time.sleep(1)
            jails = wb.jails_and_zygotes(jd.proc.pid)[0]
            pid = max(jails)  # the newest
            u0 = wb.rollup(pid)
            jd.ok("POST", "/v1/workers/%s/tick" % w["id"])
            time.sleep(0.3)
            u1 = wb.rollup(pid)
            uss[name] = (u0["Private_Clean"] + u0["Private_Dirty"], u1["Private_Clean"] + u1["Private_Dirty"])
        jd.delete_all()
        ids = [jd.create("sib%d" % i, wb.IDLE_SOURCE, {"interval": 60})["id"] for i in range(4)]
        jd.wait_all(4)
        time.sleep(2)
        pages = [private_pages(p) for p in sorted(wb.jails_and_zygotes(jd.proc.pid)[0])]
        jd.delete_all()
        del ids
    finally:
        jd.close()
    a, b = pages[0], pages[1]
    same = sum(1 for va, h in a.items() if b.get(va) == h)
    seen = collections.Counter(h for d in pages for h in set(d.values()))
    own = sum(1 for h in a.values() if seen[h] == 1)
    print("== memory: private memory (USS, KiB) of warm jails")
    print("  exec job at its first instruction: %d" % exec_uss)
    for name, (u0, u1) in uss.items():
        print("  worker, script %-13s loaded and idle %d, after a tick %d" % (name + ":", u0, u1))
    print("  an idle numpy+pandas worker's private pages: %d (%d KiB); %d (%.0f%%) hold the same bytes at the same "
          "address in a sibling; %d (%d KiB) are found in none of %d siblings"
          % (len(a), len(a) * 4, same, 100 * same / max(1, len(a)), own, own * 4, len(pages) - 1))


def main():
    parts = sys.argv[1:] or list(PARTS)
    if any(p not in PARTS for p in parts):
        die("usage: bench/warm_profile.py [time] [faults] [cpu] [memory]")
    if os.geteuid() != 0:
        die("needs root")
    if jb.jail_pids() or jb.job_groups():
        die("the bench's uids or cgroup parent are in use")
    buf = io.StringIO()
    needs_probes = any(p != "memory" for p in parts)
    try:
        if needs_probes:
            probes_add()
        with contextlib.redirect_stdout(buf):
            print("warm profile: %s; build %s; kernel %s; load %s at start" % (
                time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                subprocess.run(["git", "-C", jb.TOP, "rev-parse", "--short", "HEAD"], capture_output=True,
                               text=True).stdout.strip(), os.uname().release, jb.loadavg()))
            for p in parts:
                print()
                {"time": part_time, "faults": part_faults, "cpu": part_cpu, "memory": part_memory}[p]()
    finally:
        if needs_probes:
            probes_del()
        jb.remove_parents()
        print(buf.getvalue(), end="")
    os.makedirs(jb.OUT, exist_ok=True)
    with open(os.path.join(jb.OUT, "warm_profile.txt"), "w") as f:
        f.write(buf.getvalue())


if __name__ == "__main__":
    main()
