"""The client's unix-socket transport sends request bodies whole. (anyio
3.6, Debian 12's, resends a buffer's start after a partial write on a unix
socket: httpx's own unix transport delivers a body larger than the socket
buffer with its tail replaced, its length unchanged.)"""
import asyncio
import hashlib
import os

import httpx
import pytest

from cjaild import run
from jailrun_client._transport import UnixTransport


@pytest.mark.parametrize("size", [0, 1, 256000, 5 << 20])
def test_bodies_arrive_whole_through_a_slow_reader(tmp_path, size):
    """The server reads the body late and in small pieces, so the client's
    writes fill the socket buffer and come back partial."""
    path = str(tmp_path / "slow.sock")
    data = os.urandom(size)

    async def handler(reader, writer):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            n = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")][0][15:])
            await asyncio.sleep(0.05)
            body = b""
            while len(body) < n:
                body += await reader.read(min(4096, n - len(body)))
            digest = hashlib.sha256(body).hexdigest().encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(digest), digest))
            await writer.drain()

    async def main():
        async with await asyncio.start_unix_server(handler, path):
            async with httpx.AsyncClient(transport=UnixTransport(path), base_url="http://jaild") as c:
                for _ in range(2):  # and again on the kept-alive connection
                    r = await c.put("/x", content=data)
                    assert r.text == hashlib.sha256(data).hexdigest()
    run(main())


def test_connect_errors_keep_their_cause(tmp_path):
    async def main():
        async with httpx.AsyncClient(transport=UnixTransport(str(tmp_path / "none.sock")),
                                     base_url="http://jaild") as c:
            with pytest.raises(httpx.ConnectError) as e:
                await c.get("/v1/health")
        cause = e.value.__cause__
        while cause is not None and not isinstance(cause, FileNotFoundError):
            cause = cause.__cause__
        assert isinstance(cause, FileNotFoundError)
    run(main())
