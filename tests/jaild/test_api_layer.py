"""The daemon's API server layer (supervisor/jaild/api*.c), driven over its
unix socket with the real curl and httpx.

The server here is tests/jaild/api-test-server: the real API layer linked
with an in-memory test double for a backend (no jobs run). The double's
hooks: a tick answers after a 50 ms timer; a job answers at once, after
policy.test_delay seconds, or once policy.test_barrier jobs wait together;
GET /v1/health counts what it holds ("pending" answers, "followers" of
logs) and what the server cancelled ("cancelled").

Waits are on conditions; their deadlines are backstops stretched with the
host's pace (hostprobe.slack), never speed assertions.
"""
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import httpx
import pytest

import hostprobe
from conftest import not_under_sanitizers

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.environ.get("API_TEST_SERVER") or os.path.join(HERE, "api-test-server")
NOBODY = 65534


class Server:
    """One api-test-server on a socket in a fresh directory anyone may enter
    (so a non-root peer can reach the socket when its mode lets it)."""

    def __init__(self, *args, valgrind=False):
        self.dir = tempfile.mkdtemp(prefix="jr-api-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.path = os.path.join(self.dir, "api.sock")
        self.log = os.path.join(self.dir, "server.log")
        cmd = [SERVER, self.path, *args]
        if valgrind:
            cmd = ["valgrind", "-q", "--error-exitcode=99", "--leak-check=full", "--errors-for-leak-kinds=definite",
                   "--show-leak-kinds=definite", *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(self.log, "w"), text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            raise AssertionError("server did not start: %r\n%s" % (line, self.stderr()))

    def stderr(self):
        with open(self.log) as f:
            return f.read()

    def client(self, **kw):
        return httpx.Client(transport=httpx.HTTPTransport(uds=self.path), base_url="http://jaild",
                            timeout=hostprobe.slack(20), **kw)

    def async_client(self, n=10):
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=self.path, limits=limits),
                                 base_url="http://jaild", timeout=hostprobe.slack(60))

    def curl(self, *args, user=None):
        cmd = ["curl", "-sS", "--unix-socket", self.path, "-w", "\n%{http_code}", *args]
        if user is not None:
            cmd = ["setpriv", "--reuid=%d" % user[0], "--regid=%d" % user[1],
                   *(["--groups=%s" % ",".join(map(str, user[2]))] if len(user) > 2 else ["--clear-groups"]),
                   *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=hostprobe.slack(30))
        assert out.returncode == 0, out.stderr
        body, _, code = out.stdout.rpartition("\n")
        return int(code), body

    def health(self):
        with self.client() as c:
            r = c.get("/v1/health")
            assert r.status_code == 200, r.text
            return r.json()

    def wait_health(self, cond, what):
        deadline = time.monotonic() + hostprobe.slack(10)
        while True:
            h = self.health()
            if cond(h):
                return h
            if time.monotonic() > deadline:
                raise AssertionError("%s: never happened; health %s" % (what, h))
            time.sleep(0.02)

    def stop(self):
        """SIGTERM; returns the exit status (0: nothing held was left)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=hostprobe.slack(60))
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.stdout.close()

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def server_factory():
    made = []

    def make(*args, **kw):
        s = Server(*args, **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.cleanup()


@pytest.fixture
def server(server_factory):
    s = server_factory()
    yield s
    assert s.stop() == 0, s.stderr()


def error_of(r):
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}, body
    return body["error"]["type"], body["error"]["message"]


def new_worker(c, **fields):
    r = c.post("/v1/workers", json={"source": "def tick(ctx):\n    pass\n", **fields})
    assert r.status_code == 201, r.text
    return r.json()["id"]


# ---- routing -----------------------------------------------------------

def test_routes_reach_their_handlers(server):
    with server.client() as c:
        wid = new_worker(c, name="one", schedule={"every": 60})
        assert c.get("/v1/workers/%s" % wid).json()["name"] == "one"
        assert [w["id"] for w in c.get("/v1/workers").json()["workers"]] == [wid]
        r = c.patch("/v1/workers/%s" % wid, json={"name": "uno", "schedule": None})
        assert r.status_code == 200 and r.json()["name"] == "uno" and r.json()["schedule"] is None
        assert c.post("/v1/workers/%s/pause" % wid).json()["paused"] is True
        r = c.post("/v1/workers/%s/pause" % wid)
        assert r.status_code == 409 and error_of(r)[0] == "ConflictError"
        r = c.post("/v1/workers/%s/tick" % wid)
        assert r.status_code == 409 and "paused" in error_of(r)[1]
        assert c.post("/v1/workers/%s/resume" % wid).json()["paused"] is False
        assert c.post("/v1/workers/%s/tick" % wid).json() == {"id": wid, "tick": 1, "result": {}}
        r = c.post("/v1/jobs", json={"source": "print(1)", "args": ["a"]})
        assert r.status_code == 200 and r.json()["status"] == "done"
        r = c.post("/v1/jobs", json={"source": "print(1)", "stdin": ""})  # a job has no stdin
        assert r.status_code == 400 and error_of(r)[0] == "ValueError"
        r = c.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        assert "jaild_workers 1\n" in r.text
        r = c.delete("/v1/workers/%s" % wid)
        assert r.status_code == 204 and r.content == b""
        r = c.get("/v1/workers/%s" % wid)
        assert r.status_code == 404 and error_of(r) == ("NotFoundError", "no worker %s" % wid)


def test_curl_drives_the_api(server):
    code, body = server.curl("-H", "Content-Type: application/json", "-d", '{"source": "x", "name": "c"}',
                             "http://jaild/v1/workers")
    assert code == 201, body
    wid = json.loads(body)["id"]
    code, body = server.curl("-X", "POST", "http://jaild/v1/workers/%s/tick" % wid)
    assert code == 200 and json.loads(body)["tick"] == 1
    code, body = server.curl("http://jaild/v1/workers/%s/logs" % wid)
    assert code == 200 and [json.loads(x) for x in body.splitlines()] == [{"level": "info", "message": "tick 1"}]


@pytest.mark.parametrize("method,path,allow", [
    ("PUT", "/v1/workers/w1", "GET, PATCH, DELETE"),
    ("GET", "/v1/workers/w1/tick", "POST"),
    ("DELETE", "/v1/workers", "POST, GET"),
    ("POST", "/v1/health", "GET"),
    ("POST", "/metrics", "GET"),
])
def test_method_not_allowed_names_the_allowed(server, method, path, allow):
    with server.client() as c:
        r = c.request(method, path)
    assert r.status_code == 405
    assert r.headers["allow"] == allow
    assert error_of(r)[0] == "MethodNotAllowedError"


@pytest.mark.parametrize("path", ["/", "/v1", "/v1/workers/", "/v1/workers/a/b", "/v1/workers/../x",
                                  "/v2/health", "/v1/health/x", "/v1/workers/a%2Fb/tick", "/v1/jobs/1"])
def test_unknown_paths_are_404(server, path):
    with server.client() as c:
        r = c.get(path)
    assert r.status_code == 404 and error_of(r)[0] == "NotFoundError"


def test_unknown_worker_is_404_from_the_backend(server):
    with server.client() as c:
        for method, path in [("GET", ""), ("DELETE", ""), ("POST", "/tick"), ("POST", "/pause"),
                             ("GET", "/logs")]:
            r = c.request(method, "/v1/workers/nope" + path)
            assert r.status_code == 404 and error_of(r) == ("NotFoundError", "no worker nope"), (method, path)


def test_an_endpoint_the_backend_lacks_is_501(server_factory):
    s = server_factory("--without", "metrics")
    with s.client() as c:
        r = c.get("/metrics")
        assert r.status_code == 501 and error_of(r)[0] == "NotImplementedError"
        assert c.get("/v1/health").status_code == 200


def test_a_backend_that_never_answers_gets_500_not_a_hang(server):
    with server.client() as c:
        r = c.post("/v1/jobs", json={"source": "x", "policy": {"test_forget": True}})
        assert r.status_code == 500 and error_of(r)[0] == "InternalError"
    assert "neither answered nor kept the call" in server.stderr()


# ---- bodies ------------------------------------------------------------

@pytest.mark.parametrize("body,where", [
    (b'{"source": "x",', "line 1, column 15"),
    (b'{"source": "x"}\n{', "line 2, column 1"),
    (b'{"source": "x", "source": "y"}', "line 1, column"),
    (b'\xff', "line"),
])
def test_invalid_json_is_400_with_its_place(server, body, where):
    with server.client() as c:
        r = c.post("/v1/workers", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    kind, msg = error_of(r)
    assert kind == "ValueError" and msg.startswith("invalid JSON at ") and where in msg, msg


@pytest.mark.parametrize("path,body,msg", [
    ("/v1/workers", {"source": "x", "sorce": "y"}, "unknown field 'sorce'"),
    ("/v1/workers", {"name": "x"}, "missing required field 'source'"),
    ("/v1/workers", {"source": 3}, "field 'source': expected string, got integer"),
    ("/v1/workers", {"source": "x", "policy": []}, "field 'policy': expected object, got array"),
    ("/v1/workers", {"source": "x", "schedule": {"every": "1m"}},
     "field 'schedule.every': expected number, got string"),
    ("/v1/workers", {"source": "x", "schedule": {"every": 1, "at": 2}}, "unknown field 'schedule.at'"),
    ("/v1/workers", [1], "body: expected an object, got array"),
    ("/v1/jobs", {"source": "x", "args": "a"}, "field 'args': expected array, got string"),
    ("/v1/workers/w1/tick", {"now": True}, "unknown field 'now'"),
])
def test_fields_are_checked_by_name(server, path, body, msg):
    with server.client() as c:
        new_worker(c)
        r = c.post(path, json=body)
    assert r.status_code == 400 and error_of(r) == ("ValueError", msg)


def test_patch_checks_its_own_fields(server):
    with server.client() as c:
        wid = new_worker(c)
        r = c.patch("/v1/workers/" + wid, json={"paused": True})
        assert r.status_code == 400 and error_of(r) == ("ValueError", "unknown field 'paused'")
        r = c.patch("/v1/workers/" + wid, json={})
        assert r.status_code == 200


def test_a_body_must_be_json(server):
    with server.client() as c:
        r = c.post("/v1/workers", content=b"source=x", headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == 415 and error_of(r)[0] == "UnsupportedMediaTypeError"
        r = c.post("/v1/workers", content=b'{"source": "x"}')
        assert r.status_code == 415
        r = c.post("/v1/workers", content=b'{"source": "x"}', headers={"content-type": "application/json; charset=utf-8"})
        assert r.status_code == 201


def test_a_chunked_body_is_refused_unread(server):
    request = (b"POST /v1/workers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")
    code, err = raw_request(server.path, request)  # the answer comes before any chunk is sent
    assert code == 411 and err["error"]["type"] == "LengthRequiredError"
    assert server.health()["status"] == "ok"


def raw_request(path, request):
    """Sends request bytes on a fresh connection and reads until the server
    closes it or a whole JSON body came: (status, parsed body)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sk:
        sk.settimeout(hostprobe.slack(20))
        sk.connect(path)
        sk.sendall(request)
        data = b""
        while not data.endswith(b"}\n"):
            chunk = sk.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), data
    return int(head.split()[1]), json.loads(body)


def post_bytes(target, body, length=None):
    return (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (target.encode(), len(body) if length is None else length, body))


def test_oversize_body_is_413_and_the_server_goes_on(server_factory):
    s = server_factory("--max-body", "65536")
    # A body of cap + 1 bytes, sent whole (it fits the socket's buffer): the
    # server answers from the headers and leaves the body unread.
    body = b'{"source": "%s"}' % (b"x" * (65536 - 13))
    assert len(body) == 65537
    code, err = raw_request(s.path, post_bytes("/v1/jobs", body))
    assert code == 413 and err["error"]["type"] == "PayloadTooLargeError"
    assert "65537" in err["error"]["message"] and "65536" in err["error"]["message"]
    with s.client() as c:
        # exactly the cap passes
        body = b'{"source": "%s"}' % (b"x" * (65536 - 14))
        assert len(body) == 65536
        assert c.post("/v1/jobs", content=body, headers={"content-type": "application/json"}).status_code == 200
    # curl sends a large body only after "100 Continue", which never comes
    big = os.path.join(s.dir, "big.json")
    with open(big, "wb") as f:
        f.write(b'{"source": "' + b"x" * (4 << 20) + b'"}')
    code, body = s.curl("-H", "Content-Type: application/json", "--data-binary", "@" + big, "http://jaild/v1/jobs")
    assert code == 413 and json.loads(body)["error"]["type"] == "PayloadTooLargeError"
    assert s.health()["status"] == "ok"
    assert s.stop() == 0, s.stderr()


def test_oversize_is_refused_before_the_body_is_read(server):
    """A Content-Length over the cap is answered from the headers alone:
    the client sends no body at all and still gets its 413."""
    code, err = raw_request(server.path, post_bytes("/v1/jobs", b"", length=1 << 30))
    assert code == 413 and err["error"]["type"] == "PayloadTooLargeError"
    assert server.health()["status"] == "ok"


def test_query_parameters_are_checked(server):
    with server.client() as c:
        wid = new_worker(c)
        r = c.get("/v1/workers/%s/logs?tail=3" % wid)
        assert r.status_code == 400 and error_of(r) == ("ValueError", "unknown query parameter 'tail'")
        r = c.get("/v1/workers/%s/logs?follow=maybe" % wid)
        assert r.status_code == 400 and "follow" in error_of(r)[1]
        r = c.get("/v1/health?follow=1")
        assert r.status_code == 400
        assert c.get("/v1/workers/%s/logs?follow=0" % wid).status_code == 200


# ---- who may connect ---------------------------------------------------

def test_an_unallowed_uid_is_refused(server_factory):
    s = server_factory("--mode", "0666", "--allow-uid", "4242", "--allow-gid", "4243")
    code, body = s.curl("http://jaild/v1/health", user=(NOBODY, NOBODY))
    assert code == 403, body
    err = json.loads(body)["error"]
    assert err["type"] == "PermissionError" and "uid %d" % NOBODY in err["message"]
    # a body from a refused peer is not read either
    code, body = s.curl("-H", "Content-Type: application/json", "-d", '{"source": "x"}', "http://jaild/v1/workers",
                        user=(NOBODY, NOBODY))
    assert code == 403
    assert s.health()["status"] == "ok"  # root is always allowed
    log = s.stderr()
    assert "refused a peer" in log and "uid %d" % NOBODY in log
    with s.client() as c:
        assert c.get("/v1/workers").json() == {"workers": []}
    assert s.stop() == 0, s.stderr()


@pytest.mark.parametrize("allow,user", [
    (("--allow-uid", str(NOBODY)), (NOBODY, NOBODY)),
    (("--allow-gid", "4243"), (NOBODY, 4243)),
    (("--allow-gid", "4243"), (NOBODY, NOBODY, [4243])),
])
def test_allowed_peers_by_uid_gid_or_group(server_factory, allow, user):
    s = server_factory("--mode", "0666", *allow)
    code, body = s.curl("http://jaild/v1/health", user=user)
    assert code == 200, body
    code, body = s.curl("http://jaild/v1/health", user=(4244, 4244))
    assert code == 403, body


def test_socket_mode_and_group(server_factory):
    s = server_factory("--mode", "0660", "--gid", "4243", "--allow-gid", "4243")
    st = os.stat(s.path)
    assert (st.st_mode & 0o777, st.st_gid) == (0o660, 4243)
    # the file mode keeps others out before the API is even asked
    out = subprocess.run(["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups",
                          "curl", "-sS", "--unix-socket", s.path, "http://jaild/v1/health"],
                         capture_output=True, text=True, timeout=hostprobe.slack(30))
    assert out.returncode == 7, out  # curl: could not connect (EACCES on the socket file)
    assert "refused a peer" not in s.stderr()
    code, _ = s.curl("http://jaild/v1/health", user=(NOBODY, 4243))
    assert code == 200


# ---- late answers, streams, disconnects --------------------------------

def test_a_late_answer_does_not_hold_others(server):
    async def run():
        async with server.async_client() as c:
            job = asyncio.ensure_future(c.post("/v1/jobs", json={"source": "x", "policy": {"test_delay": 0.3}}))
            # the job is held; the single-threaded server still answers others
            deadline = time.monotonic() + hostprobe.slack(10)
            while (await c.get("/v1/health")).json()["pending"] != 1:
                assert time.monotonic() < deadline, "job never held"
                await asyncio.sleep(0.01)
            assert not job.done()
            r = await job
            assert r.status_code == 200 and r.json()["status"] == "done"
    asyncio.run(run())
    assert server.health()["pending"] == 0


def test_logs_stream_as_lines_come(server):
    with server.client() as c, server.client() as other:
        wid = new_worker(c)
        assert other.post("/v1/workers/%s/tick" % wid).status_code == 200
        with c.stream("GET", "/v1/workers/%s/logs?follow=1" % wid) as r:
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/x-ndjson"
            lines = r.iter_lines()
            assert json.loads(next(lines)) == {"level": "info", "message": "tick 1"}
            for n in (2, 3):
                assert other.post("/v1/workers/%s/tick" % wid).status_code == 200
                assert json.loads(next(lines)) == {"level": "info", "message": "tick %d" % n}
        # a deleted worker ends its followers' streams
        with c.stream("GET", "/v1/workers/%s/logs?follow=1" % wid) as r:
            lines = r.iter_lines()
            for n in (1, 2, 3):
                assert json.loads(next(lines))["message"] == "tick %d" % n
            assert other.delete("/v1/workers/%s" % wid).status_code == 204
            assert list(lines) == []
    assert server.health()["followers"] == 0


def test_client_gone_mid_stream_is_cancelled(server):
    with server.client() as c:
        wid = new_worker(c)
        c.post("/v1/workers/%s/tick" % wid)
    for _ in range(3):
        with server.client() as c:
            with c.stream("GET", "/v1/workers/%s/logs?follow=1" % wid) as r:
                lines = r.iter_lines()  # kept: a dropped iterator closes the stream
                assert json.loads(next(lines))["message"] == "tick 1"
                assert server.health()["followers"] == 1
        # closed while the stream waits for lines: seen at once, not at the next line
    h = server.wait_health(lambda h: h["followers"] == 0, "followers cancelled")
    assert h["cancelled"] == 3
    with server.client() as c:
        assert c.post("/v1/workers/%s/tick" % wid).status_code == 200


def test_client_gone_while_answer_pending_is_cancelled(server):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sk:
        sk.connect(server.path)
        body = b'{"source": "x", "policy": {"test_delay": 3600}}'
        sk.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        server.wait_health(lambda h: h["pending"] == 1, "job held")
    h = server.wait_health(lambda h: h["pending"] == 0, "held job cancelled")
    assert h["cancelled"] == 1


def test_200_concurrent_connections(server_factory):
    n = 200
    s = server_factory("--max-held", str(n))

    async def run():
        async with s.async_client(n) as c:
            # each job is answered only once all n wait together: n open connections at once
            jobs = [c.post("/v1/jobs", json={"source": "x", "policy": {"test_barrier": n}}) for _ in range(n)]
            return await asyncio.gather(*jobs)
    rs = asyncio.run(run())
    assert [r.status_code for r in rs] == [200] * n
    assert sorted(r.json()["job"] for r in rs) == list(range(1, n + 1))
    assert len(os.listdir("/proc/%d/task" % s.proc.pid)) == 1  # one thread served them all
    assert s.health()["pending"] == 0
    assert s.stop() == 0, s.stderr()


def test_too_many_held_is_503(server_factory):
    s = server_factory("--max-held", "2")

    async def run():
        async with s.async_client() as c:
            held = [asyncio.ensure_future(c.post("/v1/jobs", json={"source": "x", "policy": {"test_barrier": 3}}))
                    for _ in range(2)]
            deadline = time.monotonic() + hostprobe.slack(10)
            while (await c.get("/v1/health")).json()["pending"] != 2:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            # a call answered at once is not held: it passes
            assert (await c.post("/v1/jobs", json={"source": "x"})).status_code == 200
            # a third the backend would keep is let go (its cancel runs) and refused
            r = await c.post("/v1/jobs", json={"source": "x", "policy": {"test_delay": 3600}})
            assert r.status_code == 503 and error_of(r)[0] == "UnavailableError"
            h = (await c.get("/v1/health")).json()
            assert (h["pending"], h["cancelled"]) == (2, 1)
            for h in held:
                h.cancel()
    asyncio.run(run())
    s.wait_health(lambda h: h["pending"] == 0, "held jobs cancelled")


def test_shutdown_answers_held_calls_503(server_factory):
    s = server_factory()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sk:
        sk.settimeout(hostprobe.slack(20))
        sk.connect(s.path)
        body = b'{"source": "x", "policy": {"test_delay": 3600}}'
        sk.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        s.wait_health(lambda h: h["pending"] == 1, "job held")
        assert s.stop() == 0, s.stderr()
        data = b""
        while True:
            chunk = sk.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 503 "), data
    assert b"shutting down" in data
    assert "1 cancelled in all, 0 pending left" in s.stderr()
    assert not os.path.exists(s.path)


# ---- the socket --------------------------------------------------------

def test_a_stale_socket_is_replaced_a_live_one_is_not(server_factory):
    d = tempfile.mkdtemp(prefix="jr-api-", dir="/tmp")
    try:
        path = os.path.join(d, "api.sock")
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(path)
        stale.close()  # the file stays, nothing listens
        p = subprocess.Popen([SERVER, path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        # a second server must not take the live socket away
        q = subprocess.run([SERVER, path], capture_output=True, text=True, timeout=hostprobe.slack(20))
        assert q.returncode == 1 and "a server answers on" in q.stderr
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=hostprobe.slack(20)) == 0
        p.stdout.close()
        p.stderr.close()
        assert not os.path.exists(path)
        with open(path, "w") as f:
            f.write("not a socket")
        q = subprocess.run([SERVER, path], capture_output=True, text=True, timeout=hostprobe.slack(20))
        assert q.returncode == 1 and "is not a socket" in q.stderr
        assert open(path).read() == "not a socket"
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---- memory safety under the disconnects -------------------------------

@not_under_sanitizers("valgrind cannot run a program built with ASan (its runtime must load first)")
def test_disconnects_and_shutdown_under_valgrind(server_factory):
    if not shutil.which("valgrind"):
        pytest.skip("valgrind is not installed (Debian package valgrind)")
    s = server_factory(valgrind=True)
    with s.client() as c:
        wid = new_worker(c)
        assert c.post("/v1/workers/%s/tick" % wid).status_code == 200
        with c.stream("GET", "/v1/workers/%s/logs?follow=1" % wid) as r:
            lines = r.iter_lines()
            next(lines)
    s.wait_health(lambda h: h["followers"] == 0, "follower cancelled")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sk:
        sk.connect(s.path)
        body = b'{"source": "x", "policy": {"test_delay": 3600}}'
        sk.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        s.wait_health(lambda h: h["pending"] == 1, "job held")
    s.wait_health(lambda h: h["pending"] == 0, "held job cancelled")
    with s.client() as c:
        r = c.post("/v1/jobs", content=b"{" * 10, headers={"content-type": "application/json"})
        assert r.status_code == 400
        assert c.post("/v1/workers/%s/tick" % wid).status_code == 200
    # a stream and a held answer still open at shutdown
    sk = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sk.connect(s.path)
    sk.sendall(b"GET /v1/workers/%s/logs?follow=1 HTTP/1.1\r\nHost: x\r\n\r\n" % wid.encode())
    sk2 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sk2.connect(s.path)
    sk2.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    s.wait_health(lambda h: h["pending"] == 1 and h["followers"] == 1, "stream and job held")
    rc = s.stop()
    sk.close()
    sk2.close()
    assert rc == 0, s.stderr()
