"""The backtest runner: jailrun --profile strategy --bars FILE. Seed 003's
contract (002 where 003 is silent): on_bar_strategy(sdk, params) per bar,
the per-bar budget, the 5 % rule, the error catalog, read-only candles and
params, JSON returns, a deterministic report."""
import json
import os
import pty
import random
import subprocess
import textwrap
import time

import pytest

from hostprobe import slack
from conftest import JAILRUN, SANITIZERS, run_script


def write_bars(path, n, seed=1, fmt="csv", start=1700000000, step=60):
    rnd = random.Random(seed)
    c = 100.0
    rows = []
    for i in range(n):
        o = c
        c = round(c + rnd.gauss(0, 1), 4)
        rows.append({"time": start + step * i, "open": o, "high": round(max(o, c) + 0.25, 4),
                     "low": round(min(o, c) - 0.25, 4), "close": c, "volume": rnd.randint(1, 1000)})
    with open(path, "w") as f:
        if fmt == "csv":
            f.write("time,open,high,low,close,volume\n")
            for r in rows:
                f.write("%d,%r,%r,%r,%r,%d\n" % (r["time"], r["open"], r["high"], r["low"], r["close"], r["volume"]))
        else:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    return rows


def backtest(tmp_path, source, n=100, *args, bars=None, name="strategy.py", timeout=120):
    """Runs a backtest over n random-walk bars; returns (Result, report or None)."""
    if bars is None:
        bars = tmp_path / "bars.csv"
        if not bars.exists():
            write_bars(bars, n)
    report = tmp_path / "report.json"
    if report.exists():
        report.unlink()
    r = run_script(tmp_path, source, "--profile", "strategy", "--bars", str(bars), "--report", str(report),
                   *args, name=name, timeout=timeout)
    rep = json.loads(report.read_text()) if report.exists() else None
    return r, rep


# --- the seeds' examples ------------------------------------------------------------

SEED_002 = """
def on_bar_strategy(sdk, params):
    closes = np.array([c["close"] for c in sdk.candles])
    vol = np.std(closes[-20:])  # standard deviation of the last 20 closes
    return {"vol": float(vol)}
"""

SEED_003 = """
import tesstrade_indicators as ti
_rsi = ti.Rsi(14) # constructed once at module scope; state survives across bars
def on_bar_strategy(sdk, params):
    _rsi.update(sdk.candles[-1]["close"])
    if _rsi.is_ready() and _rsi.value() < 30:
        sdk.buy(action="buy_to_open", qty=1, order_type="market")
"""

SEED_BUFFER = """
def on_bar_strategy(sdk, params):
    buf = sdk.state.setdefault("buffer", [])
    buf.append(sdk.candles[-1]["close"])
    if len(buf) > 1000:
        del buf[:len(buf) - 1000]  # keep only the last 1000
    seed = int(sdk.candles[-1]["time"]) % 10_000
    pseudo_random = (seed * 1103515245 + 12345) % 2_147_483_648
    return [len(buf), pseudo_random % 7, hash(int(sdk.candles[-1]["time"])) % 5]
"""

SAMPLES = {"seed002": SEED_002, "seed003": SEED_003, "buffer": SEED_BUFFER}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_seed_strategies_run_and_reports_are_byte_identical(tmp_path, name):
    write_bars(tmp_path / "bars.csv", 1200)
    r1, rep1 = backtest(tmp_path, SAMPLES[name])
    first = (tmp_path / "report.json").read_bytes()
    r2, rep2 = backtest(tmp_path, SAMPLES[name])
    assert r1.code == 0 and r2.code == 0, (r1, r2)
    assert (tmp_path / "report.json").read_bytes() == first
    assert rep1["outcome"] == "completed" and rep1["bars"] == rep1["bars_run"] == rep1["bars_ok"] == 1200
    assert rep1["bars_failed"] == 0 and rep1["errors"] == {}
    if name == "seed003":
        assert rep1["orders_count"] > 0
        assert all(s["orders"] == [{"side": "buy", "action": "buy_to_open", "qty": 1, "order_type": "market"}]
                   for s in rep1["signals"])
    if name == "buffer":
        assert rep1["signals"][-1]["return"][0] == 1000  # the cap held
        assert rep1["signals"][10]["return"][0] == 11
    if name == "seed002":
        assert len(rep1["signals"]) == 1200


def test_seed002_values_match_plain_numpy(tmp_path):
    rows = write_bars(tmp_path / "bars.csv", 300)
    r, rep = backtest(tmp_path, SEED_002)
    assert r.code == 0, r
    import numpy as np
    closes = [b["close"] for b in rows]
    for s in rep["signals"]:
        i = s["bar"]
        window = closes[max(0, i + 1 - 500):i + 1]
        assert abs(s["return"]["vol"] - float(np.std(np.array(window)[-20:]))) < 1e-12


def test_jsonl_bars_give_the_same_report(tmp_path):
    write_bars(tmp_path / "bars.csv", 200, seed=7)
    write_bars(tmp_path / "bars.jsonl", 200, seed=7, fmt="jsonl")
    r1, _ = backtest(tmp_path, SEED_002, bars=tmp_path / "bars.csv")
    a = (tmp_path / "report.json").read_bytes()
    r2, _ = backtest(tmp_path, SEED_002, bars=tmp_path / "bars.jsonl")
    assert r1.code == r2.code == 0, (r1, r2)
    assert (tmp_path / "report.json").read_bytes() == a


# --- what a strategy sees -----------------------------------------------------------

def test_candles_window_state_and_params(tmp_path):
    (tmp_path / "p.json").write_text('{"period": 3, "nested": {"k": [1, 2]}}')
    r, rep = backtest(tmp_path, """
        def on_bar_strategy(sdk, params):
            sdk.state["n"] = sdk.state.get("n", 0) + 1
            seen = [params["period"], len(params["nested"]["k"])]
            params["period"] = 99            # ignored: a fresh copy each bar
            params["nested"]["k"].append(5)  # ignored too
            c = sdk.candles[-1]
            return {"n": sdk.state["n"], "len": len(sdk.candles), "first": sdk.candles[0]["time"],
                    "keys": list(c.keys()), "seen": seen}
    """, 700, "--params", str(tmp_path / "p.json"))
    assert r.code == 0, r
    sig = rep["signals"]
    assert [s["return"]["n"] for s in sig] == list(range(1, 701))
    assert all(s["return"]["seen"] == [3, 2] for s in sig)
    assert [s["return"]["len"] for s in sig] == [min(i + 1, 500) for i in range(700)]
    assert sig[699]["return"]["first"] == 1700000000 + 60 * 200
    assert sig[0]["return"]["keys"] == ["time", "open", "high", "low", "close", "volume"]


def test_window_from_the_policy(tmp_path):
    (tmp_path / "pol.json").write_text('{"backtest": {"window": 10}}')
    r, rep = backtest(tmp_path, """
        def on_bar_strategy(sdk, params):
            return len(sdk.candles)
    """, 30, "--policy", str(tmp_path / "pol.json"))
    assert r.code == 0, r
    assert [s["return"] for s in rep["signals"]] == [min(i + 1, 10) for i in range(30)]


def test_candles_are_read_only(tmp_path):
    r, rep = backtest(tmp_path, """
        def on_bar_strategy(sdk, params):
            i = len(sdk.candles) - 1
            if i == 1:
                sdk.candles.append({"close": 1})
            if i == 2:
                sdk.candles[-1]["close"] = 0.0
            if i == 3:
                sdk.candles[0] = None
            if i == 4:
                sdk.candles.sort()
            if i == 5:
                sdk.candles[-1].update({"close": 1})
            c = dict(sdk.candles[-1])   # a copy may be changed
            c["close"] = 1.0
            return sdk.candles[-1]["close"] != 1.0
    """, 100)
    assert r.code == 0, r
    e = rep["errors"]["RuntimeError"]
    assert e["count"] == 5
    assert e["first"]["bar"] == 1 and e["first"]["line"] == 5
    assert e["first"]["message"] == "TypeError: sdk.candles is read-only; copy it with list(sdk.candles) to change it"
    assert all(s["return"] is True for s in rep["signals"])


@pytest.mark.parametrize("change", ['dict.pop(sdk.candles[-1], "time")', 'dict.update(sdk.candles[-1], time=nan)',
                                    'dict.update(sdk.candles[-1], time="x")', "dict.clear(sdk.candles[-1])"])
def test_a_changed_time_of_the_failing_bar_keeps_the_report(tmp_path, change):
    """The bar whose own candle lost or spoiled its time still gets a clean
    ProtocolError and the report keeps the bars before it (red team)."""
    r, rep = backtest(tmp_path, """
        nan = float("nan")
        def on_bar_strategy(sdk, params):
            if len(sdk.candles) == 3:
                %s
            return 1
    """ % change, 10, "--json")
    assert r.code == 1 and r.json["error"]["type"] == "ProtocolError", r
    assert "Traceback" not in r.err, r
    assert rep["bars_run"] == 3 and [s["bar"] for s in rep["signals"]] == [0, 1], rep
    assert rep["errors"]["ProtocolError"]["first"]["time"] == 1700000000 + 60 * 2, rep


@pytest.mark.parametrize("write, which", [
    ('c.setdefault("x", 1)', "candle"), ('c.pop("close")', "candle"), ("c.popitem()", "candle"),
    ("c.clear()", "candle"), ('c |= {"close": 1}', "candle"), ('del c["close"]', "candle"),
    ('type(c).fromkeys("ab")', "candle"),
    ("sdk.candles += [c]", "list"), ("sdk.candles *= 2", "list"), ("del sdk.candles[0]", "list"),
    ("sdk.candles[0:1] = []", "list"), ("sdk.candles.insert(0, c)", "list"), ("sdk.candles.extend([c])", "list"),
    ("sdk.candles.reverse()", "list"), ("sdk.candles.pop()", "list"), ("sdk.candles.remove(c)", "list"),
    ("sdk.candles.clear()", "list"),
])
def test_every_mutator_of_the_candles_refuses(tmp_path, write, which):
    r, rep = backtest(tmp_path, """
        def on_bar_strategy(sdk, params):
            c = sdk.candles[-1]
            if len(sdk.candles) == 3:
                %s
            return [len(sdk.candles), c["close"], isinstance(c, dict), isinstance(sdk.candles, list)]
    """ % write, 20, "--json")
    assert r.code == 0, r
    e = rep["errors"]["RuntimeError"]
    hint = "copy a candle with dict(candle)" if which == "candle" else "copy it with list(sdk.candles)"
    assert e["count"] == 1 and e["first"]["bar"] == 2 and e["first"]["line"] == 5, rep
    assert e["first"]["message"] == "TypeError: sdk.candles is read-only; %s to change it" % hint, rep
    sig = {s["bar"]: s["return"] for s in rep["signals"]}
    assert sig[1][:1] == [2] and sig[3][:1] == [4] and sig[3][2:] == [True, True], rep


def test_copies_of_the_candles_are_plain_and_may_change(tmp_path):
    r, rep = backtest(tmp_path, """
        def on_bar_strategy(sdk, params):
            c = sdk.candles[-1]
            mine = [dict(c), c.copy(), c | {"extra": 1}, {**c}]
            for d in mine:
                d["close"] = -1.0
            window = list(sdk.candles)
            window.append(None)
            tail = sdk.candles[-2:]
            tail.append(None)
            return [type(d).__name__ for d in mine] + [len(window) - len(sdk.candles), c["close"] != -1.0,
                                                       type(tail).__name__]
    """, 10, "--json")
    assert r.code == 0 and rep["bars_failed"] == 0, (r, rep)
    assert all(s["return"] == ["dict"] * 4 + [1, True, "list"] for s in rep["signals"]), rep


@pytest.mark.parametrize("change", [
    'dict.update(sdk.candles[-3], {"close": 0.0})',
    'dict.update(sdk.candles[-3], close=1e9)',
    'dict.update(sdk.candles[-3], {"close": sdk.candles[-3]["close"]})',   # the same object: nothing changes
    'dict.setdefault(sdk.candles[-3], "extra", 1)',
    'dict.pop(sdk.candles[-3], "volume")',
    'dict.popitem(sdk.candles[-3])',
    'dict.clear(sdk.candles[-3])',
    'dict.update(sdk.candles[-3], {})',                                   # a no-op: not a change
])
def test_a_candle_changed_past_its_type_stops_the_run(tmp_path, change):
    """dict's own methods called on a read-only candle get past its type;
    the change is found after the bar, which fails and stops the run as a
    ProtocolError, so no later bar sees it."""
    r, rep = backtest(tmp_path, """
        def on_bar_strategy(sdk, params):
            if len(sdk.candles) == 31:
                %s
            return sdk.candles[0]["close"]
    """ % change, 100, "--json")
    if change.endswith("update(sdk.candles[-3], {})") or "sdk.candles[-3][" in change:
        assert r.code == 0 and rep["bars_failed"] == 0, r
        return
    assert r.code == 1, r
    assert r.json["error"]["type"] == "ProtocolError", r
    msg = ("bar 30: the strategy changed sdk.candles[-3] (the candle of bar 28), which is read-only:"
           " copy a candle with dict(candle) to change it; the run stops here")
    assert r.json["error"]["message"] == msg, r
    assert rep["bars_run"] == 31 and rep["bars_failed"] == 1 and rep["outcome"] == "error", rep
    assert rep["errors"]["ProtocolError"]["first"] == {"bar": 30, "time": 1700000000 + 60 * 30,
                                                       "message": msg, "line": None}, rep
    assert len(rep["signals"]) == 30 and len({s["return"] for s in rep["signals"]}) == 1, rep


# --- the error catalog --------------------------------------------------------------

CATALOG = """
def on_bar_strategy(sdk, params):
    i = len(sdk.candles) - 1
    if i == 10:
        open("/etc/passwd")                       # SecurityError: a blocked builtin
    if i == 20:
        sdk.buy(qty=1)                            # ProtocolError: no action
    if i == 30:
        return {1, 2}                             # ProtocolError: not JSON
    if i == 40:
        return [1.0, float("nan")]                # ProtocolError: NaN
    if i == 50:
        return sdk.candles[1000]                  # RuntimeError: IndexError
    if i == 60:
        x = "y" * (200 << 20)                     # MemoryError: over the strategy's cap
    if i == 70:
        for k in range(10 ** 10):                 # TimeoutError: over the budget
            pass
    if i == 80:
        sdk.sell(action="buy_to_open", qty=1)     # ProtocolError: not a sell action
    if i == 90:
        sdk.buy(action="buy_to_open", qty=1, order_type="limit", price=99.5)
"""


def test_every_category_with_bar_and_line(tmp_path):
    r, rep = backtest(tmp_path, CATALOG, 200, "--bar-timeout", "200ms")
    assert r.code == 0, r  # 8 of 200 bars failed: within 5 %
    assert rep["outcome"] == "completed" and rep["bars_failed"] == 8
    errs = rep["errors"]
    assert set(errs) == {"SecurityError", "ProtocolError", "RuntimeError", "MemoryError", "TimeoutError"}
    assert errs["SecurityError"]["first"]["bar"] == 10 and errs["SecurityError"]["first"]["line"] == 5
    assert "open" in errs["SecurityError"]["first"]["message"]
    assert errs["ProtocolError"]["count"] == 4
    assert errs["ProtocolError"]["first"]["bar"] == 20 and errs["ProtocolError"]["first"]["line"] == 7
    assert errs["ProtocolError"]["first"]["message"].startswith("sdk.buy() needs action=")
    assert errs["RuntimeError"]["first"]["bar"] == 50 and errs["RuntimeError"]["first"]["line"] == 13
    assert errs["RuntimeError"]["first"]["message"] == "IndexError: list index out of range"
    assert errs["MemoryError"]["first"]["bar"] == 60 and errs["MemoryError"]["first"]["line"] == 15
    assert errs["TimeoutError"]["first"]["bar"] == 70
    assert errs["TimeoutError"]["first"]["message"] == "bar 70 exceeded its time budget of 200 ms"
    assert rep["failures"] == {"SecurityError": 1, "TimeoutError": 1, "MemoryError": 1, "ProtocolError": 4,
                               "RuntimeError": 1}
    sig = [s for s in rep["signals"] if s["bar"] == 90]
    assert sig[0]["orders"] == [{"side": "buy", "action": "buy_to_open", "qty": 1, "order_type": "limit",
                                 "price": 99.5}]
    # the errors of bars 30 and 40 name the bar
    r2, rep2 = backtest(tmp_path, """
        def on_bar_strategy(sdk, params):
            return {1, 2}
    """, 3)
    assert rep2["errors"]["ProtocolError"]["first"]["message"].startswith(
        "bar 0: the return value is not JSON (dict, list, str, int, float, bool or None; no sets, objects or NaN)")


def test_a_caught_timeout_still_fails_the_bar_and_the_run_goes_on(tmp_path):
    r, rep = backtest(tmp_path, """
        def on_bar_strategy(sdk, params):
            if len(sdk.candles) == 3:
                for attempt in range(3):
                    try:
                        for k in range(10 ** 10):
                            pass
                    except Exception:
                        pass                  # swallowed: the bar still failed
            return len(sdk.candles)
    """, 40, "--bar-timeout", "100ms")
    assert r.code == 0, r
    assert rep["bars_failed"] == 1 and rep["errors"]["TimeoutError"]["first"]["bar"] == 2
    assert [s["bar"] for s in rep["signals"]] == [i for i in range(40) if i != 2]


def test_hard_stage_kills_a_bar_stuck_in_native_code(tmp_path):
    """sum() over a range runs in C and never returns to the interpreter's
    loop, where the bar's TimeoutError would be raised: the supervisor
    kills the jail after the budget and the grace."""
    (tmp_path / "pol.json").write_text('{"backtest": {"grace": 0.5}}')
    t0 = time.monotonic()
    r, rep = backtest(tmp_path, """
        def on_bar_strategy(sdk, params):
            if len(sdk.candles) == 5:
                sum(range(10 ** 13))
            return 1
    """, 50, "--bar-timeout", "100ms", "--policy", str(tmp_path / "pol.json"), "--json")
    took = time.monotonic() - t0
    assert r.code == 124, r
    assert r.json["status"] == "timeout"
    assert r.json["error"]["message"].startswith("bar 4 did not return within its budget of 0.1 s and 0.5 s of grace")
    assert rep["outcome"] == "timeout" and rep["bars_run"] <= 4  # what was reported before it stuck
    assert took < slack(20)


# --- the 5 % rule -------------------------------------------------------------------

FAIL_AT = """
FAIL = set(params["fail"])
def on_bar_strategy(sdk, params):
    if len(sdk.candles) - 1 in FAIL:
        raise ValueError("bad bar")
    return 1
"""


@pytest.mark.parametrize("n,fails,aborted", [(100, 4, False), (100, 5, False), (100, 6, True), (50, 5, True),
                                             (50, 4, False)])
def test_five_percent_rule(tmp_path, n, fails, aborted):
    fail = [3 + 7 * k for k in range(fails)]
    (tmp_path / "p.json").write_text(json.dumps({"fail": fail}))
    src = FAIL_AT.replace('set(params["fail"])', repr(set(fail)))
    r, rep = backtest(tmp_path, src, n, "--params", str(tmp_path / "p.json"), "--json")
    assert rep["errors"]["RuntimeError"]["first"] == {"bar": 3, "time": 1700000000 + 180,
                                                      "message": "ValueError: bad bar", "line": 5}
    if aborted:
        assert r.code == 1, r
        assert r.json["error"]["type"] == "BacktestAborted"
        assert rep["outcome"] == "aborted"
        assert rep["bars_run"] == fail[-1] + 1  # it stopped at the failure that crossed the line
        assert rep["bars_failed"] == fails
        assert r.json["error"]["message"].startswith("%d of %d bars failed by bar %d" % (fails, n, fail[-1]))
    else:
        assert r.code == 0, r
        assert rep["outcome"] == "completed" and rep["bars_run"] == n and rep["bars_failed"] == fails


# --- the command line and bad input -------------------------------------------------

def test_json_result_has_the_backtest_figures(tmp_path):
    r, rep = backtest(tmp_path, SEED_003, 300, "--json")
    assert r.code == 0, r
    b = r.json["backtest"]
    assert b["outcome"] == "completed" and b["bars"] == b["bars_run"] == 300
    assert b["orders"] == rep["orders_count"] and b["signals"] == rep["signals_count"]
    assert 0 <= b["bar_us"]["p50"] <= b["bar_us"]["p99"] <= b["bar_us"]["max"] and b["bar_us"]["max"] > 0


def test_report_to_stdout(tmp_path):
    write_bars(tmp_path / "bars.csv", 5)
    r = run_script(tmp_path, "def on_bar_strategy(sdk, params):\n    return 1\n", "--profile", "strategy",
                   "--bars", str(tmp_path / "bars.csv"), "--report", "-")
    assert r.code == 0, r
    assert json.loads(r.out)["signals_count"] == 5


BAD_BARS = [
    ("empty.csv", "", "no bars"),
    ("header.csv", "time,open,high,low,close\n1,1,1,1,1\n", "header.csv:1: the header has no column volume"),
    ("word.csv", "time,open,high,low,close,volume\n1,1,1,x,1,1\n", "word.csv:2: low 'x' is not a number"),
    ("order.csv", "time,open,high,low,close,volume\n60,1,1,1,1,1\n60,1,1,1,1,1\n",
     "order.csv:3: time 60 is not after the previous bar's 60"),
    ("inf.csv", "time,open,high,low,close,volume\n1,1,1,1,inf,1\n", "inf.csv:2: close 'inf' is not a finite number"),
    ("short.csv", "time,open,high,low,close,volume\n1,1,1\n", "short.csv:2: 3 fields where the header has 6"),
    ("frac.csv", "time,open,high,low,close,volume\n1.5,1,1,1,1,1\n", "frac.csv:2: time 1.5 is not a whole number"),
    ("bin.csv", b"time,open\xff\n", "bin.csv: not UTF-8 text"),
    ("bad.jsonl", '{"time": 1, "open": 1, "high": 1, "low": 1, "close": 1, "volume": 1}\n{oops\n',
     "bad.jsonl:2: not JSON"),
    ("miss.jsonl", '{"time": 1, "open": 1, "high": 1, "low": 1, "close": 1}\n', "miss.jsonl:1: the bar has no volume"),
    ("str.jsonl", '{"time": 1, "open": "1", "high": 1, "low": 1, "close": 1, "volume": true}\n',
     "str.jsonl:1: volume is bool, not a number"),
]


@pytest.mark.parametrize("name,content,message", BAD_BARS, ids=[b[0] for b in BAD_BARS])
def test_bad_bars_files(tmp_path, name, content, message):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    r = run_script(tmp_path, "def on_bar_strategy(sdk, params):\n    return 1\n", "--profile", "strategy",
                   "--bars", str(p), "--json")
    assert r.code == 2, r
    assert r.json["error"]["type"] == "BarsError"
    assert message in r.json["error"]["message"], r.json


@pytest.mark.parametrize("args,message", [
    (["--bars", "/nonexistent/bars.csv"], "--bars /nonexistent/bars.csv: No such file or directory"),
    (["--bars", "/tmp"], "not a regular file"),
    (["--bars", "B", "--profile", "worker"], "profile strategy"),
    (["--params", "P"], "need --bars"),
    (["--bars", "B", "--check"], "without --check"),
    (["--bars", "B", "--bar-timeout", "0"], "--bar-timeout wants a duration"),
    (["--bars", "B", "--bar-timeout", "5 parsecs"], "--bar-timeout wants a duration"),
    (["--bars", "B", "--params", "BADP"], "--params"),
    (["--bars", "B", "--params", "LISTP"], "the params must be a JSON object"),
])
def test_usage_errors(tmp_path, args, message):
    write_bars(tmp_path / "B", 3)
    (tmp_path / "BADP").write_text('{"a": 1, "a": 2}')
    (tmp_path / "LISTP").write_text('[1]')
    args = [str(tmp_path / a) if a in ("B", "BADP", "LISTP", "P") else a for a in args]
    if "--profile" not in args:
        args = ["--profile", "strategy"] + args
    src = tmp_path / "s.py"
    src.write_text("def on_bar_strategy(sdk, params):\n    return 1\n")
    r = subprocess.run([JAILRUN, *args, str(src)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r
    assert message in r.stderr, r.stderr


def test_strategy_without_entry_point(tmp_path):
    r, rep = backtest(tmp_path, "x = 1\n", 3, "--json")
    assert r.code == 1 and rep is None
    assert "defines no on_bar_strategy(sdk, params)" in r.json["error"]["message"]


def test_progress_line_on_a_terminal(tmp_path):
    write_bars(tmp_path / "bars.csv", 3000)
    src = tmp_path / "s.py"
    src.write_text(textwrap.dedent("""
        def on_bar_strategy(sdk, params):
            x = 0
            for k in range(3000):
                x += k
            return None
    """))
    master, slave = pty.openpty()
    p = subprocess.Popen([JAILRUN, "--profile", "strategy", "--bars", str(tmp_path / "bars.csv"), str(src)],
                         stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    p.wait(timeout=60)
    os.close(master)
    assert p.returncode == 0
    text = out.decode()
    assert "/3000 bars, " in text and " bars/s" in text, text
    assert "backtest completed: 3000 bars" in text


@pytest.mark.parametrize("policy,message", [
    ('{"backtest": {"bar_timeout": 0}}', "backtest.bar_timeout"),
    ('{"backtest": {"window": -1}}', "backtest.window"),
    ('{"backtest": {"abort_percent": 101}}', "backtest.abort_percent"),
    ('{"backtest": {"memory": "64M"}}', "backtest.memory"),
    ('{"backtest": {"speed": 1}}', "$.backtest: unknown key 'speed'"),
    ('{"backtest": {"candles": "read-only"}}', "$.backtest: unknown key 'candles'"),
])
def test_bad_backtest_policy(tmp_path, policy, message):
    write_bars(tmp_path / "B", 3)
    (tmp_path / "pol.json").write_text(policy)
    src = tmp_path / "s.py"
    src.write_text("def on_bar_strategy(sdk, params):\n    return 1\n")
    r = subprocess.run([JAILRUN, "--profile", "strategy", "--policy", str(tmp_path / "pol.json"), "--bars",
                        str(tmp_path / "B"), str(src)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r
    assert message in r.stderr, r.stderr


def test_fixed_hash_seed_keeps_set_order(tmp_path):
    """str hashes are the same from run to run, so is a set's order."""
    src = """
        def on_bar_strategy(sdk, params):
            words = {"w%d" % k for k in range(40)}
            return [list(words)[:10], hash("abc")]
    """
    r1, rep1 = backtest(tmp_path, src, 3)
    r2, rep2 = backtest(tmp_path, src, 3)
    assert r1.code == r2.code == 0, (r1, r2)
    assert rep1["signals"] == rep2["signals"]


def test_injected_modules_are_loaded_before_the_first_bar(tmp_path):
    """Importing pandas takes longer than this budget: it must not be the
    first bar's cost (nor count against the strategy's memory)."""
    r, rep = backtest(tmp_path, """
        def on_bar_strategy(sdk, params):
            return float(pd.Series([c["close"] for c in sdk.candles]).mean())
    """, 20, "--bar-timeout", "150ms")
    assert r.code == 0, r
    assert rep["bars_failed"] == 0 and rep["signals_count"] == 20


# --- after the red team ---------------------------------------------------------------

HOSTILE = '{"python": {"guard": false}, "validator": {"enabled": false}}'


def test_hostile_message_text_reaches_the_terminal_escaped(tmp_path):
    """jansson's reason for a malformed message names the jail's own keys:
    printed, they must not carry escapes or forged lines."""
    (tmp_path / "h.json").write_text(HOSTILE)
    r, rep = backtest(tmp_path, r'''
import socket
s = socket.socket(fileno=3)
s.send(b'{"type":"ready","bars":5,"\\u001b[1A\\r\\u001b[2Kjailrun: all good\\njailrun: forged\\u001b[8m":1}')
def on_bar_strategy(sdk, params):
    return 1
''', 5, "--policy", str(tmp_path / "h.json"))
    assert r.code == 1, r
    assert "\x1b" not in r.err and "\r" not in r.err, repr(r.err)
    assert not any(line.startswith("jailrun: forged") for line in r.err.splitlines()), r.err


def test_long_non_ascii_error_message_fails_one_bar(tmp_path):
    r, rep = backtest(tmp_path, '''
        def on_bar_strategy(sdk, params):
            if len(sdk.candles) == 3:
                raise ValueError("\\u20ac" * 2000)
            return 1
    ''', 20)
    assert r.code == 0, r
    assert rep["bars_failed"] == 1 and rep["errors"]["RuntimeError"]["first"]["bar"] == 2
    assert rep["errors"]["RuntimeError"]["first"]["message"] == "ValueError: " + "\u20ac" * 2000


def test_fifos_are_refused_not_waited_on(tmp_path):
    src = tmp_path / "s.py"
    src.write_text("def on_bar_strategy(sdk, params):\n    return 1\n")
    write_bars(tmp_path / "b.csv", 3)
    os.mkfifo(tmp_path / "fifo")
    for args in (["--bars", str(tmp_path / "fifo"), str(src)],
                 ["--bars", str(tmp_path / "b.csv"), "--params", str(tmp_path / "fifo"), str(src)],
                 [str(tmp_path / "fifo")]):
        p = subprocess.run([JAILRUN, "--profile", "strategy", *args], capture_output=True, text=True, timeout=30)
        assert p.returncode == 2, (args, p)
        assert "regular file" in p.stderr, p.stderr


def test_data_files_that_are_symbolic_links_are_refused(tmp_path):
    """jailrun reads --bars and --params as root: a link planted where the
    file should be would hand the jail, and its parse errors, a file the
    user could not read (red team: a root-only file's first line came back
    in a BarsError)."""
    src = tmp_path / "s.py"
    src.write_text("def on_bar_strategy(sdk, params):\n    return 1\n")
    write_bars(tmp_path / "b.csv", 3)
    secret = tmp_path / "secret"
    secret.write_text("SECRETHASH\n")
    secret.chmod(0o600)
    os.symlink(secret, tmp_path / "link.csv")
    os.symlink(secret, tmp_path / "link.json")
    for args, what in ((["--bars", str(tmp_path / "link.csv")], "--bars"),
                       (["--bars", str(tmp_path / "b.csv"), "--params", str(tmp_path / "link.json")], "--params")):
        p = subprocess.run([JAILRUN, "--profile", "strategy", *args, str(src)], capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 2, (args, p)
        assert "%s %s: a symbolic link; data files are read as root and no link is followed" % (
            what, args[-1]) in p.stderr, p.stderr
        assert "SECRET" not in p.stderr + p.stdout, p


@pytest.mark.parametrize("name,content,message", [
    ("bigfield.csv", 'time,open,high,low,close,volume\n1,"%s",1,1,1,1\n' % ("9" * 200000),
     "bigfield.csv:2: field larger than field limit"),
    ("bigtime.csv", "time,open,high,low,close,volume\n%d,1,1,1,1,1\n" % (2 ** 70),
     "bigtime.csv:2: time %d is out of range" % (2 ** 70)),
], ids=["bigfield", "bigtime"])
def test_more_bad_bars_files(tmp_path, name, content, message):
    p = tmp_path / name
    p.write_text(content)
    r = run_script(tmp_path, "def on_bar_strategy(sdk, params):\n    return 1\n", "--profile", "strategy",
                   "--bars", str(p), "--json")
    assert r.code == 2, r
    assert r.json["error"]["type"] == "BarsError" and message in r.json["error"]["message"], r.json


def test_deep_params_are_refused(tmp_path):
    write_bars(tmp_path / "b.csv", 3)
    (tmp_path / "p.json").write_text('{"a":' + "[" * 1500 + "]" * 1500 + "}")
    src = tmp_path / "s.py"
    src.write_text("def on_bar_strategy(sdk, params):\n    return 1\n")
    p = subprocess.run([JAILRUN, "--profile", "strategy", "--bars", str(tmp_path / "b.csv"), "--params",
                        str(tmp_path / "p.json"), str(src)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "nest deeper than 32 levels" in p.stderr, p


def test_the_runtime_bars_refuse_what_they_could_not_read_safely(tmp_path):
    """The bars' methods check every argument (profile exec, where _jailrun
    is open to any code): ranges outside the bars, windows that go back,
    appends while candles are out, and a candle kept past its window."""
    r = run_script(tmp_path, """
        import _jailrun
        b = _jailrun.Bars()
        for i in range(5):
            b.append(60 * i, 1.0, 2.0, 0.5, 1.5 + i, 10)
        for call in (lambda: b.window(0, 6), lambda: b.window(-1, 2), lambda: b.window(3, 2),
                     lambda: b.changed(0, 6), lambda: b.time(5), lambda: b.time(-1), lambda: b.window(0),
                     lambda: b.append(1, 2), lambda: _jailrun.Bars(1), lambda: _jailrun.Bars.read(-1),
                     lambda: (b.window(0, 2), b.append(300, 1, 1, 1, 1, 1))):
            try:
                call()
                print("accepted")
            except (TypeError, ValueError, IndexError) as e:
                print(type(e).__name__, e)
        w = b.window(1, 3)
        print(len(b), len(w), [c["close"] for c in w], b.time(4), b.changed(0, 5))
        kept = w[0]
        w2 = b.window(2, 5)     # bar 1 left the window: its candle is dropped, not reused
        dict.update(kept, close=0.0)
        print(b.changed(0, 5), w2[0] is w[1])
        dict.update(w2[0], close=0.0)
        print(b.changed(0, 5), b.changed(3, 5))
        print(b.window(0, 2)[1] is kept, b.changed(0, 5))  # a window back: candles made afresh
    """, "--profile", "exec")
    assert r.code == 0, r
    assert r.out.splitlines() == [
        "IndexError bars 0..6 are not within 0..5",
        "IndexError bars -1..2 are not within 0..5",
        "IndexError bars 3..2 are not within 0..5",
        "IndexError bars 0..6 are not within 0..5",
        "IndexError bar 5 is not in 0..4",
        "IndexError bar -1 is not in 0..4",
        "TypeError takes (lo, hi)",
        "TypeError append(time, open, high, low, close, volume)",
        "TypeError Bars() takes no arguments",
        "ValueError read(fd): not a descriptor",
        "ValueError append: the bars are in use",
        "5 2 [2.5, 3.5] 240 -1",
        "-1 True",
        "2 -1",
        "False -1"], r


def test_the_fast_and_the_full_reader_give_the_same_report(tmp_path):
    """The C reader takes plain CSV and JSON lines; a file it declines
    (quoted fields, non-ASCII, numbers Python reads and it does not) goes
    to the reader in Python: same bars, same report."""
    rows = write_bars(tmp_path / "plain.csv", 300, seed=3)
    with open(tmp_path / "quoted.csv", "w") as f:
        f.write('"time","open","high","low","close","volume"\r\n')
        for r in rows:
            f.write('"%d","%r","%r","%r","%r","%d"\r\n' % (r["time"], r["open"], r["high"], r["low"], r["close"],
                                                         r["volume"]))
    with open(tmp_path / "odd.csv", "w") as f:   # extra columns, case, spaces, exponents, a float time
        f.write("\ufeffVolume, Close ,x,low,HIGH,open,time\n\n")
        for r in rows:
            f.write("%d , %s,\u00e9,%r,%r, %r ,%d.0\n" % (r["volume"], "%.6e" % r["close"], r["low"], r["high"],
                                                      r["open"], r["time"]))
    with open(tmp_path / "odd.jsonl", "w") as f:
        for r in rows:
            # not ASCII: left to the full reader (test_what_the_fast_reader_takes)
            f.write(json.dumps(dict(r, note="\u00e9", time=float(r["time"])), ensure_ascii=False) + "\n\n")
    src = """
        def on_bar_strategy(sdk, params):
            c = sdk.candles[-1]
            return [c["time"], c["open"], c["high"], c["low"], c["close"], c["volume"], type(c["time"]).__name__]
    """
    reports = {}
    for name in ("plain.csv", "quoted.csv", "odd.jsonl"):
        r, _ = backtest(tmp_path, src, bars=tmp_path / name)
        assert r.code == 0, (name, r)
        reports[name] = (tmp_path / "report.json").read_bytes()
    assert reports["quoted.csv"] == reports["plain.csv"]
    assert reports["odd.jsonl"] == reports["plain.csv"]
    r, rep = backtest(tmp_path, src, bars=tmp_path / "odd.csv")
    assert r.code == 0, r
    assert [s["return"][4] for s in rep["signals"]] == [float("%.6e" % x["close"]) for x in rows]
    assert all(s["return"][6] == "int" for s in rep["signals"])


def test_what_the_fast_reader_takes(tmp_path):
    """Which files the C reader takes (None: left to the full reader), so
    the test above compares two readers, not one with itself."""
    r = run_script(tmp_path, r"""
        import os, _jailrun
        cases = {"plain": "time,open,high,low,close,volume\n1,1,1,1,1,1\r\n2,1,1,1,1.5e3,1\n",
                 "dups": "time,Time,open,high,low,close,volume\n1,2,1,1,1,1,1\n",
                 "jsonl": '{"time": 1, "open": 1, "high": 1, "low": 1, "close": 1.5, "volume": 1, "x": "y"}\n',
                 "jsonl_nested": '{"time": 1, "open": 1, "high": 1, "low": 1, "close": 1.5, "volume": 1, "x": [{}]}\n',
                 "jsonl_utf8": '{"time": 1, "open": 1, "high": 1, "low": 1, "close": 1.5, "volume": 1, "x": "\u00e9"}\n',
                 "quoted": 'time,open,high,low,close,volume\n"1",1,1,1,1,1\n',
                 "under": "time,open,high,low,close,volume\n1,1,1,1,1_0,1\n",
                 "cr": "time,open,high,low,close,volume\r1,1,1,1,1,1\n",
                 "jsonl_str": '{"time": "1", "open": 1, "high": 1, "low": 1, "close": 1, "volume": 1}\n',
                 "order": "time,open,high,low,close,volume\n2,1,1,1,1,1\n1,1,1,1,1,1\n",
                 "big": "time,open,high,low,close,volume\n9223372036854775808,1,1,1,1,1\n"}
        for k, v in cases.items():
            with open(k, "w") as f:
                f.write(v)
            b = _jailrun.Bars.read(os.open(k, os.O_RDONLY))
            print(k, None if b is None else [(b.time(i), b.window(i, i + 1)[0]["close"]) for i in range(len(b))])
    """, "--profile", "exec")
    assert r.code == 0, r
    assert r.out.splitlines() == ["plain [(1, 1.0), (2, 1500.0)]", "dups [(2, 1.0)]", "jsonl [(1, 1.5)]",
                                  "jsonl_nested None", "jsonl_utf8 None", "quoted None", "under None", "cr None", "jsonl_str None", "order None",
                                  "big None"], r


def test_a_jail_cannot_claim_more_bars_than_the_file_has_lines(tmp_path):
    """The bar count the jail reports bounds what the supervisor keeps per
    bar; it may not exceed the bars file's lines (red team: 10^8 bars
    claimed for a 2-bar file cost the supervisor ~1 GB). The Python layer
    is off, standing for a jail whose runtime has fallen."""
    (tmp_path / "noguard.json").write_text('{"python": {"guard": false}}')
    r, rep = backtest(tmp_path, """
        import json, socket
        s = socket.socket(fileno=3)
        s.send(json.dumps({"type": "ready", "bars": 100000000}).encode())
        import time
        time.sleep(30)
        def on_bar_strategy(sdk, params):
            pass
    """, 2, "--policy", str(tmp_path / "noguard.json"), "--json", "--timeout", "20")
    assert r.code == 1, r
    j = r.json
    assert j["error"]["type"] == "ProtocolError", j
    assert j["error"]["message"] == "the jail claims 100000000 bars; the bars file has 3 lines", j
    assert j["stats"]["wall_ms"] < slack(15) * 1000, j


@pytest.mark.parametrize("field", ["side", "action", "order_type", "type"])
def test_a_nul_in_an_order_or_error_type_is_refused(tmp_path, field):
    """An order's side, action and type and an error's type are compared as
    C strings: "buy\\u0000 DROP" read as "buy" and went into the report
    whole (red team). A batch holding one is refused. The Python layer is
    off, standing for a jail whose runtime has fallen."""
    (tmp_path / "noguard.json").write_text('{"python": {"guard": false}}')
    order = {"side": "buy", "action": "buy_to_open", "qty": 1, "order_type": "market"}
    error = {"bar": 1, "time": 2, "type": "RuntimeError", "message": "m", "line": None}
    (order if field != "type" else error)[field] += "\u0000x"
    batch = {"type": "bars", "first": 0, "us": [1, 2], "signals": [{"bar": 0, "time": 1, "orders": [order]}],
             "errors": [error]}
    r, rep = backtest(tmp_path, """
        import json, os, socket
        s = socket.socket(fileno=3)
        s.send(json.dumps({"type": "ready", "bars": 2}).encode())
        m = json.loads(s.recv(1 << 20))
        s.send(json.dumps(BATCH).encode())
        s.send(json.dumps({"type": "result", "id": m["id"], "ok": True}).encode())
        os._exit(0)
        def on_bar_strategy(sdk, params):
            pass
    """.replace("BATCH", repr(batch)), 2, "--policy", str(tmp_path / "noguard.json"), "--json", "--timeout", "20")
    assert r.code == 1, r
    assert r.json["error"]["type"] == "ProtocolError", r.json
    assert r.json["error"]["message"].startswith("backtest batch: "), r.json
    assert "\\u0000" not in json.dumps(rep), rep


# --- millions of bars (issue 14) ---------------------------------------------------------

def write_many_bars(path, n):
    """n bars of CSV, fast: a time step of 60 s, a price that wanders."""
    with open(path, "w") as f:
        f.write("time,open,high,low,close,volume\n")
        for k in range(0, n, 100000):
            f.write("".join("%d,%d.5,%d.75,%d.25,%d.5,%d\n" % (1700000000 + 60 * i, 100 + i % 97, 101 + i % 97,
                                                              99 + i % 97, 100 + i % 89, 1 + i % 1000)
                            for i in range(k, min(n, k + 100000))))


def vm_hwm(pid):
    """The process's peak resident memory so far, bytes (0 once it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


SUPERVISOR_RSS_BOUND = 64 << 20


def test_a_million_bars_with_a_return_each_keep_jailrun_small(tmp_path):
    """1 000 000 bars, a dict returned every bar, the report written: the
    run fits the strategy profile's default memory limit (the jail holds
    the bars as 48-byte records), and jailrun's own peak resident memory
    stays within 64 MB (the report is written as it goes, never held).
    jailrun's memory is read two ways: its own VmHWM in the --json stats
    (its jails are other processes and not in it), and /proc/PID/status
    VmHWM read from outside while it runs."""
    n = 1000000
    bars = tmp_path / "bars.csv"
    write_many_bars(bars, n)
    src = tmp_path / "s.py"
    src.write_text('def on_bar_strategy(sdk, params):\n    return {"c": sdk.candles[-1]["close"]}\n')
    report = tmp_path / "report.json"
    p = subprocess.Popen([JAILRUN, "--profile", "strategy", "--bars", str(bars), "--report", str(report), "--json",
                          str(src)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    hwm = 0
    while p.poll() is None:
        hwm = max(hwm, vm_hwm(p.pid))
        time.sleep(0.05)
    out, err = p.communicate()
    assert p.returncode == 0, (out[-2000:], err[-2000:])
    res = json.loads(out.strip().splitlines()[-1])
    assert res["backtest"]["bars_run"] == n and res["backtest"]["signals"] == n, res
    own = res["stats"]["supervisor_peak_rss_bytes"]
    # Under ASan (tests/sanitizers/README) jailrun's resident memory holds
    # the sanitizer's shadow and its quarantine of freed blocks (256 MB):
    # the bound is the normal build's, the rest of the test holds in both.
    if not SANITIZERS:
        assert 0 < own <= SUPERVISOR_RSS_BOUND, res
        assert 0 < hwm <= SUPERVISOR_RSS_BOUND, hwm
    # the report: one signal a line between its head and its summary
    with open(report, "rb") as f:
        head = f.readline()
        first = f.readline()
        lines = 2
        for line in f:
            lines += 1
            last = line
    assert head == b'{"jailrun_backtest":1,"bars":1000000,"signals":[\n'
    assert json.loads(first.rstrip(b",\n")) == {"bar": 0, "time": 1700000000, "return": {"c": 100.5}}
    assert lines == n + 2
    assert last.startswith(b'],"outcome":')
    summary = json.loads(b"{" + last[2:])
    assert summary["outcome"] == "completed" and summary["signals_count"] == n, summary


def test_report_as_json_lines(tmp_path):
    write_bars(tmp_path / "bars.csv", 50)
    r = run_script(tmp_path, "def on_bar_strategy(sdk, params):\n    return len(sdk.candles) if len(sdk.candles) % 2 "
                   "else None\n", "--profile", "strategy", "--bars", str(tmp_path / "bars.csv"), "--report", "-",
                   "--report-format", "jsonl")
    assert r.code == 0, r
    lines = [json.loads(line) for line in r.out.splitlines()]
    assert [s["return"] for s in lines[:-1]] == list(range(1, 51, 2))
    assert lines[-1]["jailrun_backtest"] == 1 and lines[-1]["bars"] == 50 and lines[-1]["signals_count"] == 25
    assert lines[-1]["outcome"] == "completed" and "signals" not in lines[-1]


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_report_max_is_exact(tmp_path, fmt):
    """A report of exactly --report-max bytes (its signals and what closes
    them; the summary is not counted) is written whole; one byte less and
    the last batch does not fit."""
    write_bars(tmp_path / "bars.csv", 1200)
    report = tmp_path / "report.out"

    def run(*args):
        return run_script(tmp_path, "def on_bar_strategy(sdk, params):\n    return {'c': sdk.candles[-1]['close']}\n",
                          "--profile", "strategy", "--bars", str(tmp_path / "bars.csv"), "--report", str(report),
                          "--report-format", fmt, "--json", *args)
    r = run()
    assert r.code == 0, r
    text = report.read_bytes()
    if fmt == "json":  # the head and the signals, and the "\n]" that closes them
        exact = len(text[:text.index(b'\n],"outcome"')]) + 2
    else:  # the signals' lines, and room for the same two bytes
        exact = len(text[:text.rindex(b'{"jailrun_backtest"')]) + 2
    r = run("--report-max", str(exact))
    assert r.code == 0, (exact, r)
    r = run("--report-max", str(exact - 1))
    assert r.code == 1 and r.json["error"]["type"] == "ReportError", (exact, r)


def test_report_max_is_a_limit_in_bytes(tmp_path):
    """--report-max: the run stops when the signals would pass it, with an
    error naming it; the report written so far stays one JSON document."""
    r, rep = backtest(tmp_path, """
        def on_bar_strategy(sdk, params):
            return {"c": sdk.candles[-1]["close"], "pad": "x" * 100}
    """, 3000, "--report-max", "200K", "--json")
    assert r.code == 1, r
    assert r.json["error"]["type"] == "ReportError", r.json
    assert "the report reached --report-max 204800 bytes by bar " in r.json["error"]["message"], r.json
    assert rep["outcome"] == "error" and rep["reason"].startswith("ReportError: the report reached --report-max")
    # a batch (512 bars here) is taken whole or not at all
    assert 0 < len(rep["signals"]) < 3000 and rep["signals_count"] == len(rep["signals"]), rep["signals_count"]
    assert rep["bars_run"] == len(rep["signals"])
    assert os.path.getsize(tmp_path / "report.json") < (200 << 10) + 2048


@pytest.mark.parametrize("args,message", [
    (["--report-max", "1G"], "--report-format and --report-max need --report"),
    (["--report", "R", "--report-max", "12"], "--report-max wants a size of at least 1K"),
    (["--report", "R", "--report-format", "xml"], "--report-format wants json or jsonl"),
    (["--report", "/nonexistent/dir/r.json"], "--report /nonexistent/dir/r.json: create"),
])
def test_report_usage_errors(tmp_path, args, message):
    write_bars(tmp_path / "B", 3)
    args = [str(tmp_path / a) if a == "R" else a for a in args]
    src = tmp_path / "s.py"
    src.write_text("def on_bar_strategy(sdk, params):\n    return 1\n")
    r = subprocess.run([JAILRUN, "--profile", "strategy", "--bars", str(tmp_path / "B"), *args, str(src)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r
    assert message in r.stderr, r.stderr
    assert not [f for f in os.listdir(tmp_path) if ".tmp." in f]
