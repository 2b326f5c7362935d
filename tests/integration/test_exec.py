"""Profile exec: the script runs top to bottom in /scratch with its argv,
its own exit status and its own stdout/stderr."""
import json
import subprocess

import pytest

from jr_helpers import final_json, host_stays_clean, json_logs, log_lines  # noqa: F401


def test_happy_path(jail):
    r = jail("""
        import os, sys
        print("hello", os.getcwd())
        print("to stderr", file=sys.stderr)
    """)
    assert r.code == 0, r
    assert r.out == "hello /scratch\n"
    assert "to stderr\n" in r.err


def test_happy_path_json(jail):
    r = jail("print('out')\n", "--json")
    assert r.code == 0, r
    assert r.out.splitlines()[0] == "out"
    j = final_json(r)
    assert j["status"] == "ok" and j["error"] is None


def test_argv(jail):
    r = jail("import sys, json\nprint(json.dumps(sys.argv))\n",
             script_args=["a", "b c", "--json", "--", "-x", "", "--profile"])
    assert r.code == 0, r
    assert json.loads(r.out) == ["script.py", "a", "b c", "--json", "--", "-x", "", "--profile"]


def test_unicode_argv(jail):
    r = jail("import sys\nprint(ascii(sys.argv[1:]))\n", script_args=["é", "日本"])
    assert r.code == 0, r
    assert r.out.strip() == ascii(["é", "日本"])


def test_unicode_stdout_and_file_names(jail):
    """Python in the jail speaks UTF-8 (LANG=C.UTF-8) like python3 does."""
    r = jail("""
        import sys
        print("héllo wörld ✓")
        print("ståndard error", file=sys.stderr)
        with open("données.txt", "w") as f:
            f.write("é")
        print(open("données.txt", encoding="utf-8").read())
    """)
    assert r.code == 0, r
    assert r.out == "héllo wörld ✓\né\n"
    assert "ståndard error" in r.err


def test_argv_empty(jail):
    r = jail("import sys\nprint(sys.argv[1:])\n")
    assert r.code == 0, r
    assert r.out.strip() == "[]"


def test_args_after_the_script_without_dashdash(tmp_path):
    from jr_helpers import JAILRUN, write_script
    script = write_script(tmp_path, "import sys\nprint(sys.argv[1:])\n")
    r = subprocess.run([JAILRUN, "--profile", "exec", script, "x", "--json"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r
    assert r.stdout.strip() == "['x', '--json']"


@pytest.mark.parametrize("stmt,code", [
    ("sys.exit(0)", 0),
    ("sys.exit()", 0),
    ("sys.exit(None)", 0),
    ("sys.exit(3)", 3),
    ("sys.exit(42)", 42),
    ("sys.exit(255)", 255),
    ("raise SystemExit(7)", 7),
    ("os._exit(9)", 9),
    ("sys.exit('bye message')", 1),
])
def test_exit_status_is_the_scripts(jail, stmt, code):
    r = jail("import os, sys\nprint('before', flush=True)\n%s\nprint('after')\n" % stmt)
    assert r.code == code, r
    assert r.out.startswith("before\n")
    assert "after" not in r.out
    if "bye" in stmt:
        assert "bye message" in r.err


def test_exit_status_json(jail):
    r = jail("import sys\nsys.exit(5)\n", "--json")
    assert r.code == 5, r
    j = final_json(r)
    assert j["status"] == "error"
    assert j["exit_code"] == 5


SRC_RAISE = """\
import sys

def inner():
    raise KeyError("missing-key")

def outer():
    inner()

print("started", flush=True)
outer()
"""


def test_uncaught_exception_text(jail):
    r = jail(SRC_RAISE)
    assert r.code == 1, r
    assert r.out == "started\n"
    assert "Traceback (most recent call last):" in r.err
    assert 'File "script.py", line 10, in <module>' in r.err
    assert 'File "script.py", line 4, in inner' in r.err
    assert 'raise KeyError("missing-key")' in r.err, "source lines in the traceback"
    assert "KeyError: 'missing-key'" in r.err
    # the runtime's own frames are not the user's business
    assert "<jailrun runtime>" not in r.err
    assert "exec_main" not in r.err and "_load" not in r.err and "runtime" not in r.err.lower()


def test_uncaught_exception_traceback_printed_once(jail):
    r = jail(SRC_RAISE)
    assert r.code == 1, r
    assert r.err.count("Traceback (most recent call last):") == 1, r.err
    assert r.err.count("KeyError: 'missing-key'") == 1, r.err


def test_uncaught_exception_json(jail):
    r = jail(SRC_RAISE, "--json")
    assert r.code == 1, r
    j = final_json(r)
    assert j["status"] == "error"
    tb = j["error"].pop("traceback")
    assert j["error"] == {"type": "KeyError", "message": "'missing-key'", "line": 4}
    assert 'File "script.py", line 4' in tb.splitlines()[-2], tb  # innermost user frame last
    assert "Traceback (most recent call last):" in r.err
    assert "<jailrun runtime>" not in r.err


def test_syntax_error(jail):
    r = jail("x = 1\ny = 2\nz = (\n", "--json")
    assert r.code == 1, r
    j = final_json(r)
    assert j["error"]["type"] == "SyntaxError"
    assert j["error"]["line"] == 3
    assert "SyntaxError" in r.err
    assert "<jailrun runtime>" not in r.err


def test_stdin_is_not_passed_through(tmp_path):
    from jr_helpers import JAILRUN, write_script
    script = write_script(tmp_path, "import sys\nprint(repr(sys.stdin.read()))\n")
    r = subprocess.run([JAILRUN, "--profile", "exec", script], input="secret\n",
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r
    assert r.stdout.strip() == "''"


def test_large_stdout_passes_through(jail):
    r = jail("""
        import sys
        line = "z" * 99 + "\\n"
        for i in range(30000):
            sys.stdout.write(line)
        sys.stderr.write("E" * 1000000)
    """)
    assert r.code == 0, r
    assert len(r.out) == 3000000
    assert r.err.count("E") >= 1000000


def test_ctx_log_in_exec_is_flushed_at_exit(jail):
    r = jail("""
        ctx.log.info("from exec")
        ctx.log.error("second")
        raise RuntimeError("boom")
    """, "--json")
    assert r.code == 1, r
    assert [(e["level"], e["message"]) for e in json_logs(r.err)] == [
        ("info", "from exec"), ("error", "second")]
    r = jail("""
        import sys
        ctx.log.warn("then exit")
        sys.exit(4)
    """)
    assert r.code == 4, r
    assert log_lines(r.err) == ["WARN then exit"]


def test_scratch_is_writable_and_empty_at_every_start(jail):
    src = """
        import os, sys
        print(sorted(os.listdir("/scratch")), sorted(os.listdir(".")))
        with open("left-behind.txt", "w") as f:
            f.write("data" * 1000)
        os.mkdir("sub")
        with open("sub/f", "wb") as f:
            f.write(os.urandom(100000))
        print(os.path.getsize("/scratch/left-behind.txt"), os.path.getsize("/scratch/sub/f"))
    """
    for _ in range(3):
        r = jail(src)
        assert r.code == 0, r
        assert r.out.splitlines() == ["[] []", "4000 100000"]


def test_scratch_is_home_and_tmpdir(jail):
    r = jail("""
        import os, tempfile
        print(os.environ["HOME"], os.environ["TMPDIR"], tempfile.gettempdir())
        with tempfile.NamedTemporaryFile() as f:
            f.write(b"x")
    """)
    assert r.code == 0, r
    assert r.out.split() == ["/scratch", "/scratch", "/scratch"]


def test_numpy_and_pandas(jail):
    r = jail("""
        import numpy as np
        import pandas as pd
        a = np.arange(12).reshape(3, 4)
        df = pd.DataFrame(a, columns=list("abcd"))
        df.to_csv("/scratch/t.csv", index=False)
        back = pd.read_csv("t.csv")
        print(int(a.sum()), int(back["d"].sum()), round(float(np.linalg.det(np.eye(3) * 2)), 6))
    """, timeout=60)
    assert r.code == 0, r
    assert r.out.split() == ["66", "21", "8.0"]


def test_seccomp_kill_is_sigsys(jail):
    r = jail("import os\nprint('x', flush=True)\nos.chroot('/')\nprint('not reached')\n", "--json")
    assert r.code == 159, r
    assert "not reached" not in r.out
    j = final_json(r)
    assert j["status"] == "signal"


def test_child_processes_work(jail):
    r = jail("""
        import os
        pid = os.fork()
        if pid == 0:
            os._exit(3)
        _, st = os.waitpid(pid, 0)
        print("fork", os.waitstatus_to_exitcode(st))
    """)
    assert r.code == 0, r
    assert "fork 3" in r.out


def test_json_result_is_on_its_own_line(jail):
    """The result is the last line of stdout even when the script's output
    does not end with a newline."""
    r = jail("import sys\nsys.stdout.write('no newline at the end')\n", "--json")
    assert r.code == 0, r
    lines = r.out.splitlines()
    assert lines[0] == "no newline at the end", r.out
    final_json(r)


def test_stats_count_the_whole_jail(jail):
    """cpu_ms counts reaped descendants too; wall_ms covers the job."""
    r = jail("""
        import os, time
        pid = os.fork()
        if pid == 0:
            t = time.process_time()
            while time.process_time() - t < 0.4:
                pass
            os._exit(0)
        os.waitpid(pid, 0)
        time.sleep(0.2)
    """, "--json")
    assert r.code == 0, r
    j = final_json(r)
    assert j["stats"]["cpu_ms"] >= 350, j
    assert j["stats"]["wall_ms"] >= 600, j
