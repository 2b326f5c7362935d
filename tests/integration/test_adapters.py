"""Adapters: credentials from a root-only secrets file, used by the
supervisor (a messenger's token in the URL, a REST exchange's HMAC
signature) and never reaching the jail: not in any reply, error or log the
worker gets, not in the jail's memory."""
import contextlib
import hashlib
import hmac
import http.server
import json
import os
import subprocess
import threading

import pytest

from conftest import JAIL_MEMORY_SCAN, JAILRUN, NATIVE_POLICY, not_under_sanitizers, run_script

TOKEN = "123456:AAtokenSECRETvalue"
KEY = "KEYabcdef123"
SIGN = "SIGNsecret987xyz"
SECRETS = (TOKEN, KEY, SIGN)

SEEN = []


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, obj):
        b = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def handle_any(self, method):
        n = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(n).decode()
        SEEN.append({"method": method, "path": self.path, "headers": dict(self.headers), "body": body})
        if "/sendMessage" in self.path:
            return self.reply({"ok": True, "echo": self.path, "got": json.loads(body)})
        ts = self.headers.get("X-Ts", "")
        key = self.headers.get("X-Key", "")
        query = self.path.partition("?")[2]
        signed = query if method in ("GET", "DELETE") else body
        want = hmac.new(SIGN.encode(), (ts + key + signed).encode(), hashlib.sha256).hexdigest()
        self.reply({"valid": hmac.compare_digest(want, self.headers.get("X-Sign", "")), "key_seen": key,
                    "path": self.path})

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")


@pytest.fixture(scope="module")
def server():
    s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=s.serve_forever, daemon=True).start()
    yield s.server_address[1]
    s.shutdown()


@pytest.fixture
def setup(tmp_path, server):
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"tg": TOKEN, "ex_key": KEY, "ex_secret": SIGN}))
    os.chmod(secrets, 0o600)
    base = "http://127.0.0.1:%d" % server
    pol = tmp_path / "adapters.json"
    pol.write_text(json.dumps({
        "http": {"allow_addresses": ["127.0.0.1"]},
        "adapters": {
            "telegram": {"kind": "messenger", "base_url": base, "token_secret": "tg"},
            "exchange": {"kind": "signed_rest", "base_url": base, "key_secret": "ex_key", "sign_secret": "ex_secret",
                         "key_header": "X-Key", "sign_header": "X-Sign", "timestamp_header": "X-Ts"}}}))
    return str(pol), str(secrets)


def logs(r):
    return [json.loads(x)["message"] for x in r.err.splitlines() if x.startswith('{"type":"log"')]


def assert_no_secret(*texts):
    for t in texts:
        for s in SECRETS:
            assert s not in t, "a secret reached the worker"


def test_messenger_and_signed_rest(tmp_path, setup):
    pol, secrets = setup
    SEEN.clear()
    r = run_script(tmp_path, """
def tick(ctx):
    r = ctx.telegram.send(42, "hello")
    ctx.log.info(r["status"], r["json"]["ok"], r["json"]["echo"], r["json"]["got"], r["url"])
    r = ctx.exchange.get("/v5/position", params={"symbol": "BTCUSDT", "limit": 5})
    ctx.log.info(r["json"])
    r = ctx.exchange.post("/v5/order", body={"side": "Buy", "qty": "1"})
    ctx.log.info(r["json"]["valid"], r["json"]["key_seen"])
    try:
        ctx.nope
    except Exception as e:
        ctx.log.info(type(e).__name__, e)
""", "--policy", pol, "--secrets", secrets, "--json", "--state", str(tmp_path / "s.sqlite"))
    assert r.code == 0, r
    out = logs(r)
    assert out[0].startswith("200 True /bot[secret]/sendMessage {'chat_id': 42, 'text': 'hello'}"), out
    assert out[1] == "{'valid': True, 'key_seen': '[secret]', 'path': '/v5/position?symbol=BTCUSDT&limit=5'}", out
    assert out[2] == "True [secret]", out
    assert out[3] == "AttributeError ctx has no 'nope' (no such adapter in the policy)", out
    assert_no_secret(r.out, r.err)
    # ... while the services got them
    assert SEEN[0]["path"] == "/bot%s/sendMessage" % TOKEN
    assert SEEN[1]["headers"]["X-Key"] == KEY and len(SEEN[1]["headers"]["X-Sign"]) == 64


def test_errors_do_not_carry_secrets(tmp_path, setup):
    pol, secrets = setup
    p = json.loads(open(pol).read())
    p["adapters"]["telegram"]["base_url"] = "http://127.0.0.1:1"  # nobody listens
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(p))
    r = run_script(tmp_path, "def tick(ctx):\n    ctx.log.info(ctx.telegram.send('c', 't'))\n",
                   "--policy", str(bad), "--secrets", secrets, "--json", "--state", str(tmp_path / "s.sqlite"))
    assert logs(r)[0].startswith("{'error': "), r
    assert_no_secret(r.out, r.err)


def test_without_a_secrets_file(tmp_path, setup):
    pol, _ = setup
    r = run_script(tmp_path, "def tick(ctx):\n    ctx.log.info(ctx.telegram.send('c', 't'))\n",
                   "--policy", pol, "--json", "--state", str(tmp_path / "s.sqlite"))
    assert logs(r) == ["{'error': 'adapter telegram: no secrets file (jailrun --secrets): No such file or directory'}"]


@pytest.mark.parametrize("how", ["world-readable", "group-readable", "not-root", "symlink", "missing", "directory"])
def test_secrets_file_must_be_roots_alone(tmp_path, setup, how):
    pol, secrets = setup
    path = secrets
    if how == "world-readable":
        os.chmod(secrets, 0o604)
    elif how == "group-readable":
        os.chmod(secrets, 0o640)
    elif how == "not-root":
        os.chown(secrets, 65534, 65534)
    elif how == "symlink":
        path = str(tmp_path / "link.json")
        os.symlink(secrets, path)
    elif how == "missing":
        path = str(tmp_path / "none.json")
    else:
        path = str(tmp_path)
    r = run_script(tmp_path, "def tick(ctx):\n    pass\n", "--policy", pol, "--secrets", path)
    assert r.code == 2 and "secrets file" in r.err, r


SCAN = """
import ctypes, os
def readable(a, n):
    # copied by the kernel through a pipe: memory unmapped since /proc/self/maps
    # was read (the heap trimmed meanwhile) is EFAULT, not a crash
    r, w = os.pipe()
    out = []
    try:
        for off in range(0, n, 65536):
            k = min(65536, n - off)
            try:
                got = os.write(w, (ctypes.c_char * k).from_address(a + off))
            except OSError:
                break
            out.append(os.read(r, got))
    finally:
        os.close(r)
        os.close(w)
    return b"".join(out)
def found(head, tail):
    for line in open("/proc/self/maps").read().splitlines():
        parts = line.split()
        if "r" not in parts[1] or (len(parts) > 5 and parts[5].startswith(("[vvar", "[vsyscall"))):
            continue
        a, b = (int(x, 16) for x in parts[0].split("-"))
        data = readable(a, b - a)
        i = data.find(head)
        while i >= 0:
            if data[i + len(head):i + len(head) + len(tail)] == tail:
                return True
            i = data.find(head, i + 1)
    return False
PAIRS = %r
"""


@not_under_sanitizers(JAIL_MEMORY_SCAN)
def test_secrets_are_not_in_jail_memory(tmp_path, setup):
    """After the supervisor used them (so they are in its memory), none is
    in the jail's: it was cloned before they were read."""
    pol, secrets = setup
    native = json.loads(open(pol).read())
    native["python"] = {"guard": False}
    npol = tmp_path / "native.json"
    npol.write_text(json.dumps(native))
    pairs = [(s[:5].encode(), s[5:].encode()) for s in SECRETS]
    r = run_script(tmp_path, SCAN % pairs + """
def tick(ctx):
    ctx.telegram.send(1, "x")
    ctx.exchange.get("/v5/x")
    ctx.log.info([found(h, t) for h, t in PAIRS])
""", "--policy", str(npol), "--secrets", secrets, "--json", "--state", str(tmp_path / "s.sqlite"))
    assert logs(r) == ["[False, False, False]"], r
    # profile exec, with the same secrets file given
    script = tmp_path / "scan.py"
    script.write_text(SCAN % pairs + "print([found(h, t) for h, t in PAIRS])\n")
    p = subprocess.run([JAILRUN, "--profile", "exec", "--secrets", secrets, str(script)], capture_output=True,
                       text=True, timeout=60)
    assert p.stdout.strip() == "[False, False, False]", p


def test_adapter_declarations_are_checked(tmp_path):
    for decl, msg in [
        ({"log": {"kind": "messenger", "base_url": "https://x", "token_secret": "t"}}, "is not a free identifier"),
        ({"tg": {"kind": "pager", "base_url": "https://x"}}, "kind must be messenger or signed_rest"),
        ({"tg": {"kind": "messenger", "base_url": "ftp://x", "token_secret": "t"}}, "base_url"),
        ({"tg": {"kind": "messenger", "base_url": "https://x", "token_secret": "t", "extra": 1}}, "unknown or missing"),
        ({"tg": {"kind": "messenger", "base_url": "https://x"}}, "token_secret: expected a string"),
    ]:
        pol = tmp_path / "p.json"
        pol.write_text(json.dumps({"adapters": decl}))
        r = subprocess.run([JAILRUN, "--policy", str(pol), "--print-policy"], capture_output=True, text=True)
        assert r.returncode == 2 and msg in r.stderr, (decl, r.stderr)


class Redirecting(Handler):
    def do_GET(self):
        SEEN.append({"method": "GET", "path": self.path, "headers": dict(self.headers), "body": ""})
        if self.path.startswith("/v5/redir"):
            self.send_response(307)
            self.send_header("Location", "http://localhost:%d/capture" % self.server.server_port)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.reply({"path": self.path})


@contextlib.contextmanager
def signed_rest_on(tmp_path, handler, key, http_policy=None, python=None):
    """A server of `handler` on 127.0.0.1 and a signed_rest adapter "ex" on
    it, the key and sign secrets in a root-only file: yields (base URL,
    policy file, secrets file)."""
    s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=s.serve_forever, daemon=True).start()
    try:
        base = "http://127.0.0.1:%d" % s.server_address[1]
        secrets = tmp_path / "s.json"
        secrets.write_text(json.dumps({"k": key, "s": SIGN}))
        os.chmod(secrets, 0o600)
        pol = {"http": http_policy or {"allow_addresses": ["127.0.0.1"]}, "adapters": {"ex": {
            "kind": "signed_rest", "base_url": base, "key_secret": "k", "sign_secret": "s", "key_header": "X-Key",
            "sign_header": "X-Sign", "timestamp_header": "X-Ts"}}}
        if python:
            pol["python"] = python
        (tmp_path / "p.json").write_text(json.dumps(pol))
        yield base, tmp_path / "p.json", secrets
    finally:
        s.shutdown()


def test_adapters_do_not_follow_redirects(tmp_path):
    with signed_rest_on(tmp_path, Redirecting, KEY, {"allow_addresses": ["127.0.0.1", "::1"]}) as (base, pol, secrets):
        SEEN.clear()
        r = run_script(tmp_path, "def tick(ctx):\n    r = ctx.ex.get('/v5/redir')\n    ctx.log.info(r['status'])\n",
                       "--policy", str(pol), "--secrets", str(secrets), "--json", "--state", str(tmp_path / "x.sqlite"))
        assert logs(r) == ["307"], r
        assert [x["path"] for x in SEEN] == ["/v5/redir"], "the key went nowhere else"


@pytest.mark.parametrize("path,why", [("/a%2e%2e/x", "'%'"), ("/a\\x00b", "NUL"), ("/a b", "spaces"),
                                      ("/../x", "'..'"), ("x", "start with /")])
def test_signed_paths_are_plain(tmp_path, setup, path, why):
    pol, secrets = setup
    r = run_script(tmp_path, "def tick(ctx):\n    ctx.log.info(ctx.exchange.get(%r))\n" % path, "--policy", pol,
                   "--secrets", secrets, "--json", "--state", str(tmp_path / "s.sqlite"))
    assert "path must start with / and hold no" in logs(r)[0], r


def test_secret_values_are_checked_without_being_shown(tmp_path, setup):
    pol, _ = setup
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"tg": "abc def\u0007GHIJKL", "ex_key": KEY, "ex_secret": SIGN}))
    os.chmod(bad, 0o600)
    r = run_script(tmp_path, "def tick(ctx):\n    ctx.log.info(ctx.telegram.send(1, 'x'))\n", "--policy", pol,
                   "--secrets", str(bad), "--json", "--state", str(tmp_path / "s.sqlite"))
    assert "tg must be 4 to 4096 printable ASCII characters without spaces" in logs(r)[0], r
    assert "GHIJKL" not in r.out + r.err


ODD_KEY = "EXKEY-abc+/=9876"
LAST = {}


class KeyEcho(http.server.BaseHTTPRequestHandler):
    """A server that says back the key the adapter sent it (X-Key), or the
    last one it was sent, in the mode the query asks for (m=)."""

    def log_message(self, *a):
        pass

    def key_and_mode(self):
        key = self.headers.get("X-Key") or LAST.get("key", "")
        if self.headers.get("X-Key"):
            LAST["key"] = key
        return key, self.path.partition("m=")[2]


class Echo(KeyEcho):
    """Says the key back in the ways other services' encoders would."""

    def do_GET(self):
        key, mode = self.key_and_mode()
        import urllib.parse
        ctype, extra = "application/json", []
        if mode == "php":
            body = json.dumps({"k": key}).replace("/", "\\/").encode()
        elif mode == "net":
            body = ('{"k": "%s"}' % "".join(c if c.isalnum() else "\\u%04X" % ord(c) for c in key)).encode()
        elif mode == "quote":
            body, ctype = urllib.parse.quote(key).encode(), "text/plain"
        elif mode == "lowerhex":
            body, ctype = urllib.parse.quote(key, safe="").lower().encode(), "text/plain"
        elif mode == "utf16":
            body, ctype = key.encode("utf-16-le"), "text/plain; charset=utf-16le"
        elif mode == "header":
            body, extra = b"{}", [(key.lower().replace("/", "-").replace("=", "-").replace("+", "-"), "v"),
                                  ("X-Echo", key)]
        else:
            body = json.dumps({"k": key}).encode()
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


def test_secrets_are_scrubbed_in_every_spelling(tmp_path):
    with signed_rest_on(tmp_path, Echo, ODD_KEY) as (base, pol, secrets):
        r = run_script(tmp_path, """
def tick(ctx):
    for m in ("plain", "php", "net", "quote", "lowerhex", "utf16", "header"):
        ctx.log.info(m, ctx.ex.get("/e", params={"m": m}))
    ctx.log.info("http", ctx.http.get("%s/last?m=plain"))
""" % base, "--policy", str(pol), "--secrets", str(secrets), "--json", "--state", str(tmp_path / "x.sqlite"))
        assert r.code == 0, r
        out = "\n".join(logs(r))
        variants = [ODD_KEY, ODD_KEY.replace("/", "\\/"), "EXKEY%2Dabc", "abc%2B/%3D9876", "abc%2b%2f%3d9876",
                    "\\u002B", ODD_KEY.lower()]
        for v in variants:
            assert v not in out, (v, out)
        assert "charset utf-16le cannot be checked for secrets" in out
        assert out.count("[secret]") >= 5, out


@not_under_sanitizers(JAIL_MEMORY_SCAN)
def test_restarted_jail_holds_no_secret_or_state(tmp_path, setup):
    """A worker's later jails come from a process that never served it: after
    the supervisor used the secrets, stored and read a state value, the
    jail that replaces a crashed one finds none of them in its memory."""
    pol, secrets = setup
    native = json.loads(open(pol).read())
    native["python"] = {"guard": False}
    npol = tmp_path / "native.json"
    npol.write_text(json.dumps(native))
    value = "STATEvalue-Zq81kx"
    pairs = [(s[:5].encode(), s[5:].encode()) for s in SECRETS] + [(value[:5].encode(), value[5:].encode())]
    r = run_script(tmp_path, SCAN % pairs + """
import os
restarted = False
def tick(ctx):
    if not restarted:
        ctx.telegram.send(1, "x")
        ctx.exchange.get("/v5/x")
        ctx.state.set("v", "%s"[::-1])  # the value itself is not in the source
        ctx.state.get("v")
        os._exit(1)
    ctx.log.info([found(h, t) for h, t in PAIRS])
def on_error(ctx, error):
    global restarted
    restarted = True
""" % value[::-1], "--policy", str(npol), "--secrets", secrets, "--json", "--state", str(tmp_path / "s.sqlite"),
                   "--interval", "10ms", "--ticks", "2")
    assert logs(r) == ["[False, False, False, False]"], r
    assert r.json["stats"]["restarts"] == 1


def _split(key):
    """The key with its characters written in turn plainly, %-escaped,
    JSON-escaped and as HTML references: a reader that decodes each kind
    gets it back."""
    forms = (lambda c: c, lambda c: "%%%02X" % ord(c), lambda c: "\\u%04x" % ord(c), lambda c: "&#%d;" % ord(c))
    return "".join(forms[i % 4](c) for i, c in enumerate(key))


def charset_modes(key):
    """mode: (Content-Type (a list: sent that many times), body, what the worker must get)."""
    k, u16 = key.encode(), key.encode("utf-16-le")
    doc = json.dumps({"k": key})
    half = len(key) // 2
    return {
        "quoted": ('text/plain; charset="utf-16"', key.encode("utf-16"), "charset utf-16 cannot be checked"),
        "quoted-escape": ('text/plain; charset="utf\\-16le"', u16, "charset utf-16le cannot be checked"),
        "decoy": ("text/plain; x=charset=utf-8; charset=utf-16", key.encode("utf-16"), "Content-Type cannot be read"),
        "decoy-quoted": ('text/plain; x="; charset=utf-8"; charset=utf-16le', u16, "charset utf-16le cannot be checked"),
        "repeated": ("text/plain; charset=utf-8; charset=utf-16le", u16, "names its charset more than once"),
        "two-headers": (["text/plain; charset=utf-8", "text/plain; charset=utf-16le"], u16,
                        "Content-Type cannot be read"),
        "folded": ("text/plain;\r\n charset=utf-16le", u16, "Content-Type cannot be read"),
        "unknown": ("text/plain; charset=x-klingon", k, "charset x-klingon cannot be checked"),
        "utf-7": ("text/plain; charset=utf-7", key.encode("utf-7"), "charset utf-7 cannot be checked"),
        "utf-16be": ("text/plain; charset=UTF-16BE", key.encode("utf-16-be"), "charset UTF-16BE cannot be checked"),
        "utf-32": ("application/json; charset=utf-32", doc.encode("utf-32"), "charset utf-32 cannot be checked"),
        "cp037": ("text/plain; charset=cp037", key.encode("cp037"), "charset cp037 cannot be checked"),
        "json-utf16": ("application/json", doc.encode("utf-16-le"), "NUL characters"),
        "json-utf32": ("application/json", doc.encode("utf-32-be"), "NUL characters"),
        "bom16": ("text/plain", key.encode("utf-16"), "UTF-16LE byte order mark while its charset is utf-8"),
        "bom32": ("text/plain; charset=utf-8", key.encode("utf-32"), "UTF-32LE byte order mark"),
        "bom8-latin1": ("text/plain; charset=iso-8859-1", b"\xef\xbb\xbf" + k,
                        "UTF-8 byte order mark while its charset is iso-8859-1"),
        "meta": ("text/html", b'<meta charset="utf-16le">' + u16, "NUL characters"),
        "split-utf16": ("text/plain", k[:half] + key[half:].encode("utf-16-le"), "NUL characters"),
        "overlong": ("text/plain", k[:5] + b"\xc0\x80" + k[5:], "not valid utf-8 text (at byte 5)"),
        "sjis-trail": ("text/plain; charset=shift_jis", b"\x81" + k, "bytes hold a credential"),
        # decoded here, and the key replaced
        "cp1252": ("text/plain; charset=windows-1252", b"\x80 " + key.encode("cp1252"), "[secret]"),
        "latin1-quoted": ('text/plain; charset="ISO-8859-1"', ("caf\u00e9 " + key).encode("latin-1"), "[secret]"),
        "utf8-bom": ("application/json; charset=utf-8", b"\xef\xbb\xbf" + doc.encode(), "[secret]"),
        "split": ("text/plain", _split(key).encode(), "[secret]"),
        "split-json": ("application/json", ('{"k": "%s%s"}' % (key[:half], "".join("\\u%04X" % ord(c) for c in key[half:])))
                       .encode(), "[secret]"),
        "json-as-text": ("text/plain", json.dumps(key.lower()).encode(), "[secret]"),
    }


class Charsets(KeyEcho):
    """Says the key back in the charset and spelling the query asks for."""

    def do_GET(self):
        key, mode = self.key_and_mode()
        ctype, body, _ = charset_modes(key)[mode]
        self.send_response(200)
        for c in ctype if isinstance(ctype, list) else [ctype]:
            self.send_header("Content-Type", c)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ATTACK = """
import codecs, html, json
from urllib.parse import unquote, unquote_plus
KEY = %r[::-1]

def readings(r):
    "Every way a worker might read the reply again."
    t = r.get("text", "") + " " + r.get("error", "")
    out = [json.dumps(r), repr(r), t]
    for f in (unquote, unquote_plus, html.unescape, lambda s: s.replace("\\x00", ""),
              lambda s: s.replace("\\ufffd", ""), lambda s: unquote(html.unescape(s))):
        out.append(f(t))
    try:
        out.append(json.dumps(json.loads(t), ensure_ascii=False))
    except ValueError:
        pass
    for raw in (t.encode("utf-8"), t.encode("latin-1", "ignore"), t.encode("cp1252", "ignore")):
        for skip in range(4):
            for cs in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be", "utf-16", "utf-7", "shift_jis"):
                out.append(raw[skip:].decode(cs, "ignore"))
    return out

def tick(ctx):
    for m in MODES:
        for who, r in (("adapter", ctx.ex.get("/c", params={"m": m})), ("http", ctx.http.get(BASE + "/c?m=" + m))):
            ctx.log.info(who, m, json.dumps(r)[:300])
            if any(KEY.lower() in x.lower() for x in readings(r)):
                ctx.log.info("LEAK", who, m)
"""


def test_no_charset_or_spelling_carries_a_secret(tmp_path):
    """Issue 14: the supervisor read Content-Type one way and the runtime
    another, so a UTF-16 echo of a credential reached the worker in clear."""
    with signed_rest_on(tmp_path, Charsets, ODD_KEY, {"allow_addresses": ["127.0.0.1"], "rate_per_second": 1000},
                        {"guard": False}) as (base, pol, secrets):
        modes = charset_modes(ODD_KEY)
        src = ATTACK % ODD_KEY[::-1] + "MODES = %r\nBASE = %r\n" % (list(modes), base)
        r = run_script(tmp_path, src, "--policy", str(pol), "--secrets", str(secrets), "--json",
                       "--state", str(tmp_path / "x.sqlite"))
        assert r.code == 0, r
        out = logs(r)
        assert not [x for x in out if x.startswith("LEAK")], out
        got = {}
        for line in out:
            who, m, reply = line.split(" ", 2)
            got[who, m] = json.loads(reply + "\"}" if not reply.endswith("}") else reply)
        for m, (_, _, want) in modes.items():
            for who in ("adapter", "http"):
                reply = got[who, m]
                if want == "[secret]":
                    assert "[secret]" in reply["text"] and "error" not in reply, (who, m, reply)
                else:
                    assert want in reply["error"] and "cannot be checked for secrets" in reply["error"], (who, m, reply)
                    assert "text" not in reply, (who, m, reply)
        assert ODD_KEY.lower() not in (r.out + r.err).lower()


def test_without_secrets_every_known_charset_is_decoded(tmp_path):
    """No secret at stake: text in UTF-16, UTF-32 or EBCDIC is decoded by
    the supervisor all the same, and an unknown charset's bytes are read as
    UTF-8, bad bytes replaced."""
    s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Charsets)
    threading.Thread(target=s.serve_forever, daemon=True).start()
    try:
        base = "http://127.0.0.1:%d" % s.server_address[1]
        LAST["key"] = "caf\u00e9-\u00e8"
        pol = tmp_path / "p.json"
        pol.write_text(json.dumps({"http": {"allow_addresses": ["127.0.0.1"]}}))
        r = run_script(tmp_path, """
def tick(ctx):
    for m in ("quoted", "utf-16be", "utf-32", "cp037", "bom16", "unknown", "cp1252"):
        r = ctx.http.get("%s/c?m=" + m)
        ctx.log.info(m, r.get("json", r.get("text", r.get("error"))))
""" % base, "--policy", str(pol), "--json", "--state", str(tmp_path / "x.sqlite"))
        assert logs(r) == ["quoted caf\u00e9-\u00e8", "utf-16be caf\u00e9-\u00e8", "utf-32 {'k': 'caf\u00e9-\u00e8'}",
                           "cp037 caf\u00e9-\u00e8", "bom16 \ufffd\ufffdc\x00a\x00f\x00\ufffd\x00-\x00\ufffd\x00",
                           "unknown caf\u00e9-\u00e8", "cp1252 \u20ac caf\u00e9-\u00e8"], r
    finally:
        s.shutdown()
