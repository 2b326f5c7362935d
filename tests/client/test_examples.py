"""The code-execution examples users know (seed 004), unchanged, run as
scripts with the client from the tree (PYTHONPATH=clients/python) against
a jaild of the test's own (JAILD_SOCKET): clients/python/examples/."""
import os
import subprocess

import pytest

from cjaild import CLIENT_DIR, PYTHON, jd, sock  # noqa: F401 (fixtures)

EXAMPLES = os.path.join(CLIENT_DIR, "examples")


def run_example(sock, tmp_path, *args):
    p = subprocess.run([PYTHON, *args], cwd=str(tmp_path), capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=CLIENT_DIR, JAILD_SOCKET=sock))
    assert p.returncode == 0, "%s exited with %d\nstdout:\n%s\nstderr:\n%s" % (args, p.returncode, p.stdout,
                                                                           p.stderr)
    return p.stdout


def test_hello(sock, tmp_path):
    out = run_example(sock, tmp_path, os.path.join(EXAMPLES, "hello.py"))
    assert out == "Hello from sandbox!\n\n"  # the output, then print's own newline


def test_resource_configuration(sock, tmp_path):
    out = run_example(sock, tmp_path, os.path.join(EXAMPLES, "run_fragment.py"),
                      os.path.join(EXAMPLES, "resources.py"))
    assert out == ("session limits: memory_limit=%d cpu_limit=2 timeout=300\n"
                   "success=True output='42\\n'\n" % (1 << 30))


def test_file_write_and_read(sock, tmp_path):
    out = run_example(sock, tmp_path, os.path.join(EXAMPLES, "run_fragment.py"), os.path.join(EXAMPLES, "files.py"))
    assert out == "File contents: Hello from sandbox!\n\n"
    assert not os.path.exists(tmp_path / "example.txt")  # written in the session, not where the script ran


def test_plot_downloaded_as_png(sock, tmp_path):
    out = run_example(sock, tmp_path, os.path.join(EXAMPLES, "plot.py"))
    png = (tmp_path / "squares.png").read_bytes()
    assert out == "squares.png: %d bytes\n" % len(png)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000


@pytest.mark.parametrize("name", ["hello.py", "resources.py", "files.py", "plot.py"])
def test_examples_are_the_readmes(name):
    """The README shows these very files."""
    with open(os.path.join(EXAMPLES, name)) as f:
        text = f.read()
    with open(os.path.join(CLIENT_DIR, "README.md")) as f:
        assert text in f.read()
