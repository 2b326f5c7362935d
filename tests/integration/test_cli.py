"""Command line: usage errors (exit 2), --help/--version, set-up failure
(exit 3), --uid-range, --scratch-size, --timeout 0, --verbose."""
import fcntl
import json
import os
import subprocess
import sys
import time

import pytest

from hostprobe import slack
from jr_helpers import (JAILRUN, LOCK_DIR, Result, final_json, host_stays_clean,  # noqa: F401
                        write_script)

TICK = "def tick(ctx):\n    ctx.log.info('ran')\n"


def run(*argv, timeout=30):
    return subprocess.run([JAILRUN, *argv], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_help_and_version():
    r = run("--help")
    assert r.returncode == 0
    assert r.stdout.startswith("Usage: jailrun")
    assert "--profile NAME" in r.stdout and "strategy" in r.stdout and "--check" in r.stdout
    r = run("--version")
    assert r.returncode == 0
    assert r.stdout.startswith("jailrun ")


def test_no_script_is_usage_error():
    r = run()
    assert r.returncode == 2, r
    assert "no script given" in r.stderr
    r = run("--json", "--ticks", "3")
    assert r.returncode == 2, r
    assert r.stdout == ""


def test_missing_script_file(tmp_path):
    missing = str(tmp_path / "does-not-exist.py")
    for opts in ([], ["--json"], ["--profile", "exec"]):
        r = run(*opts, missing)
        assert r.returncode == 2, (opts, r)
        assert "cannot open script" in r.stderr and "does-not-exist.py" in r.stderr
        assert r.stdout == "", "no JSON result for a usage error"


def test_directory_as_script(tmp_path):
    r = run("--profile", "exec", str(tmp_path))
    assert r.returncode == 2, r
    assert "not a regular file" in r.stderr


@pytest.mark.parametrize("opts", [
    ["--bogus"],
    ["-x"],
    ["--ticks", "0"],
    ["--ticks", "-1"],
    ["--ticks", "abc"],
    ["--ticks", "1.5"],
    ["--ticks", ""],
    ["--ticks", "1000000001"],
    ["--timeout", "-1"],
    ["--timeout", "abc"],
    ["--timeout", "nan"],
    ["--timeout", "inf"],
    ["--timeout", "1e9"],
    ["--timeout", ""],
    ["--timeout", "5s"],
    ["--profile", "foo"],
    ["--profile", ""],
    ["--uid-range", "5"],
    ["--uid-range", "0-5"],
    ["--uid-range", "10-5"],
    ["--uid-range", "a-b"],
    ["--uid-range", "-5-10"],
    ["--scratch-size", "1"],
    ["--scratch-size", "3G"],
    ["--scratch-size", "10X"],
    ["--scratch-size", "-4K"],
], ids=lambda o: " ".join(o) or "empty")
def test_bad_option_is_usage_error(tmp_path, opts):
    script = write_script(tmp_path, TICK)
    r = run(*opts, script)
    assert r.returncode == 2, r
    assert r.stderr.startswith(("jailrun: ", JAILRUN)), r.stderr
    assert "Try 'jailrun --help'" in r.stderr
    assert "INFO ran" not in r.stderr, "the script must not run"


def test_option_without_value_is_usage_error(tmp_path):
    r = run("--ticks")
    assert r.returncode == 2, r
    script = write_script(tmp_path, TICK)
    r = run(script, "--timeout")  # options after the script are its args: worker has none
    assert r.returncode == 2, r


def test_script_args_are_for_exec_only(tmp_path):
    script = write_script(tmp_path, TICK)
    r = run(script, "--", "a")
    assert r.returncode == 2, r
    assert "profile exec only" in r.stderr


def test_timeout_zero_means_none_and_fractions_work(tmp_path):
    script = write_script(tmp_path, TICK)
    for t in ("0", "0.0", "2.5", "31536000"):
        r = run("--timeout", t, script)
        assert r.returncode == 0, (t, r)
        assert "INFO ran" in r.stderr


def test_an_ignored_sigchld_is_not_inherited(tmp_path):
    """Run by a parent that ignores SIGCHLD (kept across exec), jailrun
    still learns how its jail ended: the kernel would otherwise reap the
    jail itself and its status would be lost."""
    script = write_script(tmp_path, "import sys\nsys.exit(7)\n")
    ignore = "import os, signal, sys; signal.signal(signal.SIGCHLD, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])"
    r = subprocess.run([sys.executable, "-c", ignore, JAILRUN, "--profile", "exec", "--json", script],
                       capture_output=True, text=True, timeout=slack(60))
    assert r.returncode == 7, r
    assert json.loads(r.stdout.strip().splitlines()[-1])["exit_code"] == 7, r


def test_verbose_prints_statistics(tmp_path):
    script = write_script(tmp_path, TICK)
    r = run("--verbose", "--ticks", "3", script)
    assert r.returncode == 0, r
    assert r.stderr.count("INFO ran") == 3
    assert "3 ticks" in r.stderr and "wall" in r.stderr and "cpu" in r.stderr


def test_uid_range_is_respected(tmp_path):
    script = write_script(tmp_path, "print(open('/proc/self/uid_map').read().split())\n")
    r = run("--profile", "exec", "--uid-range", "150001-150001", script)
    assert r.returncode == 0, r
    assert r.stdout.strip() == "['0', '150001', '1']"


def test_setup_failure_when_every_uid_is_taken(tmp_path):
    """Exit 3 (set-up failed) when no uid of the range can be locked."""
    script = write_script(tmp_path, TICK)
    os.makedirs(LOCK_DIR, exist_ok=True)
    path = os.path.join(LOCK_DIR, "150002.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        r = run("--uid-range", "150002-150002", script)
        assert r.returncode == 3, r
        assert "INFO ran" not in r.stderr
        assert "150002" in r.stderr
        r = run("--json", "--uid-range", "150002-150002", script)
        assert r.returncode == 3, r
        j = final_json(Result(r))
        assert j["status"] == "setup"
        assert j["error"]["type"] == "SetupError"
        assert os.path.exists(path), "jailrun must not unlink a lock it does not hold"
    finally:
        os.unlink(path)
        os.close(fd)
    r = run("--uid-range", "150002-150002", script)
    assert r.returncode == 0, r


def test_a_dead_supervisors_uid_is_not_taken_while_its_jail_runs(tmp_path):
    """A lock file nobody holds is what a supervisor killed with SIGKILL
    leaves; its jails die a moment after it. Until no process runs as that
    uid, no job takes it (exit 3, as when it is held) and no sweep removes
    the file; then a job takes it and leaves nothing behind. (Uids outside
    the default range: the suites running beside this one see neither the
    process nor the file.)"""
    script = write_script(tmp_path, TICK)
    os.makedirs(LOCK_DIR, exist_ok=True)
    path = os.path.join(LOCK_DIR, "170003.lock")
    # what outlives the dead supervisor: a process of that uid, running
    # before the file exists (a sweep meanwhile would remove a file whose
    # uid no process has)
    ghost = subprocess.Popen(["sleep", "120"], user=170003, group=170003, extra_groups=[])
    try:
        deadline = time.monotonic() + slack(10)
        while os.stat("/proc/%d" % ghost.pid).st_uid != 170003:
            assert time.monotonic() < deadline, "the ghost never ran as uid 170003"
            time.sleep(0.01)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        r = run("--uid-range", "170003-170003", script)
        assert r.returncode == 3 and "170003" in r.stderr, r
        assert "INFO ran" not in r.stderr
        r = run("--uid-range", "170004-170004", script)  # its sweeps pass over 170003's file
        assert r.returncode == 0, r
        assert os.path.exists(path), "a sweep removed the lock of a uid still in use"
    finally:
        ghost.kill()
        ghost.wait()
    r = run("--uid-range", "170003-170003", script)
    assert r.returncode == 0 and "INFO ran" in r.stderr, r
    assert not os.path.exists(path)


def test_scratch_size_sets_the_tmpfs_size(tmp_path):
    src = "import os\nst = os.statvfs('/scratch')\nprint(st.f_blocks * st.f_frsize)\n"
    script = write_script(tmp_path, src)
    r = run("--profile", "exec", script)
    assert r.returncode == 0, r
    assert int(r.stdout) == 64 << 20
    r = run("--profile", "exec", "--scratch-size", "8M", script)
    assert r.returncode == 0, r
    assert int(r.stdout) == 8 << 20


def test_scratch_full_is_enospc(tmp_path):
    src = """
    import errno
    try:
        with open('big', 'wb') as f:
            f.write(b'x' * (2 << 20))
            f.flush()
        print('wrote')
    except OSError as e:
        print('errno', e.errno == errno.ENOSPC)
    """
    script = write_script(tmp_path, src)
    r = run("--profile", "exec", "--scratch-size", "1M", script)
    assert r.returncode == 0, r
    assert r.stdout.strip() == "errno True"


def test_script_over_16_mib_is_usage_error(tmp_path):
    big = tmp_path / "big.py"
    line = "# " + "x" * 1021 + "\n"
    with open(big, "w") as f:
        f.write("def tick(ctx):\n    ctx.log.info('ran')\n")
        for _ in range(16 * 1024 + 1):
            f.write(line)
    assert big.stat().st_size > 16 * 1024 * 1024
    r = run(str(big))
    assert r.returncode == 2, r
    assert "16777216" in r.stderr or "larger" in r.stderr
    assert "INFO ran" not in r.stderr


def test_tiny_timeout_still_fires(tmp_path):
    """A timeout that rounds to 0 ns must not disarm the timer."""
    from conftest import run_script
    r = run_script(tmp_path, "import time\ntime.sleep(30)\n", "--profile", "exec", "--timeout", "1e-12")
    assert r.code == 124, r
