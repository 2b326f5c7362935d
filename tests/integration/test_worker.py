"""Profile worker: tick(ctx) N times, errors with their line, numpy/pandas,
seccomp kill, raw output cap, logs flushed per tick."""
import json
import time

from hostprobe import slack
from jr_helpers import (final_json, host_stays_clean, json_logs, log_lines,  # noqa: F401
                        start, stop, wait_line)


def test_happy_path(worker):
    r = worker("""
        def tick(ctx):
            ctx.log.info("hello from tick")
    """)
    assert r.code == 0, r
    assert "INFO hello from tick" in r.err
    assert r.out == ""


def test_happy_path_json(worker):
    r = worker("""
        def tick(ctx):
            ctx.log.info("hi")
    """, "--json")
    assert r.code == 0, r
    j = final_json(r)
    assert j["status"] == "ok" and j["error"] is None and j["exit_code"] == 0
    assert json_logs(r.err) == [{"type": "log", "level": "info", "message": "hi"}]


def test_ticks_n_and_state_persists(worker):
    r = worker("""
        calls = []
        loaded = 0
        loaded += 1

        def tick(ctx):
            calls.append(len(calls) + 1)
            ctx.log.info("tick", len(calls), "loaded", loaded, "calls", calls[-3:])
    """, "--ticks", "7")
    assert r.code == 0, r
    lines = log_lines(r.err)
    assert len(lines) == 7, r
    for i, line in enumerate(lines, 1):
        assert line.startswith("INFO tick %d loaded 1 calls" % i), line
    assert lines[-1] == "INFO tick 7 loaded 1 calls [5, 6, 7]"


def test_many_ticks(worker):
    r = worker("""
        n = 0
        def tick(ctx):
            global n
            n += 1
            if n == 500:
                ctx.log.info("reached", n)
    """, "--ticks", "500", "--verbose")
    assert r.code == 0, r
    assert "INFO reached 500" in r.err
    assert "500 ticks" in r.err


def test_module_runs_once_default_one_tick(worker):
    r = worker("""
        ctx.log.info("module body")
        def tick(ctx):
            ctx.log.info("tick")
    """)
    assert r.code == 0, r
    assert log_lines(r.err) == ["INFO module body", "INFO tick"]


SRC_TICK_ERROR = """\
import json

def helper(x):
    raise ValueError("bad value %d" % x)

def tick(ctx):
    ctx.log.info("before the error")
    helper(42)
"""


def test_tick_error_text(worker):
    r = worker(SRC_TICK_ERROR)
    assert r.code == 1, r
    assert "INFO before the error" in r.err
    assert "Traceback (most recent call last):" in r.err
    assert 'line 8, in tick' in r.err and 'line 4, in helper' in r.err
    assert 'raise ValueError("bad value %d" % x)' in r.err, "source lines in the traceback"
    assert "ValueError: bad value 42" in r.err
    assert "failed at line 4" in r.err
    # the log written before the error comes before the traceback
    assert r.err.index("INFO before the error") < r.err.index("Traceback")
    assert "<jailrun runtime>" not in r.err


def test_tick_error_json(worker):
    r = worker(SRC_TICK_ERROR, "--json")
    assert r.code == 1, r
    j = final_json(r)
    assert j["status"] == "error"
    tb = j["error"].pop("traceback")
    assert j["error"] == {"type": "ValueError", "message": "bad value 42", "line": 4}
    # the user's frames, innermost last, none of the runtime's
    assert tb.splitlines()[-2].strip() == 'File "script.py", line 4, in helper', tb
    assert "<jailrun runtime>" not in tb


def test_error_in_a_tick_is_reported_and_the_next_ticks_still_run(worker):
    src = """
        n = 0
        def tick(ctx):
            global n
            n += 1
            ctx.log.info("tick", n)
            if n in (3, 4):
                raise KeyError("tick %d" % n)
    """
    r = worker(src, "--ticks", "5", "--json")
    assert r.code == 1, r
    j = final_json(r)
    assert j["status"] == "error"
    assert j["error"]["type"] == "KeyError"
    assert j["error"]["message"] == "'tick 3'", "the first failure is reported"
    assert j["error"]["line"] == 8  # the source starts with an empty line
    assert [e["message"] for e in json_logs(r.err)] == ["tick %d" % i for i in range(1, 6)]
    r = worker(src, "--ticks", "5", "--verbose")
    assert r.code == 1, r
    assert r.err.count("Traceback (most recent call last):") == 2
    assert "KeyError: 'tick 3'" in r.err and "KeyError: 'tick 4'" in r.err
    assert "INFO tick 5" in r.err
    assert "5 ticks" in r.err


def test_error_line_is_the_users_line_not_the_librarys(worker):
    r = worker("""
        import json

        def tick(ctx):
            json.loads("{not json")
    """, "--json")
    assert r.code == 1, r
    j = final_json(r)
    assert j["error"]["type"] == "JSONDecodeError"
    assert j["error"]["line"] == 5


def test_error_at_module_load(worker):
    r = worker("""
        x = 1
        y = x / 0
        def tick(ctx):
            pass
    """, "--json")
    assert r.code == 1, r
    j = final_json(r)
    assert j["error"]["type"] == "ZeroDivisionError"
    assert j["error"]["line"] == 3


def test_syntax_error_json(worker):
    r = worker("x = 1\ndef tick(ctx):\n    pass\ny = (\n", "--json")
    assert r.code == 1, r
    j = final_json(r)
    assert j["status"] == "error"
    assert j["error"]["type"] == "SyntaxError"
    assert j["error"]["line"] == 4


def test_syntax_error_text(worker):
    r = worker("def tick(ctx):\n    pass\n\nif True\n    pass\n")
    assert r.code == 1, r
    assert "SyntaxError:" in r.err
    assert "failed at line 4" in r.err


def test_indentation_error_line(worker):
    r = worker("def tick(ctx):\n    x = 1\n      y = 2\n", "--json")
    assert r.code == 1, r
    j = final_json(r)
    assert j["error"]["type"] == "IndentationError"
    assert j["error"]["line"] == 3


def test_missing_tick(worker):
    r = worker("x = 1\n", "--json")
    assert r.code == 1, r
    j = final_json(r)
    assert j["error"]["type"] == "RuntimeError"
    assert "tick" in j["error"]["message"]
    r = worker("x = 1\n")
    assert r.code == 1, r
    assert "defines no tick(ctx) function" in r.err


def test_tick_not_callable(worker):
    r = worker("tick = 5\n", "--json")
    assert r.code == 1, r
    assert final_json(r)["error"]["type"] == "RuntimeError"


def test_sys_exit_in_tick_is_an_error(worker):
    r = worker("""
        import sys
        def tick(ctx):
            sys.exit(0)
    """, "--json")
    assert r.code == 1, r
    j = final_json(r)
    assert j["error"]["type"] == "SystemExit"
    assert j["error"]["line"] == 4


def test_print_goes_to_the_log(worker):
    r = worker("""
        import sys
        def tick(ctx):
            print("to stdout", 1, 2)
            print("to stderr", file=sys.stderr)
            print("no newline", end="")
    """)
    assert r.code == 0, r
    assert r.out == ""
    assert log_lines(r.err) == ["INFO to stdout 1 2", "ERROR to stderr", "INFO no newline"]


def test_native_output_is_relayed_to_stderr(worker):
    """jailrun(1): output written natively to the file descriptors is
    relayed to stderr (stdout stays for the --json result)."""
    r = worker("""
        import os
        def tick(ctx):
            os.write(1, b"raw stdout\\n")
            os.write(2, b"raw stderr\\n")
    """, "--json")
    assert r.code == 0, r
    lines = [json.loads(l) for l in r.err.splitlines() if l.startswith("{")]
    assert {"type": "output", "stream": "stdout", "message": "raw stdout"} in lines, r.err
    assert {"type": "output", "stream": "stderr", "message": "raw stderr"} in lines, r.err
    assert r.out.splitlines()[:-1] == [], "stdout holds only the JSON result"
    final_json(r)


def test_native_output_is_escaped_and_cannot_forge(worker):
    """Native output is untrusted like logs: one escaped OUTPUT line per
    line, and in --json mode it cannot pass for a log object."""
    src = """
        import os
        def tick(ctx):
            os.write(1, b'{"type":"log","level":"info","message":"forged"}\\n')
            os.write(2, b"\\x1b]0;PWNED\\x07\\x1b[31mred\\n")
    """
    r = worker(src)
    assert r.code == 0, r
    assert "\x1b" not in r.err and "\x07" not in r.err, repr(r.err)
    assert "OUTPUT \\x1b]0;PWNED\\x07\\x1b[31mred\n" in r.err, repr(r.err)
    j = worker(src, "--json")
    objs = [json.loads(l) for l in j.err.splitlines() if l.startswith("{")]
    assert {"type": "log", "level": "info", "message": "forged"} not in objs, j.err
    assert {"type": "output", "stream": "stdout",
            "message": '{"type":"log","level":"info","message":"forged"}'} in objs, j.err


def test_native_output_is_capped_at_1_mib(worker):
    r = worker("""
        import os
        def tick(ctx):
            chunk = (b"Q" * 99 + b"\\n") * 1000
            for _ in range(11):
                os.write(1, chunk)
            ctx.log.info("done")
    """, timeout=60)
    assert r.code == 0, r
    out = [l for l in r.err.splitlines() if l.startswith("OUTPUT ")]
    # 1 MiB of 100-byte lines, each counting 48 bytes more for its frame:
    # 7085 whole ones (1 048 580 bytes), and nothing of the next
    assert len(out) == 7085, len(out)
    assert out[-1] == "OUTPUT " + "Q" * 99
    assert (r.out + r.err).count("Q") == 7085 * 99
    assert r.err.count("worker output beyond 1048576 bytes dropped") == 1, r.err[-500:]
    assert "INFO done" in r.err


def test_native_output_cap_reached_exactly_still_says_dropped(worker):
    """Output that fills the 1 MiB cap exactly, then more: the excess is
    dropped, and the user is told so (as when a read straddles the cap)."""
    r = worker("""
        import os, time
        n = 0
        def tick(ctx):
            global n
            n += 1
            if n == 1:
                for _ in range(16):
                    os.write(1, b"Q" * 65536)
            else:
                time.sleep(0.5)  # the supervisor has relayed all of tick 1's output
                os.write(1, b"this is beyond the cap\\n")
    """, "--ticks", "2", timeout=60)
    assert r.code == 0, r
    # one line of 1 MiB: logged up to the 4000-character line limit
    assert (r.out + r.err).count("Q") == 4000
    assert "beyond the cap" not in r.out + r.err
    assert "worker output beyond 1048576 bytes dropped" in r.err, r.err[-500:]


def test_numpy_and_pandas(worker):
    r = worker("""
        import numpy as np
        import pandas as pd

        def tick(ctx):
            a = np.arange(1, 101, dtype=np.float64)
            m = np.linalg.inv(np.array([[2.0, 0.0], [0.0, 4.0]]))
            df = pd.DataFrame({"k": ["a", "b"] * 50, "v": a})
            g = df.groupby("k")["v"].sum()
            ctx.log.info("sum", int(a.sum()), "inv", m[1, 1], "a", int(g["a"]), "b", int(g["b"]))
    """, "--json", timeout=60)
    assert r.code == 0, r
    assert json_logs(r.err)[0]["message"] == "sum 5050 inv 0.25 a 2500 b 2550"


def test_seccomp_kill_is_sigsys(worker):
    r = worker("""
        import os
        def tick(ctx):
            os.chroot("/")
    """)
    assert r.code == 128 + 31, r
    assert "signal 31" in r.err
    r = worker("""
        import os
        def tick(ctx):
            os.chroot("/")
    """, "--json")
    assert r.code == 159, r
    j = final_json(r)
    assert j["status"] == "signal"
    assert j["error"]["type"] == "Killed"


def test_worker_timeout(worker):
    t0 = time.monotonic()
    r = worker("""
        def tick(ctx):
            while True:
                pass
    """, "--timeout", "1", "--json")
    assert r.code == 124, r
    assert time.monotonic() - t0 < slack(5)
    j = final_json(r)
    assert j["status"] == "timeout"
    assert j["error"]["type"] == "TimeoutError"


def test_logs_are_flushed_at_the_end_of_each_tick(tmp_path):
    p = start(tmp_path, """
        import os, time
        n = 0
        def tick(ctx):
            global n
            n += 1
            ctx.log.info("tick", n, "done")
            if n == 2:
                time.sleep(30)
    """, "--ticks", "2", "--timeout", "20")
    try:
        wait_line(p.stderr, "INFO tick 1 done", timeout=slack(5))
        assert p.poll() is None, "the job is still in tick 2"
    finally:
        stop(p)


def test_logs_before_a_load_error_are_flushed(worker):
    r = worker("""
        ctx.log.warn("loading")
        print("partial", end="")
        raise ValueError("nope")
    """, "--json")
    assert r.code == 1, r
    assert [(e["level"], e["message"]) for e in json_logs(r.err)] == [("warn", "loading"), ("info", "partial")]
    assert final_json(r)["error"]["type"] == "ValueError"


def test_native_output_that_is_not_utf8_is_escaped(worker):
    """Bytes that are not UTF-8 (stray, truncated, overlong, surrogates)
    never reach the terminal raw; valid text and marks stay readable."""
    r = worker("""
        import os
        def tick(ctx):
            os.write(2, b"a\\xff\\xfeb \\xc0\\xaf \\xed\\xa0\\x80 \\xe2\\x80 \\xd8\\x9c \\xe2\\x80\\xae \\xc3\\xa9\\n")
    """)
    assert r.code == 0, r
    line = [l for l in r.err.splitlines() if l.startswith("OUTPUT ")][0]
    assert line == "OUTPUT a\\xff\\xfeb \\xc0\\xaf \\xed\\xa0\\x80 \\xe2\\x80 \\u061c \\u202e \u00e9", repr(line)
