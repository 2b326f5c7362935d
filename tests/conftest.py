"""Shared helpers for the pytest suites (integration, security).

Every test runs the real jailrun binary as root against the real kernel.
JAILRUN names the binary (set by `make check`; defaults to the build tree).
"""
import json
import os
import re
import subprocess
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
JAILRUN = os.environ.get("JAILRUN") or os.path.join(HERE, "..", "supervisor", "jailrun")


class Result:
    def __init__(self, proc):
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    @property
    def json(self):
        """The final JSON object (last stdout line) of a --json run."""
        return json.loads(self.out.strip().splitlines()[-1])

    def __repr__(self):
        return "<exit %s\nstdout:\n%s\nstderr:\n%s>" % (self.code, self.out, self.err)


# pids of the jailruns run_script started, for checks on what they left
SPAWNED = []

# Profile worker's import allowlist (seed 001). Tests of the kernel layer
# often need modules beyond it (os, socket, ctypes) inside a worker: those
# run with NATIVE_POLICY, profile worker with its Python layer off.
WORKER_IMPORTS = {"math", "statistics", "datetime", "json", "collections", "time", "re", "functools",
                  "itertools", "decimal", "hashlib", "hmac", "base64", "copy", "random", "numpy", "pandas"}
NATIVE_POLICY = os.path.join(HERE, "policies", "native-worker.json")


def native_opts(source, args):
    """("--policy", NATIVE_POLICY) for a profile-worker script that imports
    beyond the allowlist, unless the caller chose a profile or policy."""
    if any(a in ("--profile", "--policy") or a.startswith("--profile=") for a in args):
        return ()
    for m in re.finditer(r"^\s*(?:import|from)\s+([\w.]+(?:\s*,\s*[\w.]+)*)", source, re.M):
        for name in m.group(1).split(","):
            if name.strip().partition(".")[0] not in WORKER_IMPORTS:
                return ("--policy", NATIVE_POLICY)
    return ()


# JR_WARM=MODULES (make check's integration-warm.test): every jail a warm
# jail can be (not a backtest's, not --check's) is cloned from a zygote
# preloading MODULES (jailrun --warm), to show it behaves as a cold one.
WARM = os.environ.get("JR_WARM")


# Whether the `jail` fixture's jails are warm: through jaild (its zygotes
# are on by default; its sessions too) or under JR_WARM. A warm jail's owner-only /proc/self
# files belong to the host's root, not to the jail (jaild(8) ZYGOTES).
WARM_JAILS = os.environ.get("JR_VIA") in ("jaild", "session") or WARM is not None


# JR_SANITIZERS=1: the run of a ./configure --enable-sanitizers build
# (tests/sanitizers/README). The few tests that cannot hold under ASan skip
# there, each with its reason; the README lists them.
SANITIZERS = os.environ.get("JR_SANITIZERS") == "1"
# Why a scan of a jail's whole memory cannot run there: it writes every
# readable mapping through a pipe, and ASan's write() checks its buffer
# (the heap's redzones are a report) and maps terabytes of shadow.
JAIL_MEMORY_SCAN = "the scan of the jail's memory reads ASan's redzones and its terabytes of shadow"


def not_under_sanitizers(why):
    """Skips the test in the sanitizer run (JR_SANITIZERS=1), saying why."""
    return pytest.mark.skipif(SANITIZERS, reason="under ASan: " + why)


def warm_opts(args):
    if WARM is None or any(a in ("--bars", "--check", "--version", "--help", "--print-policy") for a in args):
        return ()
    return ("--warm=" + WARM,)


def run_script(tmp_path, source, *args, name="script.py", timeout=60, stdin=None, script_args=(), env=None):
    """Writes `source` to a file and runs `jailrun ARGS FILE [-- script_args]`
    (with env added to jailrun's environment)."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    cmd = [JAILRUN, *warm_opts(args), *native_opts(textwrap.dedent(source), args), *args, str(path)]
    if script_args:
        cmd += ["--", *script_args]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, **env} if env else None,
                          stdin=stdin if stdin is not None else subprocess.DEVNULL) as p:
        SPAWNED.append(p.pid)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
    return Result(subprocess.CompletedProcess(cmd, p.returncode, out, err))


# JR_VIA=jaild: the `jail` fixture's scripts go through a jaild started for
# the session (POST /v1/jobs) instead of a jailrun each: the same attacks
# against the daemon's jails.
_JAILD = []


def jaild_for_session():
    if not _JAILD:
        import atexit
        import sys
        sys.path.insert(0, os.path.join(HERE, "jaild"))
        from jdaemon import Jaild
        # jailrun's own uid range: the attacks check the jail's ids against it
        d = Jaild(max_live_jobs=4, queue_wait=120, uid_range={"lo": 100000, "hi": 165535}).start()
        atexit.register(d.cleanup)
        _JAILD.append(d)
    return _JAILD[0]


def run_via_jaild(source, *args, timeout=60, stdin=None, script_args=(), env=None, name=None):
    """run_script's contract through POST /v1/jobs: the options a job takes
    are mapped to its fields (--profile, --policy, --json); any other is a
    skip, saying which."""
    args = list(args)
    body = {"source": textwrap.dedent(source), "profile": "exec"}
    want_json = False
    while args:
        a = args.pop(0)
        if a == "--json":
            want_json = True
        elif a == "--profile" and args:
            body["profile"] = args.pop(0)
        elif a == "--policy" and args:
            with open(args.pop(0)) as f:
                body["policy"] = json.load(f)
        else:
            pytest.skip("through jaild: %s is a jailrun option a job does not take" % a)
    if stdin is not None or env:
        pytest.skip("through jaild: a job has no stdin or environment of the caller's")
    if script_args:
        body["args"] = list(script_args)
    r = jaild_for_session().post("/v1/jobs", body, timeout=timeout)
    assert r.status_code == 200, r.text
    j = r.json()
    out = j.pop("stdout")
    err = j.pop("stderr")
    for k in ("id", "output_truncated"):
        j.pop(k, None)
    if want_json:
        out += ("\n" if out and not out.endswith("\n") else "") + json.dumps(j) + "\n"
    return Result(subprocess.CompletedProcess(["jaild"], j["exit_code"], out, err))


# JR_VIA=session: each script of the `jail` fixture runs as one cell of a
# fresh exec session of that jaild (POST /v1/sessions, then execute, then
# DELETE): the same attacks from inside a session's interpreter.
def _session_options(args):
    """The session's fields for run_script's options (--timeout: the
    cell's time limit, --memory: its memory_limit); any other is a skip,
    saying which."""
    args, spec, want_json = list(args), {}, False
    while args:
        a = args.pop(0)
        if a == "--json":
            want_json = True
        elif a == "--profile" and args and args[0] == "exec":
            args.pop(0)
        elif a == "--timeout" and args:
            spec["timeout"] = float(args.pop(0))
        elif a == "--memory" and args:
            spec["memory_limit"] = args.pop(0)
        else:
            pytest.skip("through a session: %s is a jailrun option a session does not take" % a)
    return spec, want_json


def _cell_status(data):
    """(exit code, the --json status) a jailrun would have given for the
    script whose cell answered data; stderr gains what Python prints."""
    etype, msg = data.get("error_type"), data.get("error", "")
    msg = msg[len(etype) + 2:] if etype and msg.startswith(etype + ": ") else msg
    if data.get("session_ended"):  # the jail died under it
        m = re.search(r"\bsignal (\d+)\b", msg)
        if m:
            return 128 + int(m.group(1)), "signal", msg
        m = re.search(r"\b(?:status|exit code) (\d+)\b", msg)
        return (int(m.group(1)) if m else 1), "error", msg
    if etype == "SystemExit":  # sys.exit(n): the cell's error says n
        if msg in ("", "None"):
            return 0, "ok", msg
        return (int(msg) & 0xFF if re.fullmatch(r"-?\d+", msg) else 1), "error", msg
    return (1 if etype else 0), ("error" if etype else "ok"), msg


def run_via_session(source, *args, timeout=60, stdin=None, script_args=(), env=None, name="script.py"):
    """run_script's contract through a session: the script's argv set in a
    first cell, the script the second; the answer mapped back to an exit
    code, stdout, stderr (with the traceback Python would print) and, for
    --json, {status, exit_code, error}."""
    spec, want_json = _session_options(args)
    if stdin is not None or env:
        pytest.skip("through a session: a session has no stdin or environment of the caller's")
    d = jaild_for_session()
    r = d.post("/v1/sessions", spec, timeout=timeout)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    try:
        r = d.post("/v1/sessions/%s/execute" % sid, {"code": "import sys\nsys.argv = %r" % [name, *script_args]},
                   timeout=timeout)
        assert r.status_code == 200 and r.json()["success"], r.text
        r = d.post("/v1/sessions/%s/execute" % sid, {"code": textwrap.dedent(source)}, timeout=timeout)
        assert r.status_code == 200, r.text
    finally:
        gone = d.request("DELETE", "/v1/sessions/%s" % sid, timeout=timeout)
        assert gone.status_code == 200, gone.text
    data = r.json()["data"]
    code, status, msg = _cell_status(data)
    out, err = data["output"], data["stderr"]
    if data.get("traceback"):
        err += data["traceback"]
    elif data.get("error_type") == "SystemExit" and code == 1:
        err += msg + "\n"
    if want_json:
        j = {"status": status, "exit_code": code}
        if data.get("error_type"):
            j["error"] = {"type": data["error_type"], "message": msg}
        out += ("\n" if out and not out.endswith("\n") else "") + json.dumps(j) + "\n"
    return Result(subprocess.CompletedProcess(["jaild", "session"], code, out, err))


def pytest_collection_modifyitems(config, items):
    """JR_VIA=session: only the tests that run scripts in the `jail`
    fixture (the others run jailrun itself, as security.test does)."""
    if os.environ.get("JR_VIA") != "session":
        return
    keep = [i for i in items if "jail" in getattr(i, "fixturenames", ())]
    dropped = [i for i in items if "jail" not in getattr(i, "fixturenames", ())]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture
def jail(tmp_path):
    """jail(source, *args) -> Result, running in profile exec unless told otherwise."""
    def run(source, *args, **kw):
        if os.environ.get("JR_VIA") == "jaild":
            return run_via_jaild(source, *args, **kw)
        if os.environ.get("JR_VIA") == "session":
            return run_via_session(source, *args, **kw)
        if "--profile" not in args:
            args = ("--profile", "exec") + args
        return run_script(tmp_path, source, *args, **kw)
    return run


@pytest.fixture
def worker(tmp_path):
    """worker(source, *args) -> Result, in profile worker."""
    def run(source, *args, **kw):
        return run_script(tmp_path, source, *args, **kw)
    return run


def pytest_report_header(config):
    """How much the timing bounds are stretched here (tests/README)."""
    import hostprobe
    return "host pace: a trivial jailrun takes %.1f ms here, %.1fx a quiet host's (timing bounds stretched so)" % (
        hostprobe.jail_seconds() * 1000, hostprobe.pace())
