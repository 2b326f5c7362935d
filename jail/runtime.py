# The Python half of the jail runtime: the `ctx` object, the log channel
# and the two entry loops. Compiled into jailrun and run by the embedded
# interpreter inside the jail; talks to the supervisor only through the
# _jailrun module (one JSON object per datagram on fd 3, encoded in C).
# Start-up cost matters: traceback and linecache load only when an error
# is reported.
import builtins
import sys

import _jailrun
import _thread

LOG_MAX_CHARS = 4000
LOG_MAX_BATCH = 20
LOG_MAX_BATCH_BYTES = 64 * 1024
_LEVELS = ("debug", "info", "warn", "error")


_send = _jailrun.send


class _LogBuffer:
    """Log entries waiting to go out: at most 20 per datagram, flushed when
    full, before every ctx call, at the end of every tick and on exit.
    Threads may log at once: the lock keeps every entry once, in order."""

    __slots__ = ("entries", "size", "lock", "sending")

    def __init__(self):
        self.entries = []
        self.size = 0
        self.sending = False
        self.lock = _thread.RLock()

    def add(self, level, text):
        if len(text) > LOG_MAX_CHARS:
            text = text[:LOG_MAX_CHARS]
        # Encoded size bound: every char may become a 6-byte escape.
        cost = len(text) * 6 + 32
        entry = {"level": level, "msg": text}  # allocated (a collection may run) before the lock
        with self.lock:
            if self.entries and self.size + cost > LOG_MAX_BATCH_BYTES:
                self._out()
            self.entries.append(entry)
            self.size += cost
            if len(self.entries) >= LOG_MAX_BATCH:
                self._out()

    def flush(self):
        if self.entries:
            with self.lock:
                self._out()

    def _out(self):
        # The lock held. It is re-entrant: a finalizer or a signal handler of
        # the script's that logs runs in the middle of add() or of this. Such
        # a nested call only adds: the outer one sends, oldest first, until
        # nothing is left. The flag test and set, and the swap, allocate
        # nothing and check no signal, so neither can be split.
        if self.sending:
            return
        self.sending = True
        try:
            while self.entries:
                fresh = []
                entries = self.entries
                self.entries = fresh
                self.size = 0
                for k in range(0, len(entries), LOG_MAX_BATCH):
                    _send({"type": "log", "entries": entries[k:k + LOG_MAX_BATCH]})
        finally:
            self.sending = False


class _ChildLogBuffer(_LogBuffer):
    """A forked child's (profile exec): each entry goes out at once, as
    such a child often ends with os._exit (a pool's worker) and nothing
    would flush it."""

    __slots__ = ()

    def add(self, level, text):
        _LogBuffer.add(self, level, text)
        self.flush()


def _log_after_fork(buf):
    """In a forked child: the parent's pending entries are the parent's
    to send (dropped here, not sent twice), the lock is new (another
    thread may have held it at the fork), and logs go out at once."""
    buf.entries = []
    buf.size = 0
    buf.sending = False
    buf.lock = _thread.RLock()
    buf.__class__ = _ChildLogBuffer


class _TickLogBuffer(_LogBuffer):
    """A worker's: entries also go out once the first has waited 100 ms,
    when the tick clock's signal asks (_on_tick_alarm), so a long tick's
    log shows while it runs."""

    __slots__ = ()

    def add(self, level, text):
        _LogBuffer.add(self, level, text)
        if self.entries:  # after: an add may have sent what waited (log_sent) first
            _jailrun.log_mark()

    def _out(self):
        _LogBuffer._out(self)
        if not self.entries and not self.sending:  # the outermost send: all out
            _jailrun.log_sent()


def _text(args):
    return " ".join(a if type(a) is str else str(a) for a in args)


class Log:
    """ctx.log: debug/info/warn/error(message, ...) -> None."""

    __slots__ = ("_buf",)

    def __init__(self, buf):
        self._buf = buf

    def debug(self, *args):
        self._buf.add("debug", _text(args))

    def info(self, *args):
        self._buf.add("info", _text(args))

    def warn(self, *args):
        self._buf.add("warn", _text(args))

    warning = warn

    def error(self, *args):
        self._buf.add("error", _text(args))


class _Channel:
    """ctx calls: one request, then its reply, before anything else. The
    supervisor performs the call and trusts nothing in it."""

    __slots__ = ("next_id", "buf")

    def __init__(self, buf):
        self.next_id = 1
        self.buf = buf

    def call(self, op, args):
        call_id = self.next_id
        self.next_id += 1
        self.buf.flush()  # logs come out in order with what the call does
        _send({"type": "call", "id": call_id, "op": op, "args": args})
        msg = _jailrun.recv()
        if msg is None:
            raise SystemExit(0)  # the supervisor has gone
        if msg.get("type") != "reply" or msg.get("id") != call_id:
            raise _jailrun.runtime_module("_jailrun_guard").ProtocolError(
                "unexpected message from supervisor during %s" % op)
        if "payload" in msg:  # raw bytes follow the reply (a file's content)
            return msg["result"], _jailrun.recv_payload(msg["payload"])
        return msg["result"]


def _error(text):
    return {"error": text}


class State:
    """ctx.state: JSON values kept by the supervisor under this worker's
    name. get returns the value (or default); set and delete return
    {"ok": True, ...}; keys returns a sorted list, or one page of it,
    {"keys": [...], "cursor": next or None}, when given a cursor or a
    limit; any failure returns {"error": reason} instead of raising."""

    __slots__ = ("_call",)
    _KEYS_PAGE = 1000   # keys a page holds unless limit says (STATE_PAGE_KEYS)
    _KEYS_MAX = 10000   # most keys a page, or keys() without a cursor, holds (STATE_MAX_KEYS)

    def __init__(self, chan):
        self._call = chan.call

    def get(self, key, default=None):
        if type(key) is not str:
            return _error("key must be a str, not %s" % type(key).__name__)
        r = self._call("state.get", {"key": key})
        if "error" in r:
            return r
        return r["value"] if r.get("found") else default

    def set(self, key, value):
        if type(key) is not str:
            return _error("key must be a str, not %s" % type(key).__name__)
        try:
            return self._call("state.set", {"key": key, "value": value})
        except (TypeError, ValueError, OverflowError, RecursionError) as e:
            return _error("value cannot be stored as JSON: %s" % e)

    def delete(self, key):
        if type(key) is not str:
            return _error("key must be a str, not %s" % type(key).__name__)
        return self._call("state.delete", {"key": key})

    def keys(self, prefix="", cursor=None, limit=None):
        if type(prefix) is not str:
            return _error("prefix must be a str, not %s" % type(prefix).__name__)
        if cursor is not None and type(cursor) is not str:
            return _error("cursor must be a str or None, not %s" % type(cursor).__name__)
        if limit is not None and (type(limit) is not int or not 1 <= limit <= self._KEYS_MAX):
            return _error("limit must be an int from 1 to %d" % self._KEYS_MAX)
        if cursor is not None or limit is not None:  # one page
            args = {"prefix": prefix, "limit": limit or self._KEYS_PAGE}
            if cursor is not None:
                args["cursor"] = cursor
            return self._call("state.keys", args)
        # Every key, as a list: the supervisor answers a page at a time
        # (each call costs it its own page), up to the old limit.
        out, args = [], {"prefix": prefix, "limit": self._KEYS_MAX}
        while True:
            r = self._call("state.keys", args)
            if "error" in r:
                return r
            out += r["keys"]
            if len(out) > self._KEYS_MAX:
                return _error("more than %d keys; ask for a longer prefix, or page through them with "
                              "keys(prefix, cursor=..., limit=...)" % self._KEYS_MAX)
            if r["cursor"] is None:
                return out
            args["cursor"] = r["cursor"]
            args["limit"] = self._KEYS_MAX + 1 - len(out)


class Files:
    """ctx.files: the worker's workspace on the host, paths relative to it.
    read returns {"content": str or bytes, "size"}; write, delete and list
    return dicts; exists returns a bool and size an int; any failure
    returns {"error": reason} instead of raising."""

    __slots__ = ("_call",)

    def __init__(self, chan):
        self._call = chan.call

    def _path(self, op, path, extra=None):
        if type(path) is not str:
            return _error("path must be a str, not %s" % type(path).__name__)
        args = {"path": path}
        if extra:
            args.update(extra)
        return self._call(op, args)

    def read(self, path, binary=False):
        r = self._path("files.read", path)
        if type(r) is not tuple:
            return r  # an error dict
        result, data = r
        if binary:
            return {"content": data, "size": result["size"]}
        try:
            return {"content": data.decode("utf-8"), "size": result["size"]}
        except UnicodeDecodeError:
            return _error("%s: not UTF-8 text; read it with binary=True" % path)

    def write(self, path, data):
        if type(data) is str:
            return self._path("files.write", path, {"text": data})
        if isinstance(data, (bytes, bytearray)):
            return self._path("files.write", path, {"latin1": bytes(data).decode("latin-1")})
        return _error("data must be str or bytes, not %s" % type(data).__name__)

    def list(self, path="."):
        return self._path("files.list", path)

    def delete(self, path):
        return self._path("files.delete", path)

    def exists(self, path):
        return self._path("files.exists", path)

    def size(self, path):
        return self._path("files.size", path)


class Http:
    """ctx.http: requests the supervisor makes for the worker. Returns
    {"status", "headers", "text", "url", "json" (when the body is JSON)}
    or {"error": reason}; never raises for the network's failures."""

    __slots__ = ("_call",)

    def __init__(self, chan):
        self._call = chan.call

    def request(self, method, url, headers=None, params=None, json=None, data=None, timeout=30):
        if type(method) is not str or type(url) is not str:
            return _error("method and url must be str")
        hdrs = {}
        for k, v in (headers or {}).items():
            if type(k) is not str:
                return _error("header names must be str")
            hdrs[k] = v if type(v) is str else str(v)
        prm = {}
        for k, v in (params or {}).items():
            prm[str(k)] = v if type(v) is str else str(v)
        args = {"method": method.upper(), "url": url, "headers": hdrs, "params": prm}
        try:
            args["timeout"] = float(timeout)
        except (TypeError, ValueError):
            return _error("timeout must be a number of seconds")
        if json is not None and data is not None:
            return _error("give json or data, not both")
        if json is not None:
            import json as _json

            try:
                args["body"] = _json.dumps(json, allow_nan=False)
            except (TypeError, ValueError) as e:
                return _error("json cannot be sent: %s" % e)
            if not any(k.lower() == "content-type" for k in hdrs):
                hdrs["Content-Type"] = "application/json"
        elif isinstance(data, dict):
            from urllib.parse import urlencode

            args["body"] = urlencode({str(k): str(v) for k, v in data.items()})
            if not any(k.lower() == "content-type" for k in hdrs):
                hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        elif isinstance(data, (bytes, bytearray)):
            try:
                args["body"] = bytes(data).decode("utf-8")
            except UnicodeDecodeError:
                return _error("data must be text (bytes that are UTF-8)")
        elif data is not None:
            if type(data) is not str:
                return _error("data must be str, bytes or dict")
            args["body"] = data
        return _response(self._call("http.request", args))

    def get(self, url, headers=None, params=None, timeout=30):
        return self.request("GET", url, headers=headers, params=params, timeout=timeout)

    def post(self, url, json=None, data=None, headers=None, params=None, timeout=30):
        return self.request("POST", url, headers=headers, params=params, json=json, data=data, timeout=timeout)


def _response(r):
    """An http reply (result, body) as the user's dict."""
    if type(r) is not tuple:
        return r
    result, body = r
    if "headers" not in result:
        return result
    # The supervisor read Content-Type, decoded the body and checked it for
    # secrets: the text is what it says (UTF-8), never read again from the
    # header or sniffed from the bytes, and JSON is parsed from that text.
    if result.get("charset") != "utf-8":
        raise RuntimeError("http reply: the body comes as %r, not utf-8" % (result.get("charset"),))
    out = {"status": result["status"], "headers": result["headers"], "url": result["url"],
           "text": body.decode("utf-8")}
    if result.get("json") is True:
        import json as _json

        try:
            out["json"] = _json.loads(out["text"])
        except ValueError:
            pass
    return out


class Messenger:
    """ctx.NAME for a messenger adapter: send(chat, text); the token stays
    with the supervisor."""

    __slots__ = ("_call", "_name")

    def __init__(self, chan, name):
        self._call = chan.call
        self._name = name

    def send(self, chat, text):
        if type(chat) not in (str, int) or type(text) is not str:
            return _error("chat must be a str or int and text a str")
        return _response(self._call("adapter.send", {"adapter": self._name, "chat": chat, "text": text}))


class SignedRest:
    """ctx.NAME for a signed REST adapter: request(method, path, params,
    body); the supervisor adds the key and the signature."""

    __slots__ = ("_call", "_name")

    def __init__(self, chan, name):
        self._call = chan.call
        self._name = name

    def request(self, method, path, params=None, body=None):
        if type(method) is not str or type(path) is not str:
            return _error("method and path must be str")
        args = {"adapter": self._name, "method": method.upper(), "path": path,
                "params": {str(k): v if type(v) is str else str(v) for k, v in (params or {}).items()}}
        if body is not None:
            if type(body) is not str:
                import json as _json

                try:
                    body = _json.dumps(body, allow_nan=False, separators=(",", ":"))
                except (TypeError, ValueError) as e:
                    return _error("body cannot be sent: %s" % e)
            args["body"] = body
        return _response(self._call("adapter.request", args))

    def get(self, path, params=None):
        return self.request("GET", path, params=params)

    def post(self, path, body=None, params=None):
        return self.request("POST", path, params=params, body=body)


class Ctx:
    """The worker's only way out of the jail."""

    __slots__ = ("log", "state", "files", "http", "_adapters")

    def __init__(self, buf, adapters=None):
        chan = _Channel(buf)
        self.log = Log(buf)
        self.state = State(chan)
        self.files = Files(chan)
        self.http = Http(chan)
        kinds = {"messenger": Messenger, "signed_rest": SignedRest}
        self._adapters = {name: kinds[d["kind"]](chan, name) for name, d in (adapters or {}).items()}

    def __getattr__(self, name):
        try:
            return object.__getattribute__(self, "_adapters")[name]
        except KeyError:
            raise AttributeError("ctx has no %r (no such adapter in the policy)" % name) from None


class _LogStream:
    """sys.stdout / sys.stderr in profile worker: each line is a log entry;
    a line longer than the log limit is cut there, the rest of it dropped."""

    def __init__(self, buf, level):
        self._buf = buf
        self._level = level
        self._pending = ""
        self._cut = False  # the current line was already logged, cut

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not %s" % type(s).__name__)
        *lines, rest = s.split("\n")
        for line in lines:
            if not self._cut:
                self._buf.add(self._level, self._pending + line)
            self._pending, self._cut = "", False
        if not self._cut:
            self._pending += rest
            if len(self._pending) > LOG_MAX_CHARS:
                self._buf.add(self._level, self._pending)
                self._pending, self._cut = "", True
        return len(s)

    def flush(self):
        if self._pending:
            self._buf.add(self._level, self._pending)
            self._pending = ""

    def isatty(self):
        return False

    def writable(self):
        return True


# Error reports stay within what the supervisor accepts (64 KiB a field).
ERROR_MAX_MESSAGE = 4000
ERROR_MAX_TRACEBACK = 16000


def _cap(text, limit, keep_tail):
    if len(text) <= limit:
        return text
    cut = "\n... (%d characters cut) ...\n" % (len(text) - limit)
    return cut + text[-limit:] if keep_tail else text[:limit] + cut


def _mark(exc, name, typ):
    """A mark the runtime put on an exception (never the user's code's
    attribute hooks)."""
    try:
        v = dict.get(object.__getattribute__(exc, "__dict__"), name)
    except BaseException:
        return None
    return v if type(v) is typ else None


_type_name = type.__dict__["__name__"].__get__
_exc_traceback = BaseException.__dict__["__traceback__"].__get__


def _error_info(exc, filename):
    """{type, message, line, traceback} of an exception raised by user code;
    line is the innermost line in the user's own file. User code may have
    shaped the exception to break this (a metaclass whose __getattribute__
    raises, properties that raise): what cannot be read is left out, and
    the report always goes out."""
    try:
        name = _mark(exc, "jr_type", str) or _type_name(type(exc))
    except BaseException:
        name = "Exception"
    try:
        return _error_fields(exc, filename, name)
    except BaseException:
        return {"type": name, "message": "<the error could not be read>", "line": None, "traceback": ""}


def _error_fields(exc, filename, name):
    import traceback

    line = _mark(exc, "jr_line", int)
    if isinstance(exc, SyntaxError) and exc.filename == filename and type(exc.lineno) is int:
        line = exc.lineno
    frames = traceback.extract_tb(_exc_traceback(exc))
    user = [f for f in frames if f.filename == filename]
    if line is None and user:
        line = user[-1].lineno
    try:
        message = str(exc)
        if type(message) is not str:
            message = str.__str__(message)
    except BaseException:
        message = "<unprintable %s>" % name
    tb = "".join(traceback.format_list(user)) if user else ""
    return {"type": name, "message": _cap(message, ERROR_MAX_MESSAGE, False),
            "line": line if line is None or line >= 1 else None, "traceback": _cap(tb, ERROR_MAX_TRACEBACK, True)}


def _remember_source(source, filename):
    """Lets tracebacks show the user's lines: the file is not in the jail."""
    import linecache

    text = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)


def _compile(source, filename):
    try:
        return compile(source, filename, "exec", dont_inherit=True)
    except ValueError as e:  # NUL bytes: a syntax error like any other
        raise SyntaxError(str(e), (filename, 1, 1, None)) from None


def _load(source, filename, ctx, policy=None):
    if policy is None or not policy["python"]["guard"]:
        g = {"__name__": "__main__", "__file__": filename, "__builtins__": builtins}
        if ctx is not None:
            g["ctx"] = ctx
        exec(_compile(source, filename), g)
        return g
    return _load_guarded(source, filename, ctx, policy)


def _refuse(items, error_class):
    """The validator's verdict as one exception: every violation, the line
    of the first."""
    first = items[0]
    text = "; ".join("line %d:%d: %s" % (v["line"], v["col"], v["reason"]) for v in items)
    e = error_class(_cap(text, ERROR_MAX_MESSAGE, False))
    e.jr_line = first["line"]
    if first["type"] != "SecurityError":
        e.jr_type = first["type"]
    return e


def _register_indicators(policy):
    """The indicator modules (jail/ta.py) under the names the policy
    allows: `import ta` and the injected `ta` find them."""
    _jailrun_ta = _jailrun.runtime_module("_jailrun_ta")

    wanted = set(policy["python"]["imports"])
    for name, mod in _jailrun_ta.modules().items():
        if name in wanted and name not in sys.modules:
            sys.modules[name] = mod
    if "tesstrade_indicators" in wanted and "tesstrade_indicators" not in sys.modules:
        # the name scripts written for another engine import
        sys.modules["tesstrade_indicators"] = _jailrun.trusted_import("indicators")


def _load_guarded(source, filename, ctx, policy):
    """Validates, then runs the module under the profile's Python layer:
    restricted builtins and imports, neutralised names, the audit hook."""
    guard = _jailrun.runtime_module("_jailrun_guard")

    limit = policy["validator"]["max_source_bytes"]
    _register_indicators(policy)
    code = None
    if policy["validator"]["enabled"]:
        _jailrun_validate = _jailrun.runtime_module("_jailrun_validate")
        items, tree = _jailrun_validate.check_tree(policy, source, filename)
        if items:
            raise _refuse(items, guard.SecurityError)
        code = compile(tree, filename, "exec", dont_inherit=True)  # parsed once
    elif len(source) > limit:
        raise _refuse([{"line": 1, "col": 0, "type": "SecurityError",
                        "reason": "Code too complex: the source is %d bytes; the limit is %d"
                        % (len(source), limit)}], guard.SecurityError)
    if code is None:
        code = _compile(source, filename)
    gd = guard.Guard(policy, filename)
    b = gd.builtins(builtins.print, code)
    if policy["python"]["attribute_guard"]:
        gd.guard_format()
    g = {"__name__": "__main__", "__builtins__": b}
    if ctx is not None:
        g["ctx"] = ctx
    gd.globals(g, b)
    roots = [p for p in sys.path if p] + [p for p in _jailrun.DATAPATH.split(":") if p]
    gd.arm(roots)
    exec(code, g)
    return g


# The function a load entry checks for, by profile.
_ENTRY = {"worker": "tick", "strategy": "on_bar_strategy"}


def main(entry, source, filename, argv, policy):
    global LOG_MAX_CHARS, LOG_MAX_BATCH
    LOG_MAX_CHARS = policy["log"]["max_chars"]
    LOG_MAX_BATCH = policy["log"]["batch"]
    if entry == "script":
        return exec_main(source, filename, argv)
    if entry == "check":
        return check_main(source, filename, policy)
    if entry == "backtest":
        return backtest_main(source, filename, policy)
    if entry == "session":
        return session_main(policy)
    return worker_main(source, filename, policy, entry)


def check_main(source, filename, policy):
    _jailrun_validate = _jailrun.runtime_module("_jailrun_validate")
    _send({"type": "check", "violations": _jailrun_validate.check(policy, source, filename)})
    return 0


def worker_main(source, filename, policy, entry):
    ticks = entry == "ticks"
    buf = _TickLogBuffer() if ticks else _LogBuffer()
    ctx = Ctx(buf, policy.get("adapters")) if ticks else None
    # The runtime flushes these, whatever the script makes of sys.stdout.
    sys.stdout = so = _LogStream(buf, "info")
    sys.stderr = se = _LogStream(buf, "error")
    fname = "tick" if ticks else _ENTRY.get(policy["profile"], "tick")
    try:
        g = _load(source, filename, ctx, policy)
        if not callable(g.get(fname)):
            raise RuntimeError("%s defines no %s(%s) function"
                               % (filename, fname, "ctx" if fname == "tick" else "sdk, params"))
        tick = g[fname]
    except BaseException as e:
        so.flush()
        buf.flush()
        _remember_source(source, filename)
        _send({"type": "result", "id": 0, "error": _error_info(e, filename)})
        return 1
    buf.flush()
    on_error = _on_error_handler(g.get("on_error")) if ticks else None
    if ticks:
        _Tick.limit = policy["limits"]["tick_timeout"]
        _Tick.buf = buf
        import _signal  # not `signal`: its enums cost every jail ~5 ms to import

        _signal.signal(_signal.SIGALRM, _on_tick_alarm)
        # lazy: the clock runs while a tick runs or a log entry waits, so
        # an idle worker's jail is not woken between ticks
        _jailrun.bar_watch(_Tick.limit, min(0.05, _Tick.limit / 4), True)
    _send({"type": "ready"})
    _remember_source(source, filename)
    while True:
        msg = _jailrun.recv()
        if msg is None:
            return 0
        kind = msg.get("type")
        if kind == "shutdown":
            so.flush()
            buf.flush()
            return 0
        if kind != "run":
            raise RuntimeError("unexpected message from supervisor: %r" % (kind,))
        reply = {"type": "result", "id": msg["id"], "ok": True}
        _Tick.index = msg["id"]
        if msg.get("op") == "on_error":
            # the jail this tick ran in was killed: say so to the new one
            _call_on_error(on_error, ctx, msg["error"], buf, filename)
        else:
            err = _timed(tick, ctx)
            if err is not None:
                info = _error_info(err, filename)
                reply = {"type": "result", "id": msg["id"], "error": info}
                if on_error is not None:
                    # The tick's failure first: should on_error not return,
                    # the supervisor knows what failed, and that on_error ran.
                    so.flush()
                    se.flush()
                    buf.flush()
                    _send(dict(reply, on_error=True))
                    _call_on_error(on_error, ctx, {"type": info["type"], "message": info["message"],
                                                   "line": info["line"], "tick": msg["id"]}, buf, filename)
                    reply = {"type": "result", "id": msg["id"], "ok": True}
        so.flush()
        se.flush()
        buf.flush()
        _send(reply)


class _Tick:
    """The tick in progress, for the clock's TimeoutError."""

    index = 0
    limit = 60.0
    buf = None
    what = "tick %d"


def _on_tick_alarm(signum, frame):
    # Asked for by the C clock (jail/runclock.c) while a tick is overdue
    # or log entries have waited; a request left over from a tick that has
    # since ended is dropped.
    if _jailrun.log_take() and _Tick.buf is not None:
        _Tick.buf.flush()  # safe inside the log's own code too (see _LogBuffer._out)
    if _jailrun.bar_overdue():
        raise TimeoutError("%s exceeded its time limit of %g s" % (_Tick.what % _Tick.index, _Tick.limit))


def _timed(fn, *args):
    """fn(*args) under the tick clock: the exception it raised, a
    TimeoutError if it overran without one, or None."""
    err = None
    try:
        _jailrun.bar_begin(_Tick.index)
        fn(*args)
        took, over = _jailrun.bar_end()
    except BaseException as e:
        took, over = _jailrun.bar_end()
        err = e
    if over and not isinstance(err, TimeoutError):
        err = TimeoutError("%s exceeded its time limit of %g s" % (_Tick.what % _Tick.index, _Tick.limit))
    return err


def _on_error_handler(fn):
    """(fn, what it takes) for the script's on_error, decided once from its
    signature: on_error(ctx, error), on_error(error) (on_error(ctx) when that
    one parameter is named ctx) or on_error(); None when there is none."""
    if not callable(fn):
        return None
    try:
        params = _positional_params(fn)
    except BaseException:  # a callable shaped to break this: the documented form
        params = None
    if params is None or len(params) >= 2:
        return fn, ("ctx", "error")
    if params == ["ctx"]:
        return fn, ("ctx",)
    return fn, ("error",) if params else ()


def _positional_params(fn):
    """The names of the positional parameters `fn` takes ("*", "*" for
    *args), or None when it is not a function, a bound method or an object
    whose class defines __call__. Read from the code object: no user code
    runs (no attribute hooks, no inspect)."""
    bound = 0
    if type(fn) is _MethodType:
        bound, fn = 1, _method_func(fn)
    elif type(fn) is not _FunctionType:
        call = None
        for cls in _type_mro(type(fn)):
            call = _type_dict(cls).get("__call__")
            if call is not None:
                break
        bound, fn = 1, call
    if type(fn) is not _FunctionType:
        return None
    code = _func_code(fn)
    names = list(code.co_varnames[:code.co_argcount])[bound:]
    if code.co_flags & 0x04:  # CO_VARARGS
        names += ["*", "*"]
    return names


class _Probe:
    def method(self):
        pass


_FunctionType = type(_positional_params)
_MethodType = type(_Probe().method)
_method_func = _MethodType.__func__.__get__
_func_code = _FunctionType.__code__.__get__
_type_mro = type.__dict__["__mro__"].__get__
_type_dict = type.__dict__["__dict__"].__get__


def _call_on_error(on_error, ctx, info, buf, filename):
    """on_error once for a failed tick, given what it takes (ctx, the error
    dict, both or neither: _on_error_handler), under the same clock; what it
    raises is logged, never handed to on_error again."""
    if on_error is None:
        return
    fn, wants = on_error
    args = {"ctx": ctx, "error": dict(info)}
    buf.flush()  # the tick's log is out, whatever on_error does
    err = _timed(fn, *[args[w] for w in wants])
    if err is not None:
        try:
            e = _error_info(err, filename)
            where = " (line %d)" % e["line"] if e["line"] else ""
            text = "on_error raised %s: %s%s" % (e["type"], e["message"], where)
        except BaseException:
            text = "on_error raised an exception that could not be read"
        buf.add("error", text)


def backtest_main(source, filename, policy):
    """--bars: parse the bars, load the strategy under a memory cap, then
    run every bar as the supervisor's run message says."""
    bt = _jailrun.runtime_module("_jailrun_backtest")
    _jailrun_guard = _jailrun.runtime_module("_jailrun_guard")

    buf = _LogBuffer()
    # The runtime flushes these, whatever the script makes of sys.stdout.
    sys.stdout = so = _LogStream(buf, "info")
    sys.stderr = se = _LogStream(buf, "error")
    opts = policy["backtest"]
    try:
        try:
            bars = bt.read_bars(_jailrun.DATA_FD, _jailrun.DATA_NAME)
        except bt.BarsError as e:
            e.jr_type = "BarsError"
            raise
        # The heavy injected modules the script names, imported now rather
        # than on first use: the first bar's budget and the strategy's
        # memory cap are its own.
        for mod in bt.heavy_modules(source, policy["python"]["globals"]):
            __import__(mod)
        bt.cap_memory(opts["memory"])
        g = _load(source, filename, None, policy)
        fn = g.get("on_bar_strategy")
        if not callable(fn):
            raise RuntimeError("%s defines no on_bar_strategy(sdk, params) function" % filename)
    except BaseException as e:
        so.flush()
        buf.flush()
        _remember_source(source, filename)
        _send({"type": "result", "id": 0, "error": _error_info(e, filename)})
        return 1
    buf.flush()
    _send({"type": "ready", "bars": len(bars)})
    _remember_source(source, filename)
    while True:
        msg = _jailrun.recv()
        if msg is None or msg.get("type") == "shutdown":
            return 0
        if msg.get("type") != "run" or msg.get("op") != "backtest":
            raise RuntimeError("unexpected message from supervisor: %r" % (msg.get("type"),))

        def flushed(m):
            so.flush()
            se.flush()
            buf.flush()
            _send(m)

        why = bt.run(fn, bars, msg["params"], opts, lambda e: _error_info(e, filename),
                     _jailrun_guard.SecurityError, flushed)
        so.flush()
        buf.flush()
        if why is None:
            _send({"type": "result", "id": msg["id"], "ok": True})
        elif isinstance(why, bt.ProtocolError):
            _send({"type": "result", "id": msg["id"],
                   "error": {"type": "ProtocolError", "message": str(why), "line": None}})
        else:
            _send({"type": "result", "id": msg["id"],
                   "error": {"type": "BacktestAborted", "message": why, "line": None}})


def _exec_setup(filename, source=None, buf=None):
    """Profile exec's ordinary Python, for a script (its name and source)
    or a session (source None): returns the globals of a fresh __main__
    module, put in sys.modules (so pickle finds what the code defines, as
    multiprocessing's pools need). sys.executable names the interpreter
    the jail binds, which starts the same CPython under the same jail;
    multiprocessing's spawn start method re-runs a script from a copy of
    its source (the script is no file in the jail); matplotlib gets a
    writable configuration directory; a forked child's ctx.log entries
    (on buf, the _LogBuffer) go out at once."""
    import os

    if buf is not None:
        os.register_at_fork(after_in_child=lambda: _log_after_fork(buf))

    exe = _jailrun.EXECUTABLE
    sys.executable = sys._base_executable = exe
    spawn = sys.modules.get("multiprocessing.spawn")
    if spawn is not None:  # imported (a warm zygote's preload) before sys.executable was set
        spawn.set_executable(exe)
    os.environ.setdefault("MPLCONFIGDIR", os.path.join(os.environ.get("HOME") or "/scratch", ".config", "matplotlib"))
    main = type(sys)("__main__")
    main.__builtins__ = builtins
    if source is not None:
        main.__file__ = filename
        if spawn is not None:
            _spawn_main_copy(spawn, main, source, filename)
        else:
            sys.meta_path.insert(0, _AfterImport("multiprocessing.spawn",
                                                 lambda m: _spawn_main_copy(m, main, source, filename)))
    sys.modules["__main__"] = main
    return main.__dict__


class _AfterImport:
    """A meta path finder that calls fn(module) once `name` has been
    imported, then steps aside."""

    def __init__(self, name, fn):
        self.name, self.fn = name, fn

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        run, fn = spec.loader.exec_module, self.fn

        def exec_module(module):
            run(module)
            fn(module)

        spec.loader.exec_module = exec_module
        return spec


def _spawn_main_copy(spawn, main, source, filename):
    """A child of the spawn start method re-runs the script's file, named
    by __main__.__file__: where there is no such file, the first child
    gets a copy of the source in multiprocessing's own temporary
    directory (in TMPDIR, removed when the script ends)."""
    get = spawn.get_preparation_data
    copy = []

    def get_preparation_data(name):
        import os

        d = get(name)
        path = d.get("init_main_from_path")
        if path and sys.modules.get("__main__") is main and not os.path.exists(path):
            if not copy:
                from multiprocessing import util

                base = os.path.basename(filename)
                if not base.endswith(".py") or base.startswith("."):
                    base = "__main__.py"
                p = os.path.join(util.get_temp_dir(), base)
                with open(p, "wb") as f:
                    f.write(source if isinstance(source, bytes) else source.encode())
                copy.append(p)
            d["init_main_from_path"] = copy[0]
        return d

    spawn.get_preparation_data = get_preparation_data


def exec_main(source, filename, argv):
    buf = _LogBuffer()
    ctx = Ctx(buf)
    sys.argv = [filename] + list(argv)
    g = _exec_setup(filename, source, buf)
    g["ctx"] = ctx
    try:
        exec(_compile(source, filename), g)
        status = 0
    except SystemExit as e:
        code = e.code
        if code is None:
            status = 0
        elif isinstance(code, int):
            status = code & 0xFF
        else:
            print(code, file=sys.stderr)
            status = 1
    except BaseException as e:
        _remember_source(source, filename)
        _print_user_traceback(e)
        _send({"type": "result", "id": 0, "error": _error_info(e, filename)})
        status = 1
    buf.flush()
    return status


# A session's answers stay within what the supervisor accepts.
RESULT_MAX_REPR = 16000


def session_main(policy):
    """A session: code snippets ("cells") run one after another in one
    namespace, each under its own time limit; what a cell prints goes to
    the jail's stdout and stderr, which the supervisor attributes to it."""
    import _signal

    # a real __main__ (pools pickle what cells define), sys.executable and
    # the rest of profile exec's ordinary Python
    g = _exec_setup("<session>")
    sys.argv = [""]
    for stream in (sys.stdout, sys.stderr):
        try:  # a line shows as soon as it is printed (streamed answers)
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):
            pass
    _Tick.what = "execution %d"
    _signal.signal(_signal.SIGALRM, _on_tick_alarm)
    watched = None
    _send({"type": "ready"})
    while True:
        msg = _jailrun.recv()
        if msg is None or msg.get("type") == "shutdown":
            _flush_std()
            return 0
        if msg.get("type") != "run" or msg.get("op") != "execute":
            raise RuntimeError("unexpected message from supervisor: %r" % (msg.get("type"),))
        limit = float(msg["timeout"])
        if limit != watched:  # the clock runs only while a cell does
            _jailrun.bar_watch(limit, min(0.05, limit / 4), True)
            _Tick.limit = watched = limit
        _Tick.index = msg["id"]
        reply = _run_cell(msg["code"], "<cell %d>" % msg["id"], g)
        _flush_std()
        reply.update(type="result", id=msg["id"])
        _send(reply)


def _flush_std():
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except BaseException:
            pass


def _cell_code(source, filename):
    """(code of the statements, code of a final expression or None): the
    value of a cell is that of its last line when it is an expression, as
    in an interactive shell. Top-level await is allowed."""
    import ast

    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    try:
        tree = compile(source, filename, "exec", flags, dont_inherit=True)
    except ValueError as e:  # NUL bytes: a syntax error like any other
        raise SyntaxError(str(e), (filename, 1, 1, None)) from None
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    body = compile(tree, filename, "exec", flags, dont_inherit=True)
    return body, compile(last, filename, "eval", flags, dont_inherit=True) if last else None


def _eval_cell(code, g):
    r = eval(code, g)
    if code.co_flags & 0x80:  # CO_COROUTINE: the cell awaits at top level
        import asyncio

        r = asyncio.run(r)
    return r


def _cell_body(source, filename, g, out):
    body, last = _cell_code(source, filename)
    _eval_cell(body, g)
    if last is not None:
        out.append(_eval_cell(last, g))


def _run_cell(source, filename, g):
    """Runs one cell: {"ok": True[, "value": repr]} or {"error": {...}}."""
    _remember_source(source, filename)
    out = []
    err = _timed(_cell_body, source, filename, g, out)
    if err is None:
        reply = {"ok": True}
        if out and out[0] is not None:
            g["_"] = out[0]
            try:
                reply["value"] = _cap(repr(out[0]), RESULT_MAX_REPR, False)
            except BaseException as e:
                reply["value"] = "<repr failed: %s>" % _type_name(type(e))
        return reply
    info = _error_info(err, filename)
    try:
        info["traceback"] = _cap(_cell_traceback(err), ERROR_MAX_TRACEBACK, True)
    except BaseException:
        pass
    return {"error": info}


def _cell_traceback(exc):
    """The traceback as Python prints it, without the runtime's frames."""
    import traceback

    te = traceback.TracebackException(type(exc), exc, _exc_traceback(exc))
    for t in [te] + [x for x in (te.__cause__, te.__context__) if x is not None]:
        t.stack = traceback.StackSummary.from_list(
            [f for f in t.stack if f.filename != "<jailrun runtime>"])
    return "".join(te.format())


def _print_user_traceback(exc):
    # Leave out the runtime's own frames: the user's code starts below them.
    import traceback

    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == "<jailrun runtime>":
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)


def finish(status):
    """What interpreter teardown owes the script, without the teardown:
    wait for non-daemon threads, run atexit handlers, flush stdio. Returns
    the exit status (120 when flushing stdout fails, as python3 does)."""
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except BaseException:
            pass
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # as python3: nothing to flush
            continue
        try:
            stream.flush()
        except BaseException:
            if stream is sys.stdout and status == 0:
                status = 120
    return status
