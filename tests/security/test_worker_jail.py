"""The jails of profiles worker and strategy, attacked with native power.

The rest of this suite attacks profile exec's jail. Workers and strategies
run under another seccomp filter (no execve, execveat, fork or vfork; no
network socket), and their Python layer stands in front of it; here the
layer is switched off (python.guard false, the declared way) so that the
script has ctypes, as a script that broke the layer would, and the kernel
filter is what answers.
"""
import json
import os
import subprocess

import pytest

from conftest import JAILRUN

OFF = {"python": {"guard": False}, "validator": {"enabled": False}}

PRELUDE = """
import ctypes, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sysc(*a):
    ctypes.set_errno(0)
    return libc.syscall(*a), ctypes.get_errno()
"""

ENTRY = {"worker": "\ndef tick(ctx):\n    pass\n",
         "strategy": "\ndef on_bar_strategy(sdk, params):\n    pass\n"}

# name -> the call (x86-64 numbers); each must fail with EPERM
REFUSED = {
    "execve": 'sysc(59, b"/usr/bin/python3.11", None, None)',
    "execveat": 'sysc(322, -100, b"/usr/bin/python3.11", None, None, 0)',
    "fork": "sysc(57)",
    "vfork": "sysc(58)",
    "clone_newuser": "sysc(56, 0x10000000 | 17, 0, 0, 0, 0)",
    "socket_inet": "sysc(41, 2, 1, 0)",
    "socket_netlink": "sysc(41, 16, 3, 0)",
    "socket_packet": "sysc(41, 17, 3, 0)",
}


def run(tmp_path, profile, body):
    pol = tmp_path / "off.json"
    pol.write_text(json.dumps(OFF))
    src = tmp_path / "attack.py"
    src.write_text(PRELUDE + body + ENTRY[profile])
    return subprocess.run([JAILRUN, "--profile", profile, "--policy", str(pol), "--json", str(src)],
                          capture_output=True, text=True, timeout=60)


def results(p):
    out = {}
    for line in p.stderr.splitlines():
        line = line.strip()
        i = line.find("RESULT ")
        if i >= 0 and not line.startswith("{"):
            out.update(json.loads(line[i + len("RESULT "):]))
        elif line.startswith("{"):
            msg = json.loads(line).get("message", "")
            if msg.startswith("RESULT "):
                out.update(json.loads(msg[len("RESULT "):]))
    return out


@pytest.mark.parametrize("profile", ["worker", "strategy"])
def test_programs_processes_and_networks_are_refused(tmp_path, profile):
    body = "print('RESULT ' + json.dumps({%s}), flush=True)\n" % ", ".join(
        "%r: %s" % (name, call) for name, call in REFUSED.items())
    p = run(tmp_path, profile, body)
    assert p.returncode == 0, (p.stdout, p.stderr)
    r = results(p)
    assert set(r) == set(REFUSED), (r, p.stderr)
    for name, (ret, err) in r.items():
        assert ret == -1 and err == 1, (name, ret, err)  # EPERM


@pytest.mark.parametrize("profile", ["worker", "strategy"])
def test_the_file_system_is_read_only_and_the_hosts_is_absent(tmp_path, profile):
    body = """
res = {}
for path in ("/x", "/tmp/x", "/usr/x", "/scratch/x", "/dev/shm/x"):
    try:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        res[path] = 0
    except OSError as e:
        res[path] = e.errno
for path in ("/etc/shadow", "/root", "/home", "/sys/kernel", "/proc/1/environ", "/proc/1/root/etc/shadow"):
    res[path + " exists"] = os.path.exists(path) and os.access(path, os.R_OK)
print('RESULT ' + json.dumps(res), flush=True)
"""
    p = run(tmp_path, profile, body)
    assert p.returncode == 0, (p.stdout, p.stderr)
    r = results(p)
    for path in ("/x", "/tmp/x", "/usr/x", "/scratch/x", "/dev/shm/x"):
        assert r[path] != 0, (path, r)
    for path in ("/etc/shadow", "/root", "/home", "/sys/kernel", "/proc/1/root/etc/shadow"):
        assert r[path + " exists"] is False, (path, r)


@pytest.mark.parametrize("profile", ["worker", "strategy"])
def test_a_kill_listed_call_ends_the_jail(tmp_path, profile):
    # the marks go to the jail's stderr directly (log lines are batched,
    # and the batch dies with the jail)
    p = run(tmp_path, profile, "os.write(2, b'MARK before\\n')\n"
            "sysc(101, 0, 0, 0, 0)  # PTRACE_TRACEME\nos.write(2, b'MARK after\\n')\n")
    assert p.returncode == 128 + 31, (p.returncode, p.stderr)  # SIGSYS
    assert json.loads(p.stdout.strip().splitlines()[-1])["status"] == "signal"
    assert "MARK before" in p.stderr and "MARK after" not in p.stderr, p.stderr
