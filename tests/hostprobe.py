"""What this host's kernel does on its own, asked before a test asserts
what the jail adds (tests/README).

Each probe runs the same thing a jail test runs, but outside any jail, in
a plain /usr/bin/python3.11 child, and returns a Probe: `ok` says whether
the host itself runs it; `why` says what the host did otherwise, for the
skip reason. Probes are cached for the test session.
"""
import functools
import os
import signal
import subprocess
import sys
import textwrap

PYTHON = os.environ.get("PYTHON311") or "/usr/bin/python3.11"


class Probe:
    def __init__(self, ok, why):
        self.ok = ok
        self.why = why

    def __bool__(self):
        return self.ok

    def __repr__(self):
        return "<Probe ok=%s: %s>" % (self.ok, self.why)


def _status(rc):
    if rc < 0:
        try:
            return "died of %s" % signal.Signals(-rc).name
        except ValueError:
            return "died of signal %d" % -rc
    return "exited with status %d" % rc


def run_outside(source, timeout=30):
    """Runs source in a plain python3.11 child (no jail); returns the
    CompletedProcess (returncode < 0: killed by that signal)."""
    return subprocess.run([PYTHON, "-I", "-c", textwrap.dedent(source)], capture_output=True, text=True,
                          timeout=timeout)


# Machine code run from an RWX page by both the probe and the jail tests.
INT80_GETPID = b"\xb8\x14\x00\x00\x00\xcd\x80\xc3"  # mov eax, 20 (ia32 getpid); int 0x80; ret
INT80_SOCKET = (b"\xb8\x67\x01\x00\x00" b"\xbb\x02\x00\x00\x00"   # mov eax, 359 (ia32 socket); mov ebx, 2
                b"\xb9\x01\x00\x00\x00" b"\x31\xd2" b"\xcd\x80" b"\xc3")  # mov ecx, 1; xor edx, edx; int 0x80; ret

RUN_CODE = """
import ctypes, mmap, os, sys
code = %r
m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
m.write(code)
fn = ctypes.CFUNCTYPE(ctypes.c_long)(ctypes.addressof(ctypes.c_char.from_buffer(m)))
"""


@functools.lru_cache(maxsize=None)
def ia32_syscall_entry():
    """Does `int 0x80` reach the kernel's 32-bit syscall table here? Kernels
    built without IA32_EMULATION, or booted with ia32_emulation=0, answer
    a general protection fault (SIGSEGV) instead of running the call."""
    if os.uname().machine != "x86_64":
        return Probe(False, "not an x86_64 host (%s)" % os.uname().machine)
    r = run_outside(RUN_CODE % INT80_GETPID + "print(fn(), os.getpid())")
    if r.returncode == -signal.SIGSEGV:
        return Probe(False, "int 0x80 outside any jail %s: this host has no 32-bit syscall entry"
                     % _status(r.returncode))
    if r.returncode != 0:  # not the answer of a host without the entry: the probe itself failed
        raise AssertionError("the int 0x80 probe %s: %s" % (_status(r.returncode), r.stderr[-500:]))
    got, pid = r.stdout.split()
    if got != pid:
        return Probe(False, "int 0x80 getpid outside any jail returned %s, not the pid %s" % (got, pid))
    return Probe(True, "int 0x80 getpid runs outside the jail")


# A whole trivial jailrun (`pass`, profile exec) on a quiet host of our
# kind: ~15 ms (bench/RESULTS.md, start-up). What slack() stretches by.
QUIET_JAIL_SECONDS = 0.015


@functools.lru_cache(maxsize=None)
def jail_seconds():
    """The least wall time of 7 whole trivial jailruns (clone, jail,
    interpreter, exit) on this host under its load, measured once a session
    (the least: what the host can do; the others carry the cgroup v1
    teardown's occasional waits, noise that says nothing of its speed)."""
    import tempfile
    import time
    from conftest import JAILRUN
    with tempfile.NamedTemporaryFile("w", suffix=".py") as f:
        f.write("pass\n")
        f.flush()
        took = []
        for _ in range(7):
            t0 = time.monotonic()
            subprocess.run([JAILRUN, "--profile", "exec", f.name], check=True, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
            took.append(time.monotonic() - t0)
    return min(took)


def pace():
    """How many times slower than a quiet host of our kind this one runs
    jails now (at least 1)."""
    return max(1.0, jail_seconds() / QUIET_JAIL_SECONDS)


def slack(seconds):
    """A liveness bound of `seconds` on a quiet host, stretched by pace()."""
    return seconds * pace()
