"""The injected indicators (ta / pandas_ta / talib) against straightforward
reference implementations, on random walks, to 1e-9."""
import json
import math
import random

import numpy as np
import pandas as pd
import pytest

from conftest import run_script

N = 300


def walk(seed):
    rnd = random.Random(seed)
    close, high, low = [], [], []
    c = 100.0
    for _ in range(N):
        c += rnd.gauss(0, 1)
        close.append(round(c, 6))
        high.append(round(c + abs(rnd.gauss(0, 0.5)), 6))
        low.append(round(c - abs(rnd.gauss(0, 0.5)), 6))
    return np.array(close), np.array(high), np.array(low)


# --- references: the formulas written out, one value at a time --------------------

def ref_sma(x, n):
    return np.array([x[i - n + 1:i + 1].mean() if i >= n - 1 else np.nan for i in range(len(x))])


def ref_ema(x, n):
    out = [np.nan] * len(x)
    a = 2.0 / (n + 1)
    for i in range(len(x)):
        if i == n - 1:
            out[i] = sum(x[:n]) / n
        elif i >= n:
            out[i] = out[i - 1] + a * (x[i] - out[i - 1])
    return np.array(out)


def ref_wma(x, n):
    w = list(range(1, n + 1))
    return np.array([sum(wi * xi for wi, xi in zip(w, x[i - n + 1:i + 1])) / sum(w) if i >= n - 1 else np.nan
                     for i in range(len(x))])


def ref_wilder(vals, n, first):
    out = [np.nan] * len(vals)
    for i in range(len(vals)):
        if i == first + n - 1:
            out[i] = sum(vals[first:first + n]) / n
        elif i >= first + n:
            out[i] = (out[i - 1] * (n - 1) + vals[i]) / n
    return out


def ref_rsi(x, n):
    gains = [np.nan] + [max(x[i] - x[i - 1], 0.0) for i in range(1, len(x))]
    losses = [np.nan] + [max(x[i - 1] - x[i], 0.0) for i in range(1, len(x))]
    g, l = ref_wilder(gains, n, 1), ref_wilder(losses, n, 1)
    return np.array([np.nan if i < n else (100.0 if l[i] == 0 else 100.0 - 100.0 / (1 + g[i] / l[i]))
                     for i in range(len(x))])


def ref_atr(h, l, c, n):
    tr = [np.nan] + [max(h[i] - l[i], abs(h[i] - c[i - 1]), abs(l[i] - c[i - 1])) for i in range(1, len(c))]
    return np.array(ref_wilder(tr, n, 1))


def ref_macd(x, f, s, g):
    line = ref_ema(x, f) - ref_ema(x, s)
    sig = np.full(len(x), np.nan)
    sig[s - 1:] = ref_ema(line[s - 1:], g)
    return line, sig, line - sig


def ref_std(x, n, ddof):
    return pd.Series(x).rolling(n).std(ddof=ddof).to_numpy()


STRATEGY = """
close = np.array(CLOSE)
high = np.array(HIGH)
low = np.array(LOW)
s = pd.Series(close)
out = {
    "ta.sma": ta.sma(s, 10), "ta.ema": ta.ema(s, 10), "ta.wma": ta.wma(s, 10), "ta.rsi": ta.rsi(s, 14),
    "ta.atr": ta.atr(pd.Series(high), pd.Series(low), s, 14), "ta.stdev": ta.stdev(s, 20),
    "talib.SMA": talib.SMA(close, 30), "talib.EMA": talib.EMA(close, 30), "talib.WMA": talib.WMA(close, 30),
    "talib.RSI": talib.RSI(close, 14), "talib.ATR": talib.ATR(high, low, close, 14),
    "talib.STDDEV": talib.STDDEV(close, 5, 2.0),
}
m = ta.macd(s, 12, 26, 9)
out["ta.macd"], out["ta.macdh"], out["ta.macds"] = m["MACD_12_26_9"], m["MACDh_12_26_9"], m["MACDs_12_26_9"]
b = ta.bbands(s, 20, 2.0)
out["ta.bbl"], out["ta.bbm"], out["ta.bbu"] = b["BBL_20_2.0"], b["BBM_20_2.0"], b["BBU_20_2.0"]
mac, sig, hist = talib.MACD(close, 12, 26, 9)
out["talib.MACD"], out["talib.MACDs"], out["talib.MACDh"] = mac, sig, hist
up, mid, lo = talib.BBANDS(close, 5, 2.0, 2.0)
out["talib.BBU"], out["talib.BBM"], out["talib.BBL"] = up, mid, lo
for name in sorted(out):
    vals = [float(v) for v in out[name]]
    for i in range(0, len(vals), 40):
        print(name, i, json.dumps([None if v != v else v for v in vals[i:i + 40]]))

def on_bar_strategy(sdk, params):
    pass
"""


def references(c, h, l):
    m = ref_macd(c, 12, 26, 9)
    tm = ref_macd(c, 12, 26, 9)
    sma20, sd20 = ref_sma(c, 20), ref_std(c, 20, 0)
    sma5, sd5 = ref_sma(c, 5), ref_std(c, 5, 0)
    return {
        "ta.sma": ref_sma(c, 10), "ta.ema": ref_ema(c, 10), "ta.wma": ref_wma(c, 10), "ta.rsi": ref_rsi(c, 14),
        "ta.atr": ref_atr(h, l, c, 14), "ta.stdev": ref_std(c, 20, 1),
        "ta.macd": m[0], "ta.macds": m[1], "ta.macdh": m[2],
        "ta.bbl": sma20 - 2 * sd20, "ta.bbm": sma20, "ta.bbu": sma20 + 2 * sd20,
        "talib.SMA": ref_sma(c, 30), "talib.EMA": ref_ema(c, 30), "talib.WMA": ref_wma(c, 30),
        "talib.RSI": ref_rsi(c, 14), "talib.ATR": ref_atr(h, l, c, 14), "talib.STDDEV": ref_std(c, 5, 0) * 2.0,
        "talib.MACD": tm[0], "talib.MACDs": tm[1], "talib.MACDh": tm[2],
        "talib.BBU": sma5 + 2 * sd5, "talib.BBM": sma5, "talib.BBL": sma5 - 2 * sd5,
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_indicators_match_the_reference_formulas(tmp_path, seed):
    c, h, l = walk(seed)
    src = STRATEGY.replace("CLOSE", repr(c.tolist())).replace("HIGH", repr(h.tolist())).replace("LOW", repr(l.tolist()))
    pol = tmp_path / "p.json"
    pol.write_text('{"validator": {"max_nodes": 100000}}')  # the price lists are long literals
    r = run_script(tmp_path, src, "--profile", "strategy", "--policy", str(pol), "--json")
    assert r.code == 0, r
    got = {}
    for line in r.err.splitlines():
        msg = json.loads(line)["message"]
        name, start, vals = msg.split(" ", 2)
        got.setdefault(name, [None] * N)[int(start):int(start) + 40] = json.loads(vals)
    ref = references(c, h, l)
    assert set(got) == set(ref)
    for name, want in ref.items():
        for i, (g, w) in enumerate(zip(got[name], want)):
            if math.isnan(w):
                assert g is None, (name, i, g)
            else:
                assert g is not None and abs(g - w) <= 1e-9 * max(1.0, abs(w)), (name, i, g, w)


def test_import_names_and_bad_arguments(tmp_path):
    r = run_script(tmp_path, """
        import ta
        import pandas_ta
        import talib
        print(ta is pandas_ta, sorted(n for n in ("sma", "ema", "rsi") if hasattr(talib, n.upper())))
        try:
            ta.sma([1.0, 2.0], 0)
        except ValueError as e:
            print("ValueError", e)
        print(ta.sma([1.0, 2.0, 3.0], 5).isna().all())
        def on_bar_strategy(sdk, params):
            pass
    """, "--profile", "strategy", "--json")
    msgs = [json.loads(x)["message"] for x in r.err.splitlines()]
    assert msgs == ["True ['ema', 'rsi', 'sma']", "ValueError length must be a positive integer, not 0", "True"], r


STREAMING = """
import indicators
import tesstrade_indicators as ti
closes, highs, lows = CLOSE, HIGH, LOW
objs = {"Sma": ti.Sma(10), "Ema": ti.Ema(10), "Wma": ti.Wma(10), "Rsi": ti.Rsi(14), "Atr": ti.Atr(14),
        "Macd": indicators.Macd(12, 26, 9), "Sma1": indicators.Sma(1)}
out = {}
for i in range(len(closes)):
    for name, o in objs.items():
        if name == "Atr":
            o.update(highs[i], lows[i], closes[i])
        else:
            o.update(closes[i])
        v = o.value()
        if name == "Macd":
            for k, part in enumerate(("Macd", "Macds", "Macdh")):
                out.setdefault(part, []).append(None if v is None else v[k])
        else:
            out.setdefault(name, []).append(v)
        full = v is not None and (name != "Macd" or v[1] is not None)
        if full != o.is_ready():
            print("is_ready disagrees", name, i)
for name in sorted(out):
    for i in range(0, len(out[name]), 40):
        print(name, i, json.dumps(out[name][i:i + 40]))

def on_bar_strategy(sdk, params):
    pass
"""


@pytest.mark.parametrize("seed", [4, 5])
def test_streaming_indicators_match_the_reference_formulas(tmp_path, seed):
    """indicators / tesstrade_indicators: O(1) streaming classes, value by
    value against the same references, to 1e-9, None before ready."""
    c, h, l = walk(seed)
    src = STREAMING.replace("CLOSE", repr(c.tolist())).replace("HIGH", repr(h.tolist())).replace("LOW", repr(l.tolist()))
    pol = tmp_path / "p.json"
    pol.write_text('{"validator": {"max_nodes": 100000}}')
    r = run_script(tmp_path, src, "--profile", "strategy", "--policy", str(pol), "--json")
    assert r.code == 0, r
    got = {}
    for line in r.err.splitlines():
        msg = json.loads(line)["message"]
        assert not msg.startswith("is_ready"), msg
        name, start, vals = msg.split(" ", 2)
        got.setdefault(name, [None] * N)[int(start):int(start) + 40] = json.loads(vals)
    m = ref_macd(c, 12, 26, 9)
    ref = {"Sma": ref_sma(c, 10), "Ema": ref_ema(c, 10), "Wma": ref_wma(c, 10), "Rsi": ref_rsi(c, 14),
           "Atr": ref_atr(h, l, c, 14), "Macd": m[0], "Macds": m[1], "Macdh": m[2], "Sma1": c}
    assert set(got) == set(ref)
    for name, want in ref.items():
        for i, (g, w) in enumerate(zip(got[name], want)):
            if math.isnan(w):
                assert g is None, (name, i, g)
            else:
                assert g is not None and abs(g - w) <= 1e-9 * max(1.0, abs(w)), (name, i, g, w)


def test_streaming_indicators_refuse_bad_input(tmp_path):
    r = run_script(tmp_path, """
        import indicators as ind
        def attempt(f, *a):
            try:
                f(*a)
                print("ok")
            except (ValueError, TypeError) as e:
                print(type(e).__name__, e)
        attempt(ind.Sma, 0)
        attempt(ind.Rsi, -3)
        attempt(ind.Macd, 12, 26, 0)
        s = ind.Sma(3)
        attempt(s.update, "x")
        attempt(s.update, float("nan"))
        attempt(ind.Atr(3).update, 1.0)
        print(s.value(), s.is_ready())
        def on_bar_strategy(sdk, params):
            pass
    """, "--profile", "strategy", "--json")
    msgs = [json.loads(x)["message"] for x in r.err.splitlines()]
    print(msgs)
    assert r.code == 0, r
    assert msgs[-1] == "None False"
    assert all(m.startswith(("ValueError", "TypeError")) for m in msgs[:-1]), msgs
