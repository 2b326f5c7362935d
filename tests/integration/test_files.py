"""ctx.files: the contract, paths held beneath the workspace by the kernel
whatever is planted in it (symlinks, FIFOs, races), the quota, atomic
writes and concurrent writers."""
import json
import os
import subprocess
import threading
import time

import pytest

from hostprobe import slack
from conftest import JAILRUN, run_script


def logs(r):
    return [json.loads(x)["message"] for x in r.err.splitlines() if x.startswith('{"type":"log"')]


@pytest.fixture
def ws(tmp_path):
    return tmp_path / "ws"


def worker(tmp_path, ws, body, *args):
    src = "def tick(ctx):\n    f = ctx.files\n" + "".join("    %s\n" % line for line in body.strip().splitlines())
    return run_script(tmp_path, src, "--profile", "worker", "--workspace", str(ws), "--state",
                      str(tmp_path / "s.sqlite"), "--json", *args)


def test_round_trip(tmp_path, ws):
    r = worker(tmp_path, ws, """
ctx.log.info(f.write("notes/today.txt", "héllo\\n"), f.read("notes/today.txt"))
ctx.log.info(f.exists("notes/today.txt"), f.exists("nope"), f.size("notes/today.txt"), f.list("notes"))
ctx.log.info(f.write("b.bin", b"\\x00\\xff\\x80abc")["size"], f.read("b.bin", binary=True)["content"] == b"\\x00\\xff\\x80abc")
ctx.log.info(f.write("notes/today.txt", "v2"), f.read("notes/today.txt")["content"])
ctx.log.info(f.delete("notes/today.txt"), f.delete("notes"), f.list())
""")
    assert r.code == 0, r
    assert logs(r) == [
        "{'ok': True, 'size': 7} {'content': 'héllo\\n', 'size': 7}",
        "True False 7 {'entries': [{'name': 'today.txt', 'type': 'file', 'size': 7}]}",
        "6 True",
        "{'ok': True, 'size': 2} v2",
        "{'ok': True} {'ok': True} {'entries': [{'name': 'b.bin', 'type': 'file', 'size': 6}]}",
    ]
    assert os.stat(ws).st_mode & 0o777 == 0o700


@pytest.mark.parametrize("call,error", [
    ("f.read('../x')", "../x: '..' is not allowed in a path"),
    ("f.read('a/../../x')", "'..' is not allowed"),
    ("f.read('/etc/passwd')", "/etc/passwd: paths are relative to the workspace"),
    ("f.read('')", "a path is 1 to 1024 bytes"),
    ("f.read('x' * 1025)", "a path is 1 to 1024 bytes"),
    ("f.read('a\\x00b')", "a path cannot hold NUL"),
    ("f.read(3)", "path must be a str, not int"),
    ("f.read('missing')", "missing: no such file or directory"),
    ("f.write('d/', 'x')", "names a directory"),
    ("f.write('x', 3)", "data must be str or bytes, not int"),
    ("f.list('nowhere')", "nowhere: no such file or directory"),
    ("f.size('.')", "names a directory"),
])
def test_bad_paths_are_error_dicts(tmp_path, ws, call, error):
    r = worker(tmp_path, ws, "ctx.log.info(%s['error'])" % call)
    assert r.code == 0, r
    assert error in logs(r)[0], logs(r)


def test_read_limit_and_text(tmp_path, ws):
    os.makedirs(ws, mode=0o700)
    (ws / "big").write_bytes(b"x" * 51201)
    (ws / "edge").write_bytes(b"y" * 51200)
    (ws / "latin").write_bytes(b"\xff\xfe")
    r = worker(tmp_path, ws, """
ctx.log.info(f.read("big")["error"])
ctx.log.info(f.read("edge")["size"])
ctx.log.info(f.read("latin")["error"])
""")
    assert logs(r) == ["big: the file is 51201 bytes; read returns at most 51200", "51200",
                       "latin: not UTF-8 text; read it with binary=True"]


def test_planted_symlinks_fifos_and_devices_are_refused(tmp_path, ws):
    os.makedirs(ws / "d", mode=0o700)
    secret = tmp_path / "secret.txt"
    secret.write_text("HOST SECRET")
    os.symlink(str(secret), ws / "link")
    os.symlink("/", ws / "d" / "root")
    os.symlink("..", ws / "up")
    os.mkfifo(ws / "fifo")
    os.symlink("/dev/zero", ws / "zero")
    r = worker(tmp_path, ws, """
for p in ("link", "d/root/etc/passwd", "up/secret.txt", "fifo", "zero"):
    ctx.log.info(p, f.read(p))
ctx.log.info(f.write("link", "x"))
ctx.log.info(f.write("d/root/tmp/x", "x"))
ctx.log.info(f.list("d/root"))
ctx.log.info(f.delete("link"))
""", "--timeout", "20")
    out = logs(r)
    assert r.code == 0, r
    assert "SECRET" not in r.err and "root:x:0" not in r.err
    for line in out[:3] + out[4:5]:
        assert "symbolic link" in line, line
    assert "not a regular file" in out[3]
    assert "symbolic link" in out[5] and "symbolic link" in out[6] and "symbolic link" in out[7]
    assert out[8] == "{'ok': True}", "a planted link is removed as itself"
    assert secret.read_text() == "HOST SECRET"
    assert not os.path.lexists(ws / "link")


def test_symlink_race(tmp_path, ws):
    """A host process swaps a directory and a symlink to / as fast as it
    can while the worker reads through it: never a byte from outside."""
    os.makedirs(ws / "d", mode=0o700)
    (ws / "d" / "passwd").write_text("inside\n")
    stop = threading.Event()

    def swap():
        while not stop.is_set():
            try:
                os.rename(ws / "d", ws / "d.real")
                os.symlink("/etc", ws / "d")
                os.unlink(ws / "d")
                os.rename(ws / "d.real", ws / "d")
            except OSError:
                pass

    t = threading.Thread(target=swap)
    t.start()
    try:
        r = worker(tmp_path, ws, """
seen = {}
for i in range(3000):
    r = f.read("d/passwd")
    k = r.get("content", r.get("error", "?")[:30])
    seen[k] = seen.get(k, 0) + 1
ctx.log.info(sorted(seen))
""", "--timeout", "60")
    finally:
        stop.set()
        t.join()
    assert r.code == 0, r
    assert "root:x:0" not in r.err
    assert "inside\\n" in logs(r)[0]


def test_quota_edge(tmp_path, ws):
    pol = tmp_path / "p.json"
    pol.write_text('{"files": {"quota_bytes": 1000}}')
    r = worker(tmp_path, ws, """
ctx.log.info(f.write("a", "x" * 600))
ctx.log.info(f.write("b", "x" * 400))
ctx.log.info(f.write("c", "x"))
ctx.log.info(f.write("a", "y" * 600))
ctx.log.info(f.write("a", "y" * 601))
ctx.log.info(f.delete("b"), f.write("c", "z" * 400))
""", "--policy", str(pol))
    out = logs(r)
    assert out[0] == "{'ok': True, 'size': 600}" and out[1] == "{'ok': True, 'size': 400}"
    assert out[2] == ("{'error': 'the workspace quota of 1000 bytes would be exceeded: it holds 1000, "
                      "this write needs 1'}")
    assert out[3] == "{'ok': True, 'size': 600}", "replacing a file counts its old size out"
    assert "would be exceeded" in out[4]
    assert out[5] == "{'ok': True} {'ok': True, 'size': 400}"


def test_concurrent_writers_share_the_quota(tmp_path, ws):
    """Two jailruns write into one workspace at once: the quota holds, every
    file is whole (atomic replace), no temporary file is left."""
    pol = tmp_path / "p.json"
    pol.write_text('{"files": {"quota_bytes": 100000}}')
    script = tmp_path / "w.py"
    script.write_text("""
def tick(ctx):
    for i in range(40):
        r = ctx.files.write("f%d-%d" % (ID, i), "x" * 4000)
        ctx.files.write("shared", str(ID) * 3000)
""")
    ps = []
    for k in range(2):
        s = tmp_path / ("w%d.py" % k)
        s.write_text(script.read_text().replace("ID", str(k)))
        ps.append(subprocess.Popen([JAILRUN, "--policy", str(pol), "--workspace", str(ws), "--state",
                                    str(tmp_path / "s.sqlite"), str(s)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE))
    assert [p.wait(timeout=120) for p in ps] == [0, 0]
    names = [n for n in os.listdir(ws) if n != ".jailrun-usage"]
    total = sum(os.path.getsize(ws / n) for n in names)
    assert total <= 100000
    assert not [n for n in names if n.startswith(".jailrun-tmp")]
    shared = (ws / "shared").read_text()
    assert shared in ("0" * 3000, "1" * 3000)
    assert usage_record(ws) == {"version": 1, "bytes": total, "entries": len(names), "over": False}, \
        "both jobs kept the one running count"


def usage_record(ws):
    with open(ws / ".jailrun-usage") as f:
        return json.load(f)


def test_the_usage_count_is_kept_not_measured(tmp_path, ws):
    """The quota's usage is a running count kept in the workspace: right
    after writes, replacements, deletes and directories made, and counted
    afresh at a job's first change (a record someone changed is not
    believed) and when a file turns out larger than the whole count."""
    pol = tmp_path / "p.json"
    pol.write_text('{"files": {"quota_bytes": 1000}}')
    r = worker(tmp_path, ws, """
ctx.log.info(f.write("a/b/c", "x" * 100), f.write("a/d", "y" * 50), f.write("a/d", "z" * 20))
ctx.log.info(f.delete("a/b/c"), f.delete("a/b"))
""", "--policy", str(pol))
    assert logs(r) == ["{'ok': True, 'size': 100} {'ok': True, 'size': 50} {'ok': True, 'size': 20}",
                       "{'ok': True} {'ok': True}"], r
    assert usage_record(ws) == {"version": 1, "bytes": 20, "entries": 2, "over": False}
    # A record that understates: the next job counts afresh before its first write.
    (ws / ".jailrun-usage").write_text('{"version": 1, "bytes": 0, "entries": 0, "over": false}')
    (ws / "ext").write_bytes(b"e" * 900)
    r = worker(tmp_path, ws, 'ctx.log.info(f.write("b", "x" * 100)["error"])\nctx.log.info(f.write("b", "x" * 80))',
               "--policy", str(pol))
    assert logs(r) == ["the workspace quota of 1000 bytes would be exceeded: it holds 920, this write needs 100",
                       "{'ok': True, 'size': 80}"], r
    assert usage_record(ws) == {"version": 1, "bytes": 1000, "entries": 4, "over": False}
    # A record that is not one is counted afresh too.
    (ws / ".jailrun-usage").write_text("garbage")
    r = worker(tmp_path, ws, 'ctx.log.info(f.delete("ext"), f.write("c", "x" * 900))', "--policy", str(pol))
    assert logs(r) == ["{'ok': True} {'ok': True, 'size': 900}"], r
    assert usage_record(ws) == {"version": 1, "bytes": 1000, "entries": 4, "over": False}


def changed_midway(tmp_path, ws, then, change):
    """Runs a worker (quota 1000 bytes, --json) that writes 10 bytes to "a",
    waits for a file "go", then runs the line `then`; once "a" is there,
    change(ws) alters the workspace behind jailrun's back and puts "go".
    Returns (exit status, stderr)."""
    pol = tmp_path / "p.json"
    pol.write_text('{"files": {"quota_bytes": 1000}}')
    src = tmp_path / "w.py"
    src.write_text("""
import time
def tick(ctx):
    f = ctx.files
    ctx.log.info(f.write("a", "x" * 10))
    t = time.monotonic()
    while not f.exists("go") and time.monotonic() - t < 60:
        time.sleep(0.01)
    THEN
""".replace("THEN", then))
    p = subprocess.Popen([JAILRUN, "--policy", str(pol), "--workspace", str(ws), "--state",
                          str(tmp_path / "s.sqlite"), "--json", str(src)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (ws / "a").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        change(ws)
        (ws / "go").write_bytes(b"")
        _, err = p.communicate(timeout=90)
    finally:
        p.kill()
        p.wait()
    return p.returncode, err


def test_a_file_grown_behind_the_count_is_caught(tmp_path, ws):
    """A file changed outside jailrun while a job runs: replacing it finds
    it larger than the whole count, and the workspace is counted again."""
    def change(ws):
        (ws / "ext").write_bytes(b"e" * 800)
        (ws / "a").write_bytes(b"x" * 100)
    code, err = changed_midway(tmp_path, ws, 'ctx.log.info(f.write("a", "y"), f.write("b", "z" * 300))', change)
    assert code == 0, err
    got = [json.loads(x)["message"] for x in err.splitlines() if x.startswith('{"type":"log"')]
    assert got == ["{'ok': True, 'size': 10}",
                   "{'ok': True, 'size': 1} {'error': 'the workspace quota of 1000 bytes would be exceeded: "
                   "it holds 801, this write needs 300'}"], err
    assert usage_record(ws) == {"version": 1, "bytes": 801, "entries": 3, "over": False}


def test_writes_do_not_walk_the_workspace(tmp_path, ws):
    """A write costs its own path and data, not the workspace: a file put
    in behind jailrun's back while a job runs is not seen by that job's
    writes (nothing walks the workspace for them); the next job counts it."""
    code, err = changed_midway(tmp_path, ws, 'ctx.log.info(f.write("b", "y" * 500))',
                               lambda ws: (ws / "ext").write_bytes(b"e" * 900))
    assert code == 0, err
    assert (ws / "b").read_text() == "y" * 500, err
    pol = tmp_path / "p.json"
    r = worker(tmp_path, ws, 'ctx.log.info(f.write("c", "1")["error"])', "--policy", str(pol))
    assert logs(r) == ["the workspace quota of 1000 bytes would be exceeded: it holds 1410, this write needs 1"], r


def test_jailruns_own_names_are_out_of_reach(tmp_path, ws):
    """The count and temporary files are jailrun's: no path names them,
    list does not show them, and temporary files a jailrun that died in a
    write left behind are removed when the workspace is next counted."""
    os.makedirs(ws / "d", mode=0o700)
    (ws / "d" / ".jailrun-tmp-1-0").write_bytes(b"left by a crash")
    r = worker(tmp_path, ws, """
for p in (".jailrun-usage", "d/.jailrun-tmp-1-0", ".jailrun-x/y"):
    ctx.log.info(f.write(p, "x")["error"], f.read(p)["error"], f.exists(p)["error"], f.delete(p)["error"])
ctx.log.info(f.write("d/x", "1"), f.list(), f.list("d"))
""")
    out = logs(r)
    assert r.code == 0, r
    for p, line in zip((".jailrun-usage", "d/.jailrun-tmp-1-0", ".jailrun-x/y"), out):
        assert line == " ".join([p + ": names starting with .jailrun- are jailrun's own"] * 4), line
    assert out[3] == ("{'ok': True, 'size': 1} {'entries': [{'name': 'd', 'type': 'dir', 'size': 0}]} "
                      "{'entries': [{'name': 'x', 'type': 'file', 'size': 1}]}"), out
    assert sorted(os.listdir(ws / "d")) == ["x"]
    assert usage_record(ws) == {"version": 1, "bytes": 1, "entries": 2, "over": False}


def test_the_entry_limit_holds_on_the_running_count(tmp_path, ws):
    """100000 files and directories at most: a write that would make more
    is refused before anything is made; a workspace found over the limit
    refuses writes until deletes bring it back under (each delete counts it
    again), in that job or a later one."""
    os.makedirs(ws / "many", mode=0o700)
    for i in range(99997):  # with "many", 2 short of the limit
        os.close(os.open(ws / "many" / str(i), os.O_CREAT | os.O_WRONLY, 0o600))
    r = worker(tmp_path, ws, """
ctx.log.info(f.write("a/b/c", "1")["error"])
ctx.log.info(f.write("a/b", "1"), f.write("a/b", "2"), f.write("z", "1")["error"])
""", "--timeout", "60")
    assert logs(r) == ["a/b/c: the workspace would hold more than 100000 files and directories",
                       "{'ok': True, 'size': 1} {'ok': True, 'size': 1} "
                       "z: the workspace would hold more than 100000 files and directories"], r
    assert not (ws / "z").exists()
    assert usage_record(ws) == {"version": 1, "bytes": 1, "entries": 100000, "over": False}
    os.close(os.open(ws / "ext", os.O_CREAT | os.O_WRONLY, 0o600))
    r = worker(tmp_path, ws, """
ctx.log.info(f.write("a/b", "3")["error"])
ctx.log.info(f.delete("ext"), f.write("a/b", "3"))
""", "--timeout", "60")
    over = "the workspace holds more than 100000 files and directories, or is nested deeper than 32"
    assert logs(r) == [over, "{'ok': True} {'ok': True, 'size': 1}"], r
    assert usage_record(ws) == {"version": 1, "bytes": 1, "entries": 100000, "over": False}
    os.close(os.open(ws / "ext", os.O_CREAT | os.O_WRONLY, 0o600))
    r = worker(tmp_path, ws, 'ctx.log.info(f.write("a/b", "3")["error"])', "--timeout", "60")
    assert logs(r) == [over], r
    assert usage_record(ws)["over"] is True
    os.unlink(ws / "ext")
    r = worker(tmp_path, ws, 'ctx.log.info(f.write("a/b", "3"))', "--timeout", "60")
    assert logs(r) == ["{'ok': True, 'size': 1}"], "a later job counts afresh"
    assert usage_record(ws) == {"version": 1, "bytes": 1, "entries": 100000, "over": False}


def test_write_is_atomic_and_durable(tmp_path, ws):
    r = worker(tmp_path, ws, 'ctx.log.info(f.write("x", "1" * 10000))')
    assert r.code == 0
    assert (ws / "x").read_text() == "1" * 10000


def test_empty_and_max_size_reads(tmp_path, ws):
    r = worker(tmp_path, ws, """
ctx.log.info(f.write("e", ""), f.read("e"), f.read("e", binary=True))
ctx.log.info(f.write("m", "z" * 51200)["size"], len(f.read("m")["content"]), f.read("m")["content"] == "z" * 51200)
ctx.log.info(f.write("nul", b"a\\x00b"), f.read("nul", binary=True))
""")
    assert logs(r) == ["{'ok': True, 'size': 0} {'content': '', 'size': 0} {'content': b'', 'size': 0}",
                       "51200 51200 True",
                       "{'ok': True, 'size': 3} {'content': b'a\\x00b', 'size': 3}"], r


def test_a_held_workspace_lock_is_not_waited_on(tmp_path, ws):
    import fcntl
    os.makedirs(ws, mode=0o700)
    fd = os.open(ws, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    try:
        t0 = time.monotonic()
        r = worker(tmp_path, ws, 'ctx.log.info(f.write("x", "1"))', "--timeout", "20")
        took = time.monotonic() - t0
    finally:
        os.close(fd)
    assert logs(r) == ["{'error': 'the workspace is busy (another writer holds it); try again'}"], r
    assert took < slack(5)


def test_too_deep_a_write_leaves_nothing(tmp_path, ws):
    r = worker(tmp_path, ws, """
ctx.log.info(f.write("a/" * 40 + "f", "1")["error"])
ctx.log.info(f.list())
ctx.log.info(f.write("ok.txt", "1"))
""")
    assert logs(r) == [("a/" * 40 + "f")[:200] + ": paths are at most 31 directories deep",
                       "{'entries': []}", "{'ok': True, 'size': 1}"], r


def test_errors_on_long_unicode_paths_are_error_dicts(tmp_path, ws):
    r = worker(tmp_path, ws, 'ctx.log.info(f.read("donn\\u00e9es/" + "\\u00e9" * 120 + ".csv"))')
    assert r.code == 0, r
    assert logs(r)[0].startswith("{'error': 'donn\u00e9es/"), r
