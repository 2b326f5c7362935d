#!/usr/bin/python3.11
"""bench/trinity.py: the trinity system-call fuzzer inside a jail of profile
exec (issue 18), for a bounded time; the host and the supervisor watched.

How trinity gets into the jail: the policy's exec.programs binds
/usr/bin/trinity read-only at its own path (it needs only libc and the
loader, which every jail has); nothing else of the jail changes for it.
(Nothing the script writes can run: /scratch and /dev/shm are noexec and
memfd_create is refused.)

Trinity runs as the jail's uid 0, which is the job's unprivileged host uid
with every capability set empty, so it is given --dangerous (its check is
for uid 0 alone); its children and its log directory are in /scratch. The
script stops it with SIGINT after --seconds, so that it prints its own
statistics, and jailrun's --timeout (--seconds + 60) is the backstop. A
second, short run (--limit-seconds) lets jailrun's time limit end trinity
itself, to see the jail torn down at its limit.

The filter kills the jail's process (SIGSYS) for a named dangerous set of
system calls and for every 32-bit one (jailrun(1)); trinity as it comes
calls bpf(2) while it sets up its fd providers and dies before it fuzzes
anything (--plain shows it). So by default it is told: --arch 64, no fd
provider that needs one of those calls (bpf, perf, fanotify, userfaultfd),
no socket provider (trinity 2023.01 crashes making sockets when only
AF_UNIX works), and -x for each of those calls; every other system call is
fuzzed, the socket calls included.

Watched: dmesg before and after (lines new since the start), jailrun's exit
and wall time, the jail's uid range's processes, its cgroups, the host's
mounts and uid lock files after each run; during the run, every few
seconds, that a second jailrun job (profile exec, `print(1)`) still starts
and answers (the supervisor's code on a loaded host) and the load average.

Writes bench/out/trinity.json, bench/out/trinity.txt (summary, printed) and
bench/out/trinity-out.txt (trinity's own output, last 200 KiB). Needs root.

  bench/trinity.py [--seconds 300] [--children 4] [--limit-seconds 30]
                   [--plain] [-- TRINITY ARGS...]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.normpath(os.path.join(HERE, ".."))
JAILRUN = os.path.realpath(os.environ.get("JAILRUN") or os.path.join(TOP, "supervisor", "jailrun"))
TRINITY = "/usr/bin/trinity"
OUT = os.path.join(HERE, "out")
UID_LO, UID_HI = 403000, 403099   # the jails of this bench, and no other's
CGROUP_PARENT = "jailrun-trinity"

# The system calls profile exec's filter answers with SIGSYS (policy/seccomp.c
# seccomp_kill): with --exclude-killers trinity is told not to call them.
KILLERS = ["ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp", "bpf", "keyctl", "add_key",
           "request_key", "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick",
           "move_mount", "open_tree", "mount_setattr", "unshare", "setns", "kexec_load", "kexec_file_load",
           "init_module", "finit_module", "delete_module", "perf_event_open", "userfaultfd", "io_uring_setup",
           "io_uring_enter", "io_uring_register", "open_by_handle_at", "name_to_handle_at", "reboot", "swapon",
           "swapoff", "acct", "quotactl", "quotactl_fd", "iopl", "ioperm", "syslog", "lookup_dcookie", "uselib",
           "vhangup", "modify_ldt", "process_madvise", "fanotify_init"]

# trinity's fd providers that call one of them as they start (fds/*.c),
# and its socket provider: it keeps trying random families until it has
# its count of sockets, and with AF_UNIX the only one the filter lets
# through, trinity 2023.01 dereferences a family it has no table for
# (trinity-main segfaults at 0x21 while it makes them).
KILLER_FDS = ["bpf", "perf", "fanotify", "userfaultfd", "sockets"]

# The job's script: trinity (bound read-only by the policy's exec.programs),
# stopped with SIGINT after its time.
JOB = r'''
import os, signal, subprocess, sys, time
seconds = float(sys.argv[1])
args = sys.argv[2:]
os.makedirs("/scratch/trinity-log", exist_ok=True)
os.chdir("/scratch")
print("jail: uid %%d euid %%d pid %%d; trinity %%s" %% (os.getuid(), os.geteuid(), os.getpid(), " ".join(args)),
      flush=True)
p = subprocess.Popen([%(trinity)r] + args, start_new_session=True)
t0 = time.monotonic()
while p.poll() is None and time.monotonic() - t0 < seconds:
    time.sleep(0.5)
ran = time.monotonic() - t0
if p.poll() is None:
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        print("jail: trinity ignored SIGINT for 60 s; killed", flush=True)
print("jail: trinity ran %%.1f s, exit status %%s" %% (ran, p.returncode), flush=True)
'''


def die(msg):
    sys.exit("bench/trinity.py: " + msg)


def dmesg():
    p = subprocess.run(["dmesg", "--kernel", "--notime"], capture_output=True, text=True)
    if p.returncode != 0:
        die("dmesg: %s" % p.stderr.strip())
    return p.stdout.splitlines()


def new_lines(before, after):
    """The lines of `after` past the longest tail of `before` it continues
    (the ring may have dropped its oldest lines meanwhile)."""
    for k in range(min(len(before), 200), 0, -1):
        tail = before[-k:]
        for i in range(len(after) - k, -1, -1):
            if after[i:i + k] == tail:
                return after[i + k:]
    return after


def tainted():
    with open("/proc/sys/kernel/tainted") as f:
        return int(f.read())


def syscall_names():
    """x86_64 numbers to names, from the kernel headers."""
    out = {}
    try:
        with open("/usr/include/x86_64-linux-gnu/asm/unistd_64.h") as f:
            for m in re.finditer(r"#define __NR_(\w+) (\d+)", f.read()):
                out[int(m.group(2))] = m.group(1)
    except OSError:
        pass
    return out


AUDIT_RE = re.compile(r'type=1326 .*? uid=(\d+) .*?comm="([^"]*)".*? sig=(\d+) .*?syscall=(\d+)')
SERIOUS_RE = re.compile(r"WARNING:|BUG:|Oops|general protection|Kernel panic|soft lockup|hard LOCKUP|"
                        r"blocked for more than|rcu_.*stall|Tainted: [A-Z]|UBSAN|KASAN|refcount_t|list_(add|del) corruption")


def classify(lines):
    """The kernel's new lines: the seccomp kills of this bench's jails (by
    system call), trinity's own lines, lines that say the kernel is hurt
    (whoever caused them), out-of-memory kills, and the rest (other
    helpers' and tests' doing on a shared host)."""
    names = syscall_names()
    out = {"seccomp_kills": {}, "trinity": [], "serious": [], "oom_kills": [], "other": []}
    for ln in lines:
        m = AUDIT_RE.search(ln)
        if m and UID_LO <= int(m.group(1)) <= UID_HI:
            k = "%s (sig %s)" % (names.get(int(m.group(4)), m.group(4)), m.group(3))
            out["seccomp_kills"][k] = out["seccomp_kills"].get(k, 0) + 1
        elif SERIOUS_RE.search(ln):
            out["serious"].append(ln)
        elif "trinity" in ln:
            out["trinity"].append(ln)
        elif "Killed process" in ln:
            out["oom_kills"].append(ln)
        else:
            out["other"].append(ln)
    return out


def jail_pids():
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open("/proc/%s/status" % p) as f:
                    uid = int(next(ln for ln in f if ln.startswith("Uid:")).split()[1])
            except (OSError, StopIteration, ValueError):
                continue
            if UID_LO <= uid <= UID_HI:
                out.append(int(p))
    return out


def cgroups_left():
    out = []
    for e in os.listdir("/sys/fs/cgroup"):
        d = os.path.join("/sys/fs/cgroup", e, CGROUP_PARENT)
        if os.path.isdir(d):
            out += [os.path.join(d, x) for x in os.listdir(d) if os.path.isdir(os.path.join(d, x))]
    d = os.path.join("/sys/fs/cgroup", CGROUP_PARENT)
    if os.path.isdir(d):
        out += [os.path.join(d, x) for x in os.listdir(d) if os.path.isdir(os.path.join(d, x))]
    return sorted(set(out))


def remove_parents():
    for root in ["/sys/fs/cgroup"] + [os.path.join("/sys/fs/cgroup", e) for e in os.listdir("/sys/fs/cgroup")]:
        try:
            os.rmdir(os.path.join(root, CGROUP_PARENT))
        except OSError:
            pass


def uid_locks():
    d = "/run/jailrun/uids"
    return sorted(e for e in (os.listdir(d) if os.path.isdir(d) else [])
                  if e.partition(".")[0].isdigit() and UID_LO <= int(e.partition(".")[0]) <= UID_HI)


def mounts():
    with open("/proc/self/mountinfo") as f:
        return len(f.readlines())


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def jailrun_cmd(args, timeout, script, extra, policy=()):
    return [JAILRUN, "--profile", "exec", *policy, "--timeout", "%g" % timeout, "--pids", str(args.pids), "--memory",
            args.memory, "--cpus", str(args.cpus), "--scratch-size", args.scratch, "--uid-range",
            "%d-%d" % (UID_LO, UID_HI), "--cgroup-parent", CGROUP_PARENT, script, "--"] + extra


class Prober(threading.Thread):
    """Every few seconds, a second jail (`print(1)`) from a fresh jailrun:
    its wall time and whether it answered."""

    def __init__(self, tmp):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.results = []
        self.script = os.path.join(tmp, "probe.py")
        with open(self.script, "w") as f:
            f.write("print(1)\n")

    def run(self):
        while not self.stop.wait(5):
            t0 = time.monotonic()
            try:
                p = subprocess.run([JAILRUN, "--profile", "exec", "--timeout", "60", "--uid-range",
                                    "%d-%d" % (UID_LO, UID_HI), "--cgroup-parent", CGROUP_PARENT, self.script],
                                   capture_output=True, text=True, timeout=120)
                ok = p.returncode == 0 and p.stdout.strip() == "1"
                err = p.stderr.strip()[-300:]
            except subprocess.TimeoutExpired:
                ok, err = False, "no answer in 120 s"
            self.results.append({"s": time.monotonic() - t0, "ok": ok, "err": "" if ok else err,
                                 "load": loadavg()})


def run_job(args, tmp, seconds, timeout, trinity_args, probe):
    script = os.path.join(tmp, "trinity_job.py")
    cmd = jailrun_cmd(args, timeout, script, ["%g" % seconds] + trinity_args,
                      ("--policy", os.path.join(tmp, "policy.json")))
    prober = Prober(tmp) if probe else None
    if prober:
        prober.start()
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, timeout=timeout + 120)
    wall = time.monotonic() - t0
    if prober:
        prober.stop.set()
        prober.join()
    time.sleep(1)
    return {"cmd": " ".join(cmd[:-len(trinity_args)] if trinity_args else cmd) + " " + " ".join(trinity_args),
            "exit": p.returncode, "wall_s": wall, "stdout": p.stdout.decode(errors="replace"),
            "stderr": p.stderr.decode(errors="replace"), "probes": prober.results if prober else [],
            "left": {"jail_pids": jail_pids(), "cgroups": cgroups_left(), "uid_locks": uid_locks(),
                     "mounts": mounts()}}


STAT_RE = re.compile(r"Ran (\d+) syscalls\. Successes: (\d+)\s+Failures: (\d+)")


def trinity_stats(text):
    """Trinity's own count, from its last summary line."""
    m = STAT_RE.findall(text)
    return {"syscalls": int(m[-1][0]), "successes": int(m[-1][1]), "failures": int(m[-1][2])} if m else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=300, help="how long trinity runs (the main run)")
    ap.add_argument("--limit-seconds", type=float, default=30,
                    help="the second run: jailrun's --timeout ends trinity (0: no such run)")
    ap.add_argument("--children", type=int, default=4, help="trinity -C")
    ap.add_argument("--pids", type=int, default=64, help="jailrun --pids (the jail's task limit)")
    ap.add_argument("--memory", default="1G", help="jailrun --memory")
    ap.add_argument("--cpus", type=float, default=1, help="jailrun --cpus")
    ap.add_argument("--scratch", default="256M", help="jailrun --scratch-size")
    ap.add_argument("--plain", action="store_true",
                    help="trinity as it comes (only --dangerous): every system call, 32-bit ones and every fd "
                    "provider; the filter kills it at its start (see RESULTS.md)")
    ap.add_argument("trinity_args", nargs="*", help="more trinity options (after --)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        die("needs root (jailrun jails as root)")
    if not os.path.exists(TRINITY):
        die("no %s: apt-get install trinity (scripts/setup)" % TRINITY)
    if jail_pids() or cgroups_left():
        die("uids %d-%d or cgroup parent %s in use" % (UID_LO, UID_HI, CGROUP_PARENT))
    targs = ["--dangerous", "-q", "-C", str(args.children), "-l", "/scratch/trinity-log"]
    if not args.plain:
        targs += ["--arch", "64", "--disable-fds=" + ",".join(KILLER_FDS)]
        for s in KILLERS:  # trinity names x86_64's umount2 (166) umount
            targs += ["-x", "umount" if s == "umount2" else s]
    targs += args.trinity_args
    res = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "kernel": os.uname().release,
           "nproc": os.cpu_count(), "loadavg_start": loadavg(), "trinity_args": targs,
           "trinity_version": subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "trinity"],
                                             capture_output=True, text=True).stdout,
           "commit": subprocess.run(["git", "-C", TOP, "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True).stdout.strip(), "mounts_before": mounts()}
    d0, t0 = dmesg(), tainted()
    try:
        with tempfile.TemporaryDirectory(prefix="jr-trinity-") as tmp:
            os.chmod(tmp, 0o755)
            with open(os.path.join(tmp, "trinity_job.py"), "w") as f:
                f.write(JOB % {"trinity": TRINITY})
            with open(os.path.join(tmp, "policy.json"), "w") as f:
                json.dump({"profile": "exec", "exec": {"programs": [TRINITY]}}, f)
            res["main"] = run_job(args, tmp, args.seconds, args.seconds + 60, targs, True)
            if args.limit_seconds > 0:
                res["limit"] = run_job(args, tmp, 10 * args.limit_seconds + 600, args.limit_seconds, targs, False)
    finally:
        remove_parents()
    res["dmesg_new"] = new_lines(d0, dmesg())
    res["dmesg"] = classify(res["dmesg_new"])
    res["tainted"] = [t0, tainted()]
    res["loadavg_end"] = loadavg()
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "trinity-out.txt"), "w") as f:
        for k in ("main", "limit"):
            if k in res:
                f.write("==== %s: %s\n-- stdout\n%s\n-- stderr\n%s\n" % (k, res[k]["cmd"][:300], res[k]["stdout"][-100000:],
                                                                  res[k]["stderr"][-100000:]))
    for k in ("main", "limit"):
        if k in res:
            res[k]["stats"] = trinity_stats(res[k]["stdout"] + res[k]["stderr"])
            res[k]["stdout"] = res[k]["stdout"][-20000:]
            res[k]["stderr"] = res[k]["stderr"][-20000:]
    with open(os.path.join(OUT, "trinity.json"), "w") as f:
        json.dump(res, f, indent=1)
    text = summary(res, args)
    with open(os.path.join(OUT, "trinity.txt"), "w") as f:
        f.write(text)
    print(text, end="")


def summary(r, args):
    out = ["trinity %s in jailrun --profile exec; %s, kernel %s, %d cores; build %s; load %s at start, %s at end"
           % (r["trinity_version"], r["date"], r["kernel"], r["nproc"], r["commit"], r["loadavg_start"],
              r["loadavg_end"]),
           "trinity options: %s" % " ".join(a for a in r["trinity_args"] if a != "-x" and a not in KILLERS + ["umount"])
           + (" and -x for each of the %d system calls the filter kills for" % len(KILLERS)
              if "-x" in r["trinity_args"] else "")]
    for k, what in (("main", "main run (%g s, stopped by the script)" % args.seconds),
                    ("limit", "time-limit run (jailrun --timeout %g)" % args.limit_seconds)):
        if k not in r:
            continue
        x = r[k]
        st = x["stats"]
        out.append("%s: jailrun exit %d after %.1f s; trinity: %s" % (
            what, x["exit"], x["wall_s"], "%d syscalls, %d succeeded, %d failed (%.0f/s)"
            % (st["syscalls"], st["successes"], st["failures"], st["syscalls"] / max(x["wall_s"], 1))
            if st else "no statistics printed"))
        last = [ln for ln in (x["stdout"] + x["stderr"]).splitlines() if ln.startswith(("jail:", "jailrun"))]
        out += ["  " + ln[:300] for ln in last[-4:]]
        left = x["left"]
        out.append("  after it: jail processes %d, cgroups left %d, uid locks %d, host mounts %d (before %d)"
                   % (len(left["jail_pids"]), len(left["cgroups"]), len(left["uid_locks"]), left["mounts"],
                      r["mounts_before"]))
        if x["probes"]:
            ps = x["probes"]
            out.append("  probe jobs meanwhile: %d of %d answered; wall time median %.2f s, max %.2f s"
                       % (sum(p["ok"] for p in ps), len(ps), sorted(p["s"] for p in ps)[len(ps) // 2],
                          max(p["s"] for p in ps)))
            bad = [p for p in ps if not p["ok"]]
            if bad:
                out.append("  first failed probe: %s" % bad[0]["err"][:300])
    c = r["dmesg"]
    out.append("kernel: taint %d before, %d after; %d new lines in dmesg since the start:"
               % (r["tainted"][0], r["tainted"][1], len(r["dmesg_new"])))
    out.append("  seccomp kills of this bench's jails (audit), by system call: %s"
               % (", ".join("%s x%d" % kv for kv in sorted(c["seccomp_kills"].items())) or "none"))
    out.append("  lines saying the kernel is hurt (WARNING, BUG, Oops, lockups, stalls, taint): %d" % len(c["serious"]))
    out += ["    " + ln[:200] for ln in c["serious"][:20]]
    out.append("  trinity's processes named: %d" % len(c["trinity"]))
    out += ["    " + ln[:200] for ln in c["trinity"][:10]]
    out.append("  out-of-memory kills (any cgroup): %d; other lines (others' jobs on this shared host): %d"
               % (len(c["oom_kills"]), len(c["other"])))
    out += ["    " + ln[:200] for ln in c["oom_kills"][:5]]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
