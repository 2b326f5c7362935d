"""httpx's transport to a unix socket, its socket I/O on asyncio's own
calls (loop.sock_connect, sock_recv, sock_sendall).

Why not httpx.AsyncHTTPTransport(uds=...) as it is: under asyncio it
writes through anyio's UNIX socket stream, and anyio 3.6 (Debian 12's
python3-anyio) resends the buffer from its start after a partial write
(it passes the whole buffer, not what is left, to send()): a request body
larger than the socket's send buffer (about 200 KiB) reaches jaild with
its tail replaced by its beginning, the length unchanged. This transport
is httpx's own with only the network backend replaced.

A write the server cut short (EPIPE, ECONNRESET) is not an error by
itself: jaild answers a body over its limit (413) from the headers and
closes without reading it, so the answer is read as usual; a server that
died answers nothing, and reading says so (RemoteProtocolError).
"""
import asyncio
import select
import socket
from typing import Any, Optional

import httpcore
import httpx

try:  # httpcore 1.x exports them; 0.16 (Debian 12) has them here
    from httpcore import AsyncNetworkBackend, AsyncNetworkStream  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the host's httpcore
    from httpcore.backends.base import AsyncNetworkBackend, AsyncNetworkStream  # type: ignore[no-redef]


async def _within(coro: Any, timeout: Optional[float], timeout_exc: type, what: str) -> Any:
    try:
        return await asyncio.wait_for(coro, timeout)
    except asyncio.TimeoutError:
        raise timeout_exc("%s: no progress within %g s" % (what, timeout)) from None


class _UnixStream(AsyncNetworkStream):
    """One connection: a non-blocking AF_UNIX socket driven by the loop."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._cut = False  # the server stopped reading what we wrote

    async def read(self, max_bytes: int, timeout: Optional[float] = None) -> bytes:
        loop = asyncio.get_running_loop()
        try:
            return await _within(loop.sock_recv(self._sock, max_bytes), timeout, httpcore.ReadTimeout, "read")  # type: ignore[no-any-return]
        except OSError as e:
            raise httpcore.ReadError(str(e)) from e

    async def write(self, buffer: bytes, timeout: Optional[float] = None) -> None:
        if not buffer or self._cut:
            return
        loop = asyncio.get_running_loop()
        try:
            await _within(loop.sock_sendall(self._sock, buffer), timeout, httpcore.WriteTimeout, "write")
        except (BrokenPipeError, ConnectionResetError):
            self._cut = True  # an early answer, if any, is read next
        except OSError as e:
            raise httpcore.WriteError(str(e)) from e

    async def aclose(self) -> None:
        self._sock.close()

    async def start_tls(self, ssl_context: Any, server_hostname: Optional[str] = None,
                        timeout: Optional[float] = None) -> "AsyncNetworkStream":
        raise httpcore.ConnectError("TLS over jaild's unix socket is not a thing")

    def get_extra_info(self, info: str) -> Any:
        if info == "socket":
            return self._sock
        if info == "is_readable":  # an idle kept-alive connection the server closed (or wrote to)
            if self._cut or self._sock.fileno() < 0:
                return True
            p = select.poll()
            p.register(self._sock, select.POLLIN)
            return bool(p.poll(0))
        return None


class _UnixBackend(AsyncNetworkBackend):
    """Connects to unix sockets only (jaild has no other address)."""

    async def connect_tcp(self, host: str, port: int, timeout: Optional[float] = None,
                          local_address: Optional[str] = None, **kw: Any) -> AsyncNetworkStream:
        raise httpcore.ConnectError("this transport reaches a unix socket only")

    async def connect_unix_socket(self, path: str, timeout: Optional[float] = None,
                                  **kw: Any) -> AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        try:
            await _within(loop.sock_connect(sock, path), timeout, httpcore.ConnectTimeout, "connect")
        except OSError as e:
            sock.close()
            raise httpcore.ConnectError(str(e)) from e
        except BaseException:
            sock.close()
            raise
        return _UnixStream(sock)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class UnixTransport(httpx.AsyncHTTPTransport):
    """httpx.AsyncHTTPTransport(uds=path), HTTP/1.1, with whole writes."""

    def __init__(self, path: str) -> None:
        # verify=False: a unix socket carries no TLS, and loading the CA
        # bundle for nothing costs every client ~20 ms
        super().__init__(uds=path, verify=False)
        # the pool httpx made has not connected yet: replaced by one with
        # httpx's defaults (httpx.Limits(), keep-alive 5 s) and our backend
        self._pool = httpcore.AsyncConnectionPool(max_connections=100, max_keepalive_connections=20,
                                                  keepalive_expiry=5.0, http1=True, http2=False, uds=path,
                                                  network_backend=_UnixBackend())
