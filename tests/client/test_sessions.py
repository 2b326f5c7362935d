"""The client against a real jaild: sessions, executions (state kept,
errors, timeouts, streaming), files, limits, isolation between sessions."""
import asyncio
import os

import pytest

from cjaild import hostprobe, jd, run, sock  # noqa: F401 (fixtures)
import jailrun_client.client
from jailrun_client import (APIError, DownloadIsDirectory, ExecutionResponse, LimitRefused, NotADirectory,
                            RemoteFileNotFound, SandboxClient, SessionDied, SessionNotFound)

GiB = 1 << 30


def test_session_lifecycle_and_state_between_snippets(sock, jd):
    async def main():
        async with SandboxClient() as c:
            sid = c.session_id
            assert sid.startswith("s-")
            s = c.session
            assert (s["memory_limit"], s["cpu_limit"], s["timeout"]) == (512 << 20, 1, 300)
            assert s["state"] == "ready" and s["workdir"] == "/scratch"
            r = await c.execute_code("x = 20\ndef f(y):\n    return x + y\n")
            assert isinstance(r, ExecutionResponse) and r.success, r
            assert r.error is None and r.data["output"] == ""
            r = await c.execute_code("print(f(1))\nf(22)")
            assert r.success and r.data["output"] == "21\n" and r.result == "42"
            assert set(r.stats) >= {"wall_ms", "cpu_ms", "peak_memory_bytes"}
            info = await c.info()
            assert info["id"] == sid and info["executions"] == 2 and info["state"] == "ready"
            ids = [x["id"] for x in jd.get("/v1/sessions").json()["sessions"]]
            assert sid in ids
        assert c.session_id is None
        assert jd.get("/v1/sessions/%s" % sid).status_code == 404
        await c.cleanup()  # idempotent
    run(main())


def test_errors_in_a_snippet_are_responses(sock):
    async def main():
        async with SandboxClient() as c:
            r = await c.execute_code("print('before')\nimport sys\nprint('warn', file=sys.stderr)\n1/0\n")
            assert not r.success
            assert r.error == "ZeroDivisionError: division by zero" and r.error_type == "ZeroDivisionError"
            assert r.data["output"] == "before\n" and r.stderr == "warn\n"
            assert "ZeroDivisionError" in r.traceback
            r = await c.execute_code("print('still here')")  # the session lives on
            assert r.success and r.data["output"] == "still here\n"
            r = await c.execute_code("def broken(:\n")
            assert not r.success and r.error_type == "SyntaxError"
    run(main())


def test_a_snippet_over_its_timeout_is_an_ordinary_response(sock):
    async def main():
        async with SandboxClient(timeout=30) as c:
            await c.execute_code("n = 1")
            r = await c.execute_code("import time\ntime.sleep(60)", timeout=1)
            assert not r.success and r.error_type == "TimeoutError", r
            r = await c.execute_code("print(n + 1)")  # interrupted, not killed: globals kept
            assert r.success and r.data["output"] == "2\n"
    run(main())


def test_execute_waits_past_the_request_timeout_up_to_the_executions(sock, monkeypatch):
    """An execution's answer comes when the snippet ends: the client waits
    for it by the execution's timeout, not by REQUEST_TIMEOUT (made shorter
    than the snippet here)."""
    monkeypatch.setattr(jailrun_client.client, "REQUEST_TIMEOUT", 0.5)

    async def main():
        async with SandboxClient(timeout=30) as c:
            r = await c.execute_code("import time\ntime.sleep(%g)\nprint('slept')" % hostprobe.slack(1.5))
            assert r.success and r.data["output"] == "slept\n"
    run(main())


def test_a_session_killed_for_not_stopping_is_session_died(sock):
    """A snippet that swallows the interruption is killed with its session:
    that call's response says SessionDied, the next call raises it."""
    stubborn = ("import time\nwhile True:\n    try:\n        time.sleep(0.05)\n"
                "    except BaseException:\n        pass\n")

    async def main():
        c = SandboxClient(timeout=30)
        await c.setup()
        try:
            r = await c.execute_code(stubborn, timeout=1)
            assert not r.success and r.session_ended, r
            assert r.error_type in ("TimeoutError", "SessionDied"), r
            with pytest.raises(SessionDied) as e:
                await c.execute_code("1")
            assert e.value.status == 410 and e.value.message
            assert (await c.info())["state"] == "dead"
        finally:
            await c.cleanup()
    run(main())


def test_streaming_output_arrives_while_the_snippet_runs(sock):
    """The snippet prints, then waits for a file to appear; the callback
    uploads that file when the print reaches it: the snippet can only end
    if its output was streamed before it ended."""
    code = ("import os, sys, time\nprint('ready', flush=True)\nprint('err', file=sys.stderr, flush=True)\n"
            "deadline = time.monotonic() + 60\n"
            "while not os.path.exists('release') and time.monotonic() < deadline:\n    time.sleep(0.01)\n"
            "print('released' if os.path.exists('release') else 'never released')\n")

    async def main():
        async with SandboxClient() as c:
            chunks = []

            async def on_output(stream, text):
                chunks.append((stream, text))
                if "ready" in text:
                    await c.upload("release", b"")
            r = await c.execute_code(code, on_output=on_output)
            assert r.success, r
            assert r.data["output"] == "ready\nreleased\n"
            assert "".join(t for s, t in chunks if s == "stdout") == "ready\nreleased\n"
            assert "".join(t for s, t in chunks if s == "stderr") == "err\n"
            seen = []
            r = await c.execute_code("for i in range(3): print(i)", on_output=lambda s, t: seen.append(t))
            assert r.success and "".join(seen) == "0\n1\n2\n" == r.data["output"]
            r = await c.execute_code("raise KeyError('k')", on_output=lambda s, t: None)
            assert not r.success and r.error_type == "KeyError"
    run(main())


def test_concurrent_executes_on_one_session_all_answer(sock):
    async def main():
        async with SandboxClient() as c:
            await c.execute_code("import threading\nlock = threading.Lock()\nseen = []")
            rs = await asyncio.gather(*[c.execute_code("seen.append(%d)\nlen(seen)" % i) for i in range(5)])
            assert all(r.success for r in rs)
            assert sorted(int(r.result) for r in rs) == [1, 2, 3, 4, 5]  # one at a time
            r = await c.execute_code("sorted(seen)")
            assert r.result == "[0, 1, 2, 3, 4]"
    run(main())


def test_files_in_and_out(sock):
    blob = bytes(range(256)) * 1000

    async def main():
        async with SandboxClient() as c:
            assert (await c.upload("data.bin", blob))["size"] == len(blob)
            assert (await c.upload("note.txt", "héllo"))["size"] == len("héllo".encode())
            r = await c.execute_code("import os\nos.mkdir('out')\n"
                                     "open('out/sum.txt', 'w').write(str(sum(open('data.bin', 'rb').read())))\n"
                                     "print(open('note.txt').read())")
            assert r.success and r.data["output"] == "héllo\n", r
            assert await c.download("out/sum.txt") == str(sum(blob)).encode()
            assert await c.download("data.bin") == blob
            names = {e["name"]: e for e in await c.list_files()}
            assert names["data.bin"] == {"name": "data.bin", "type": "file", "size": len(blob)}
            assert names["out"]["type"] == "dir"
            assert [e["name"] for e in await c.list_files("out")] == ["sum.txt"]
            assert (await c.delete_file("note.txt"))["deleted"] is True
            with pytest.raises(RemoteFileNotFound) as e:
                await c.download("note.txt")
            assert e.value.status == 404 and isinstance(e.value, FileNotFoundError)
            with pytest.raises(RemoteFileNotFound):
                await c.upload("no/such/dir/f", b"x")
            with pytest.raises(DownloadIsDirectory):
                await c.download("out")
            with pytest.raises(NotADirectory):
                await c.list_files("data.bin")
            for bad in ("../etc/passwd", "/etc/passwd", "out/../../x"):
                with pytest.raises(APIError) as e:
                    await c.download(bad)
                assert e.value.status == 400, bad
    run(main())


def test_sessions_do_not_see_each_others_files(sock):
    async def main():
        async with SandboxClient() as a, SandboxClient() as b:
            await a.upload("secret.txt", b"a's")
            r = await a.execute_code("open('mine.txt', 'w').write('x')")
            assert r.success
            assert {e["name"] for e in await b.list_files()} & {"secret.txt", "mine.txt"} == set()
            with pytest.raises(RemoteFileNotFound):
                await b.download("secret.txt")
            r = await b.execute_code("import os\nprint(sorted(os.listdir('.')))\nopen('secret.txt')")
            assert not r.success and r.error_type == "FileNotFoundError"
    run(main())


@pytest.mark.parametrize("kw,field,maximum", [
    ({"memory_limit": "3G"}, "memory_limit", "2 GiB"),
    ({"memory_limit": 2 * GiB + 1}, "memory_limit", "2 GiB"),
    ({"cpu_limit": 5}, "cpu_limit", "4"),
])
def test_limits_over_the_maxima_are_refused(sock, jd, kw, field, maximum):
    before = jd.get("/v1/sessions").json()["sessions"]
    c = SandboxClient(**kw)
    with pytest.raises(LimitRefused) as e:
        run(c.setup())
    assert e.value.status == 400 and field in e.value.message and maximum in e.value.message
    assert c.session_id is None
    run(c.cleanup())
    assert jd.get("/v1/sessions").json()["sessions"] == before


def test_limits_at_the_maxima_and_in_units(sock):
    async def main():
        for mem, want in (("2G", 2 * GiB), ("512MB", 512 << 20), (256 << 20, 256 << 20)):
            async with SandboxClient(memory_limit=mem, cpu_limit=4, timeout=10) as c:
                assert c.session["memory_limit"] == want and c.session["cpu_limit"] == 4
                assert c.session["timeout"] == 10
        async with SandboxClient(timeout=5) as c:
            with pytest.raises(LimitRefused):
                await c.execute_code("1", timeout=6)  # beyond the session's
    run(main())


def test_unknown_and_deleted_sessions(sock):
    async def main():
        c = SandboxClient()
        c.session = {"id": "s-0000000000000000"}
        with pytest.raises(SessionNotFound) as e:
            await c.execute_code("1")
        assert e.value.status == 404
        with pytest.raises(SessionNotFound):  # a file call's 404 for the session, not the file
            await c.download("x")
        await c.cleanup()  # already gone: not an error
        async with SandboxClient() as d:
            other = SandboxClient()
            other.session = dict(d.session)
            await other.cleanup()  # deletes d's session
            with pytest.raises(SessionNotFound):
                await d.execute_code("1")
    run(main())


def test_memory_limit_holds_in_the_session(sock):
    async def main():
        async with SandboxClient(memory_limit="256M") as c:
            r = await c.execute_code("b = bytearray(64 << 20)\nlen(b)")
            assert r.success and r.result == str(64 << 20)
            r = await c.execute_code("del b\nbig = bytearray(512 << 20)")
            assert not r.success and r.error_type in ("MemoryError", "SessionDied"), r
    run(main())


def test_large_files_and_code_arrive_whole(sock):
    """Bodies far over a socket buffer, both ways: a 4 MiB upload and
    download, a snippet of 384 KiB (a literal the session hashes; jaild
    takes code up to 512 KiB, JSON bodies up to 1 MiB), and a body over
    the limit, answered 413 before jaild reads it."""
    import hashlib
    blob = os.urandom(4 << 20)
    text = "".join(chr(0x41 + (i * 7919) % 26) for i in range(384 << 10))

    async def main():
        async with SandboxClient() as c:
            assert (await c.upload("big.bin", blob))["size"] == len(blob)
            r = await c.execute_code("import hashlib\nhashlib.sha256(open('big.bin', 'rb').read()).hexdigest()")
            assert r.success and r.result == repr(hashlib.sha256(blob).hexdigest()), r
            assert await c.download("big.bin") == blob
            r = await c.execute_code("import hashlib\nhashlib.sha256(%r.encode()).hexdigest()" % text)
            assert r.success and r.result == repr(hashlib.sha256(text.encode()).hexdigest())
            with pytest.raises(APIError) as e:  # the answer jaild sent before reading the body
                await c.execute_code("x = %r" % (text * 3))
            assert e.value.status == 413 and e.value.type == "PayloadTooLargeError", e.value
            assert (await c.execute_code("1 + 1")).result == "2"
    run(main())
