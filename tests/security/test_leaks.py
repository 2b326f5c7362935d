"""What the jail's own memory and /proc show of the supervisor's world.

The jail child is a clone of jailrun, so everything jailrun held at clone
time is in the jail's address space, and native code reads it directly: the
test scans every readable mapping with ctypes, not only /proc files. A needle
is passed in as two halves and matched piecewise, so the joined string is in
the jail's memory only if it leaked there."""
import os
import subprocess

from conftest import JAILRUN

SCAN = r'''
import ctypes, os, sys
def readable(a, n):
    # copied by the kernel through a pipe: memory unmapped since the maps
    # were read (the heap trimmed meanwhile) is EFAULT, not a crash
    r, w = os.pipe()
    out = []
    try:
        for off in range(0, n, 65536):
            k = min(65536, n - off)
            try:
                got = os.write(w, (ctypes.c_char * k).from_address(a + off))
            except OSError:
                break
            out.append(os.read(r, got))
    finally:
        os.close(r)
        os.close(w)
    return b"".join(out)
pairs = [(sys.argv[i].encode(), sys.argv[i + 1].encode()) for i in range(1, len(sys.argv), 2)]
found = []
for line in open("/proc/self/maps").read().splitlines():
    parts = line.split()
    if "r" not in parts[1] or (len(parts) > 5 and parts[5].startswith(("[vvar", "[vsyscall"))):
        continue
    a, b = (int(x, 16) for x in parts[0].split("-"))
    data = readable(a, b - a)
    for k, (head, tail) in enumerate(pairs):
        i = data.find(head)
        while i >= 0:
            if data[i + len(head):i + len(head) + len(tail)] == tail:
                found.append(str(k))
                break
            i = data.find(head, i + 1)
    del data
print("FOUND:" + ",".join(sorted(set(found))))
'''


def scan(tmp_path, pairs, env=None, script_dir=None):
    d = script_dir or tmp_path
    script = d / "scan.py"
    script.write_text(SCAN)
    args = [x for p in pairs for x in p]
    p = subprocess.run([JAILRUN, "--profile", "exec", str(script), "--", *args],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    line = [l for l in p.stdout.splitlines() if l.startswith("FOUND:")][-1]
    return set(filter(None, line[len("FOUND:"):].split(",")))


def test_scan_finds_what_is_there(tmp_path):
    # The scanner itself works: a string the script builds is found.
    script_dir = tmp_path / "x"
    script_dir.mkdir()
    found = scan(tmp_path, [("scan", ".py")], script_dir=script_dir)  # "scan.py" is the script name
    assert found == {"0"}


def test_operator_environment_not_in_jail_memory(tmp_path):
    env = dict(os.environ, JR_TEST_TOKEN="s3cr3t-f00dfeed-77")
    found = scan(tmp_path, [("JR_TEST_TOK", "EN=s3cr3t-f00dfeed-77")], env=env)
    assert found == set(), "the supervisor's environment is readable in the jail's memory"


def test_script_host_path_not_in_jail_memory(tmp_path):
    d = tmp_path / "very-secret-host-dir-1234"
    d.mkdir()
    found = scan(tmp_path, [("/very-secret-ho", "st-dir-1234/scan.py")], script_dir=d)
    assert found == set(), "the script's host path is readable in the jail's memory"


def test_proc_environ_and_cmdline_hold_only_the_jails_own(jail):
    # The jail is the jail program, executed with a fixed environment and
    # argv: nothing of the operator's command line or environment.
    r = jail('''
        print("environ", open("/proc/self/environ", "rb").read().decode())
        print("cmdline", open("/proc/self/cmdline", "rb").read().decode())
    ''', env={"JR_OPERATOR_CANARY": "canary-4711"})
    assert r.code == 0, r
    lines = dict(l.split(" ", 1) for l in r.out.split("\n") if l)
    env = dict(kv.split("=", 1) for kv in lines["environ"].split("\0") if kv)
    assert set(env) == {"PATH", "HOME", "TMPDIR", "LANG", "TZ", "OPENBLAS_NUM_THREADS",
                        "OMP_NUM_THREADS", "MKL_NUM_THREADS"}, env
    assert "canary-4711" not in lines["environ"], r
    assert lines["cmdline"] == "jailrun-jail\0", r
