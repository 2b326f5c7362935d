"""Session files over the API layer: GET|PUT|DELETE /v1/sessions/{id}/files/{path}
(supervisor/jaild/api*.c for the wire, supervisor/jaild/sfiles.c for the files).

The server is tests/jaild/api-test-server with --files-dir: session "s1" is a
real directory of the test's (owned by nobody, as a jail's is), served by the
real sfiles code; any other id is 404. What is checked here is the wire:
the {path} tail and its percent-decoding, raw bodies (any type, capped from
the headers, chunked refused, a cap on what is buffered at once), binary
answers with their Content-Length, and the errors' statuses. The hostile
directory contents are tests/unit/test-sfiles.c's.
"""
import os
import shutil
import socket
import time

import httpx
import pytest

import hostprobe
from test_api_layer import Server, error_of, raw_request
from conftest import not_under_sanitizers

NOBODY = 65534
FILES = "/v1/sessions/s1/files/"


class FilesServer(Server):
    def __init__(self, *args, **kw):
        self.files = None
        super().__init__(*args, **kw)

    def path_of(self, name):
        return os.path.join(self.files, name)


@pytest.fixture
def files_factory():
    made = []

    def make(*args, **kw):
        d = os.path.realpath(os.path.join("/tmp", "jr-api-files-%d-%d" % (os.getpid(), len(made))))
        os.makedirs(d)
        os.chown(d, NOBODY, NOBODY)
        s = FilesServer("--files-dir", d, *args, **kw)
        s.files = d
        made.append(s)
        return s
    yield make
    for s in made:
        s.cleanup()
        shutil.rmtree(s.files, ignore_errors=True)


@pytest.fixture
def files(files_factory):
    s = files_factory()
    yield s
    assert s.stop() == 0, s.stderr()


def raw_answer(path, request):
    """Sends request on a fresh connection; reads the whole answer (the
    server closes, or the Content-Length is in): (status, headers, body)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sk:
        sk.settimeout(hostprobe.slack(20))
        sk.connect(path)
        sk.sendall(request)
        return read_answer(sk)


def read_answer(sk, data=b""):
    while b"\r\n\r\n" not in data:
        chunk = sk.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {k.strip().lower().decode(): v.strip().decode() for k, _, v in (x.partition(b":") for x in lines[1:])}
    n = int(headers.get("content-length", "-1"))
    while n < 0 or len(body) < n:
        chunk = sk.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def put_head(target, length, extra=b""):
    return (b"PUT %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n%s\r\n"
            % (target, length, extra))


def test_binary_round_trip_with_its_length(files):
    data = bytes(range(256)) * 400 + b"\0\0end"
    with files.client() as c:
        r = c.put(FILES + "data.bin", content=data, headers={"content-type": "image/png"})
        assert r.status_code == 201 and r.json() == {"path": "data.bin", "size": len(data)}
        r = c.get(FILES + "data.bin")
        assert r.status_code == 200 and r.content == data
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.headers["content-length"] == str(len(data))
        # a body sent as JSON is not parsed: it is the file
        r = c.put(FILES + "x.json", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 201
        assert c.get(FILES + "x.json").content == b"{not json"
        # an empty file, both ways
        assert c.put(FILES + "empty", content=b"").json() == {"path": "empty", "size": 0}
        r = c.get(FILES + "empty")
        assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == "0"
    st = os.stat(files.path_of("data.bin"))
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (NOBODY, NOBODY, 0o644)
    with open(files.path_of("data.bin"), "rb") as f:
        assert f.read() == data


def test_listing_and_delete(files):
    os.mkdir(files.path_of("dir"))
    owner = os.stat(files.files)  # jaild writes as the session directory's owner
    os.chown(files.path_of("dir"), owner.st_uid, owner.st_gid)
    with files.client() as c:
        assert c.put(FILES + "dir/a.txt", content=b"abc").status_code == 201
        r = c.get(FILES)  # the session directory itself
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.json() == {"path": "", "entries": [{"name": "dir", "type": "dir", "size": 0}], "truncated": False}
        assert c.get(FILES + "dir").json()["entries"] == [{"name": "a.txt", "type": "file", "size": 3}]
        r = c.delete(FILES + "dir")
        assert r.status_code == 409 and error_of(r) == ("ConflictError", "dir: the directory is not empty")
        assert c.delete(FILES + "dir/a.txt").json() == {"path": "dir/a.txt", "deleted": True}
        assert c.delete(FILES + "dir").json() == {"path": "dir", "deleted": True}
        r = c.delete(FILES + "dir")
        assert r.status_code == 404 and error_of(r)[0] == "NotFoundError"
        r = c.delete(FILES)
        assert r.status_code == 400 and error_of(r)[0] == "ValueError"
    assert os.listdir(files.files) == []


def test_paths_are_percent_decoded(files):
    with files.client() as c:
        assert c.put(FILES + "a%20b.txt", content=b"1").json()["path"] == "a b.txt"
        assert c.put(FILES + "caf%C3%A9", content=b"2").json()["path"] == "caf\u00e9"
        # a name that is not UTF-8 is a name; it is shown with '?' for the bad byte
        r = c.put(FILES + "x%FFy", content=b"3")
        assert r.status_code == 201 and r.json()["path"] == "x?y"
        assert c.get(FILES + "x%FFy").content == b"3"
    assert sorted(os.listdir(files.files.encode())) == [b"a b.txt", "caf\u00e9".encode(), b"x\xffy"]


@pytest.mark.parametrize("target,why", [
    (FILES + "..", "a file path has a '..' segment"),
    (FILES + "a/../../x", "a file path has a '..' segment"),
    (FILES + "%2e%2e/x", "a file path has a '..' segment"),
    (FILES + "a%2F..%2Fb", "a file path has a '..' segment"),
    (FILES + "./a", "a file path has a '.' segment"),
    (FILES + "/etc/passwd", "a file path is relative to the session directory"),
    (FILES + "a//b", "a file path has an empty segment (a doubled or trailing slash)"),
    (FILES + "a/", "a file path has an empty segment (a doubled or trailing slash)"),
    (FILES + "a%00b", "a file path holds a NUL or control character (byte 1)"),
    (FILES + "a%0Ab", "a file path holds a NUL or control character (byte 1)"),
    (FILES + "x" * 4097, "a file path is 1 to 4096 bytes"),
])
def test_bad_paths_are_400_with_the_reason(files, target, why):
    for method in (b"GET", b"DELETE"):
        code, _, body = raw_answer(files.path, b"%s %s HTTP/1.1\r\nHost: x\r\n\r\n" % (method, target.encode()))
        assert code == 400, body
        assert b'"ValueError"' in body and why.encode() in body, body
    code, err = raw_request(files.path, put_head(target.encode(), 3) + b"abc")
    assert code == 400 and err["error"]["message"] == why
    assert os.listdir(files.files) == []


def test_a_bad_session_id_is_not_a_route(files):
    for target in (b"/v1/sessions/../files/x", b"/v1/sessions/a%2Fb/files/x", b"/v1/sessions/s1/files"):
        code, _, body = raw_answer(files.path, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target)
        assert code == 404 and b"no such endpoint" in body, (target, body)
    with files.client() as c:
        r = c.get("/v1/sessions/s2/files/x")
        assert r.status_code == 404 and error_of(r) == ("NotFoundError", "no session s2")
        r = c.post(FILES + "x")
        assert r.status_code == 405 and r.headers["allow"] == "GET, PUT, DELETE"


def test_errors_map_to_statuses(files_factory):
    s = files_factory("--max-raw-body", "1000")
    os.symlink("/etc", s.path_of("etc"))
    os.mkfifo(s.path_of("fifo"))
    with open(s.path_of("big"), "wb") as f:
        f.write(b"x" * 1001)
    with s.client() as c:
        for path, status, etype, msg in [
            ("etc/passwd", 400, "ValueError", "etc/passwd: the path holds a symbolic link, which is not followed"),
            ("fifo", 400, "ValueError", "fifo: not a regular file or directory (a FIFO)"),
            ("big", 413, "PayloadTooLargeError", "big: the file is 1001 bytes, over the limit of 1000 bytes"),
            ("nope", 404, "NotFoundError", "nope: no such file or directory"),
        ]:
            r = c.get(FILES + path)
            assert r.status_code == status and error_of(r) == (etype, msg)
        r = c.put(FILES + "no/dir/f", content=b"x")
        assert r.status_code == 404 and error_of(r) == ("NotFoundError", "no/dir/f: the directory 'no/dir' does "
                                                        "not exist")
        r = c.put(FILES + "etc/x", content=b"x")
        assert r.status_code == 400 and "symbolic link" in error_of(r)[1]
    assert s.stop() == 0, s.stderr()


def test_put_over_the_file_limit_is_413_from_the_headers(files_factory):
    s = files_factory("--max-raw-body", "100000", "--max-body", "1024")
    # no body sent at all: the answer comes from the headers
    code, err = raw_request(s.path, put_head(FILES.encode() + b"f", 100001))
    assert code == 413 and err["error"]["type"] == "PayloadTooLargeError"
    assert "100001" in err["error"]["message"] and "100000" in err["error"]["message"]
    with s.client() as c:
        # the raw cap, not the JSON one, holds for a file
        assert c.put(FILES + "f", content=b"y" * 100000).json()["size"] == 100000
    # ... and the JSON one for JSON (answered from the headers: the body stays unsent)
    code, err = raw_request(s.path, b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                    b"Content-Length: 2000\r\n\r\n")
    assert code == 413 and "1024" in err["error"]["message"]
    assert os.path.getsize(s.path_of("f")) == 100000
    assert s.stop() == 0, s.stderr()


def test_a_chunked_put_is_411(files):
    request = (b"PUT " + FILES.encode() + b"f HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    code, err = raw_request(files.path, request)
    assert code == 411 and err["error"]["type"] == "LengthRequiredError"
    assert os.listdir(files.files) == []


def started_upload(path, target, length):
    """A PUT whose headers the server took (it said 100 Continue) and whose
    body is not sent yet: the socket."""
    sk = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sk.settimeout(hostprobe.slack(20))
    sk.connect(path)
    sk.sendall(put_head(target, length, b"Expect: 100-continue\r\n"))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sk.recv(4096)
        assert chunk, data
        data += chunk
    assert data.startswith(b"HTTP/1.1 100"), data
    return sk


def put_when_room(s, target, body):
    """PUTs body, again while the server says 503 (no room for it yet: it
    answers from the headers and closes, so the client may see its write
    cut instead); the status it finally gave."""
    deadline = time.monotonic() + hostprobe.slack(30)
    while True:
        try:
            with s.client() as c:
                status = c.put(target, content=body).status_code
        except httpx.TransportError:
            status = 503
        if status != 503 or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_raw_bodies_buffered_at_once_are_capped(files_factory):
    s = files_factory("--max-raw-body", "100000", "--max-raw-held", "150000")
    a = started_upload(s.path, FILES.encode() + b"a", 100000)
    try:
        # a second large one would pass the room left: 503, its body unread
        code, err = raw_request(s.path, put_head(FILES.encode() + b"b", 100000))
        assert code == 503 and err["error"]["type"] == "UnavailableError", err
        assert "150000" in err["error"]["message"]
        with s.client() as c:  # a small one fits beside
            assert c.put(FILES + "c", content=b"z" * 50000).status_code == 201
        a.sendall(b"a" * 100000)
        code, _, body = read_answer(a)
        assert code == 201, body
    finally:
        a.close()
    # the room comes back once an upload is answered
    assert put_when_room(s, FILES + "b", b"b" * 100000) == 201
    assert sorted(os.listdir(s.files)) == ["a", "b", "c"]
    assert s.stop() == 0, s.stderr()


@not_under_sanitizers("valgrind cannot run a program built with ASan (its runtime must load first)")
def test_raw_bodies_under_valgrind(files_factory):
    """The wire's new memory (paths, raw bodies and their room, uploads cut
    off) under valgrind. Only requests that stop before the files: valgrind
    3.19 does not know openat2 (the files would answer 500 there)."""
    if not shutil.which("valgrind"):
        pytest.skip("valgrind is not installed (Debian package valgrind)")
    s = files_factory("--max-raw-body", "70000", "--max-raw-held", "100000", valgrind=True)
    with s.client() as c:
        r = c.put("/v1/sessions/s2/files/f", content=b"\0" * 65536)  # the whole body in, then 404
        assert r.status_code == 404 and error_of(r) == ("NotFoundError", "no session s2")
        assert c.get("/v1/sessions/s2/files/a/b").status_code == 404
    code, _, _ = raw_answer(s.path, b"GET %sa/../b HTTP/1.1\r\nHost: x\r\n\r\n" % FILES.encode())
    assert code == 400
    code, _ = raw_request(s.path, put_head(FILES.encode() + b"big", 70001))
    assert code == 413
    # an upload cut off midway, and one refused while it held the room
    sk = started_upload(s.path, FILES.encode() + b"cut", 60000)
    sk.sendall(b"x" * 1000)
    code, _ = raw_request(s.path, put_head(FILES.encode() + b"more", 60000))
    assert code == 503
    sk.close()
    # its room comes back once the server saw it go
    assert put_when_room(s, "/v1/sessions/s2/files/g", b"g" * 60000) == 404
    assert s.stop() == 0, s.stderr()
