"""A hostile script forges channel messages on fd 3 (the "fake child").
Every malformed message kills the jail at once: ProtocolError, exit 1,
the supervisor neither crashes nor hangs."""
import json
import time

import pytest

from hostprobe import slack
from jr_helpers import final_json, host_stays_clean, json_logs, log_lines  # noqa: F401

SLEEP_AFTER = 30  # the jail would live this long if the supervisor did not kill it


def fake_child(payloads, sndbuf=False, sleep=SLEEP_AFTER):
    """Profile-exec source that sends each payload (bytes) as one datagram
    on the channel, then sleeps."""
    return (
        "import socket, sys, time\n"
        "s = socket.socket(fileno=3)\n"
        "assert s.family == socket.AF_UNIX and s.type == socket.SOCK_SEQPACKET\n"
        + ("s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 30)\n" if sndbuf else "")
        + "for p in %r:\n" % (list(payloads),)
        + "    s.send(p)\n"
        "print('SENT', flush=True)\n"
        "time.sleep(%d)\n"
        "print('STILL ALIVE', flush=True)\n" % sleep
    )


def backstop():
    """--timeout for a jail the supervisor must kill at once: past the
    stretched bound of assert_protocol_error, so that bound can fail."""
    return "%d" % (slack(5) + 2)


def run_hostile(jail, payloads, *opts, sndbuf=False):
    t0 = time.monotonic()
    # --timeout: a backstop so a supervisor that does not kill the jail ends
    # cleanly (exit 124, the test fails) instead of hanging the suite.
    r = jail(fake_child(payloads, sndbuf=sndbuf), "--json", "--timeout", backstop(), *opts, timeout=slack(20))
    elapsed = time.monotonic() - t0
    return r, elapsed


def assert_protocol_error(r, elapsed, what=None, max_seconds=5):
    assert r.code == 1, r
    assert "STILL ALIVE" not in r.out
    assert elapsed < slack(max_seconds), "the supervisor must kill the jail at once (took %.1fs)" % elapsed
    j = final_json(r)
    assert j["status"] == "error", j
    assert j["error"]["type"] == "ProtocolError", j
    assert j["error"]["line"] is None
    if what:
        assert what in j["error"]["message"], j
    return j


LOG = b'{"type":"log","entries":[{"level":"info","msg":"x"}]}'


def nested(depth):
    """A message object with `depth` levels of nesting in all (the top
    object counts as 1), of an unknown type so only depth matters first."""
    inner = "[" * (depth - 1) + "]" * (depth - 1)
    return ('{"type":"nope","deep":%s}' % inner).encode()


HOSTILE = {
    # not JSON, or not a JSON object
    "invalid-json": b'{"type": "log", ',
    "garbage-bytes": b"\xff\xfe\x00garbage",
    "trailing-garbage": LOG + b" x",
    "two-objects": LOG + LOG,
    "array": b"[]",
    "string": b'"log"',
    "null": b"null",
    "number": b"42",
    "invalid-utf8-in-string": b'{"type":"log","entries":[{"level":"info","msg":"\xc3\x28"}]}',
    "nan": b'{"type":"result","id":NaN,"ok":true}',
    # nesting
    "nesting-17": nested(17),
    "nesting-100000": b'{"type":"log","entries":' + b"[" * 100000 + b"]" * 100000 + b"}",
    "nesting-objects-17": b'{"type":"nope","a":' + b'{"a":' * 15 + b"1" + b"}" * 15 + b"}",
    # duplicate keys
    "duplicate-type": b'{"type":"log","type":"log","entries":[{"level":"info","msg":"x"}]}',
    "duplicate-in-entry": b'{"type":"log","entries":[{"level":"info","level":"info","msg":"x"}]}',
    "duplicate-in-error": (b'{"type":"result","id":0,"error":{"type":"E","type":"E","message":"m",'
                           b'"line":null}}'),
    # type
    "unknown-type": b'{"type":"hello"}',
    "run-type-from-child": b'{"type":"run","id":1,"op":"tick"}',
    "missing-type": b'{"entries":[{"level":"info","msg":"x"}]}',
    "type-not-string": b'{"type":1}',
    "type-null": b'{"type":null}',
    "empty-object": b"{}",
    # unknown fields
    "log-extra-field": b'{"type":"log","entries":[{"level":"info","msg":"x"}],"extra":1}',
    "entry-extra-field": b'{"type":"log","entries":[{"level":"info","msg":"x","ts":1}]}',
    "result-extra-field": (b'{"type":"result","id":0,"error":{"type":"E","message":"m","line":null},'
                           b'"x":1}'),
    "error-extra-field": (b'{"type":"result","id":0,"error":{"type":"E","message":"m","line":null,'
                          b'"x":1}}'),
    "fatal-extra-field": b'{"type":"fatal","step":"s","errno":1,"message":"m","x":1}',
    # missing fields
    "log-no-entries": b'{"type":"log"}',
    "entry-no-msg": b'{"type":"log","entries":[{"level":"info"}]}',
    "entry-no-level": b'{"type":"log","entries":[{"msg":"x"}]}',
    "result-no-id": b'{"type":"result","error":{"type":"E","message":"m","line":null}}',
    "result-neither-ok-nor-error": b'{"type":"result","id":0}',
    "error-no-line": b'{"type":"result","id":0,"error":{"type":"E","message":"m"}}',
    "error-no-message": b'{"type":"result","id":0,"error":{"type":"E","line":null}}',
    "fatal-no-step": b'{"type":"fatal","errno":1,"message":"m"}',
    # wrong types and values
    "entries-object": b'{"type":"log","entries":{"level":"info","msg":"x"}}',
    "entries-string": b'{"type":"log","entries":"x"}',
    "entry-not-object": b'{"type":"log","entries":["x"]}',
    "level-int": b'{"type":"log","entries":[{"level":1,"msg":"x"}]}',
    "level-unknown": b'{"type":"log","entries":[{"level":"fatal","msg":"x"}]}',
    "level-uppercase": b'{"type":"log","entries":[{"level":"INFO","msg":"x"}]}',
    "msg-int": b'{"type":"log","entries":[{"level":"info","msg":5}]}',
    "msg-null": b'{"type":"log","entries":[{"level":"info","msg":null}]}',
    "id-string": b'{"type":"result","id":"0","error":{"type":"E","message":"m","line":null}}',
    "id-float": b'{"type":"result","id":0.0,"error":{"type":"E","message":"m","line":null}}',
    "id-negative": b'{"type":"result","id":-1,"error":{"type":"E","message":"m","line":null}}',
    "id-huge": b'{"type":"result","id":99999999999999999999999,"error":{"type":"E","message":"m","line":null}}',
    "ok-false": b'{"type":"result","id":0,"ok":false}',
    "ok-string": b'{"type":"result","id":0,"ok":"true"}',
    "ok-and-error": b'{"type":"result","id":0,"ok":true,"error":{"type":"E","message":"m","line":null}}',
    "line-string": b'{"type":"result","id":0,"error":{"type":"E","message":"m","line":"3"}}',
    "line-zero": b'{"type":"result","id":0,"error":{"type":"E","message":"m","line":0}}',
    "line-negative": b'{"type":"result","id":0,"error":{"type":"E","message":"m","line":-4}}',
    "line-float": b'{"type":"result","id":0,"error":{"type":"E","message":"m","line":2.5}}',
    "error-type-int": b'{"type":"result","id":0,"error":{"type":5,"message":"m","line":null}}',
    "traceback-int": (b'{"type":"result","id":0,"error":{"type":"E","message":"m","line":null,'
                      b'"traceback":1}}'),
    "error-not-object": b'{"type":"result","id":0,"error":"boom"}',
    "errno-string": b'{"type":"fatal","step":"s","errno":"1","message":"m"}',
    # limits inside valid-looking messages
    "batch-21": json.dumps({"type": "log", "entries": [{"level": "info", "msg": str(i)}
                                                       for i in range(21)]}).encode(),
    "batch-0": b'{"type":"log","entries":[]}',
    "entry-4001-chars": json.dumps({"type": "log", "entries": [{"level": "info",
                                                                "msg": "x" * 4001}]}).encode(),
    "entry-4001-chars-multibyte": json.dumps({"type": "log", "entries": [
        {"level": "info", "msg": "\u00e9" * 4001}]}, ensure_ascii=False).encode(),
    "error-type-too-long": json.dumps({"type": "result", "id": 0, "error": {
        "type": "E" * 300, "message": "m", "line": None}}).encode(),
    "error-message-too-long": json.dumps({"type": "result", "id": 0, "error": {
        "type": "E", "message": "m" * 70000, "line": None}}).encode(),
    # messages that are well-formed but wrong here (profile exec)
    "ready-in-exec": b'{"type":"ready"}',
    "ready-extra-field": b'{"type":"ready","x":1}',
    "result-ok-in-exec": b'{"type":"result","id":0,"ok":true}',
    "result-wrong-id-in-exec": b'{"type":"result","id":1,"error":{"type":"E","message":"m","line":null}}',
    # an empty datagram
    "empty-datagram": b"",
}
HOSTILE_SEQUENCES = {k: [v] for k, v in HOSTILE.items()}
HOSTILE_SEQUENCES["fatal-after-log"] = [LOG, b'{"type":"fatal","step":"s","errno":1,"message":"m"}']
HOSTILE_SEQUENCES["valid-then-garbage"] = [LOG] * 5 + [b"{oops"]
HOSTILE_SEQUENCES["valid-then-empty"] = [LOG, b""]
# a real set-up failure report is the child's last word: it exits right after
HOSTILE_SEQUENCES["fatal-then-log"] = [b'{"type":"fatal","step":"s","errno":1,"message":"m"}', LOG]


@pytest.mark.parametrize("name", sorted(HOSTILE_SEQUENCES))
def test_hostile_message_is_protocol_error(jail, name):
    r, elapsed = run_hostile(jail, HOSTILE_SEQUENCES[name])
    assert_protocol_error(r, elapsed)


def test_control_valid_forged_log_is_accepted(jail):
    """The fake child itself works: a well-formed log message is printed."""
    msg = json.dumps({"type": "log", "entries": [{"level": "warn", "msg": "forged %d" % i}
                                                 for i in range(20)]}).encode()
    r = jail(fake_child([msg], sleep=1), timeout=slack(20))
    assert r.code == 0, r
    assert log_lines(r.err) == ["WARN forged %d" % i for i in range(20)]
    assert "STILL ALIVE" in r.out


def test_a_message_that_would_decode_into_too_much_memory_is_refused(jail):
    """A megabyte of "[{},{},..." took ~90 MB of the supervisor's memory to
    decode (red team): refused before it is decoded, and jailrun stays
    small. A megabyte of small numbers is within the estimate."""
    objs = b'{"type":"log","entries":[' + b",".join([b"{}"] * 340000) + b"]}"
    r, elapsed = run_hostile(jail, [objs])
    j = assert_protocol_error(r, elapsed)
    assert "would take more than 32 MiB decoded" in j["error"]["message"], j
    assert j["stats"]["supervisor_peak_rss_bytes"] < 32 << 20, j
    nums = b'{"type":"log","entries":[' + b",".join([b"0"] * 500000) + b"]}"
    r, elapsed = run_hostile(jail, [nums])
    j = assert_protocol_error(r, elapsed)
    assert "would take more" not in j["error"]["message"], j  # the log message's own check refuses it


def test_nesting_16_is_accepted_17_is_not(jail):
    """Depth 16 passes the depth check (and then fails as an unknown type);
    depth 17 fails the depth check."""
    r, elapsed = run_hostile(jail, [nested(16)])
    j = assert_protocol_error(r, elapsed)
    assert "unknown message type" in j["error"]["message"]
    r, elapsed = run_hostile(jail, [nested(17)])
    j = assert_protocol_error(r, elapsed)
    assert "nested too deeply" in j["error"]["message"]


def test_entry_of_exactly_4000_chars_is_accepted(jail):
    msg = json.dumps({"type": "log", "entries": [{"level": "info", "msg": "\u00e9" * 4000}]},
                     ensure_ascii=False).encode()
    r = jail(fake_child([msg], sleep=1), "--json", timeout=slack(20))
    assert r.code == 0, r
    assert json_logs(r.err)[0]["message"] == "\u00e9" * 4000


def _big_log(size):
    msg = LOG
    return msg + b" " * (size - len(msg))


def test_one_mib_datagram_is_accepted(jail):
    """The cap is 1 MiB: a valid message of exactly 1 MiB (padded with
    whitespace, sent with the largest SO_SNDBUF allowed) is accepted."""
    r = jail(fake_child([_big_log(1 << 20)], sndbuf=True, sleep=1), "--json", timeout=slack(20))
    assert r.code == 0, r
    assert json_logs(r.err) == [{"type": "log", "level": "info", "message": "x"}]


@pytest.mark.parametrize("size", [(1 << 20) + 1, 3 << 20])
def test_datagram_over_one_mib_is_protocol_error(jail, size):
    src = (
        "import socket, time\n"
        "s = socket.socket(fileno=3)\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 30)\n"
        "buf = s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)\n"
        "msg = %r\n"
        "msg = msg + b' ' * (%d - len(msg))\n"
        "try:\n"
        "    s.send(msg)\n"
        "    print('SENT', buf, flush=True)\n"
        "except OSError as e:\n"
        "    print('REFUSED', buf, e.errno, flush=True)\n"
        "    raise SystemExit(0)\n"
        "time.sleep(30)\n"
        "print('STILL ALIVE', flush=True)\n" % (LOG, size))
    t0 = time.monotonic()
    r = jail(src, "--json", "--timeout", backstop(), timeout=slack(20))
    elapsed = time.monotonic() - t0
    if "REFUSED" in r.out:
        # The kernel would not carry a datagram this large (SO_SNDBUF is
        # capped by net.core.wmem_max): the cap cannot be reached at all.
        assert r.code == 0, r
        pytest.skip("kernel refuses a %d-byte datagram: %s" % (size, r.out.split("\n")[0]))
    j = assert_protocol_error(r, elapsed)
    assert "exceeds" in j["error"]["message"]


def test_supervisor_survives_a_burst_of_datagrams(jail):
    """Thousands of valid datagrams as fast as the kernel takes them, then
    a bad one: all logs arrive in order, then ProtocolError."""
    src = (
        "import socket, time\n"
        "s = socket.socket(fileno=3)\n"
        "for i in range(5000):\n"
        "    s.send(b'{\"type\":\"log\",\"entries\":[{\"level\":\"info\",\"msg\":\"n%d\"}]}' % i)\n"
        "s.send(b'{\"type\":\"log\"}')\n"
        "time.sleep(30)\n")
    t0 = time.monotonic()
    r = jail(src, "--json", "--timeout", "%d" % (slack(10) + 5), timeout=slack(30))
    elapsed = time.monotonic() - t0
    assert_protocol_error(r, elapsed, max_seconds=10)
    assert [e["message"] for e in json_logs(r.err)] == ["n%d" % i for i in range(5000)]


# ---- profile worker: forged messages around the tick protocol ----

def run_worker_hostile(worker, body, *opts):
    src = ("import socket, time\n"
           "def send(b):\n"
           "    s = socket.socket(fileno=3)\n"
           "    try:\n"
           "        s.send(b)\n"
           "    finally:\n"
           "        s.detach()\n"
           "def tick(ctx):\n"
           "    %s\n"
           "    time.sleep(30)\n" % body)
    t0 = time.monotonic()
    r = worker(src, "--json", "--timeout", backstop(), *opts, timeout=slack(20))
    return r, time.monotonic() - t0


@pytest.mark.parametrize("body", [
    "send(b'{\"type\":\"ready\"}')",
    "send(b'{\"type\":\"result\",\"id\":7,\"ok\":true}')",
    "send(b'{\"type\":\"result\",\"id\":0,\"ok\":true}')",
    "send(b'{\"type\":\"fatal\",\"step\":\"s\",\"errno\":1,\"message\":\"m\"}')",
    "send(b'{\"type\":\"bogus\"}')",
    "send(b'')",
    "send(b'{\"type\":\"log\",\"entries\":[{\"level\":\"info\",\"msg\":\"x\"}],\"type\":\"log\"}')",
], ids=["second-ready", "wrong-id", "id-0-after-ready", "fatal-after-ready", "unknown-type",
        "empty", "duplicate-key"])
def test_worker_forged_messages(worker, body):
    r, elapsed = run_worker_hostile(worker, body, "--ticks", "3")
    assert_protocol_error(r, elapsed)


def test_worker_forged_result_for_the_last_tick(worker):
    """A tick that forges its own result then returns: the runtime's real
    result arrives for a tick that is no longer in flight (the supervisor
    already sent shutdown). That is a broken contract, not a success and
    not an ordinary user error."""
    src = """
        import socket
        def tick(ctx):
            s = socket.socket(fileno=3)
            s.send(b'{"type":"result","id":1,"ok":true}')
            s.detach()
    """
    r = worker(src, "--json", timeout=slack(20))
    assert r.code == 1, r
    j = final_json(r)
    assert j["error"]["type"] == "ProtocolError", j


def test_worker_forged_result_skipping_ticks(worker):
    """Forging the result of tick 1 makes the real one arrive late (id 1
    while tick 2 is in flight): ProtocolError."""
    src = """
        import socket
        def tick(ctx):
            s = socket.socket(fileno=3)
            s.send(b'{"type":"result","id":1,"ok":true}')
            s.detach()
    """
    r = worker(src, "--json", "--ticks", "3", timeout=slack(20))
    assert r.code == 1, r
    assert final_json(r)["error"]["type"] == "ProtocolError"


def test_long_exception_message_is_a_user_error(worker):
    """An exception whose message is 100k characters is still the user's
    ValueError (the honest runtime must not produce a ProtocolError)."""
    r = worker("""
        def tick(ctx):
            raise ValueError("v" * 100000)
    """, "--json")
    assert r.code == 1, r
    j = final_json(r)
    assert j["error"]["type"] == "ValueError", j
    assert j["error"]["message"].startswith("vvvv")


def test_deep_recursion_error_is_a_user_error(worker):
    """RecursionError has a traceback of ~1000 user frames: still the user's
    RecursionError with its line, not a ProtocolError."""
    r = worker("""
        def f(n):
            return f(n + 1)

        def tick(ctx):
            f(0)
    """, "--json")
    assert r.code == 1, r
    j = final_json(r)
    assert j["error"]["type"] == "RecursionError", j
    assert j["error"]["line"] == 3


def test_huge_traceback_is_a_user_error(worker):
    """Deep mutual recursion gives a traceback of ~1000 distinct user frames
    (well over 64 KiB): the job still reports the user's RecursionError with
    its line, not a crash of the runtime or a ProtocolError."""
    r = worker("""
        def ping_function_with_a_rather_long_name(n):
            return pong_function_with_a_rather_long_name(n + 1)  # padding padding padding

        def pong_function_with_a_rather_long_name(n):
            return ping_function_with_a_rather_long_name(n + 1)  # padding padding padding

        def tick(ctx):
            ping_function_with_a_rather_long_name(0)
    """, "--json")
    assert r.code == 1, r
    j = final_json(r)
    assert j["error"]["type"] == "RecursionError", j
    assert j["error"]["line"] in (3, 6), j


def test_worker_forged_fatal_then_ready(worker):
    """A script that forges a set-up failure report at load time and then
    goes on (the runtime sends ready, ticks run) broke the contract: fatal is
    the child's last word. The job must not run ticks and then claim that
    the jail could not be set up (status setup, exit 3)."""
    r = worker("""
        import socket
        s = socket.socket(fileno=3)
        s.send(b'{"type":"fatal","step":"mounts","errno":1,"message":"forged"}')
        s.detach()
        def tick(ctx):
            ctx.log.info("tick ran")
    """, "--json", "--ticks", "2", "--timeout", backstop(), timeout=slack(20))
    j = final_json(r)
    assert j["status"] != "setup" and r.code != 3, r
    assert r.code == 1, r
    assert j["error"]["type"] == "ProtocolError", j


@pytest.mark.parametrize("prefix", ["", "a", "aa"])
def test_a_cut_in_the_middle_of_a_character_keeps_the_result_line(worker, prefix):
    """Text the supervisor keeps is cut to its buffers; a cut inside a
    multi-byte character used to make the whole --json result line vanish
    (red team). Every cut position of a 2-byte character."""
    r = worker("""
        def tick(ctx):
            raise ValueError(%r + "\\u00e9" * 3000)
    """ % prefix, "--json")
    assert r.code == 1, r
    j = final_json(r)
    assert j["error"]["type"] == "ValueError", j
    assert j["error"]["message"].startswith(prefix + "\u00e9\u00e9"), j


def test_a_forged_verdict_cannot_be_the_last_line(jail):
    """Profile exec prints a fake verdict, then sends a result whose error
    type is cut by the supervisor in the middle of a character: jailrun's
    own line still ends stdout, and says error."""
    r = jail("""
        import json, os, socket
        print('{"status":"ok","error":null,"exit_code":0,"stats":{"wall_ms":5,"cpu_ms":1}}', flush=True)
        s = socket.socket(fileno=3)
        s.send(json.dumps({"type": "result", "id": 0,
                           "error": {"type": "A" * 126 + "\\u00e9", "message": "x", "line": None}}).encode())
        os._exit(1)
    """, "--json", timeout=slack(20))
    j = final_json(r)
    assert j["status"] == "error" and j["error"]["type"].startswith("AAAA"), j
    assert r.out.strip().splitlines()[-2].startswith('{"status":"ok"'), r


def test_json_lines_are_ascii(worker):
    """C1 controls, bidi overrides and line separators sent by the jail are
    escaped in every --json line, as C0 controls are."""
    r = worker("""
        def tick(ctx):
            ctx.log.info("\\u009b31m \\u202e \\u2028 \\x1b[2J")
            raise ValueError("\\u009b \\u202e")
    """, "--json")
    assert r.code == 1, r
    for text in (r.out, r.err):
        assert all(ord(ch) < 0x80 for ch in text), text
    assert json_logs(r.err)[0]["message"] == "\u009b31m \u202e \u2028 \x1b[2J", r
    assert final_json(r)["error"]["message"] == "\u009b \u202e", r
