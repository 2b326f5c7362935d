"""The package installs with pip offline (no index; the host's setuptools)
and works from where it was installed, outside the source tree."""
import os
import shutil
import subprocess

from cjaild import CLIENT_DIR, PYTHON


def test_pip_install_target_offline(tmp_path):
    target = tmp_path / "site"
    src = tmp_path / "src"  # pip builds in the tree it is given: a copy (the checkout may be read-only)
    shutil.copytree(CLIENT_DIR, str(src), ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    p = subprocess.run([PYTHON, "-m", "pip", "install", "-q", "--no-index", "--no-build-isolation", "--target",
                        str(target), str(src)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p
    assert (target / "jailrun_client" / "py.typed").exists()
    assert (target / "ai_computer.py").exists()
    probe = ("import ai_computer, jailrun_client\n"
             "assert jailrun_client.__file__.startswith(%r)\n"
             "assert ai_computer.SandboxClient is jailrun_client.SandboxClient\n"
             "print(jailrun_client.__version__)" % str(target))
    p = subprocess.run([PYTHON, "-c", probe], cwd=str(tmp_path), capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=str(target)))
    assert p.returncode == 0, p
    assert p.stdout.strip() == "0.1.0"
