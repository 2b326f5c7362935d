"""Self-test of the tests/vm/run guest; meaningful only inside it:

    tests/vm/run 'cd "$TOP/tests/vm/selftest" && /usr/bin/python3.11 -m pytest -q -p no:cacheprovider -rs .'

Outside the VM (no JR_VM=1 in the environment) every test is skipped.
"""
import os
import platform
import subprocess

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("JR_VM") != "1", reason="not inside tests/vm/run's guest")

TOP = os.environ.get("TOP") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
JAILRUN = os.environ.get("JAILRUN") or os.path.join(TOP, "supervisor", "jailrun")
CGROUP2_SUPER_MAGIC = 0x63677270


def mounts():
    with open("/proc/self/mounts") as f:
        return [line.split() for line in f]


def test_sys_fs_cgroup_is_pure_cgroup2():
    at = [m for m in mounts() if m[1] == "/sys/fs/cgroup"]
    assert [m[2] for m in at] == ["cgroup2"], at
    assert not [m for m in mounts() if m[2] == "cgroup"], "a cgroup v1 hierarchy is mounted"
    out = subprocess.run(["stat", "-f", "-c", "%t", "/sys/fs/cgroup"], capture_output=True, text=True, check=True)
    assert int(out.stdout, 16) == CGROUP2_SUPER_MAGIC
    with open("/sys/fs/cgroup/cgroup.controllers") as f:
        controllers = f.read().split()
    assert {"memory", "pids", "cpu"} <= set(controllers), controllers


def test_kernel_is_debian_6_1():
    assert platform.release().startswith("6.1."), platform.release()
    assert os.uname().release == subprocess.run(["uname", "-r"], capture_output=True, text=True,
                                                 check=True).stdout.strip()


def test_python311_runs():
    out = subprocess.run(["/usr/bin/python3.11", "-c", "import sys; print(sys.version_info[:2])"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(3, 11)"


def test_writable_run_tmp_and_root_overlay():
    for d in ("/run", "/tmp"):
        assert [m[2] for m in mounts() if m[1] == d] == ["tmpfs"], d
        assert os.access(d, os.W_OK), d
    assert [m[2] for m in mounts() if m[1] == "/"] == ["overlay"]


def test_user_namespaces_available():
    with open("/proc/sys/user/max_user_namespaces") as f:
        assert int(f.read()) > 0
    subprocess.run(["unshare", "--user", "--map-root-user", "true"], check=True)


def test_jailrun_profile_exec(tmp_path):
    script = tmp_path / "x.py"
    script.write_text("import sys\nprint('hello from the jail', sys.version_info[:2])\nsys.exit(7)\n")
    proc = subprocess.run([JAILRUN, "--profile", "exec", str(script)], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 7, (proc.returncode, proc.stdout, proc.stderr)
    assert "hello from the jail (3, 11)" in proc.stdout, (proc.stdout, proc.stderr)
