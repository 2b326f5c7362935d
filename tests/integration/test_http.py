"""ctx.http: requests made by the supervisor, against a real HTTP server
started here on 127.0.0.1 (allowed only by an explicit test policy), the
egress policy judged on the address actually connected to, and the limits.
Refused addresses are refused before any packet leaves."""
import ast
import http.server
import os
import subprocess
import json
import threading
import time

import pytest

from hostprobe import slack
from conftest import JAILRUN, NATIVE_POLICY, run_script


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, code, body, ctype="application/json", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        port = self.server.server_port
        if self.path.startswith("/to-other-loopback"):
            return self.reply(302, b"", extra=[("Location", "http://127.0.0.2:%d/" % port)])
        if self.path.startswith("/to-localhost"):
            return self.reply(302, b"", extra=[("Location", "http://localhost:%d/echo" % port)])
        if self.path.startswith("/same-host"):
            return self.reply(302, b"", extra=[("Location", "/echo")])
        if self.path.startswith("/loop"):
            return self.reply(302, b"", extra=[("Location", "/loop")])
        if self.path.startswith("/hop"):
            return self.reply(301, b"", extra=[("Location", "/echo?hopped=1")])
        if self.path.startswith("/big"):
            return self.reply(200, b"x" * 5000, "text/plain")
        if self.path.startswith("/slow"):
            time.sleep(float(self.path.partition("s=")[2] or 3))
            return self.reply(200, b"late", "text/plain")
        if self.path.startswith("/missing"):
            return self.reply(404, b'{"error": "nope"}')
        if self.path.startswith("/latin"):
            return self.reply(200, "caf\u00e9".encode("latin-1"), "text/plain; charset=iso-8859-1")
        body = json.dumps({"path": self.path, "ua": self.headers.get("User-Agent"),
                           "x": self.headers.get("X-Test"), "auth": self.headers.get("Authorization")}).encode()
        self.reply(200, body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(n)
        self.reply(201, json.dumps({"ctype": self.headers.get("Content-Type"), "body": body.decode()}).encode())


@pytest.fixture(scope="module")
def server():
    s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=s.serve_forever, daemon=True)
    t.start()
    yield s.server_address[1]
    s.shutdown()


@pytest.fixture
def allow(tmp_path):
    pol = tmp_path / "http.json"
    pol.write_text('{"http": {"allow_addresses": ["127.0.0.1"], "max_response_bytes": 4096}}')
    return str(pol)


def logs(r):
    return [json.loads(x)["message"] for x in r.err.splitlines() if x.startswith('{"type":"log"')]


def worker(tmp_path, body, *args, timeout=60):
    src = "def tick(ctx):\n    h = ctx.http\n" + "".join("    %s\n" % l for l in body.strip().splitlines())
    return run_script(tmp_path, src, "--profile", "worker", "--json", "--state", str(tmp_path / "s.sqlite"),
                      "--workspace", str(tmp_path / "ws"), *args, timeout=timeout)


def test_get_post_and_json(tmp_path, server, allow):
    u = "http://127.0.0.1:%d" % server
    r = worker(tmp_path, """
r = h.get("%s/echo", params={"q": "a b&c", "n": 7}, headers={"X-Test": "yes"})
ctx.log.info(r["status"], r["json"], r["headers"]["content-type"], r["url"])
r = h.post("%s/p", json={"a": [1, 2]})
ctx.log.info(r["status"], r["json"])
ctx.log.info(h.post("%s/p", data={"k": "v w"})["json"])
ctx.log.info(h.post("%s/p", data="raw text")["json"]["body"])
r = h.get("%s/missing")
ctx.log.info(r["status"], r["json"], "error" in r)
ctx.log.info(h.get("%s/latin")["text"])
ctx.log.info(h.get("%s/hop")["json"]["path"])
""".replace("%s", u), "--policy", allow)
    assert r.code == 0, r
    assert logs(r) == [
        "200 {'path': '/echo?q=a+b%%26c&n=7', 'ua': 'jailrun/0.1.0', 'x': 'yes', 'auth': None} application/json "
        "http://127.0.0.1:%d/echo?q=a+b%%26c&n=7" % server,
        "201 {'ctype': 'application/json', 'body': '{\"a\": [1, 2]}'}",
        "{'ctype': 'application/x-www-form-urlencoded', 'body': 'k=v+w'}",
        "raw text",
        "404 {'error': 'nope'} False",
        "caf\u00e9",
        "/echo?hopped=1",
    ]


REFUSED = [
    ("http://127.0.0.1:PORT/", "127.0.0.1 is a loopback address"),
    ("http://2130706433:PORT/", "127.0.0.1 is a loopback address"),
    ("http://0x7f000001:PORT/", "127.0.0.1 is a loopback address"),
    ("http://0177.0.0.1:PORT/", "127.0.0.1 is a loopback address"),
    ("http://127.1:PORT/", "127.0.0.1 is a loopback address"),
    ("http://localhost:PORT/", "is a loopback address"),
    ("http://[::1]:PORT/", "::1 is a loopback address"),
    ("http://[::ffff:127.0.0.1]:PORT/", "::ffff:127.0.0.1 is a loopback address"),
    ("http://0.0.0.0:PORT/", "0.0.0.0 is an unspecified address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ("http://[fd00:ec2::254]/", "fd00:ec2::254 is a unique local address"),
    ("http://10.1.2.3/", "10.1.2.3 is a private address"),
    ("http://192.168.1.1/", "192.168.1.1 is a private address"),
    ("http://172.20.0.1/", "172.20.0.1 is a private address"),
    ("http://100.64.0.1/", "100.64.0.1 is a carrier-grade NAT address"),
    ("http://[fe80::1]/", "fe80::1 is a link-local address"),
    ("http://224.0.0.1/", "224.0.0.1 is a multicast address"),
]


@pytest.mark.parametrize("url,why", REFUSED, ids=[u for u, _ in REFUSED])
def test_internal_addresses_are_refused_by_default(tmp_path, server, url, why):
    r = worker(tmp_path, "ctx.log.info(h.get(%r, timeout=5))" % url.replace("PORT", str(server)))
    assert r.code == 0, r
    out = logs(r)[0]
    assert out.startswith("{'error': 'refused by the egress policy: ") and why in out, out


def test_redirects_are_judged_hop_by_hop(tmp_path, server, allow):
    u = "http://127.0.0.1:%d" % server
    r = worker(tmp_path, """
ctx.log.info(h.get("%s/to-other-loopback"))
ctx.log.info(h.get("%s/loop"))
""".replace("%s", u), "--policy", allow)
    assert logs(r) == ["{'error': 'refused by the egress policy: 127.0.0.2 is a loopback address'}",
                       "{'error': 'more than 5 redirects'}"]


@pytest.mark.parametrize("call,error", [
    ("h.get('ftp://example.org/')", "only http and https URLs"),
    ("h.get('file:///etc/passwd')", "only http and https URLs"),
    ("h.get('not a url')", "not a URL"),
    ("h.get('http://x/', headers={'X-A': 'a\\r\\nHost: evil'})", "request header X-A is not a valid header"),
    ("h.get('http://x/', headers={'Bad Name': 'v'})", "request header Bad Name is not a valid header"),
    ("h.request('TRACE', 'http://x/')", "method TRACE is not one of"),
    ("h.get('http://x/', timeout=0)", "timeout must be more than 0"),
    ("h.post('http://x/', json={1, 2})", "json cannot be sent"),
    ("h.post('http://x/', json=1, data='a')", "give json or data, not both"),
])
def test_bad_requests_are_error_dicts(tmp_path, call, error):
    r = worker(tmp_path, "ctx.log.info(%s)" % call)
    assert r.code == 0, r
    assert error in logs(r)[0], logs(r)


def test_limits(tmp_path, server, allow):
    u = "http://127.0.0.1:%d" % server
    t0 = time.monotonic()
    r = worker(tmp_path, """
ctx.log.info(h.get("%s/big"))
ctx.log.info(h.get("%s/slow", timeout=1))
""".replace("%s", u), "--policy", allow)
    assert logs(r) == ["{'error': 'the response is larger than 4096 bytes'}", "{'error': 'timed out'}"]
    assert time.monotonic() - t0 < slack(10)


def test_job_timeout_is_served_during_a_request(tmp_path, server, allow):
    t0 = time.monotonic()
    # the request would take 60 s: a timeout served only after it would be
    # told apart from one served during it, on a slow host as on a fast one
    r = worker(tmp_path, 'h.get("http://127.0.0.1:%d/slow?s=60", timeout=90)' % server, "--policy", allow,
               "--timeout", "1")
    assert r.code == 124 and time.monotonic() - t0 < min(slack(5), 30), r


def test_in_flight_cap(tmp_path, server, allow):
    """Calls sent without waiting for replies: the fifth is refused at once
    with an error dict while four are in flight."""
    pol = tmp_path / "both.json"
    pol.write_text('{"python": {"guard": false}, "http": {"allow_addresses": ["127.0.0.1"]}}')
    src = """
import json, socket, time
def tick(ctx):
    s = socket.socket(fileno=3)
    for i in range(1, 7):
        s.send(json.dumps({"type": "call", "id": i, "op": "http.request", "args": {
            "method": "GET", "url": "http://127.0.0.1:%d/slow", "headers": {}, "params": {}, "timeout": 10}}).encode())
    seen = []
    for _ in range(6):
        m = json.loads(s.recv(1 << 20))
        if "payload" in m:
            s.recv(1 << 20) if m["payload"] else None
        seen.append((m["id"], m["result"].get("status") or m["result"].get("error")))
    s.detach()
    ctx.log.info(sorted(seen))
""" % server
    r = run_script(tmp_path, src, "--policy", str(pol), "--json", "--state", str(tmp_path / "s.sqlite"),
                   timeout=60)
    got = eval(logs(r)[0])
    refused = [i for i, v in got if isinstance(v, str) and "already in flight" in v]
    done = [i for i, v in got if v == 200]
    assert refused == [5, 6] and sorted(done) == [1, 2, 3, 4], got


def test_host_lists(tmp_path, server):
    pol = tmp_path / "hosts.json"
    pol.write_text('{"http": {"allow_addresses": ["127.0.0.1", "::1"], "allow_hosts": ["127.0.0.1", "*.example.org"],'
                   ' "deny_hosts": ["bad.example.org"]}}')
    u = "http://127.0.0.1:%d" % server
    r = worker(tmp_path, """
ctx.log.info(h.get("%s/echo")["status"])
ctx.log.info(h.get("http://localhost:PORT/echo"))
ctx.log.info(h.get("http://bad.example.org/"))
ctx.log.info(h.get("%s/to-localhost"))
""".replace("%s", u).replace("PORT", str(server)), "--policy", str(pol))
    assert logs(r) == [
        "200",
        "{'error': 'refused by the egress policy: host localhost is not among the allowed hosts'}",
        "{'error': 'refused by the egress policy: host bad.example.org is denied by the policy'}",
        "{'error': 'refused by the egress policy: host localhost is not among the allowed hosts'}",
    ], r


def test_credentials_do_not_follow_a_redirect_to_another_host(tmp_path, server):
    pol = tmp_path / "lo.json"
    pol.write_text('{"http": {"allow_addresses": ["127.0.0.1", "::1"]}}')
    u = "http://127.0.0.1:%d" % server
    r = worker(tmp_path, """
ctx.log.info(h.get("%s/same-host", headers={"Authorization": "Bearer t0k"})["json"]["auth"])
ctx.log.info(h.get("%s/to-localhost", headers={"Authorization": "Bearer t0k"})["json"]["auth"])
""".replace("%s", u), "--policy", str(pol))
    assert logs(r) == ["Bearer t0k", "None"], r


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    """A real egress proxy (tinyproxy) on 127.0.0.1."""
    import socket
    import subprocess
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    d = tmp_path_factory.mktemp("tinyproxy")
    conf = d / "tinyproxy.conf"
    conf.write_text("Port %d\nListen 127.0.0.1\nTimeout 30\nAllow 127.0.0.1\nLogLevel Critical\n"
                    "MaxClients 20\nViaProxyName \"egress-test\"\n" % port)
    p = subprocess.Popen(["tinyproxy", "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    yield "http://127.0.0.1:%d" % port
    p.terminate()
    p.wait(timeout=10)


def test_egress_proxy_carries_every_request(tmp_path, server, proxy):
    r = worker(tmp_path, """
r = h.get("http://localhost:%d/echo")
ctx.log.info(r["status"], r["headers"].get("via"))
ctx.log.info(h.get("http://127.0.0.1:%d/echo"))
ctx.log.info(h.get("http://2130706433:%d/echo"))
ctx.log.info(h.get("http://169.254.169.254/latest/"))
""".replace("%d", str(server)), "--http-proxy", proxy)
    assert logs(r) == [
        "200 1.1 egress-test (tinyproxy/1.11.1)",
        "{'error': 'refused by the egress policy: 127.0.0.1 is a loopback address'}",
        "{'error': 'refused by the egress policy: 127.0.0.1 is a loopback address'}",
        "{'error': 'refused by the egress policy: 169.254.169.254 is a link-local address (cloud metadata lives there)'}",
    ], r


def test_proxy_from_the_policy_and_unreachable(tmp_path, server):
    pol = tmp_path / "px.json"
    pol.write_text('{"http": {"proxy": "http://127.0.0.1:1"}}')
    r = worker(tmp_path, 'ctx.log.info(h.get("http://localhost:%d/echo"))' % server, "--policy", str(pol))
    assert logs(r)[0].startswith("{'error': ") and "refused by the egress policy" not in logs(r)[0], r
    r = run_script(tmp_path, "def tick(ctx):\n    pass\n", "--http-proxy", "socks5://x:1")
    assert r.code == 2 and "is not \"\" or http://HOST:PORT" in r.err


def test_rate_limit(tmp_path, server):
    pol = tmp_path / "rate.json"
    pol.write_text('{"http": {"allow_addresses": ["127.0.0.1"], "rate_per_second": 3}}')
    r = worker(tmp_path, """
out = []
for i in range(5):
    r = h.get("http://127.0.0.1:%d/echo")
    out.append(r.get("status", r.get("error")))
ctx.log.info(out)
""" % server, "--policy", str(pol))
    out = ast.literal_eval(logs(r)[0])
    # three go out (each answered, or failed by the test's server: a CI
    # host saw it close one connection unanswered), then two are refused
    # without going out
    limited = "the rate limit of 3 requests a second is reached"
    assert all(x == 200 or (isinstance(x, str) and x != limited) for x in out[:3]), r
    assert out[3:] == [limited, limited], r


@pytest.mark.parametrize("header", ["Content-Length", "content-length", "Transfer-Encoding", "Host", "Connection",
                                    "Expect", "Upgrade", "TE", "Proxy-Authorization"])
def test_framing_headers_are_libcurls_alone(tmp_path, header):
    r = worker(tmp_path, "ctx.log.info(h.post('http://x.invalid/', headers={%r: '0'}, data='a'))" % header)
    assert logs(r) == ["{'error': 'request header %s is not a valid header'}" % header], r


MORE_REFUSED = ["http://192.0.2.1/", "http://198.51.100.1/", "http://203.0.113.1/", "http://192.88.99.1/",
                "http://[::127.0.0.1]/", "http://[::ffff:0:127.0.0.1]/", "http://[2002:7f00:1::]/",
                "http://[64:ff9b:1::7f00:1]/", "http://[100::1]/", "http://[2001::1]/", "http://255.255.255.255/"]


@pytest.mark.parametrize("url", MORE_REFUSED)
def test_special_purpose_addresses_are_refused(tmp_path, url):
    r = worker(tmp_path, "ctx.log.info(h.get(%r, timeout=5))" % url)
    assert logs(r)[0].startswith("{'error': 'refused by the egress policy: "), logs(r)


def own_addresses():
    out = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    addrs = []
    for line in out.splitlines():
        parts = line.split()
        if parts[2] in ("inet", "inet6") and not parts[1] == "lo":
            addrs.append(parts[3].split("/")[0])
    return [a for a in addrs if not a.startswith("fe80")]


def test_the_hosts_own_addresses_are_refused(tmp_path, server):
    addrs = own_addresses()
    if not addrs:
        pytest.skip("no address besides loopback on this host")
    urls = ["http://%s:%d/" % (a if ":" not in a else "[%s]" % a, server) for a in addrs]
    r = worker(tmp_path, "\n".join("ctx.log.info(h.get(%r, timeout=5))" % u for u in urls))
    assert len(logs(r)) == len(urls)
    for line in logs(r):  # "an address of this host", unless a range said it first
        assert line.startswith("{'error': 'refused by the egress policy: "), line


def test_get_with_a_body_and_nul(tmp_path):
    r = worker(tmp_path, """
ctx.log.info(h.request("GET", "http://x.invalid/", data="b"))
ctx.log.info(h.get("http://x.invalid/", headers={"X-A": "a\\x00b"}))
ctx.log.info(h.get("http://x.invalid/", params={"q": "a\\x00b"}))
""")
    assert logs(r) == ["{'error': 'a GET request has no body'}", "{'error': 'header X-A: a str without NUL'}",
                       "{'error': 'parameter q: a str without NUL'}"], r


def test_timeout_is_capped_not_refused(tmp_path, server, allow):
    r = worker(tmp_path, 'ctx.log.info(h.get("http://127.0.0.1:%d/echo", timeout=3600)["status"])' % server,
               "--policy", allow)
    assert logs(r) == ["200"], r


def test_without_libcurl_http_is_an_error_dict(tmp_path):
    """libcurl is loaded on the first request (its ~30 libraries cost every
    job otherwise): when it cannot be, ctx.http says so and the job goes on."""
    fake = tmp_path / "lib"
    fake.mkdir()
    (fake / "libcurl.so.4").write_bytes(b"")
    script = tmp_path / "h.py"
    script.write_text("def tick(ctx):\n    ctx.log.info(ctx.http.get('http://127.0.0.1:9/'))\n")
    p = subprocess.run([JAILRUN, "--json", str(script)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "LD_LIBRARY_PATH": str(fake)})
    assert p.returncode == 0, p
    msgs = [json.loads(x)["message"] for x in p.stderr.splitlines() if x.startswith('{"type":"log"')]
    assert msgs == ["{'error': 'http unavailable: libcurl: libcurl (libcurl.so.4) could not be loaded'}"], p


def test_jailrun_does_not_load_libcurl_until_a_request():
    maps = subprocess.run(["ldd", JAILRUN], capture_output=True, text=True).stdout
    assert "libcurl" not in maps and "libssl" not in maps, maps
