"""Shared pieces of the kernel-layer security suite.

Every attack runs inside a real jail with native power: the script gets a
prelude that calls libc's syscall() with raw x86-64 numbers through ctypes,
so the seccomp filter and the kernel see exactly what a hostile C program
would send. Scripts report what happened as `RESULT {json}` lines on stdout;
attacks that must be fatal print `MARK before` / `MARK after` around the
forbidden call with unbuffered writes, so a kill is told apart from an
ordinary failure.
"""
import json
import textwrap

SIGSYS = 31
KILLED_BY_SIGSYS = 128 + SIGSYS  # 159

# Runs first in every attack script.
PRELUDE = r'''
import ctypes, errno, json, os, sys
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

def _arg(a):
    if isinstance(a, bool):
        a = int(a)
    if isinstance(a, int):
        return ctypes.c_ulong(a & 0xFFFFFFFFFFFFFFFF)
    return a

def sysc(nr, *args):
    """Raw syscall: (return value, errno or 0)."""
    ctypes.set_errno(0)
    r = _libc.syscall(ctypes.c_long(nr), *[_arg(a) for a in args])
    return r, (ctypes.get_errno() if r == -1 else 0)

def err_of(fn, *a, **kw):
    """errno of an OSError raised by fn, or 0 when it succeeded."""
    try:
        fn(*a, **kw)
    except OSError as e:
        return e.errno
    return 0

def report(key, value):
    print("RESULT " + json.dumps({key: value}), flush=True)

def mark(text):
    os.write(1, ("MARK " + text + "\n").encode())

AT_FDCWD = -100
'''


def script(src):
    """The attack source with the prelude in front."""
    return PRELUDE + textwrap.dedent(src)


def results(res):
    """All RESULT objects of a run merged into one dict."""
    out = {}
    for line in res.out.splitlines():
        if line.startswith("RESULT "):
            out.update(json.loads(line[len("RESULT "):]))
    return out


def run_attack(jail, src, *args, **kw):
    """Runs src (with the prelude) and returns (Result, results dict);
    the script itself must have finished normally."""
    res = jail(script(src), *args, **kw)
    assert res.code == 0, res
    return res, results(res)


def assert_killed(res):
    """The jail died of SIGSYS right at the forbidden call (run with --json)."""
    assert res.code == KILLED_BY_SIGSYS, res
    assert "MARK before" in res.out, res
    assert "MARK after" not in res.out, res
    j = res.json
    assert j["status"] == "signal", res
    assert j["exit_code"] == KILLED_BY_SIGSYS, res
    assert "signal %d" % SIGSYS in j["error"]["message"], res


def run_killed(jail, setup, call, **kw):
    """Runs `setup`, then `call` between the two marks; asserts SIGSYS."""
    src = textwrap.dedent(setup) + '\nmark("before")\n' + textwrap.dedent(call) + \
        '\nmark("after")\n'
    res = jail(script(src), "--json", **kw)
    assert_killed(res)
    return res


def host_pid_max():
    with open("/proc/sys/kernel/pid_max") as f:
        return int(f.read())
