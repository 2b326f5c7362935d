"""How jailrun copes with kernels that lack or refuse what it needs."""
import json
import os
import shutil
import subprocess

from conftest import HERE, JAILRUN

NOCLONE3 = os.environ.get("NOCLONE3") or os.path.join(HERE, "helpers", "noclone3")


def test_falls_back_to_clone_without_clone3(tmp_path):
    # noclone3 makes clone3 answer ENOSYS, as kernels before 5.3 do.
    script = tmp_path / "s.py"
    script.write_text("import os\nprint(os.getpid(), open('/proc/self/uid_map').read().split())\n")
    p = subprocess.run([NOCLONE3, JAILRUN, "--profile", "exec", str(script)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    pid, maps = p.stdout.split(" ", 1)
    assert pid == "1"  # a new pid namespace all the same
    assert eval(maps)[0] == "0" and eval(maps)[2] == "1"


def test_clone3_really_refused_by_the_helper(tmp_path):
    # The helper is what the test above relies on: prove it refuses clone3.
    script = tmp_path / "c.py"
    script.write_text(
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "r = libc.syscall(435, None, 0)\n"
        "print(r, ctypes.get_errno())\n")
    p = subprocess.run([NOCLONE3, "/usr/bin/python3.11", "-I", str(script)],
                       capture_output=True, text=True, timeout=60)
    assert p.stdout.split() == ["-1", "38"], p  # ENOSYS


def test_user_namespaces_disabled_names_the_setting(tmp_path):
    # A user namespace of the test's own where no further one may be made:
    # jailrun must say which setting refuses it, and exit 3.
    if not shutil.which("unshare"):
        raise AssertionError("unshare (util-linux) is required")
    script = tmp_path / "s.py"
    script.write_text("pass\n")
    p = subprocess.run(["unshare", "--user", "--map-root-user", "sh", "-c",
                        'echo 0 > /proc/sys/user/max_user_namespaces && exec "$0" "$@"',
                        JAILRUN, "--profile", "exec", str(script)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 3, p
    assert "user.max_user_namespaces = 0" in p.stderr, p.stderr
    assert "clone into new namespaces" in p.stderr


def test_unmapped_host_uid_is_a_setup_error(tmp_path):
    # Inside a user namespace where only root is mapped, uid 100000 cannot
    # be mapped for the jail: exit 3 with the step, never a half-built jail.
    script = tmp_path / "s.py"
    script.write_text("pass\n")
    p = subprocess.run(["unshare", "--user", "--map-root-user", JAILRUN, "--profile", "exec", str(script)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 3, p
    assert "uid_map" in p.stderr and "mapped in jailrun's own user namespace" in p.stderr, p.stderr


def test_setup_failure_in_the_child_names_the_step(tmp_path):
    """A jail that cannot be built reports the failing step and errno from
    inside the child (exit 3), whatever the supervisor was doing then. Here
    /proc is partly covered in jailrun's own mount namespace, so the kernel
    refuses the jail a new /proc (it would reveal what is covered)."""
    script = "/run/jr-test-setup-fail-%d.py" % os.getpid()  # not under the covered paths
    with open(script, "w") as f:
        f.write("pass\n")
    try:
        p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            'mount -t tmpfs none /proc/sys && exec "$0" --json --profile exec "$1"',
                            JAILRUN, script], capture_output=True, text=True, timeout=60)
    finally:
        os.unlink(script)
    assert p.returncode == 3, p
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["status"] == "setup"
    assert res["error"]["type"] == "SetupError"
    assert res["error"]["message"] == \
        "jail set-up failed at mounts and network: mount /proc: Operation not permitted"
