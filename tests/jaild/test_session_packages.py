"""Packages in jaild's sessions (docs/api.md, POST /v1/sessions/{id}/packages):
pip inside the session's jail, wheels the test builds itself, from a wheel
directory bound into the jail for the install alone, or from an index on
127.0.0.1 reached through jaild's relay, which goes to the index only."""
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import http.server
import urllib.parse

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import hostprobe  # noqa: E402
from jdaemon import JAILD, Jaild  # noqa: E402

PYTHON = os.environ.get("PYTHON311", "/usr/bin/python3.11")

pytestmark = pytest.mark.skipif(not os.path.exists(JAILD), reason="jaild is not built")


def build_wheel(tmp, name, version, body, requires=()):
    src = os.path.join(tmp, "src-%s" % name)
    os.makedirs(os.path.join(src, name))
    with open(os.path.join(src, name, "__init__.py"), "w") as f:
        f.write(body)
    deps = ", ".join('"%s"' % r for r in requires)
    with open(os.path.join(src, "pyproject.toml"), "w") as f:
        f.write('[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
                '[project]\nname = "%s"\nversion = "%s"\ndependencies = [%s]\n' % (name, version, deps))
    out = os.path.join(tmp, "wheels")
    p = subprocess.run([PYTHON, "-m", "pip", "wheel", "--isolated", "--no-deps", "--no-build-isolation", "--no-index",
                        "-q", "-w", out, src], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return out


CEXT = r"""
#include <Python.h>
static PyObject *twice(PyObject *self, PyObject *arg)
{
        long v = PyLong_AsLong(arg);
        return v == -1 && PyErr_Occurred() ? NULL : PyLong_FromLong(2 * v);
}
static PyMethodDef methods[] = { { "twice", twice, METH_O, NULL }, { NULL, NULL, 0, NULL } };
static struct PyModuleDef mod = { PyModuleDef_HEAD_INIT, "_jrnative", NULL, -1, methods };
PyMODINIT_FUNC PyInit__jrnative(void) { return PyModule_Create(&mod); }
"""


def build_native_wheel(tmp):
    """A wheel with a C extension (a platform wheel, as most of an index's)."""
    src = os.path.join(tmp, "src-jrnative")
    os.makedirs(os.path.join(src, "jrnative"))
    with open(os.path.join(src, "jrnative", "__init__.py"), "w") as f:
        f.write("from jrnative._jrnative import twice\n")
    with open(os.path.join(src, "_jrnative.c"), "w") as f:
        f.write(CEXT)
    with open(os.path.join(src, "setup.py"), "w") as f:
        f.write("from setuptools import setup, Extension\n"
                "setup(name='jrnative', version='1.0', packages=['jrnative'],\n"
                "      ext_modules=[Extension('jrnative._jrnative', ['_jrnative.c'])])\n")
    out = os.path.join(tmp, "wheels")
    p = subprocess.run([PYTHON, "-m", "pip", "wheel", "--isolated", "--no-deps", "--no-build-isolation", "--no-index",
                        "-q", "-w", out, src], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert any(n.startswith("jrnative-1.0-cp311") for n in os.listdir(out)), os.listdir(out)
    return out


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("wheels"))
    build_wheel(tmp, "jrdep", "2.0", "ANSWER = 40\n")
    build_native_wheel(tmp)
    return build_wheel(tmp, "jrdemo", "1.0", "from jrdep import ANSWER\nVALUE = ANSWER + 2\n", requires=["jrdep"])


def execute(jd, sid, code, **kw):
    r = jd.post("/v1/sessions/%s/execute" % sid, dict(code=code, **kw))
    assert r.status_code == 200, r.text
    return r.json()


def new_session(jd, **spec):
    r = jd.post("/v1/sessions", spec, timeout=300)
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.fixture
def jd_wheels(wheels):
    os.chmod(os.path.dirname(wheels), 0o755)
    d = Jaild(sessions={"packages": {"wheel_dir": wheels}}).start()
    yield d
    assert d.cleanup() == []


MOUNTS = "print(sorted(l.split()[4] for l in open('/proc/self/mountinfo')))"


def test_install_from_the_wheel_directory(jd_wheels):
    sid = new_session(jd_wheels)
    r = jd_wheels.post("/v1/sessions/%s/packages" % sid, {"names": ["jrdemo"]}, timeout=300)
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["success"], a
    assert a["data"]["installed"] == ["jrdemo"]
    assert "Successfully installed jrdemo-1.0 jrdep-2.0" in a["data"]["output"]
    # the package and its dependency import, in this interpreter and in a child
    out = execute(jd_wheels, sid, "import jrdemo\njrdemo.VALUE")
    assert out["success"] and out["data"]["result"] == "42", out
    # the wheels were in view for the install alone: no mount, no directory left
    out = execute(jd_wheels, sid, MOUNTS + "\nimport os\nsorted(os.listdir('.'))")
    assert "/scratch/.wheels" not in out["data"]["output"], out
    assert out["data"]["result"] == "['.packages']", out
    # the session's own packages are files of its own directory
    r = jd_wheels.get("/v1/sessions/%s/files/.packages" % sid)
    assert r.status_code == 200 and {"jrdemo", "jrdep"} <= {e["name"] for e in r.json()["entries"]}


def test_a_compiled_wheel_is_refused_and_nothing_written_runs(jd_wheels):
    # jailrun(1) PROFILE EXEC: /scratch, the packages' directory included, is
    # noexec; pip takes pure-Python wheels only, and says so for one with
    # compiled code (which could not load there)
    sid = new_session(jd_wheels)
    a = jd_wheels.post("/v1/sessions/%s/packages" % sid, {"names": ["jrnative"]}, timeout=300).json()
    assert a["success"] is False, a
    assert "No matching distribution found for jrnative" in a["data"]["stderr"], a
    assert "install pure-Python wheels only" in a["data"]["error"], a
    a = jd_wheels.post("/v1/sessions/%s/packages" % sid, {"names": ["jrdemo"]}, timeout=300).json()
    assert a["success"], a
    # a library and a program written there: neither loads nor runs
    out = execute(jd_wheels, sid, """
import ctypes, os, shutil, subprocess, sys
shutil.copy(sys.executable, '.packages/py'); os.chmod('.packages/py', 0o755)
res = []
try:
    subprocess.run(['/scratch/.packages/py', '-c', 'pass'])
except OSError as e:
    res.append(e.errno)
try:
    ctypes.CDLL('/usr/lib/x86_64-linux-gnu/libc.so.6')
    shutil.copy('/usr/lib/x86_64-linux-gnu/libc.so.6', '.packages/libc.so.6')
    ctypes.CDLL('/scratch/.packages/libc.so.6')
except OSError as e:
    res.append('failed to map' in str(e))
res
""")
    assert out["success"] and out["data"]["result"] == "[13, True]", out


def test_install_failure_is_reported_and_the_session_lives(jd_wheels):
    sid = new_session(jd_wheels)
    execute(jd_wheels, sid, "kept = 7")
    a = jd_wheels.post("/v1/sessions/%s/packages" % sid, {"names": ["nosuchpackage"]}, timeout=300).json()
    assert a["success"] is False
    assert "No matching distribution found for nosuchpackage" in a["data"]["stderr"]
    assert execute(jd_wheels, sid, "kept")["data"]["result"] == "7"
    # pip's modules are gone from the session again: its namespace is the user's
    out = execute(jd_wheels, sid, "import sys\nsorted(m for m in sys.modules if m == 'pip' or m.startswith('pip.'))")
    assert out["data"]["result"] == "[]", out


@pytest.mark.parametrize("name", ["--index-url=http://example.invalid/", "../x", "a b", "", "x;y", "/etc/passwd",
                                  "http://example.invalid/x.whl", "sdpkg-1.0.tar.gz", "evil-1.0-py3-none-any.whl",
                                  "x.zip", "./jrdemo", "jrdemo==", "jrdemo[", "jrdemo>=1 ", ".hidden", "jrdemo@1"])
def test_names_that_are_not_requirements_are_refused(jd_wheels, name):
    sid = new_session(jd_wheels)
    r = jd_wheels.post("/v1/sessions/%s/packages" % sid, {"names": [name]})
    assert r.status_code == 400 and r.json()["error"]["type"] == "ValueError", r.text


def test_packages_at_creation(jd_wheels):
    r = jd_wheels.post("/v1/sessions", {"packages": ["jrdemo==1.0"]}, timeout=300)
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["packages"]["success"] and s["packages"]["data"]["installed"] == ["jrdemo==1.0"]
    assert execute(jd_wheels, s["id"], "import jrdemo\njrdemo.VALUE")["data"]["result"] == "42"
    r = jd_wheels.post("/v1/sessions", {"packages": ["jrdemo==9.9"]}, timeout=300)
    assert r.status_code == 424 and r.json()["error"]["type"] == "PackagesFailed", r.text
    assert "jrdemo==9.9" in r.json()["error"]["message"]
    assert [x["id"] for x in jd_wheels.get("/v1/sessions").json()["sessions"]] == [s["id"]]


def test_without_a_package_source_409():
    d = Jaild().start()
    try:
        sid = new_session(d)
        r = d.post("/v1/sessions/%s/packages" % sid, {"names": ["jrdemo"]})
        assert r.status_code == 409 and r.json()["error"]["type"] == "PackagesUnavailable", r.text
        assert "sessions.packages.wheel_dir" in r.json()["error"]["message"]
        r = d.post("/v1/sessions", {"packages": ["jrdemo"]})
        assert r.status_code == 409, r.text
        # and without index_url the session may not open TCP sockets at all
        out = execute(d, sid, "import socket\ntry:\n    socket.socket()\nexcept OSError as e:\n    print(e.errno)")
        assert out["data"]["output"].strip() == "1", out
    finally:
        assert d.cleanup() == []


# --- from an index, through the relay ------------------------------------------


class Index(http.server.SimpleHTTPRequestHandler):
    """A PEP 503 index from a directory; it takes the absolute form a proxy
    sends, as HTTP/1.1 servers must, and may be slowed."""

    root = None
    delay = 0.0
    seen = []

    def __init__(self, *a, **kw):
        super().__init__(*a, directory=Index.root, **kw)

    def parse_request(self):
        ok = super().parse_request()
        if ok:
            Index.seen.append(self.path)
            if "://" in self.path:
                self.path = urllib.parse.urlsplit(self.path).path or "/"
            time.sleep(Index.delay)
        return ok

    def log_message(self, *a):
        pass


@pytest.fixture
def index(wheels, tmp_path):
    root = tmp_path / "index"
    for name in ("jrdemo", "jrdep"):
        (root / "simple" / name).mkdir(parents=True)
        for w in os.listdir(wheels):
            if w.startswith(name + "-"):
                shutil.copy(os.path.join(wheels, w), root / "simple" / name)
    Index.root, Index.delay, Index.seen = str(root), 0.0, []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def jd_index(index):
    d = Jaild(sessions={"packages": {"index_url": "http://127.0.0.1:%d/simple/" % index}}).start()
    d.index_port = index
    yield d
    assert d.cleanup() == []


# A thread in the session finds the relay's port while pip runs (its
# listener is the only one on the jail's lo) and tries it: a CONNECT to
# anything but the index is refused, one to the index is a tunnel to it.
PROBE = r"""
import socket, threading, time
probe = {}
def find_relay():
    deadline = time.monotonic() + %(wait)s
    while time.monotonic() < deadline:
        for port in range(32768, 61000):
            s = socket.socket()
            try:
                s.connect(('127.0.0.1', port))
                if s.getsockname() != s.getpeername():  # not a connection to itself
                    return s, port
            except OSError:
                pass
            s.close()
    return None, None
def ask(line):
    s, port = find_relay()
    if s is None:
        return None
    s.sendall(line.replace(b'PORT', str(port).encode()))
    s.settimeout(10)
    data = b''
    while b'\r\n\r\n' not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return s, data
def run():
    s, a = ask(b'CONNECT 10.1.2.3:443 HTTP/1.1\r\nHost: 10.1.2.3:443\r\n\r\n')
    probe['other'] = a.split(b'\r\n')[0].decode()
    s, a = ask(b'CONNECT 127.0.0.1:%(index)d HTTP/1.1\r\n\r\n')
    probe['index'] = a.split(b'\r\n')[0].decode()
    s.sendall(b'GET /simple/ HTTP/1.0\r\n\r\n')
    body = b''
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    probe['tunnel'] = b'jrdemo' in body
t = threading.Thread(target=run, daemon=True)
t.start()
"""


def test_install_from_an_index_through_the_relay(jd_index):
    sid = new_session(jd_index)
    # with an index_url, a session may open TCP sockets, but its network holds lo alone
    out = execute(jd_index, sid, "import socket\ns = socket.socket()\ntry:\n    s.connect(('127.0.0.1', %d))\n"
                  "except OSError as e:\n    print(type(e).__name__)" % jd_index.index_port)
    assert out["data"]["output"].strip() == "ConnectionRefusedError", out
    Index.delay = 1.0 * hostprobe.pace()  # pip is slowed: the probe has its window
    execute(jd_index, sid, PROBE % {"wait": hostprobe.slack(20), "index": jd_index.index_port})
    r = jd_index.post("/v1/sessions/%s/packages" % sid, {"names": ["jrdemo"]}, timeout=300)
    assert r.status_code == 200, r.text
    assert r.json()["success"], r.json()
    assert any(p.startswith("http://127.0.0.1:%d/simple/jrdemo/" % jd_index.index_port) for p in Index.seen)
    out = execute(jd_index, sid, "t.join(%s)\nprobe" % hostprobe.slack(20))
    probe = eval(out["data"]["result"])
    assert probe.get("other", "").startswith("HTTP/1.1 403"), probe
    assert probe.get("index", "").startswith("HTTP/1.1 200"), probe
    assert probe.get("tunnel") is True, probe
    assert execute(jd_index, sid, "import jrdemo\njrdemo.VALUE")["data"]["result"] == "42"
    # the relay is gone with the install: nothing listens on the session's lo
    out = execute(jd_index, sid, "find_relay.__globals__['time'].monotonic\n"
                  "import socket\nn = 0\nfor port in range(32768, 61000):\n    s = socket.socket()\n"
                  "    try:\n        s.connect(('127.0.0.1', port)); n += s.getsockname() != s.getpeername()\n"
                  "    except OSError:\n        pass\n    s.close()\nn")
    assert out["data"]["result"] == "0", out


def test_a_name_is_never_a_file_of_the_session(jd_wheels):
    """pip reads "x.tar.gz" or "./x" as a path (and builds and runs what is
    there): such names are refused, and pip runs from / so that nothing in
    the session's directory is taken for a requirement or a module."""
    sid = new_session(jd_wheels)
    # a project directory and a module named like the package, in the session's directory
    execute(jd_wheels, sid, "import os\nos.makedirs('jrdemo', exist_ok=True)\n"
            "open('jrdemo/setup.py', 'w').write(\"open('/scratch/SETUP_RAN', 'w')\")\n"
            "open('pip.py', 'w').write(\"open('/scratch/PIP_SHADOWED', 'w')\")")
    r = jd_wheels.post("/v1/sessions/%s/packages" % sid, {"names": ["jrdemo>=1.0,<2", "jrdep[extra]"]}, timeout=300)
    assert r.status_code == 200 and r.json()["success"], r.text
    out = execute(jd_wheels, sid, "import os, jrdemo\n(os.getcwd(), sorted(os.listdir('.')), jrdemo.__file__)")
    assert out["data"]["result"] == "('/scratch', ['.packages', 'jrdemo', 'pip.py'], " \
        "'/scratch/.packages/jrdemo/__init__.py')", out
