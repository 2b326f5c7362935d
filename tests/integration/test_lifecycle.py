"""A worker's life (seeds 000/001): ticks on a schedule (--interval), the
two-stage tick time limit (TimeoutError inside the tick, then a fresh jail),
on_error(ctx, error) or on_error(error), restarts with back-off, SIGTERM and SIGHUP."""
import codecs
import contextlib
import json
import os
import select
import signal
import subprocess
import time

import pytest

from conftest import JAILRUN, NATIVE_POLICY, run_script
from hostprobe import pace, slack


def logs(r):
    return [json.loads(x)["message"] for x in r.err.splitlines() if x.startswith('{"type":"log"')]


def notes(r):
    """jailrun's own notes: "jailrun: ..." lines, or with --json note objects."""
    out = []
    for x in r.err.splitlines():
        if x.startswith("jailrun: "):
            out.append(x)
        elif x.startswith('{"type":"note"'):
            out.append("jailrun: " + json.loads(x)["message"])
    return out


# --- the soft stage and on_error -----------------------------------------------------

def test_timeout_inside_the_tick_and_on_error(tmp_path):
    r = run_script(tmp_path, """
        n = 0
        def tick(ctx):
            global n
            n += 1
            ctx.log.info("tick", n)
            if n == 2:
                for i in range(10 ** 10):
                    pass
            if n == 3:
                raise ValueError("three")
        def on_error(ctx, error):
            ctx.log.info("on_error", sorted(error.items()), "n", n)
    """, "--ticks", "4", "--tick-timeout", "200ms", "--json")
    assert r.code == 1, r
    assert logs(r) == [
        "tick 1", "tick 2",
        "on_error [('line', 9), ('message', 'tick 2 exceeded its time limit of 0.2 s'), ('tick', 2), "
        "('type', 'TimeoutError')] n 2",
        "tick 3",
        "on_error [('line', 11), ('message', 'three'), ('tick', 3), ('type', 'ValueError')] n 3",
        "tick 4",
    ]
    j = r.json
    assert j["error"]["type"] == "TimeoutError"  # the first failure
    assert j["stats"]["ticks"] == 4 and j["stats"]["ticks_failed"] == 2 and j["stats"]["restarts"] == 0


def test_a_caught_timeout_is_raised_again_and_still_fails_the_tick(tmp_path):
    r = run_script(tmp_path, """
        def tick(ctx):
            caught = 0
            for attempt in range(3):
                try:
                    for i in range(10 ** 10):
                        pass
                except Exception:
                    caught += 1
            ctx.log.info("caught", caught)
        def on_error(ctx, error):
            ctx.log.info("on_error", error["type"])
    """, "--tick-timeout", "100ms", "--json")
    assert r.code == 1, r
    assert logs(r) == ["caught 3", "on_error TimeoutError"]


def test_on_error_that_raises_is_logged_not_repeated(tmp_path):
    r = run_script(tmp_path, """
        calls = []
        def tick(ctx):
            ctx.log.info("on_error calls so far", len(calls))
            raise RuntimeError("tick failed")
        def on_error(ctx, error):
            calls.append(error)
            raise KeyError("in on_error")
    """, "--ticks", "2", "--json")
    assert r.code == 1, r
    lines = [json.loads(x) for x in r.err.splitlines() if x.startswith('{"type":"log"')]
    assert [(x["level"], x["message"]) for x in lines] == [
        ("info", "on_error calls so far 0"),
        ("error", "on_error raised KeyError: 'in on_error' (line 8)"),
        ("info", "on_error calls so far 1"),
        ("error", "on_error raised KeyError: 'in on_error' (line 8)"),
    ]


def test_on_error_over_its_time_is_stopped_too(tmp_path):
    r = run_script(tmp_path, """
        def tick(ctx):
            raise ValueError("x")
        def on_error(ctx, error):
            for i in range(10 ** 10):
                pass
    """, "--tick-timeout", "150ms", "--json")
    assert r.code == 1, r
    (line,) = logs(r)
    assert line in ("on_error raised TimeoutError: tick 1 exceeded its time limit of 0.15 s (line %d)" % k
                    for k in (5, 6)), line


@pytest.mark.parametrize("handler,said", [
    ("def on_error(ctx, error):\n    ctx.log.info(type(ctx).__name__, error['type'])", "Ctx ValueError"),
    ("def on_error(error):\n    ctx.log.info(error['message'], error['tick'])", "v 1"),
    ("def on_error(err, extra=None):\n    ctx.log.info(type(err).__name__, type(extra).__name__)", "Ctx dict"),
    ("def on_error(ctx):\n    ctx.log.info('ctx', type(ctx).__name__)", "ctx Ctx"),
    ("def on_error():\n    ctx.log.info('no arguments')", "no arguments"),
    ("def on_error(*args):\n    ctx.log.info(len(args))", "2"),
    ("def on_error(error, *rest):\n    ctx.log.info(type(error).__name__, len(rest))", "Ctx 1"),
    ("on_error = lambda error: ctx.log.info('lambda', error['type'])", "lambda ValueError"),
    ("class H:\n    def handle(self, error):\n        ctx.log.info('method', error['line'])\non_error = H().handle",
     "method 2"),
    ("class H:\n    def __call__(self, error):\n        ctx.log.info('object', error['type'])\non_error = H()",
     "object ValueError"),
    ("class H:\n    def __init__(self, ctx, error):\n        ctx.log.info('class', error['type'])\non_error = H",
     "class ValueError"),
])
def test_on_error_takes_ctx_and_error_or_the_error_alone(tmp_path, handler, said):
    # Decided once at load from the signature: two or more positional
    # parameters (or *args) get (ctx, error), one gets the error (or ctx
    # when it is named so), none nothing; other callables get (ctx, error).
    r = run_script(tmp_path, "def tick(ctx):\n    raise ValueError('v')\n" + handler + "\n", "--json")
    assert r.code == 1, r
    assert logs(r) == [said], r.err


def test_on_error_with_the_error_alone_in_a_fresh_jail(tmp_path):
    r = run_script(tmp_path, """
        import os
        def tick(ctx):
            os._exit(7)
        def on_error(error):
            ctx.log.info("on_error", error["type"], error["message"], error["line"])
    """, "--policy", NATIVE_POLICY, "--interval", "50ms", "--ticks", "1", "--json", timeout=60)
    assert r.code == 1, r
    assert logs(r) == ["on_error RuntimeError the worker's jail exited with status 7 None"]


# --- the hard stage: a fresh jail ----------------------------------------------------

STUCK = """
n = 0
def tick(ctx):
    global n
    n += 1
    ctx.log.info("tick", n)
    if n == 2:
        sum(range(10 ** 13))  # in C: the TimeoutError cannot be raised in here
def on_error(ctx, error):
    ctx.log.info("on_error", error["type"], error["tick"], error["line"], "n", n)
"""


def test_tick_stuck_in_c_gets_a_fresh_jail(tmp_path):
    (tmp_path / "p.json").write_text('{"limits": {"tick_timeout": 0.2, "tick_grace": 0.3}}')
    t0 = time.monotonic()
    r = run_script(tmp_path, STUCK, "--ticks", "4", "--policy", str(tmp_path / "p.json"), "--json")
    assert time.monotonic() - t0 < slack(20)
    assert r.code == 1, r
    # module globals start again in the new jail; on_error runs there first.
    # ("tick 2" was logged, but a batch still in a killed jail is lost.)
    assert logs(r) == ["tick 1", "on_error TimeoutError 2 None n 0", "tick 1", "on_error TimeoutError 4 None n 0"]
    assert ("jailrun: tick 2 did not return within its time limit of 0.2 s and 0.3 s of grace; its jail was "
            "killed and a fresh one started") in notes(r)
    j = r.json
    assert j["error"]["type"] == "TimeoutError"
    assert j["stats"]["ticks"] == 4 and j["stats"]["ticks_failed"] == 2 and j["stats"]["restarts"] == 2


def test_tick_blocking_signals_in_native_code_gets_a_fresh_jail(tmp_path):
    """Native power (exec-level ctypes): SIGALRM blocked, then a sleep."""
    (tmp_path / "p.json").write_text(json.dumps({**json.load(open(NATIVE_POLICY)),
                                                 "limits": {"tick_timeout": 0.2, "tick_grace": 0.3}}))
    r = run_script(tmp_path, """
        import ctypes, signal
        libc = ctypes.CDLL(None, use_errno=True)
        n = 0
        def tick(ctx):
            global n
            n += 1
            if n == 1:
                signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])
                libc.sleep(30)
        def on_error(ctx, error):
            ctx.log.info("on_error", error["type"], "n", n)
    """, "--ticks", "1", "--policy", str(tmp_path / "p.json"), "--json", timeout=60)
    assert r.code == 1, r
    assert logs(r) == ["on_error TimeoutError n 0"]  # in a fresh jail
    assert r.json["stats"]["restarts"] == 1 and r.json["stats"]["ticks"] == 1


# --- the schedule ---------------------------------------------------------------------

def test_interval_spaces_ticks_and_never_overlaps(tmp_path):
    # Slots of 0.5 s on a quiet host, longer where jails run slower here
    # (the tolerance is half a slot: a tick's start may lag by the host's
    # scheduling, never by a slot).
    slot = round(min(1.5, max(0.5, 0.3 * pace())), 3)
    r = run_script(tmp_path, """
        import time
        n = 0
        def tick(ctx):
            global n
            n += 1
            ctx.log.info("start", n, time.monotonic())
            if n == 3:
                t = time.monotonic()
                while time.monotonic() - t < SLOT * 2.5:
                    pass
            ctx.log.info("end", n, time.monotonic())
    """.replace("SLOT", repr(slot)), "--interval", "%dms" % round(slot * 1000), "--ticks", "6", "--json",
                   timeout=120)
    assert r.code == 0, r
    events = [m.split() for m in logs(r)]
    assert [e[0] for e in events] == ["start", "end"] * 6  # never two at once
    starts = [float(e[2]) / slot for e in events if e[0] == "start"]
    # on their slots: 0, 1, 2; tick 3 ends at ~4.5: slot 3 skipped,
    # tick 4 starts late in slot 4 (at ~4.5), then 5, 6
    rel = [s - starts[0] for s in starts]
    for got, want in zip(rel, [0, 1, 2]):
        assert abs(got - want) < 0.5, rel
    assert rel[3] >= 4.3 and rel[3] < 5, rel
    assert abs(rel[4] - 5) < 0.5 and abs(rel[5] - 6) < 0.5, rel
    assert "jailrun: 1 slot of %g s skipped; tick 4 starts late" % slot in notes(r), notes(r)
    assert r.json["stats"]["slots_skipped"] == 1


def test_interval_needs_profile_worker(tmp_path):
    src = tmp_path / "s.py"
    src.write_text("print(1)\n")
    for args in (["--profile", "exec", "--interval", "1s"], ["--profile", "strategy", "--interval", "1s"],
                 ["--interval", "0"], ["--interval", "soon"], ["--tick-timeout", "-1s"], ["--check", "--interval", "1s"]):
        p = subprocess.run([JAILRUN, *args, str(src)], capture_output=True, text=True, timeout=30)
        assert p.returncode == 2, (args, p)


def test_crash_loop_backs_off(tmp_path):
    t0 = time.monotonic()
    r = run_script(tmp_path, """
        import os
        def tick(ctx):
            os._exit(7)
        def on_error(ctx, error):
            ctx.log.info("on_error", error["type"], error["message"], error["tick"])
    """, "--policy", NATIVE_POLICY, "--interval", "50ms", "--ticks", "3", "--json", timeout=60)
    took = time.monotonic() - t0
    assert r.code == 1, r
    assert [n for n in notes(r) if "new jail" in n] == [
        "jailrun: a new jail for the worker (restart 1)",
        "jailrun: a new jail for the worker in 1 s (restart 2, 2 failures in a row)",
        "jailrun: a new jail for the worker in 2 s (restart 3, 3 failures in a row)",
    ]
    assert logs(r) == ["on_error RuntimeError the worker's jail exited with status 7 %d" % k for k in (1, 2, 3)]
    assert 3 <= took < slack(30)
    assert r.json["stats"]["restarts"] == 3 and r.json["stats"]["ticks_failed"] == 3


def test_without_interval_a_crash_ends_the_job(tmp_path):
    r = run_script(tmp_path, "import os\ndef tick(ctx):\n    os._exit(7)\n", "--policy", NATIVE_POLICY,
                   "--ticks", "3", "--json")
    assert r.code == 1 and r.json["stats"]["restarts"] == 0, r


# --- signals ----------------------------------------------------------------------------

def start(tmp_path, source, *args):
    path = tmp_path / "w.py"
    path.write_text(source)
    return subprocess.Popen([JAILRUN, *args, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(p, what, timeout=10):
    """Lines of stderr up to the first that contains `what`, read straight
    from the pipe (what follows is kept for finish(): a buffered readline
    would hide it from communicate())."""
    rest = getattr(p, "jr_rest", "")
    if not hasattr(p, "jr_dec"):
        p.jr_dec = codecs.getincrementaldecoder("utf-8")("replace")
    end = time.monotonic() + timeout
    fd = p.stderr.fileno()
    while True:
        lines = rest.splitlines(keepends=True)
        for k, line in enumerate(lines):
            if what in line and line.endswith("\n"):
                p.jr_rest = "".join(lines[k + 1:])
                return lines[:k + 1]
        left = end - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        rest += p.jr_dec.decode(chunk)
    p.jr_rest = rest
    raise AssertionError("no %r in %r" % (what, rest))


@contextlib.contextmanager
def started(tmp_path, source, *args):
    """start(), killed however the test ends."""
    p = start(tmp_path, source, *args)
    try:
        yield p
    finally:
        p.kill()


def finish(p, timeout=20):
    """communicate(), with stderr from where wait_for left off."""
    out, err = p.communicate(timeout=timeout)
    return out, getattr(p, "jr_rest", "") + err


def test_sigterm_lets_the_tick_finish(tmp_path):
    with started(tmp_path, """
import time
def tick(ctx):
    ctx.log.info("begin")
    time.sleep(0.8)
    ctx.log.info("done")
""", "--interval", "100ms") as p:
        wait_for(p, "INFO begin")
        p.send_signal(signal.SIGTERM)
        out, err = finish(p)
    assert p.returncode == 0, err
    assert "jailrun: SIGTERM: stopping after the tick in flight" in err
    assert err.rstrip().endswith("INFO done"), err


def test_a_long_ticks_log_shows_while_it_runs(tmp_path):
    """Log entries go out once the first has waited 100 ms, not only when
    the tick ends: this one would take 60 s."""
    p = start(tmp_path, "import time\ndef tick(ctx):\n    ctx.log.info('begin')\n    time.sleep(60)\n",
              "--ticks", "1")
    try:
        wait_for(p, "INFO begin", timeout=15)
        assert p.poll() is None
    finally:
        p.kill()
        p.communicate()


def test_the_log_sent_early_keeps_every_line_once_in_order(tmp_path):
    """The clock's signal sends the log from wherever the tick is, here
    mostly inside the log's own code: nothing lost, doubled or reordered."""
    r = run_script(tmp_path, """
        import time
        def tick(ctx):
            t, i = time.monotonic(), 0
            # 0.6 s and 1000 lines at least, within the log limit
            while (time.monotonic() - t < 0.6 or i <= 1000) and i < 100000:
                ctx.log.info("n", i)
                print("p", i)
                i += 1
            ctx.log.info("total", i)
    """, "--ticks", "1", "--json")
    assert r.code == 0, r
    got = logs(r)
    total = int(got[-1].split()[1])
    assert total > 1000
    assert got[:-1] == [w for i in range(total) for w in ("n %d" % i, "p %d" % i)]


def test_second_sigterm_stops_at_once(tmp_path):
    with started(tmp_path, "import time\ndef tick(ctx):\n    ctx.log.info('begin')\n    time.sleep(30)\n",
                 "--interval", "1s") as p:
        wait_for(p, "INFO begin")
        p.send_signal(signal.SIGTERM)
        wait_for(p, "SIGTERM: stopping")
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        out, err = finish(p)
    assert p.returncode == 143
    assert time.monotonic() - t0 < slack(3)


def test_sighup_reloads_the_script(tmp_path):
    src = "def tick(ctx):\n    ctx.log.info('VERSION')\n"
    with started(tmp_path, src.replace("VERSION", "v1"), "--interval", "100ms", "--json") as p:
        wait_for(p, '"message":"v1"')
        (tmp_path / "w.py").write_text("def tick(ctx)\n    broken\n")  # does not load: v1 goes on
        p.send_signal(signal.SIGHUP)
        wait_for(p, "the reloaded script did not load (SyntaxError: line 1:13: expected ':'); "
                    "the previous one runs on")
        wait_for(p, '"message":"v1"')
        (tmp_path / "w.py").write_text(src.replace("VERSION", "v2"))
        p.send_signal(signal.SIGHUP)
        wait_for(p, "reloaded " + str(tmp_path / "w.py"))
        wait_for(p, '"message":"v2"')
        p.send_signal(signal.SIGTERM)
        out, err = finish(p)
    assert '"v1"' not in err  # after the reload, only v2
    res = json.loads(out.strip().splitlines()[-1])
    # a script that did not load is the operator's, said at once: no tick failed
    assert p.returncode == 0 and res["status"] == "ok", res
    assert (res["stats"]["reloads"], res["stats"]["reloads_failed"]) == (1, 1), res


SLOW_LOAD = """
x = 0
for i in range(10 ** 9):  # loading takes long
    x += i
def tick(ctx):
    ctx.log.info("VERSION")
"""
QUICK = "def tick(ctx):\n    ctx.log.info('VERSION')\n"


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGQUIT, 131), (signal.SIGTERM, 0)])
def test_a_stop_while_the_reloaded_script_loads(tmp_path, sig, code):
    """SIGINT and SIGQUIT stop at once and SIGTERM stops (no tick to let
    finish) while a reloaded script loads; none is lost to the reload (red
    team: the job ran on, with a false "did not load")."""
    with started(tmp_path, QUICK.replace("VERSION", "v1"), "--interval", "100ms") as p:
        wait_for(p, "INFO v1")
        (tmp_path / "w.py").write_text(SLOW_LOAD.replace("VERSION", "v2"))
        p.send_signal(signal.SIGHUP)
        wait_for(p, "a new jail for the worker (restart 1)")
        t0 = time.monotonic()
        p.send_signal(sig)
        out, err = finish(p)
    assert time.monotonic() - t0 < slack(5)
    assert p.returncode == code, err
    assert "did not load" not in err and "restart 2" not in err, err


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_a_stop_soon_after_sighup(tmp_path, sig, code):
    with started(tmp_path, QUICK.replace("VERSION", "v1"), "--interval", "5s") as p:
        wait_for(p, "INFO v1")
        p.send_signal(signal.SIGHUP)
        time.sleep(0.002)
        p.send_signal(sig)
        out, err = finish(p)
    assert p.returncode == code, err
    assert "did not load" not in err, err


def test_a_second_sighup_while_the_first_loads_wins(tmp_path):
    with started(tmp_path, QUICK.replace("VERSION", "v1"), "--interval", "100ms") as p:
        wait_for(p, "INFO v1")
        (tmp_path / "w.py").write_text(SLOW_LOAD.replace("VERSION", "v2"))
        p.send_signal(signal.SIGHUP)
        wait_for(p, "a new jail for the worker (restart 1)")
        (tmp_path / "w.py").write_text(QUICK.replace("VERSION", "v3"))
        p.send_signal(signal.SIGHUP)
        wait_for(p, "SIGHUP: reloading %s (the jail loading goes)" % (tmp_path / "w.py"))
        wait_for(p, "INFO v3")
        p.send_signal(signal.SIGTERM)
        out, err = finish(p)
    assert p.returncode == 0, err
    assert "INFO v2" not in err and "did not load" not in err, err


def test_two_reloads_that_do_not_load_go_back_to_the_last_that_did(tmp_path):
    """The second SIGHUP's text replaces the first's, not the script that
    loaded (red team: the first, never loaded, became the one to go back
    to, and with it broken the job crash-looped for good)."""
    with started(tmp_path, "import time\ndef tick(ctx):\n    ctx.log.info('v1')\n    time.sleep(1)\n",
                 "--interval", "100ms") as p:
        wait_for(p, "INFO v1")  # the tick sleeps on: both signals come during it
        (tmp_path / "w.py").write_text("raise RuntimeError('bad1')\n")
        p.send_signal(signal.SIGHUP)
        wait_for(p, "SIGHUP: reloading")
        (tmp_path / "w.py").write_text("def tick(ctx)\n")
        p.send_signal(signal.SIGHUP)
        wait_for(p, "the reloaded script did not load (SyntaxError")
        wait_for(p, "INFO v1")
        p.send_signal(signal.SIGTERM)
        out, err = finish(p)
    assert p.returncode == 0, err
    assert "bad1" not in err and "exited with status" not in err, err


@pytest.mark.parametrize("sig", ["sighup", "sigterm"])
def test_a_signal_while_the_first_jail_loads(tmp_path, sig):
    """SIGHUP or SIGTERM before the script first loaded: a reload and a
    gentle stop, not an interrupted job (red team: 129 and 143)."""
    with started(tmp_path, SLOW_LOAD.replace("VERSION", "v1").replace("10 ** 9", sig == "sighup" and "3 * 10 ** 7"
                                                                   or "10 ** 9"), "--interval", "100ms") as p:
        time.sleep(0.5)
        if sig == "sighup":  # waits for the first script's load: the one to go back to
            (tmp_path / "w.py").write_text(QUICK.replace("VERSION", "v2"))
            p.send_signal(signal.SIGHUP)
            wait_for(p, "reloaded", timeout=slack(10))
            wait_for(p, "INFO v2", timeout=slack(10))
        p.send_signal(signal.SIGTERM)
        out, err = finish(p)
    assert p.returncode == 0, err


def test_sighup_while_a_restarted_jail_loads(tmp_path):
    src = "import os\n" + SLOW_LOAD.replace("ctx.log.info(\"VERSION\")", "os._exit(3)").replace("10 ** 9", "10 ** 7")
    with started(tmp_path, src, "--policy", NATIVE_POLICY, "--interval", "100ms") as p:
        wait_for(p, "a new jail for the worker (restart 1)")
        (tmp_path / "w.py").write_text(QUICK.replace("VERSION", "v2"))
        p.send_signal(signal.SIGHUP)
        wait_for(p, "INFO v2")
        p.send_signal(signal.SIGTERM)
        out, err = finish(p)
    assert p.returncode == 1, err  # the tick that crashed failed


@pytest.mark.parametrize("name", ["jailrun", "\u200bjailrun", "\u0458ailrun", "JAILRUN"])
def test_an_error_type_cannot_pass_for_a_note(tmp_path, name):
    """A type named to look like jailrun's notes (a zero-width space or a
    Cyrillic letter in front) is indented: only a plain ASCII name starts
    a line."""
    r = run_script(tmp_path, """
        E = type(%r, (Exception,), {})
        def tick(ctx):
            raise E("SIGTERM: stopping")
    """ % name, "--policy", NATIVE_POLICY)
    assert r.code == 1
    lines = [x for x in r.err.splitlines() if "SIGTERM: stopping" in x and "raise" not in x]
    assert lines and all(x.startswith("  ") for x in lines), r.err


def test_a_plain_error_type_starts_its_line(tmp_path):
    r = run_script(tmp_path, "def tick(ctx):\n    raise ValueError('bad')\n")
    assert "\nValueError: bad\n" in r.err, r.err


def test_a_slow_reader_of_our_stderr_is_not_the_ticks_fault(tmp_path):
    """While nobody reads jailrun's stderr, the jail's result waits unread:
    the tick's hard limit waits with it (red team: the tick, done in 25 ms,
    was killed as stuck, and counted twice). The tick's limit is four times
    what the same tick takes here with a prompt reader (3 MB of log against
    the 4 MiB/s read budget: ~1 s on a quiet host, more on a slow one)."""
    source = """
import time
def tick(ctx):
    t0 = time.monotonic()
    for i in range(3000):
        ctx.log.info("%d %s" % (i, "x" * 1000))
    ctx.log.info("done", time.monotonic() - t0)
"""
    r = run_script(tmp_path, source, "--ticks", "1", "--json", timeout=120)
    assert r.code == 0, r
    took = float(logs(r)[-1].split()[1])
    limit = max(2.0, 4 * took)
    (tmp_path / "pol.json").write_text('{"limits": {"tick_grace": 0.5}}')
    with started(tmp_path, source, "--interval", "1s", "--tick-timeout", "%.2f" % limit,
                 "--policy", str(tmp_path / "pol.json"), "--json") as p:
        # past the limit and its grace, within the one more tick limit it may wait
        time.sleep(limit + 0.5 + limit / 4)
        p.send_signal(signal.SIGTERM)
        out, err = finish(p, 30 + 4 * limit)
    res = json.loads(out.strip().splitlines()[-1])
    assert "did not return" not in err, "limit %.2f s" % limit
    assert p.returncode == 0 and res["stats"]["restarts"] == 0, res
    assert res["stats"]["ticks_failed"] == 0 and res["stats"]["ticks"] >= 1, res


@pytest.mark.parametrize("flood", ["ctx.log.info('x' * 3000)", "os.write(2, b'x' * 65535 + b'\\n')"])
def test_a_log_flood_does_not_stretch_the_limit_of_a_tick_stuck_in_c(tmp_path, flood):
    """A thread floods the log while the tick sleeps in C: the hard limit
    still ends it (the wait for a slow reader is not the jail's to use)."""
    pol = json.loads(open(NATIVE_POLICY).read())
    pol.setdefault("limits", {})["tick_grace"] = 0.5
    (tmp_path / "pol.json").write_text(json.dumps(pol))
    t0 = time.monotonic()
    r = run_script(tmp_path, """
        import ctypes, os, signal, threading
        def flood(ctx):
            while True:
                FLOOD
        def tick(ctx):
            threading.Thread(target=flood, args=(ctx,), daemon=True).start()
            signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])
            ctypes.CDLL(None).sleep(60)  # the GIL released, the clock's signal blocked
    """.replace("FLOOD", flood), "--policy", str(tmp_path / "pol.json"), "--tick-timeout", "0.5", "--ticks", "1",
                   "--json", timeout=90)
    assert time.monotonic() - t0 < slack(30)
    assert any("tick 1 did not return within its time limit of 0.5 s" in n for n in notes(r)), notes(r)[:5]
    assert r.json["stats"]["ticks_failed"] == 1, r.json


def test_on_error_that_kills_its_jail_is_not_called_for_that_again(tmp_path):
    """A crash inside on_error is not handed to on_error in the next jail
    (red team: every jail's on_error crashed on the last one's crash, and
    no tick ran again)."""
    t0 = time.monotonic()
    r = run_script(tmp_path, """
        import os
        def tick(ctx):
            os._exit(3)
        def on_error(ctx, error):
            ctx.log.info("on_error", error["message"])
            ctx.state.keys()
            os._exit(5)
    """, "--policy", NATIVE_POLICY, "--interval", "50ms", "--ticks", "2", "--timeout", "30", "--json", timeout=60)
    assert time.monotonic() - t0 < slack(20)
    assert logs(r) == ["on_error the worker's jail exited with status 3"] * 2, r.err
    assert "jailrun: on_error did not return; it is not called for this failure again" in notes(r)
    assert notes(r)[-1] == "jailrun: on_error did not return", notes(r)  # every tick ran: no new jail
    assert r.code == 1 and r.json["stats"]["restarts"] == 3, r.json
    assert r.json["error"]["message"] == "the worker's jail exited with status 3"


def test_on_error_that_crashes_in_the_ticks_jail_runs_once(tmp_path):
    """The tick's failure reaches the supervisor before on_error runs: a
    crash inside on_error is not handed to on_error, the job's error is the
    tick's, and with every tick done no jail replaces it (red team)."""
    r = run_script(tmp_path, """
        import ctypes
        def tick(ctx):
            raise ValueError("boom")
        def on_error(ctx, error):
            ctx.log.info("on_error", error["type"])
            ctx.state.keys()
            ctypes.string_at(0)
    """, "--policy", NATIVE_POLICY, "--interval", "50ms", "--ticks", "1", "--timeout", "30", "--json", timeout=60)
    assert logs(r) == ["on_error ValueError"], r.err
    assert "jailrun: on_error did not return" in notes(r), notes(r)
    assert r.code == 1 and r.json["error"]["type"] == "ValueError", r.json
    assert (r.json["stats"]["ticks_failed"], r.json["stats"]["restarts"]) == (1, 0), r.json


def test_the_scripts_own_signal_handler_may_log(tmp_path):
    """ctx.log from a handler that interrupts ctx.log (the lock is
    re-entrant; red team: the tick deadlocked until its hard limit)."""
    r = run_script(tmp_path, """
        import itertools, signal, time
        def tick(ctx):
            seq, fired = itertools.count(1), []
            def on_alarm(s, f):
                # one number each, taken at once (next() and append() are
                # single calls): a handler may itself be interrupted by the
                # next signal's
                k = next(seq)
                fired.append(k)
                ctx.log.info("h", k)
            signal.signal(signal.SIGVTALRM, on_alarm)
            signal.setitimer(signal.ITIMER_VIRTUAL, 0.0005, 0.0005)
            t, i = time.time(), 0
            # half a second, and at least 11 signals however little CPU the
            # jail gets meanwhile; within the log limit
            while (time.time() - t < 0.5 or len(fired) <= 10) and i < 100000:
                ctx.log.info("x", i)
                i += 1
            signal.setitimer(signal.ITIMER_VIRTUAL, 0)
            ctx.log.info("handled", len(fired) > 10)
    """, "--policy", NATIVE_POLICY, "--tick-timeout", "%d" % slack(5), "--ticks", "1", "--json",
                   timeout=60 + slack(5))
    assert r.code == 0, r
    got = logs(r)
    assert got[-1] == "handled True"
    xs = [int(x.split()[1]) for x in got if x.startswith("x ")]
    hs = [int(x.split()[1]) for x in got if x.startswith("h ")]
    assert xs == list(range(len(xs))), got[:50]  # the loop's lines in order
    # every handler's line once (a nested handler's comes before the one of
    # the handler it interrupted, which had not logged yet)
    assert sorted(hs) == list(range(1, len(hs) + 1)), hs


def test_a_finalizer_that_logs_during_logging(tmp_path):
    """A collection inside ctx.log runs __del__, which logs: every line
    once (the log's own allocations happen outside its swap)."""
    r = run_script(tmp_path, """
        import gc
        class C:
            def __init__(self, k):
                self.k, self.me = k, self
            def __del__(self):
                ctx.log.info("del", self.k)
        def tick(ctx):
            gc.set_threshold(10, 1, 1)
            for i in range(20000):
                C(i)
                ctx.log.info("x", i)
            gc.collect()
    """, "--policy", NATIVE_POLICY, "--ticks", "1", "--json")
    assert r.code == 0, r
    got = logs(r)
    assert [int(x.split()[1]) for x in got if x.startswith("x ")] == list(range(20000))
    dels = sorted(int(x.split()[1]) for x in got if x.startswith("del "))
    assert dels == list(range(20000)), (len(dels), dels[:10])


def test_empty_log_messages_count_against_the_log_limit(tmp_path):
    """Every message costs its text and its frame (48 bytes): empty ones
    cannot print without end (red team: 742 764 lines past a 100-byte limit)."""
    (tmp_path / "pol.json").write_text('{"log": {"max_bytes": 4800}}')
    r = run_script(tmp_path, """
        def tick(ctx):
            for i in range(100000):
                ctx.log.info("")
    """, "--policy", str(tmp_path / "pol.json"), "--ticks", "1", "--json")
    assert r.code == 0, r
    assert len(logs(r)) == 100
    assert r.json["stats"]["log_dropped"] == 100000 - 100, r.json


def test_empty_lines_of_raw_output_count_against_its_cap(tmp_path):
    r = run_script(tmp_path, """
        import os
        def tick(ctx):
            os.write(1, b"\\n" * 1000000)
    """, "--policy", NATIVE_POLICY, "--ticks", "1", "--json")
    assert r.code == 0, r
    out = [x for x in r.err.splitlines() if x.startswith('{"type":"output"')]
    assert len(out) == (1 << 20) // 49 + 1, len(out)
    assert "jailrun: worker output beyond 1048576 bytes dropped" in notes(r)


def test_error_reports_count_against_the_log_limit(tmp_path):
    """A failed tick's printed report (traceback, Type: message) is
    charged like a log message (red team: 3.2 MB past a 1000-byte limit)."""
    (tmp_path / "pol.json").write_text('{"log": {"max_bytes": 20000}}')
    r = run_script(tmp_path, "def tick(ctx):\n    raise ValueError('\\x7f' * 4000)\n",
                   "--policy", str(tmp_path / "pol.json"), "--ticks", "50")
    assert r.code == 1
    assert r.err.count("\nValueError: ") == 4, r.err.count("\nValueError: ")
    assert len(r.err) < 100000
    assert "jailrun: log messages beyond 20000 bytes dropped" in r.err


@pytest.mark.parametrize("mode", ["text", "json"])
def test_a_stop_signal_is_not_held_by_a_reader_that_never_reads(tmp_path, mode):
    """The job is stopped at once; the line jailrun then prints would wait
    for the reader: it does not (red team: until the reader died)."""
    p = start(tmp_path, """
def tick(ctx):
    for i in range(300):
        ctx.log.info("x" * 3000)
    raise ValueError("end")
""", "--ticks", "1", *(["--json"] if mode == "json" else []))
    try:
        time.sleep(2)  # our output backs up; the jail waits on us
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)
        out = p.stdout.read()
    finally:
        p.kill()
        p.communicate()
    assert p.returncode == 143
    if mode == "json":
        assert json.loads(out.strip().splitlines()[-1])["status"] == "signal"


def test_a_signal_ends_jailrun_though_nobody_reads_its_stderr(tmp_path):
    """Megabytes queued for a reader that never reads: SIGTERM stops
    jailrun now, dropping them, as it stops the job (red team: ten minutes)."""
    p = start(tmp_path, """
def tick(ctx):
    for i in range(5000):
        ctx.log.info("%d %s" % (i, "x" * 2000))
""", "--ticks", "1", "--json")
    try:
        time.sleep(2)  # the tick is done; its log waits on us
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)  # stderr still unread
        out = p.stdout.read()
    finally:
        p.kill()
        p.communicate()
    assert p.returncode == 143
    assert json.loads(out.strip().splitlines()[-1])["status"] == "signal"


def test_threads_logging_at_once_keep_every_line_once_in_order(tmp_path):
    r = run_script(tmp_path, """
        import sys, threading
        def tick(ctx):
            sys.setswitchinterval(1e-6)
            def run(name):
                for i in range(20000):
                    ctx.log.info(name, i)
            ts = [threading.Thread(target=run, args=("t%d" % k,)) for k in range(4)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
    """, "--policy", NATIVE_POLICY, "--ticks", "3", "--tick-timeout", "%d" % slack(60), "--json",
                   timeout=3 * slack(60) + 30)
    assert r.code == 0, r  # racing batches broke the protocol (ProtocolError) in 1 of 4 runs
    got = logs(r)
    for k in range(4):
        assert [int(x.split()[1]) for x in got if x.startswith("t%d " % k)] == list(range(20000)) * 3
    assert len(got) == 3 * 4 * 20000


def test_a_tick_that_drops_sys_stdout_is_still_a_tick(tmp_path):
    r = run_script(tmp_path, """
        import sys
        def tick(ctx):
            print("before")
            sys.stdout = None
            sys.stderr = None
    """, "--policy", NATIVE_POLICY, "--ticks", "2", "--json")
    assert r.code == 0 and r.json["stats"]["restarts"] == 0, r
    assert logs(r) == ["before"]  # print() to None writes nothing, as in python3


def test_sigterm_during_the_back_off(tmp_path):
    with started(tmp_path, "import os\ndef tick(ctx):\n    os._exit(3)\n", "--policy", NATIVE_POLICY, "--interval",
                 "10ms") as p:
        wait_for(p, "in 1 s (restart 2")
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        out, err = finish(p)
    assert time.monotonic() - t0 < slack(2)
    assert p.returncode == 1  # stopped; ticks had failed


def test_a_jail_that_dies_after_its_tick_still_backs_off(tmp_path):
    """A good tick does not clear a crash loop: jails that die young wait
    longer and longer, whatever their ticks returned (a red-team finding)."""
    t0 = time.monotonic()
    r = run_script(tmp_path, """
        import os, threading, time
        def tick(ctx):
            threading.Thread(target=lambda: (time.sleep(0.005), os._exit(9)), daemon=True).start()
    """, "--policy", NATIVE_POLICY, "--interval", "20ms", "--timeout", "%.1f" % (5 + slack(2)), "--json",
                   timeout=60 + slack(7))
    assert time.monotonic() - t0 < slack(30)
    restarts = r.json["stats"]["restarts"]
    # 0 + 1 + 2 s of back-off fit in 5 s (and 4 s more in a longer run on a
    # slow host); not one per slot
    assert 2 <= restarts <= 5, r.json
    assert any("in 2 s (restart 3, 3 failures in a row)" in n for n in notes(r)), notes(r)


def test_json_mode_keeps_stderr_json(tmp_path):
    (tmp_path / "p.json").write_text('{"limits": {"tick_timeout": 0.2, "tick_grace": 0.3}}')
    r = run_script(tmp_path, STUCK, "--ticks", "3", "--interval", "10ms", "--policy", str(tmp_path / "p.json"),
                   "--json")
    lines = r.err.splitlines()
    assert lines and all(json.loads(x)["type"] in ("log", "note", "output") for x in lines), r.err
    assert any(json.loads(x)["type"] == "note" for x in lines)


NO_EXIT = """
import threading, time
def _forever():
    while True:
        time.sleep(1)
def tick(ctx):
    ctx.log.info("tick")
    if threading.active_count() == 1:
        threading.Thread(target=_forever).start()
"""


@pytest.mark.parametrize("stop", ["ticks", "sigterm"])
def test_a_jail_that_will_not_exit_after_the_stop_is_killed(tmp_path, stop):
    """A thread of the jail's own keeps it alive after shutdown: it is
    killed limits.tick_grace later, and the job keeps the status its ticks
    earned (red team: an --interval job hung until a second SIGTERM)."""
    pol = json.loads(open(NATIVE_POLICY).read())
    pol.setdefault("limits", {})["tick_grace"] = 0.5
    (tmp_path / "pol.json").write_text(json.dumps(pol))
    args = ["--policy", str(tmp_path / "pol.json"), "--interval", "200ms", "--json"]
    t0 = time.monotonic()
    with started(tmp_path, NO_EXIT, *args, *(["--ticks", "2"] if stop == "ticks" else [])) as p:
        if stop == "sigterm":
            wait_for(p, '"tick"')
            p.send_signal(signal.SIGTERM)
        out, err = finish(p, 30)
    assert time.monotonic() - t0 < slack(15), err
    assert p.returncode == 0, (out, err)
    res = json.loads(out.strip().splitlines()[-1])
    assert res["status"] == "ok" and res["stats"]["ticks_failed"] == 0, res
    assert "the jail did not exit within 0.5 s of being asked to stop; it was killed" in err, err
