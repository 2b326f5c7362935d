"""Shared helpers for the pytest suites (integration, security).

Every test runs the real jailrun binary as root against the real kernel.
JAILRUN names the binary (set by `make check`; defaults to the build tree).
"""
import json
import os
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


def run_script(tmp_path, source, *args, name="script.py", timeout=60, stdin=None, script_args=()):
    """Writes `source` to a file and runs `jailrun ARGS FILE [-- script_args]`."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    cmd = [JAILRUN, *args, str(path)]
    if script_args:
        cmd += ["--", *script_args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          stdin=stdin if stdin is not None else subprocess.DEVNULL)
    return Result(proc)


@pytest.fixture
def jail(tmp_path):
    """jail(source, *args) -> Result, running in profile exec unless told otherwise."""
    def run(source, *args, **kw):
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
