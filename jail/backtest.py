"""The backtest runner of profile strategy (jailrun --bars): parses the
bars the supervisor handed over, then calls on_bar_strategy(sdk, params)
once per bar, with a per-bar time budget (a TimeoutError raised inside the
bar), a cap on the strategy's own memory (a MemoryError inside), and the
outcome of each bar sent to the supervisor in batches, which builds the
report. Trusted code: it runs before and around the user's, never as it.
"""
import _jailrun

csv = io = json = math = os = resource = _signal = time = None


def _imports():
    """The modules a backtest uses, imported when one starts: every runtime
    module runs at each jail's start, and these would cost every job."""
    global csv, io, json, math, os, resource, _signal, time
    import csv
    import io
    import json
    import math
    import os
    import resource
    import _signal
    import time

# The error categories of a failed bar (jailrun-backtest(7)).
CATEGORIES = ("SecurityError", "TimeoutError", "MemoryError", "ProtocolError", "RuntimeError")
FIELDS = ("time", "open", "high", "low", "close", "volume")
BUY_ACTIONS = ("buy_to_open", "buy_to_close")
SELL_ACTIONS = ("sell_to_open", "sell_to_close")
ORDER_TYPES = ("market", "limit", "stop")
MAX_ORDERS_PER_BAR = 100
MAX_RETURN_BYTES = 64 * 1024
# A batch goes to the supervisor after this many bars, bytes or seconds;
# the last bound lets the supervisor tell a stuck bar from a slow run.
BATCH_BARS = 512
BATCH_BYTES = 256 * 1024
BATCH_NS = 250 * 1000 * 1000
# Once a bar overran its budget, TimeoutError is raised again this often
# until the bar returns, so catching it does not keep the bar running.
REPEAT_S = 0.05
# Room kept above the strategy's cap for the runtime's own buffers.
MEMORY_MARGIN = 16 << 20


# The sandbox's one ProtocolError (jail/guard.py): here the strategy broke
# the engine's contract (a bad order, a return value that is not JSON).
ProtocolError = _jailrun.runtime_module("_jailrun_guard").ProtocolError


class BarsError(Exception):
    """The bars file cannot be used; the message names the line."""


# The bars up to the current one, each a dict: a list and dicts that cannot
# be changed, C types (jail/candle.c) that read as fast as plain ones.
Candles = _jailrun.Candles
# The bars, 48 bytes each in C (jail/bars.c); their candles are made as
# they enter the window.
Bars = _jailrun.Bars


# --- the bars file ------------------------------------------------------------------

def _time(v, where):
    if isinstance(v, str):
        text = v.strip()
        try:
            v = int(text)
        except ValueError:
            try:
                v = float(text)
            except ValueError:
                raise BarsError("%s: time %r is not a number (seconds or milliseconds since the epoch)"
                                % (where, text)) from None
    if type(v) is float and math.isfinite(v) and v == int(v):
        v = int(v)
    if type(v) is int:
        if -(1 << 63) <= v < (1 << 63):
            return v
        raise BarsError("%s: time %d is out of range (a 64-bit count of seconds or milliseconds)" % (where, v))
    raise BarsError("%s: time %r is not a whole number of seconds or milliseconds since the epoch"
                    % (where, v))


def _number(v, field, where):
    if isinstance(v, str):
        try:
            x = float(v)
        except ValueError:
            raise BarsError("%s: %s %r is not a number" % (where, field, v.strip())) from None
    elif type(v) in (int, float):
        x = float(v)
    else:
        raise BarsError("%s: %s is %s, not a number" % (where, field, type(v).__name__))
    if not math.isfinite(x):
        raise BarsError("%s: %s %r is not a finite number" % (where, field, v))
    return x


def _candle(get, where, prev, add):
    """Adds the bar; returns its time."""
    t = _time(get("time"), where)
    if prev is not None and t <= prev:
        raise BarsError("%s: time %d is not after the previous bar's %d (bars must be in time order)"
                        % (where, t, prev))
    add(t, _number(get("open"), "open", where), _number(get("high"), "high", where),
        _number(get("low"), "low", where), _number(get("close"), "close", where),
        _number(get("volume"), "volume", where))
    return t


def _parse_csv(text, name, out):
    rows = csv.reader(io.StringIO(text, newline=""))
    try:
        return _csv_rows(rows, name, out)
    except csv.Error as e:
        raise BarsError("%s:%d: %s" % (name, rows.line_num, e)) from None


def _csv_rows(rows, name, out):
    header = None
    prev = None
    for row in rows:
        if not row or all(not c.strip() for c in row):
            continue
        where = "%s:%d" % (name, rows.line_num)
        if header is None:
            header = {c.strip().lower(): i for i, c in enumerate(row)}
            missing = [f for f in FIELDS if f not in header]
            if missing:
                raise BarsError("%s: the header has no column %s (it needs %s)"
                                % (where, ", ".join(missing), ", ".join(FIELDS)))
            continue
        if len(row) < len(header):
            raise BarsError("%s: %d fields where the header has %d" % (where, len(row), len(header)))
        prev = _candle(lambda f: row[header[f]], where, prev, out.append)
    return out


def _parse_jsonl(text, name, out):
    prev = None
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        where = "%s:%d" % (name, n)
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise BarsError("%s: not JSON: %s" % (where, e)) from None
        if type(obj) is not dict:
            raise BarsError("%s: a bar must be a JSON object" % where)
        missing = [f for f in FIELDS if f not in obj]
        if missing:
            raise BarsError("%s: the bar has no %s" % (where, ", ".join(missing)))
        prev = _candle(obj.get, where, prev, out.append)
    return out


def read_bars(fd, name):
    """The bars in the file the supervisor passed on fd `fd`, as Bars: by
    the fast reader in C, else (a file of a kind it does not take, or with
    an error in it) by the reader below, which gives the same bars or a
    BarsError naming the line of the first problem."""
    _imports()
    bars = Bars.read(fd)
    if bars is not None:
        os.close(fd)
        return bars
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            break
        chunks.append(b)
    os.close(fd)
    try:
        text = b"".join(chunks).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BarsError("%s: not UTF-8 text (byte %d)" % (name, e.start)) from None
    del chunks
    bars = Bars()
    if text.lstrip().startswith("{"):
        _parse_jsonl(text, name, bars)
    else:
        _parse_csv(text, name, bars)
    if not len(bars):
        raise BarsError("%s: no bars" % name)
    return bars


def heavy_modules(source, injected):
    """numpy and pandas if the script may use them: it names them, an
    injected alias of them, or an indicator module built on them."""
    import re

    text = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
    wanted = set()
    for name, mod in injected.items():
        if name in words or mod in words:
            wanted.add(mod)
    if words & {"ta", "pandas_ta", "talib"}:
        wanted |= {"numpy", "pandas"}
    return sorted(wanted & {"numpy", "pandas"})


def cap_memory(extra):
    """Limits the address space to what is mapped now (the interpreter, the
    libraries, the bars) plus `extra` bytes and a margin: past it,
    allocations fail and raise MemoryError inside the strategy."""
    _imports()
    with open("/proc/self/statm", "rb") as f:
        mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = mapped + extra + MEMORY_MARGIN
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


# --- the run ------------------------------------------------------------------------

class _BarState:
    """What the bar in progress did; never reachable from the strategy. An
    instance, not class attributes: setting a class's attribute every bar
    would invalidate the interpreter's caches of its type."""

    __slots__ = ("index", "orders", "timed_out", "budget_ms")

    def __init__(self):
        self.index = 0
        self.orders = None  # a list once the bar places one
        self.timed_out = False
        self.budget_ms = 0


_bar = _BarState()


def _order(side, actions, action, qty, order_type, price, extra):
    if extra:
        raise ProtocolError("sdk.%s() got an unknown field %r" % (side, sorted(extra)[0]))
    if action is None:
        raise ProtocolError("sdk.%s() needs action= (one of %s)" % (side, ", ".join(actions)))
    if type(action) is not str or action not in actions:
        raise ProtocolError("sdk.%s(): action %r is not one of %s" % (side, action, ", ".join(actions)))
    if type(qty) not in (int, float) or not math.isfinite(qty) or qty <= 0:
        raise ProtocolError("sdk.%s(): qty must be a positive number, not %r" % (side, qty))
    if type(order_type) is not str or order_type not in ORDER_TYPES:
        raise ProtocolError("sdk.%s(): order_type %r is not one of %s" % (side, order_type, ", ".join(ORDER_TYPES)))
    order = {"side": side, "action": action, "qty": qty, "order_type": order_type}
    if order_type == "market":
        if price is not None:
            raise ProtocolError("sdk.%s(): a market order takes no price" % side)
    else:
        if type(price) not in (int, float) or not math.isfinite(price) or price <= 0:
            raise ProtocolError("sdk.%s(): a %s order needs a positive price, not %r" % (side, order_type, price))
        order["price"] = price
    if _bar.orders is None:
        _bar.orders = []
    if len(_bar.orders) >= MAX_ORDERS_PER_BAR:
        raise ProtocolError("more than %d orders in one bar" % MAX_ORDERS_PER_BAR)
    _bar.orders.append(order)


class Sdk:
    """What on_bar_strategy gets: candles, state, buy, sell."""

    __slots__ = ("candles", "state")

    def __init__(self):
        self.candles = Candles()
        self.state = {}

    def buy(self, action=None, qty=None, order_type="market", price=None, **extra):
        _order("buy", BUY_ACTIONS, action, qty, order_type, price, extra)

    def sell(self, action=None, qty=None, order_type="market", price=None, **extra):
        _order("sell", SELL_ACTIONS, action, qty, order_type, price, extra)

    def __repr__(self):
        return "<sdk: %d candles>" % len(self.candles)


def _on_alarm(signum, frame):
    # The C handler (jail/runclock.c) asks for this only while a bar is
    # overdue; a request left over from a bar that has since ended is
    # dropped here.
    if _jailrun.bar_overdue():
        _bar.timed_out = True
        raise TimeoutError("bar %d exceeded its time budget of %d ms" % (_bar.index, _bar.budget_ms))


def _params_maker(params):
    """A fresh copy of params for every bar: writes to it are ignored."""
    if all(type(v) in (str, int, float, bool, type(None)) for v in params.values()):
        return lambda: dict(params)
    text = json.dumps(params)
    return lambda: json.loads(text)


def _encode_return(encode, ret, index):
    try:
        text = encode(ret)
    except (TypeError, ValueError, RecursionError) as e:
        raise ProtocolError("bar %d: the return value is not JSON (dict, list, str, int, float, bool or None;"
                            " no sets, objects or NaN): %s" % (index, e)) from None
    if len(text) > MAX_RETURN_BYTES:
        raise ProtocolError("bar %d: the return value is %d bytes of JSON; the limit is %d"
                            % (index, len(text), MAX_RETURN_BYTES))
    return text


def _category(e, security_error):
    if _bar.timed_out or isinstance(e, TimeoutError):
        return "TimeoutError"
    if isinstance(e, MemoryError):
        return "MemoryError"
    if isinstance(e, security_error):
        return "SecurityError"
    if isinstance(e, ProtocolError):
        return "ProtocolError"
    return "RuntimeError"


class _Batch:
    def __init__(self, send):
        self.send = send
        self.first = 0
        self.us = []
        self.signals = []
        self.errors = []
        self.bytes = 0
        self.since = time.perf_counter_ns()

    def flush(self, now):
        if self.us:
            self.send({"type": "bars", "first": self.first, "us": self.us, "signals": self.signals,
                       "errors": self.errors})
            self.first += len(self.us)
            self.us, self.signals, self.errors, self.bytes = [], [], [], 0
        self.since = now


def run(fn, bars, params, opts, error_info, security_error, send):
    """Calls fn(sdk, params) for every bar. Returns None when every bar ran,
    the reason (str) the 5 % rule aborted it, or the ProtocolError that
    stopped it (a changed candle)."""
    _imports()
    window = opts["window"]
    budget = opts["bar_timeout"]
    _bar.budget_ms = int(round(budget * 1000))
    pct, least = opts["abort_percent"], opts["abort_min"]
    fresh = _params_maker(params)
    sdk = Sdk()
    batch = _Batch(send)
    clock = time.perf_counter_ns
    begin, end = _jailrun.bar_begin, _jailrun.bar_end
    _signal.signal(_signal.SIGALRM, _on_alarm)
    _jailrun.bar_watch(budget, min(REPEAT_S, budget / 4))  # one periodic tick, no timer per bar
    try:
        return _loop(fn, bars, window, fresh, sdk, batch, pct, least, error_info, security_error, begin, end, clock)
    finally:
        _jailrun.bar_unwatch()


def _changed_error(i, k):
    """A candle found changed after bar i."""
    return ProtocolError("bar %d: the strategy changed sdk.candles[%d] (the candle of bar %d), which is read-only:"
                         " copy a candle with dict(candle) to change it; the run stops here" % (i, k - i - 1, k))


def _loop(fn, bars, window, fresh, sdk, batch, pct, least, error_info, security_error, begin, end, clock):
    n = len(bars)
    failed = 0
    # Read-only candles refuse changes through their own methods; a change
    # past them (dict.update(candle, ...)) is found after the bar by the
    # dicts' version tags (changed). A bar's time for the report comes from
    # the bars, which the strategy cannot reach.
    make, changed, times = bars.window, bars.changed, bars.time
    bar = _bar
    # json.dumps(ret, allow_nan=False, separators=(",", ":")), without a
    # new encoder for every call
    encode = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode
    for i in range(n):
        lo = i + 1 - window if window and i >= window else 0
        sdk.candles = make(lo, i + 1)
        p = fresh()
        bar.index, bar.orders, bar.timed_out = i, None, False
        err = text = None
        try:
            begin(i)
            ret = fn(sdk, p)
            if ret is not None:
                text = _encode_return(encode, ret, i)
            took, overran = end()
        except BaseException as e:
            took, overran = end()
            err = e
        if overran:
            _bar.timed_out = True
            if not isinstance(err, TimeoutError):
                err = TimeoutError("bar %d exceeded its time budget of %d ms" % (i, _bar.budget_ms))
        k = changed(lo, i + 1)
        if k >= 0:
            _bar.timed_out = False
            err = _changed_error(i, k)
        t1 = clock()
        batch.us.append(took // 1000)
        if err is not None:
            failed += 1
            info = error_info(err)
            cat = _category(err, security_error)
            msg = info["message"] if cat != "RuntimeError" else "%s: %s" % (info["type"], info["message"])
            batch.errors.append({"bar": i, "time": times(i), "type": cat, "message": msg,
                                 "line": info["line"]})
            batch.bytes += len(msg) + 64
        elif text is not None or _bar.orders:
            sig = {"bar": i, "time": times(i)}
            if text is not None:
                sig["return"] = text
                batch.bytes += len(text)
            if _bar.orders:
                sig["orders"] = _bar.orders
                batch.bytes += 96 * len(_bar.orders)
            batch.signals.append(sig)
        if len(batch.us) >= BATCH_BARS or batch.bytes >= BATCH_BYTES or t1 - batch.since >= BATCH_NS:
            batch.flush(t1)
        if k >= 0:
            batch.flush(t1)
            return err
        if failed * 100 > pct * n and failed >= least:
            batch.flush(t1)
            return ("%d of %d bars failed by bar %d (the run stops past %g%% of the bars and at least %d)"
                    % (failed, n, i, pct, least))
    batch.flush(clock())
    return None
