# Technical indicators for profile strategy, injected as `ta` (alias
# `pandas_ta`) and `talib` (jailrun-policy(5)). Written against numpy; no
# file, network or native access of their own. The formulas are the
# reference ones:
#   SMA   mean of the last n values
#   EMA   alpha = 2/(n+1), seeded with the SMA of the first n values
#   WMA   weights 1..n, the latest weighing most
#   RSI   Wilder: average gain and loss seeded with the simple mean of the
#         first n changes, then avg = (avg*(n-1) + x)/n; 100 - 100/(1+g/l)
#   ATR   Wilder smoothing of the true range, seeded with the mean of the
#         first n true ranges (from the second bar: a range needs the
#         previous close)
#   MACD  EMA(fast) - EMA(slow); signal = EMA(signal) of the MACD line from
#         its first value; histogram = MACD - signal
#   BBANDS SMA(n) -/+ k * population standard deviation of the last n
#   STDEV  standard deviation of the last n (ta: ddof 1; talib: ddof 0)
# Values before an indicator has enough input are NaN. `ta` takes and
# returns pandas Series (column names as pandas_ta's); `talib` takes and
# returns numpy arrays (as TA-Lib's).
import sys

import _jailrun


def _np():
    np = sys.modules.get("numpy")
    return np if np is not None else _jailrun.trusted_import("numpy")


def _pd():
    pd = sys.modules.get("pandas")
    return pd if pd is not None else _jailrun.trusted_import("pandas")


def _array(x):
    np = _np()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError("indicators take one-dimensional input")
    return a


def _length(n, name="length"):
    if type(n) is not int or n < 1:
        raise ValueError("%s must be a positive integer, not %r" % (name, n))
    return n


# --- the formulas, on float64 arrays ------------------------------------------

def sma_array(x, n):
    np = _np()
    out = np.full(len(x), np.nan)
    if len(x) >= n:  # each window's own mean: no running-sum drift
        out[n - 1:] = np.lib.stride_tricks.sliding_window_view(x, n).mean(axis=1)
    return out


def ema_array(x, n, alpha=None):
    np = _np()
    out = np.full(len(x), np.nan)
    if len(x) < n:
        return out
    a = 2.0 / (n + 1) if alpha is None else alpha
    prev = x[:n].mean()
    out[n - 1] = prev
    for i in range(n, len(x)):
        prev = prev + a * (x[i] - prev)
        out[i] = prev
    return out


def wma_array(x, n):
    np = _np()
    out = np.full(len(x), np.nan)
    if len(x) >= n:
        w = np.arange(1, n + 1, dtype=np.float64)
        windows = np.lib.stride_tricks.sliding_window_view(x, n)
        out[n - 1:] = windows @ w / w.sum()
    return out


def wilder_array(x, n, first):
    """Wilder's smoothing of x, seeded at index `first + n - 1` with the
    mean of x[first:first + n]."""
    np = _np()
    out = np.full(len(x), np.nan)
    if len(x) < first + n:
        return out
    prev = x[first:first + n].mean()
    out[first + n - 1] = prev
    for i in range(first + n, len(x)):
        prev = (prev * (n - 1) + x[i]) / n
        out[i] = prev
    return out


def rsi_array(x, n):
    np = _np()
    out = np.full(len(x), np.nan)
    if len(x) <= n:
        return out
    d = np.diff(x)
    gain = wilder_array(np.insert(np.where(d > 0, d, 0.0), 0, np.nan), n, 1)
    loss = wilder_array(np.insert(np.where(d < 0, -d, 0.0), 0, np.nan), n, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rs = gain / loss
        out = np.where(loss == 0, np.where(gain == 0, 50.0, 100.0), 100.0 - 100.0 / (1.0 + rs))
    out[:n] = np.nan
    return out


def true_range_array(high, low, close):
    np = _np()
    tr = np.full(len(close), np.nan)
    if len(close) > 1:
        prev = close[:-1]
        tr[1:] = np.maximum(high[1:] - low[1:], np.maximum(np.abs(high[1:] - prev), np.abs(low[1:] - prev)))
    return tr


def atr_array(high, low, close, n):
    return wilder_array(true_range_array(high, low, close), n, 1)


def macd_arrays(x, fast, slow, signal):
    np = _np()
    line = ema_array(x, fast) - ema_array(x, slow)
    sig = np.full(len(x), np.nan)
    start = slow - 1
    if len(x) > start:
        sig[start:] = ema_array(line[start:], signal)
    return line, sig, line - sig


def stdev_array(x, n, ddof):
    np = _np()
    out = np.full(len(x), np.nan)
    if len(x) >= n and n > ddof:
        windows = np.lib.stride_tricks.sliding_window_view(x, n)
        out[n - 1:] = windows.std(axis=1, ddof=ddof)
    return out


def bbands_arrays(x, n, up, dn):
    mid = sma_array(x, n)
    sd = stdev_array(x, n, 0)
    return mid + up * sd, mid, mid - dn * sd


# --- ta (pandas_ta names: Series in, Series out) ------------------------------

def _series(values, like, name):
    pd = _pd()
    index = like.index if isinstance(like, pd.Series) else None
    return pd.Series(values, index=index, name=name)


def sma(close, length=10):
    n = _length(length)
    return _series(sma_array(_array(close), n), close, "SMA_%d" % n)


def ema(close, length=10):
    n = _length(length)
    return _series(ema_array(_array(close), n), close, "EMA_%d" % n)


def wma(close, length=10):
    n = _length(length)
    return _series(wma_array(_array(close), n), close, "WMA_%d" % n)


def rsi(close, length=14):
    n = _length(length)
    return _series(rsi_array(_array(close), n), close, "RSI_%d" % n)


def atr(high, low, close, length=14):
    n = _length(length)
    return _series(atr_array(_array(high), _array(low), _array(close), n), close, "ATRr_%d" % n)


def stdev(close, length=30, ddof=1):
    n = _length(length)
    return _series(stdev_array(_array(close), n, ddof), close, "STDEV_%d" % n)


def macd(close, fast=12, slow=26, signal=9):
    f, s, g = _length(fast, "fast"), _length(slow, "slow"), _length(signal, "signal")
    line, sig, hist = macd_arrays(_array(close), f, s, g)
    pd = _pd()
    suffix = "_%d_%d_%d" % (f, s, g)
    index = close.index if isinstance(close, pd.Series) else None
    return pd.DataFrame({"MACD" + suffix: line, "MACDh" + suffix: hist, "MACDs" + suffix: sig}, index=index)


def bbands(close, length=5, std=2.0):
    n = _length(length)
    up, mid, lo = bbands_arrays(_array(close), n, float(std), float(std))
    pd = _pd()
    suffix = "_%d_%.1f" % (n, float(std))
    index = close.index if isinstance(close, pd.Series) else None
    return pd.DataFrame({"BBL" + suffix: lo, "BBM" + suffix: mid, "BBU" + suffix: up}, index=index)


TA_NAMES = ("sma", "ema", "wma", "rsi", "atr", "stdev", "macd", "bbands")


# --- talib (TA-Lib names: arrays in, arrays out) --------------------------------

def SMA(real, timeperiod=30):
    return sma_array(_array(real), _length(timeperiod, "timeperiod"))


def EMA(real, timeperiod=30):
    return ema_array(_array(real), _length(timeperiod, "timeperiod"))


def WMA(real, timeperiod=30):
    return wma_array(_array(real), _length(timeperiod, "timeperiod"))


def RSI(real, timeperiod=14):
    return rsi_array(_array(real), _length(timeperiod, "timeperiod"))


def ATR(high, low, close, timeperiod=14):
    return atr_array(_array(high), _array(low), _array(close), _length(timeperiod, "timeperiod"))


def STDDEV(real, timeperiod=5, nbdev=1.0):
    return stdev_array(_array(real), _length(timeperiod, "timeperiod"), 0) * float(nbdev)


def MACD(real, fastperiod=12, slowperiod=26, signalperiod=9):
    return macd_arrays(_array(real), _length(fastperiod, "fastperiod"), _length(slowperiod, "slowperiod"),
                       _length(signalperiod, "signalperiod"))


def BBANDS(real, timeperiod=5, nbdevup=2.0, nbdevdn=2.0, matype=0):
    if matype != 0:
        raise ValueError("only matype=0 (SMA) is available")
    return bbands_arrays(_array(real), _length(timeperiod, "timeperiod"), float(nbdevup), float(nbdevdn))


TALIB_NAMES = ("SMA", "EMA", "WMA", "RSI", "ATR", "STDDEV", "MACD", "BBANDS")


def modules():
    """{import name: module} for `ta`, `pandas_ta` and `talib`."""
    mt = type(sys)
    ta = mt("ta", "Technical indicators, pandas_ta names (a safe subset).")
    talib = mt("talib", "Technical indicators, TA-Lib names (a safe subset).")
    g = globals()
    for name in TA_NAMES:
        setattr(ta, name, g[name])
    for name in TALIB_NAMES:
        setattr(talib, name, g[name])
    return {"ta": ta, "pandas_ta": ta, "talib": talib}
