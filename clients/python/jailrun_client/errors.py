"""The exceptions of jailrun_client: all are JailrunError.

JailrunError
 +-- DaemonUnavailable   jaild cannot be reached, or died during a call
 +-- RequestTimeout      jaild did not answer within the client's HTTP timeout
 +-- SessionNotStarted   a call that needs a session before setup()
 +-- DownloadIsDirectory download() of a directory (use list_files())
 +-- NotADirectory       list_files() of a file (use download())
 +-- InstallFailed       pip ran in the session and failed
 +-- APIError            jaild refused the request (status, type, message)
      +-- LimitRefused         400 on limits: memory/CPU/timeout over the maxima
      +-- SessionNotFound      404: no session with that id on this jaild
      +-- RemoteFileNotFound   404: no such file or directory in the session
      +-- PackagesUnavailable  409: no package source configured in jaild
      +-- SessionDied          410: the session ended (killed, or jaild restarted)

A snippet that fails or runs over its timeout is not an exception: it is an
ordinary ExecutionResponse with success False (error_type "TimeoutError").
"""
from typing import Any, Dict, Type


class JailrunError(Exception):
    """Base class of every error this client raises."""


class DaemonUnavailable(JailrunError):
    """jaild is not reachable at the socket (missing, refused, permission
    denied), or it closed the connection before answering (it died or was
    restarted during the call). The message names the socket and what
    happened."""

    def __init__(self, message: str, socket: str) -> None:
        super().__init__(message)
        self.socket = socket


class RequestTimeout(JailrunError):
    """jaild accepted the request but did not answer within the client's HTTP
    timeout. Executions get the session's execution timeout plus a margin, so
    this means the daemon is stuck or overloaded, not that the snippet ran
    long (that is an ordinary response with success False)."""


class SessionNotStarted(JailrunError):
    """The call needs a session: call setup() first (or use `async with`)."""


class DownloadIsDirectory(JailrunError, IsADirectoryError):
    """download() named a directory of the session (list_files() lists it)."""


class NotADirectory(JailrunError, NotADirectoryError):
    """list_files() named a file of the session (download() reads it)."""


class InstallFailed(JailrunError):
    """pip ran in the session and did not install every package; `output`
    holds what pip printed."""

    def __init__(self, message: str, result: Dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result
        self.output: str = str(result.get("output", "")) + str(result.get("stderr", ""))


class APIError(JailrunError):
    """jaild answered with an error: `status` (HTTP), `type` and `message`
    (the server's {"error": {"type", "message"}})."""

    def __init__(self, status: int, type: str, message: str, method: str = "", path: str = "") -> None:
        where = ("%s %s: " % (method, path)) if method else ""
        super().__init__("%s%s (HTTP %d %s)" % (where, message, status, type))
        self.status = status
        self.type = type
        self.message = message
        self.method = method
        self.path = path


class LimitRefused(APIError):
    """jaild refused the session's limits or an execution's timeout (400),
    e.g. "memory_limit: at most 2 GiB (2147483648 bytes)"."""


class SessionNotFound(APIError):
    """No session with that id on this jaild (404)."""


class RemoteFileNotFound(APIError, FileNotFoundError):
    """A file or directory the call named does not exist in the session (404)."""


class PackagesUnavailable(APIError):
    """Packages were asked for but jaild has no package source configured
    (409; sessions.packages.wheel_dir or index_url in jaild.conf)."""


class SessionDied(APIError):
    """The session is dead (410): killed after a snippet would not stop, or
    ended when jaild stopped. `message` says why."""


def error_for(status: int, err_type: str, message: str, method: str, path: str,
              limits: bool = False, file_op: bool = False) -> APIError:
    """The exception for an error answer. `limits`: a 400 of this request
    is a refused limit (create, execute); `file_op`: a 404 of this request
    is about the file (the caller checked the session exists)."""
    cls: Type[APIError] = APIError
    if status == 400 and limits:
        cls = LimitRefused
    elif status == 404 and path.startswith("/v1/sessions/"):  # not a jaild without the sessions API
        cls = RemoteFileNotFound if file_op else SessionNotFound
    elif status == 409 and err_type == "PackagesUnavailable":
        cls = PackagesUnavailable
    elif status == 410:
        cls = SessionDied
    return cls(status, err_type, message, method, path)
