"""SandboxClient: one jaild session (a persistent jailed Python interpreter)
driven over jaild's unix socket with httpx."""
import errno
import inspect
import json
import os
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Union
from urllib.parse import quote

try:
    import httpx
except ImportError as e:  # pragma: no cover - depends on the host
    raise ImportError("jailrun_client needs httpx: on Debian apt-get install python3-httpx, elsewhere "
                      "pip install 'jailrun-client[httpx]' (%s)" % e) from e

from ._transport import UnixTransport
from .errors import (APIError, DaemonUnavailable, DownloadIsDirectory, InstallFailed, JailrunError,
                     NotADirectory, RequestTimeout, SessionDied, SessionNotFound, SessionNotStarted,
                     error_for)

DEFAULT_SOCKET = "/run/jaild/jaild.sock"
"""jaild's socket when neither socket= nor JAILD_SOCKET names one."""
CONNECT_TIMEOUT = 10.0
"""Seconds to connect to the socket."""
REQUEST_TIMEOUT = 60.0
"""Seconds jaild has to answer a call other than an execution or an install."""
INSTALL_TIMEOUT = 900.0
"""Seconds jaild has to answer an install (pip runs before the answer)."""
EXECUTE_MARGIN = 30.0
"""Seconds beyond an execution's timeout before the client gives up on the
answer: jaild answers when the snippet ends, interrupts it at its timeout
and kills the session if it will not stop within a grace."""

OutputCallback = Callable[[str, str], Union[None, Awaitable[None]]]
"""on_output(stream, text): stream is "stdout" or "stderr"; may be async."""


def resolve_socket(socket: Optional[str] = None) -> str:
    """The socket to use: the argument, else $JAILD_SOCKET, else DEFAULT_SOCKET."""
    return socket or os.environ.get("JAILD_SOCKET") or DEFAULT_SOCKET


@dataclass
class ExecutionResponse:
    """The answer to one execute_code(): `success`, `data` (the server's data
    object as is: output, stderr, and error, error_type, traceback, result
    when there are), and `stats` (wall_ms, cpu_ms, peak_memory_bytes)."""

    success: bool
    data: Dict[str, Any] = field(default_factory=dict)
    stats: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Dict[str, Any]) -> "ExecutionResponse":
        """The response from the server's JSON object (a stream's result line too)."""
        if not isinstance(obj, dict) or not isinstance(obj.get("success"), bool):
            raise JailrunError("jaild answered an execution without a success flag: %.200r" % (obj,))
        data = obj.get("data")
        stats = obj.get("stats")
        return cls(obj["success"], data if isinstance(data, dict) else {}, stats if isinstance(stats, dict) else {})

    @property
    def output(self) -> str:
        """What the snippet wrote to stdout during this call."""
        return str(self.data.get("output", ""))

    @property
    def stderr(self) -> str:
        """What the snippet wrote to stderr during this call."""
        return str(self.data.get("stderr", ""))

    @property
    def error(self) -> Optional[str]:
        """"Type: message" of the exception the snippet raised, or None."""
        return self.data.get("error")

    @property
    def error_type(self) -> Optional[str]:
        """The exception's type name ("TimeoutError" past the timeout), or None."""
        return self.data.get("error_type")

    @property
    def session_ended(self) -> bool:
        """Whether this execution took the session with it (killed past its
        timeout's grace, or past its memory limit): later calls raise
        SessionDied."""
        return bool(self.data.get("session_ended")) or self.error_type == "SessionDied"

    @property
    def traceback(self) -> Optional[str]:
        """The snippet's traceback when it raised, or None."""
        return self.data.get("traceback")

    @property
    def result(self) -> Optional[str]:
        """The repr of the snippet's final expression, or None."""
        return self.data.get("result")


def _oserror(exc: BaseException) -> Optional[OSError]:
    seen = 0
    e: Optional[BaseException] = exc
    while e is not None and seen < 10:
        if isinstance(e, OSError) and e.errno is not None:
            return e
        e = e.__cause__ or e.__context__
        seen += 1
    return None


def _unreachable(socket: str, exc: httpx.TransportError, method: str, path: str) -> DaemonUnavailable:
    """A DaemonUnavailable saying which socket and what happened."""
    if isinstance(exc, httpx.ConnectError):
        os_err = _oserror(exc)
        code = os_err.errno if os_err is not None else None
        if code == errno.ENOENT:
            why = "the socket does not exist (is jaild running? socket= or JAILD_SOCKET names another)"
        elif code == errno.ECONNREFUSED:
            why = "nothing is listening on it (jaild is not running; the socket file is left from an earlier run)"
        elif code in (errno.EACCES, errno.EPERM):
            why = "permission denied (the socket's mode, or jaild's allow list, keeps this user out)"
        else:
            why = "cannot connect: %s" % (os_err or exc)
        return DaemonUnavailable("jaild at %s is unavailable: %s" % (socket, why), socket)
    return DaemonUnavailable("jaild at %s closed the connection during %s %s before it answered (%s): the daemon "
                             "died or was restarted, and its sessions ended with it"
                             % (socket, method, path, str(exc) or type(exc).__name__), socket)


async def _call(cb: OutputCallback, stream: str, text: str) -> None:
    r = cb(stream, text)
    if inspect.isawaitable(r):
        await r


class SandboxClient:
    """One session of jaild: a persistent Python interpreter in a jail with
    its own working directory. Globals persist between execute_code() calls.

    memory_limit ("512M", "1G", or bytes), cpu_limit (cores) and timeout
    (seconds per execution) are the session's limits; jaild refuses values
    over its maxima (LimitRefused). socket: jaild's unix socket (default
    $JAILD_SOCKET, else /run/jaild/jaild.sock). idle_timeout: seconds
    before jaild ends an unused session (jaild's default when None).
    packages: names pip installs into the session at setup (needs a package
    source configured in jaild).

    Use `async with SandboxClient() as c:`, or call setup() and then
    cleanup() in a finally block.
    """

    def __init__(self, memory_limit: Union[str, int] = "512M", cpu_limit: float = 1, timeout: float = 300,
                 socket: Optional[str] = None, *, idle_timeout: Optional[float] = None,
                 packages: Optional[Sequence[str]] = None, name: Optional[str] = None) -> None:
        self.memory_limit = memory_limit
        self.cpu_limit = cpu_limit
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.packages = list(packages) if packages is not None else None
        self.name = name
        self.socket = resolve_socket(socket)
        self.session: Optional[Dict[str, Any]] = None
        """The server's session object from setup(), None before."""
        self._http: Optional[httpx.AsyncClient] = None
        self._queued: List[float] = []  # the answer budgets of this client's executions in flight

    def __repr__(self) -> str:
        return "<SandboxClient %s at %s>" % (self.session_id or "(no session)", self.socket)

    @property
    def session_id(self) -> Optional[str]:
        """The session's id ("s-..."), None before setup() and after cleanup()."""
        return self.session["id"] if self.session else None

    async def __aenter__(self) -> "SandboxClient":
        try:
            await self.setup()
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.cleanup()

    # -- transport ---------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(transport=UnixTransport(self.socket),
                                           base_url="http://jaild",
                                           timeout=httpx.Timeout(REQUEST_TIMEOUT, connect=CONNECT_TIMEOUT))
        return self._http

    async def _close(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    @staticmethod
    def _timeout(read: float) -> httpx.Timeout:
        return httpx.Timeout(REQUEST_TIMEOUT, connect=CONNECT_TIMEOUT, read=read)

    async def _request(self, method: str, path: str, *, limits: bool = False, file_op: bool = False,
                       read_timeout: Optional[float] = None, **kw: Any) -> httpx.Response:
        """One call; transport failures and error answers become exceptions.
        read_timeout: seconds jaild has to answer (REQUEST_TIMEOUT if None)."""
        if read_timeout is None:
            read_timeout = REQUEST_TIMEOUT
        try:
            r = await self._client().request(method, path, timeout=self._timeout(read_timeout), **kw)
        except httpx.TimeoutException as e:
            raise RequestTimeout("jaild at %s did not answer %s %s within %g s (%s)"
                                 % (self.socket, method, path, read_timeout, type(e).__name__)) from e
        except httpx.TransportError as e:
            raise _unreachable(self.socket, e, method, path) from e
        if r.status_code >= 400:
            raise await self._api_error(r, method, path, limits, file_op)
        return r

    async def _api_error(self, r: httpx.Response, method: str, path: str, limits: bool,
                         file_op: bool) -> JailrunError:
        err_type, message = "HTTPError", r.text.strip()[:500] or r.reason_phrase
        try:
            e = r.json().get("error")
            if isinstance(e, dict):
                err_type, message = str(e.get("type", err_type)), str(e.get("message", message))
        except (ValueError, AttributeError):
            pass
        if r.status_code == 404 and file_op:
            try:
                await self.info()  # a 404 of a file call: the file's, unless the session is gone
            except (SessionNotFound, SessionDied) as gone:
                return gone
        return error_for(r.status_code, err_type, message, method, path, limits=limits, file_op=file_op)

    @staticmethod
    def _json(r: httpx.Response) -> Any:
        try:
            return r.json()
        except ValueError:
            raise JailrunError("jaild answered %s %s with something other than JSON: %.200r"
                               % (r.request.method, r.request.url.path, r.text)) from None

    def _path(self, *parts: str) -> str:
        sid = self.session_id
        if sid is None:
            raise SessionNotStarted("no session: call setup() first (or use `async with SandboxClient() as c`)")
        return "/".join(("/v1/sessions", sid) + parts)

    def _file_path(self, path: str, root_ok: bool = False) -> str:
        if not isinstance(path, str):
            raise TypeError("a session path is a str, relative to the session directory")
        if path.rstrip("/") in ("", ".") and root_ok:
            return self._path("files", "")  # the session directory itself
        if len(path) > 1:
            path = path.rstrip("/")  # "out/" is the directory out
        # "." and ".." are sent encoded: a URL's dot segments would be removed
        # before jaild sees them (and jaild refuses them, saying so)
        segs = ["%2E" * len(s) if s in (".", "..") else quote(s, safe="") for s in path.split("/")]
        return self._path("files", "/".join(segs))

    # -- the session -------------------------------------------------------

    async def setup(self) -> Dict[str, Any]:
        """Creates the session (POST /v1/sessions) and returns the server's
        session object; a no-op returning it when there is one already.
        Raises DaemonUnavailable, LimitRefused (limits over jaild's maxima),
        PackagesUnavailable, InstallFailed (the packages did not install; no
        session is left), APIError (e.g. 503 SessionLimit)."""
        if self.session is not None:
            return self.session
        body: Dict[str, Any] = {"memory_limit": self.memory_limit, "cpu_limit": self.cpu_limit,
                                "timeout": self.timeout}
        for key in ("idle_timeout", "packages", "name"):
            if getattr(self, key) is not None:
                body[key] = getattr(self, key)
        try:
            try:
                r = await self._request("POST", "/v1/sessions", json=body, limits=True,
                                        read_timeout=INSTALL_TIMEOUT if self.packages else None)
            except APIError as e:
                if e.status == 424:  # the packages failed to install: jaild ended the session
                    raise InstallFailed(str(e), {"success": False, "output": e.message}) from e
                raise
            session = self._json(r)
            if not isinstance(session, dict) or not isinstance(session.get("id"), str):
                raise JailrunError("jaild answered POST /v1/sessions without a session id: %.200r" % (session,))
        except BaseException:
            await self._close()
            raise
        self.session = session
        return session

    async def info(self) -> Dict[str, Any]:
        """The session's state from jaild (GET /v1/sessions/{id}): state,
        executions, limits, last_used, and error when it is dead."""
        r = await self._request("GET", self._path())
        return self._json(r)  # type: ignore[no-any-return]

    async def cleanup(self) -> None:
        """Destroys the session (DELETE /v1/sessions/{id}) and closes the
        connection. Idempotent, and a no-op when setup() did not create a
        session. A session already gone (404, 410) or a daemon gone (its
        sessions went with it) is not an error; a daemon that does not
        answer in time is (RequestTimeout; the session is kept to retry)."""
        if self.session is not None:
            try:
                await self._request("DELETE", self._path())
            except (SessionNotFound, SessionDied, DaemonUnavailable):
                pass
            except RequestTimeout:
                await self._close()
                raise
            self.session = None
        await self._close()

    # -- executions --------------------------------------------------------

    async def execute_code(self, code: str, *, timeout: Optional[float] = None,
                           on_output: Optional[OutputCallback] = None) -> ExecutionResponse:
        """Runs code in the session's interpreter (globals persist between
        calls) and returns its ExecutionResponse. timeout: seconds for this
        call, at most the session's. on_output(stream, text), a function or a
        coroutine function, receives the output while the code runs
        (?stream=1). A snippet that raises or runs past its timeout is a
        response with success False, not an exception; exceptions are the
        transport's and jaild's refusals (SessionDied, LimitRefused, ...)."""
        path = self._path("execute")
        body: Dict[str, Any] = {"code": code}
        if timeout is not None:
            body["timeout"] = timeout
        session_timeout = float(self.session.get("timeout", self.timeout)) if self.session else float(self.timeout)
        budget = (timeout if timeout is not None else session_timeout) + EXECUTE_MARGIN
        self._queued.append(budget)
        read_timeout = sum(self._queued)  # one session's executions run in order: the ones before first
        try:
            if on_output is None:
                r = await self._request("POST", path, json=body, limits=True, read_timeout=read_timeout)
                return ExecutionResponse.from_json(self._json(r))
            return await self._execute_stream(path, body, on_output, read_timeout)
        finally:
            self._queued.remove(budget)

    async def _execute_stream(self, path: str, body: Dict[str, Any], on_output: OutputCallback,
                              read_timeout: float) -> ExecutionResponse:
        try:
            async with self._client().stream("POST", path, json=body, params={"stream": "1"},
                                             timeout=self._timeout(read_timeout)) as r:
                if r.status_code >= 400:
                    await r.aread()
                    raise await self._api_error(r, "POST", path, True, False)
                async for line in r.aiter_lines():
                    if not line.strip():
                        continue
                    try:
                        msg = json.loads(line)
                    except ValueError:
                        raise JailrunError("jaild sent a line that is not JSON in the stream of POST %s: %.200r"
                                           % (path, line)) from None
                    kind = msg.get("type") if isinstance(msg, dict) else None
                    if kind == "output":
                        await _call(on_output, str(msg.get("stream", "stdout")), str(msg.get("text", "")))
                    elif kind == "result":
                        return ExecutionResponse.from_json(msg)
                    elif kind == "error" and isinstance(msg.get("error"), dict):
                        e = msg["error"]
                        raise error_for(r.status_code, str(e.get("type")), str(e.get("message")), "POST", path)
        except httpx.TimeoutException as e:
            raise RequestTimeout("jaild at %s did not answer POST %s within %g s (%s)"
                                 % (self.socket, path, read_timeout, type(e).__name__)) from e
        except httpx.TransportError as e:
            raise _unreachable(self.socket, e, "POST", path) from e
        raise DaemonUnavailable("jaild at %s ended the stream of POST %s without a result (the daemon stopped?)"
                                % (self.socket, path), self.socket)

    # -- files and packages ------------------------------------------------

    async def upload(self, path: str, data: Union[bytes, str]) -> Dict[str, Any]:
        """Writes data (str as UTF-8) to path in the session directory (PUT);
        the parent directory must exist. Returns {path, size}."""
        content = data.encode() if isinstance(data, str) else bytes(data)
        r = await self._request("PUT", self._file_path(path), content=content, file_op=True,
                                headers={"Content-Type": "application/octet-stream"})
        return self._json(r)  # type: ignore[no-any-return]

    async def download(self, path: str) -> bytes:
        """The bytes of the file at path in the session directory.
        Raises RemoteFileNotFound, DownloadIsDirectory."""
        r = await self._request("GET", self._file_path(path), file_op=True)
        if r.headers.get("content-type", "").startswith("application/json"):
            raise DownloadIsDirectory("%s is a directory of the session (list_files() lists it)" % path)
        return r.content

    async def list_files(self, path: str = ".") -> List[Dict[str, Any]]:
        """The entries of a directory of the session: [{name, type: file|dir|
        other, size}]. Raises RemoteFileNotFound, NotADirectory."""
        r = await self._request("GET", self._file_path(path, root_ok=True), file_op=True)
        if not r.headers.get("content-type", "").startswith("application/json"):
            raise NotADirectory("%s is a file of the session (download() reads it)" % path)
        listing = self._json(r)
        entries = listing.get("entries") if isinstance(listing, dict) else None
        if not isinstance(entries, list):
            raise JailrunError("jaild listed %s without entries: %.200r" % (path, listing))
        return entries

    async def delete_file(self, path: str) -> Dict[str, Any]:
        """Deletes the file at path in the session directory. Returns {path, deleted}."""
        r = await self._request("DELETE", self._file_path(path), file_op=True)
        return self._json(r)  # type: ignore[no-any-return]

    async def install(self, names: Union[str, Sequence[str]]) -> Dict[str, Any]:
        """Installs packages into the session with pip, from the source jaild
        is configured with. Returns {success, installed, output, stderr,
        stats}. Raises PackagesUnavailable (no source configured),
        InstallFailed (pip failed)."""
        names = [names] if isinstance(names, str) else list(names)
        r = await self._request("POST", self._path("packages"), json={"names": names},
                                read_timeout=INSTALL_TIMEOUT)
        answer = self._json(r)
        if not isinstance(answer, dict):
            raise JailrunError("jaild answered an install with %.200r" % (answer,))
        data = answer.get("data") if isinstance(answer.get("data"), dict) else {}
        result = {"success": answer.get("success") is True, "installed": data.get("installed", []),
                  "output": str(data.get("output", "")), "stderr": str(data.get("stderr", "")),
                  "stats": answer.get("stats", {})}
        if not result["success"]:
            why = data.get("error") or "pip failed"
            raise InstallFailed("pip did not install %s in the session: %s\n%s" % (", ".join(names), why,
                                                                               (result["output"] + result["stderr"])[-2000:]),
                                result)
        return result
