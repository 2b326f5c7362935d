"""What the cgroup tests need to know about the host: the backend jailrun
uses, and where job groups live. Works on both backends (v1 here, v2 in the
VM of tests/vm)."""
import os
import re
import subprocess

from conftest import JAILRUN


def backend():
    """('cgroup v2', [root]) or ('cgroup v1', [memory, pids, cpu, cpuacct, freezer roots])."""
    out = subprocess.run([JAILRUN, "--version", "--verbose"], capture_output=True, text=True,
                         check=True).stdout
    line = [l for l in out.splitlines() if l.startswith("cgroup backend: ")][0]
    if line.startswith("cgroup backend: cgroup v2 at "):
        return "cgroup v2", [line.split(" at ", 1)[1]]
    if line.startswith("cgroup backend: cgroup v1"):
        roots = re.findall(r"at (/\S+?)[,)]", line)
        return "cgroup v1", sorted(set(roots))
    raise AssertionError("no cgroup backend: " + line)


def job_groups(parent="jailrun"):
    """Every job-* directory under parent, in every hierarchy in use."""
    _, roots = backend()
    found = []
    for root in roots:
        d = os.path.join(root, parent)
        if os.path.isdir(d):
            found += [os.path.join(d, n) for n in os.listdir(d) if n.startswith("job-")]
    return found


def groups_of(pid, parent="jailrun"):
    return [g for g in job_groups(parent) if g.endswith("/job-%d" % pid)]


def mem_available():
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemAvailable")
