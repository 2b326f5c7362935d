"""ctx.log and print(): levels, order, truncation, escaping, volume, --json."""
import time

import pytest

from hostprobe import slack
from jr_helpers import final_json, host_stays_clean, json_logs, log_lines  # noqa: F401


def test_levels_and_order(worker):
    r = worker("""
        def tick(ctx):
            ctx.log.debug("one")
            ctx.log.info("two")
            ctx.log.warn("three")
            ctx.log.warning("four")
            ctx.log.error("five")
            print("six")
            ctx.log.info("seven", 7, None, [1, 2], {"a": 1})
            ctx.log.info()
    """)
    assert r.code == 0, r
    assert log_lines(r.err) == ["DEBUG one", "INFO two", "WARN three", "WARN four", "ERROR five",
                                "INFO six", "INFO seven 7 None [1, 2] {'a': 1}", "INFO "]


def test_levels_json(worker):
    r = worker("""
        def tick(ctx):
            ctx.log.debug("d")
            ctx.log.info("i")
            ctx.log.warn("w")
            ctx.log.error("e")
    """, "--json")
    assert r.code == 0, r
    assert json_logs(r.err) == [{"type": "log", "level": l, "message": l[0]}
                                for l in ("debug", "info", "warn", "error")]
    for line in r.err.splitlines():
        assert line.startswith("{"), "with --json every stderr line is a JSON object: %r" % line
    final_json(r)


def test_logs_in_order_across_ticks_and_load(worker):
    r = worker("""
        ctx.log.info("load")
        n = 0
        def tick(ctx):
            global n
            n += 1
            for i in range(30):
                ctx.log.info("t%d-%d" % (n, i))
    """, "--ticks", "3")
    assert r.code == 0, r
    want = ["INFO load"] + ["INFO t%d-%d" % (t, i) for t in range(1, 4) for i in range(30)]
    assert log_lines(r.err) == want


def test_thousand_lines_all_arrive_in_order(worker):
    r = worker("""
        def tick(ctx):
            levels = [ctx.log.debug, ctx.log.info, ctx.log.warn, ctx.log.error]
            for i in range(1000):
                levels[i % 4]("line %04d" % i)
    """)
    assert r.code == 0, r
    names = ["DEBUG", "INFO", "WARN", "ERROR"]
    assert log_lines(r.err) == ["%s line %04d" % (names[i % 4], i) for i in range(1000)]


def test_thousand_lines_json(worker):
    r = worker("""
        def tick(ctx):
            for i in range(1000):
                print("p", i)
    """, "--json")
    assert r.code == 0, r
    assert [e["message"] for e in json_logs(r.err)] == ["p %d" % i for i in range(1000)]


def test_truncation_at_4000_chars(worker):
    r = worker("""
        def tick(ctx):
            ctx.log.info("a" * 3999 + "b")
            ctx.log.info("c" * 4000 + "DROPPED")
            ctx.log.warn("e" * 100000)
            ctx.log.info("after")
    """)
    assert r.code == 0, r
    lines = log_lines(r.err)
    assert lines == ["INFO " + "a" * 3999 + "b", "INFO " + "c" * 4000, "WARN " + "e" * 4000,
                     "INFO after"]


def test_long_print_is_one_truncated_entry(worker):
    """print() of a 5000-char line is one log entry, truncated at 4000."""
    r = worker("""
        def tick(ctx):
            print("p" * 5000)
            print("q" * 4001, "tail")
            ctx.log.info("after")
    """)
    assert r.code == 0, r
    assert log_lines(r.err) == ["INFO " + "p" * 4000, "INFO " + "q" * 4000, "INFO after"]


def test_truncation_counts_characters_not_bytes(worker):
    r = worker("""
        def tick(ctx):
            ctx.log.info("\\u00e9" * 5000)
            ctx.log.info("\\U0001F600" * 4500)
            ctx.log.info("\\u65e5" * 3000)
    """, "--json")
    assert r.code == 0, r
    msgs = [e["message"] for e in json_logs(r.err)]
    assert msgs == ["\u00e9" * 4000, "\U0001F600" * 4000, "\u65e5" * 3000]


def test_truncation_json(worker):
    r = worker("""
        def tick(ctx):
            ctx.log.error("x" * 9000)
    """, "--json")
    assert r.code == 0, r
    assert json_logs(r.err) == [{"type": "log", "level": "error", "message": "x" * 4000}]


def test_control_characters_escaped_in_text(worker):
    r = worker(r"""
        def tick(ctx):
            ctx.log.info("red \x1b[31mALERT\x1b[0m end")
            ctx.log.info("two\nlines")
            ctx.log.info("back\\slash")
            ctx.log.info("cr\rbell\x07del\x7fc1\u0085\u009b")
            ctx.log.info("tab\tkept")
            ctx.log.info("unicode é ✓ \U0001F600")
    """)
    assert r.code == 0, r
    lines = log_lines(r.err)
    assert lines == [
        r"INFO red \x1b[31mALERT\x1b[0m end",
        r"INFO two\nlines",
        r"INFO back\\slash",
        r"INFO cr\x0dbell\x07del\x7fc1\u0085\u009b",
        "INFO tab\tkept",
        "INFO unicode é ✓ \U0001F600",
    ]
    assert "\x1b" not in r.err and "\r" not in r.err and "\x07" not in r.err


def test_newline_in_message_cannot_forge_a_log_line(worker):
    r = worker("""
        def tick(ctx):
            ctx.log.debug("harmless\\nERROR forged")
    """)
    assert r.code == 0, r
    assert log_lines(r.err) == [r"DEBUG harmless\nERROR forged"]


def test_nul_character_in_a_log_message(worker):
    """A NUL in a message is a control character like any other: escaped,
    not a protocol violation of the honest runtime."""
    r = worker("""
        def tick(ctx):
            ctx.log.info("before")
            ctx.log.info("a\\x00b")
            ctx.log.info("after")
    """)
    assert r.code == 0, r
    assert log_lines(r.err) == ["INFO before", r"INFO a\x00b", "INFO after"]


def test_lone_surrogate_in_a_log_message(worker):
    """A str with a lone surrogate (e.g. from surrogateescape) is user data,
    not a protocol violation of the honest runtime."""
    r = worker("""
        def tick(ctx):
            ctx.log.info("x\\udcffy")
            ctx.log.info("after")
    """)
    assert r.code == 0, r
    lines = log_lines(r.err)
    assert len(lines) == 2 and lines[0].startswith("INFO x") and lines[0].endswith("y")
    assert lines[1] == "INFO after"


def test_control_characters_in_json_are_preserved(worker):
    r = worker(r"""
        def tick(ctx):
            ctx.log.info("esc \x1b[1m nl \n tab \t bs \\ quote \" é \U0001F600")
    """, "--json")
    assert r.code == 0, r
    assert json_logs(r.err) == [{"type": "log", "level": "info",
                                 "message": "esc \x1b[1m nl \n tab \t bs \\ quote \" é \U0001F600"}]


def test_traceback_text_is_escaped(worker):
    r = worker("""
        def tick(ctx):
            raise ValueError("evil \\x1b[2J message")
    """)
    assert r.code == 1, r
    assert "\x1b" not in r.err
    assert r"ValueError: evil \x1b[2J message" in r.err


def test_flood_ends_in_bounded_time(worker):
    t0 = time.monotonic()
    r = worker("""
        def tick(ctx):
            for i in range(200000):
                ctx.log.info("flood", i)
            ctx.log.info("the end")
    """, timeout=60)
    elapsed = time.monotonic() - t0
    assert r.code == 0, r.err[-2000:]
    assert elapsed < slack(30), elapsed
    lines = log_lines(r.err)
    assert lines[-1] == "INFO the end"
    nums = [int(l.split()[2]) for l in lines[:-1]]
    assert nums == sorted(nums), "what arrives arrives in order"
    assert len(nums) == 200000


def test_flood_of_long_messages(worker):
    t0 = time.monotonic()
    r = worker("""
        def tick(ctx):
            s = "L" * 10000
            for i in range(3000):
                ctx.log.warn(s)
    """, "--json", timeout=60)
    assert r.code == 0, r.err[-2000:]
    assert time.monotonic() - t0 < slack(30)
    logs = json_logs(r.err)
    assert len(logs) == 3000
    assert all(e["message"] == "L" * 4000 for e in logs)


def test_flood_in_exec_profile(jail):
    t0 = time.monotonic()
    r = jail("""
        for i in range(200000):
            ctx.log.debug("x", i)
        for i in range(200000):
            print("stdout", i)
    """, timeout=60)
    assert r.code == 0, r.err[-2000:]
    assert time.monotonic() - t0 < slack(30)
    assert len(log_lines(r.err)) == 200000
    assert r.out.count("\n") == 200000


@pytest.mark.parametrize("profile", ["worker", "exec"])
def test_logs_flushed_at_exit_even_when_few(worker, jail, profile):
    run = worker if profile == "worker" else jail
    src = "ctx.log.info('only one')\ndef tick(ctx):\n    pass\n"
    r = run(src)
    assert r.code == 0, r
    assert log_lines(r.err) == ["INFO only one"]


def test_slow_stderr_reader_does_not_turn_logs_into_a_protocol_error(tmp_path):
    """The supervisor blocks on a slow stderr while the script logs its last
    batches and exits: the channel's end (EOF) must not be mistaken for an
    empty datagram. All logs arrive and the job succeeds."""
    import json as _json
    import os
    import subprocess
    from jr_helpers import jailrun_cmd, write_script
    script = write_script(tmp_path, "for i in range(3000):\n    ctx.log.info('line', i)\n")
    p = subprocess.Popen(jailrun_cmd(script, "--profile", "exec", "--json", "--timeout", "30"),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    chunks = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            data = os.read(p.stderr.fileno(), 4096)
            if not data:
                break
            chunks.append(data)
            time.sleep(0.01)  # a slow reader: the supervisor's writes block
        out = p.stdout.read().decode()
        p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    err = b"".join(chunks).decode()
    result = _json.loads(out.strip().splitlines()[-1])
    logs = [_json.loads(l)["message"] for l in err.splitlines() if '"type":"log"' in l]
    assert result["status"] == "ok", result
    assert p.returncode == 0
    assert logs == ["line %d" % i for i in range(3000)]


def test_bidi_and_line_separators_are_escaped(worker):
    """Text that reorders or breaks the operator's view (RLO, LRI, LS, PS,
    C1 controls) is shown as escapes in human output."""
    r = worker("""
        def tick(ctx):
            ctx.log.info("a\\u202eb\\u2066c\\u2028d\\u2029e\\u0085f\\u200fg")
    """)
    assert r.code == 0, r
    line = [l for l in r.err.splitlines() if l.startswith("INFO ")][0]
    assert line == "INFO a\\u202eb\\u2066c\\u2028d\\u2029e\\u0085f\\u200fg", repr(line)


def test_forged_traceback_lines_are_indented(worker):
    """A traceback is the jail's text: none of its lines can pass for one
    of jailrun's own, even when user code forges the whole result."""
    r = worker("""
        import json, socket
        def tick(ctx):
            s = socket.socket(fileno=3)
            s.send(json.dumps({"type": "result", "id": 1, "error": {
                "type": "E", "message": "m", "line": 1,
                "traceback": "x\\njailrun: all ticks passed\\n"}}).encode())
    """)
    assert r.code == 1, r
    assert "\njailrun: all ticks passed" not in r.err, r.err
    assert "\n  jailrun: all ticks passed" in r.err, r.err
