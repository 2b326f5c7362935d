"""jailrun_client: an asyncio client for jaild's sessions (persistent
jailed Python interpreters), over jaild's unix socket.

    import asyncio
    from jailrun_client import SandboxClient

    async def main():
        async with SandboxClient(memory_limit="1G", cpu_limit=2) as c:
            r = await c.execute_code("x = 6 * 7\\nprint(x)")
            print(r.success, r.data["output"])

    asyncio.run(main())
"""
from .client import (CONNECT_TIMEOUT, DEFAULT_SOCKET, EXECUTE_MARGIN, INSTALL_TIMEOUT, REQUEST_TIMEOUT,
                     ExecutionResponse, OutputCallback, SandboxClient, resolve_socket)
from .errors import (APIError, DaemonUnavailable, DownloadIsDirectory, InstallFailed, JailrunError, LimitRefused,
                     NotADirectory, PackagesUnavailable, RemoteFileNotFound, RequestTimeout, SessionDied,
                     SessionNotFound, SessionNotStarted)

__version__ = "0.1.0"

__all__ = [
    "SandboxClient", "ExecutionResponse", "OutputCallback", "resolve_socket",
    "DEFAULT_SOCKET", "CONNECT_TIMEOUT", "REQUEST_TIMEOUT", "INSTALL_TIMEOUT", "EXECUTE_MARGIN",
    "JailrunError", "DaemonUnavailable", "RequestTimeout", "SessionNotStarted", "DownloadIsDirectory",
    "NotADirectory", "InstallFailed", "APIError", "LimitRefused", "SessionNotFound", "RemoteFileNotFound",
    "PackagesUnavailable", "SessionDied",
]
