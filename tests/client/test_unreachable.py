"""The client without a daemon to talk to: no socket, a socket nothing
listens on, a daemon that accepts and never answers; calls before setup()."""
import asyncio
import os
import socket

import pytest

from cjaild import run
import jailrun_client
import jailrun_client.client
from jailrun_client import (DEFAULT_SOCKET, DaemonUnavailable, JailrunError, RequestTimeout, SandboxClient,
                            SessionNotStarted)


def test_socket_from_argument_env_or_default(monkeypatch, tmp_path):
    monkeypatch.delenv("JAILD_SOCKET", raising=False)
    assert SandboxClient().socket == DEFAULT_SOCKET == "/run/jaild/jaild.sock"
    monkeypatch.setenv("JAILD_SOCKET", str(tmp_path / "env.sock"))
    assert SandboxClient().socket == str(tmp_path / "env.sock")
    assert SandboxClient(socket=str(tmp_path / "arg.sock")).socket == str(tmp_path / "arg.sock")


def test_no_socket_file(tmp_path):
    path = str(tmp_path / "nothing-here.sock")
    c = SandboxClient(socket=path)
    with pytest.raises(DaemonUnavailable) as e:
        run(c.setup())
    assert e.value.socket == path
    assert path in str(e.value) and "does not exist" in str(e.value)
    assert c.session_id is None
    run(c.cleanup())  # safe after a failed setup, and again
    run(c.cleanup())


def test_socket_with_nothing_listening(tmp_path, monkeypatch):
    path = str(tmp_path / "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)  # bound, never listening, then closed: the file stays
    s.close()
    assert os.path.exists(path)
    monkeypatch.setenv("JAILD_SOCKET", path)

    async def use():
        async with SandboxClient() as c:
            await c.execute_code("1")
    with pytest.raises(DaemonUnavailable) as e:
        run(use())
    assert path in str(e.value) and "nothing is listening" in str(e.value)
    assert isinstance(e.value, JailrunError)


def test_the_004_pattern_without_a_daemon_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("JAILD_SOCKET", str(tmp_path / "none.sock"))

    async def main():
        client = SandboxClient()
        await client.setup()
        try:
            await client.execute_code("print('x')")
        finally:
            await client.cleanup()
    with pytest.raises(DaemonUnavailable, match="none.sock"):
        run(main())


def test_a_daemon_that_never_answers_is_a_request_timeout(tmp_path, monkeypatch):
    """Accepts, reads, never answers: the client gives up after its HTTP
    timeout (REQUEST_TIMEOUT, made short here) with RequestTimeout."""
    monkeypatch.setattr(jailrun_client.client, "REQUEST_TIMEOUT", 0.3)
    path = str(tmp_path / "mute.sock")
    got = []

    async def main():
        async def mute(reader, writer):
            got.append(await reader.readline())
            await reader.read()  # until the client hangs up
            writer.close()
        srv = await asyncio.start_unix_server(mute, path)
        async with srv:
            c = SandboxClient(socket=path)
            with pytest.raises(RequestTimeout) as e:
                await c.setup()
            assert path in str(e.value) and "POST /v1/sessions" in str(e.value)
            await c.cleanup()
    run(main())
    assert got and got[0].startswith(b"POST /v1/sessions ")


def test_calls_before_setup():
    c = SandboxClient(socket="/nonexistent/jaild.sock")
    for call in (c.execute_code("1"), c.upload("a", b"x"), c.download("a"), c.list_files(), c.delete_file("a"),
                 c.install(["x"]), c.info()):
        with pytest.raises(SessionNotStarted, match="setup"):
            run(call)


def test_ai_computer_is_the_client():
    import ai_computer
    assert ai_computer.SandboxClient is SandboxClient
    for name in jailrun_client.__all__:
        assert getattr(ai_computer, name) is getattr(jailrun_client, name)


def serve_then_hang_up(path, answer):
    """A unix socket server that reads one request, writes `answer` (bytes:
    none, or the start of a response) and closes: a daemon dying mid-call,
    as the client sees it."""
    async def handler(reader, writer):
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        writer.write(answer)
        await writer.drain()
        writer.close()
    return asyncio.start_unix_server(handler, path)


@pytest.mark.parametrize("answer", [b"", b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 50"
                                        b"\r\n\r\n{\"id\""], ids=["nothing", "half"])
def test_a_connection_closed_before_the_answer_is_daemon_unavailable(tmp_path, answer):
    path = str(tmp_path / "dying.sock")

    async def main():
        async with await serve_then_hang_up(path, answer):
            c = SandboxClient(socket=path)
            with pytest.raises(DaemonUnavailable) as e:
                await c.setup()
            assert e.value.socket == path
            assert "%s closed the connection during POST /v1/sessions" % path in str(e.value)
            await c.cleanup()
    run(main())


def test_a_stream_cut_before_its_result_is_daemon_unavailable(tmp_path):
    path = str(tmp_path / "dying.sock")
    line = b'{"type":"output","stream":"stdout","text":"partial\\n"}\n'
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
    seen = []

    async def main():
        async with await serve_then_hang_up(path, head + b"%x\r\n%s\r\n" % (len(line), line)):
            c = SandboxClient(socket=path)
            c.session = {"id": "s-0123456789abcdef", "timeout": 300}  # as if set up
            with pytest.raises(DaemonUnavailable) as e:
                await c.execute_code("print('partial')", on_output=lambda s, t: seen.append((s, t)))
            assert "closed the connection during POST /v1/sessions/s-0123456789abcdef/execute" in str(e.value)
            c.session = None
            await c.cleanup()
    run(main())
    assert seen == [("stdout", "partial\n")]
