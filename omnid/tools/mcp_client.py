"""omnid as an MCP client: tools that live on Model Context Protocol servers.

Built on the official `mcp` Python SDK, 1.x line (`pip install 'omnid[mcp]'`): its `ClientSession`
over `stdio_client` (a local server, started as a child) or `streamable_http_client` (a remote one,
`Authorization: Bearer <token>`, TLS verified). Nothing else in omnid imports this module unless an
MCP server is configured, so the SDK (about 18 MB of RSS and a third of a second on top of the
pydantic omnid already loads) costs nothing otherwise.

One `McpHub` owns one asyncio event loop, on a thread of its own, for all servers. For each it
connects, initializes, lists the tools (every page) and keeps the session; a server that is down
at start or lost later is tried again with exponential backoff (1 s doubling to 60 s; a 401/403 is
"refused" and tried no faster than every 60 s). One warning goes to the log when a server goes down
and one info line when it is back, never one per attempt. `call` is blocking and is made from a
worker thread; it runs the call on the loop and never queues it for later: a server that is not
connected answers "error" at once, so a call reaches a server at most once.

A stdio server's child gets a minimal environment (PATH, LANG=C.UTF-8, TZ when set) through
`env -i`, never the daemon's variables, key or token; it runs in a session of its own and is
stopped with its process group on close. The bearer token of a server appears in no log line,
state, exception text or repr this module produces, and tool results are scrubbed of it too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import logging
import os
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import anyio
import httpx
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp import ClientSession, McpError, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.message import SessionMessage

log = logging.getLogger("omnid.mcp")

CHILD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ENV_BINARY = "/usr/bin/env"
RESULT_MAX_CHARS = 4096
ERROR_MAX_CHARS = 1024
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0
REFUSED_RETRY_S = 60.0  # a 401/403 will not heal by asking again soon
STABLE_S = 30.0  # a session that lasted this long starts the backoff over
PING_INTERVAL_S = 30.0  # how soon an idle HTTP server's loss is noticed (stdio: at once, EOF)
PING_TIMEOUT_S = 10.0
LIST_PAGES_MAX = 100
HTTP_TIMEOUT = httpx.Timeout(30.0, read=300.0)
SESSION_TERMINATED = "Session terminated"  # the SDK's error for an HTTP 404 on a known session
# Libraries that log every request at info (httpx) or session ids (the SDK); omnid's journal
# gets their warnings only, unless a level was set for them on purpose.
QUIET_LOGGERS = ("httpx", "httpcore", "mcp")

ReadStream = MemoryObjectReceiveStream[SessionMessage | Exception]
WriteStream = MemoryObjectSendStream[SessionMessage]


@dataclass(frozen=True)
class McpServerSpec:
    """One configured MCP server: exactly one of `url` (Streamable HTTP) or `command` (stdio)."""

    name: str  # short prefix from the config
    url: str | None = None  # Streamable HTTP endpoint (https://…, or http:// when plain_http)
    token: str | None = field(default=None, repr=False)  # bearer token; never logged or shown
    command: tuple[str, ...] | None = None  # argv of a stdio server (absolute path first)
    plain_http: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("an MCP server needs a name")
        if (self.url is None) == (self.command is None):
            raise ValueError(f"MCP server {self.name}: give exactly one of url or command")
        if self.command is not None:
            if not self.command or not os.path.isabs(self.command[0]):
                raise ValueError(
                    f"MCP server {self.name}: command must start with an absolute path"
                )
            if self.token is not None:
                raise ValueError(f"MCP server {self.name}: a token is for url servers only")
        if self.url is not None:
            scheme = self.url.split(":", 1)[0].lower()
            if scheme == "http" and not self.plain_http:
                raise ValueError(
                    f"MCP server {self.name}: http:// sends the token in clear; use https:// "
                    "or set plain_http"
                )
            if scheme not in ("https", "http"):
                raise ValueError(f"MCP server {self.name}: url must be https:// (or http://)")


@dataclass(frozen=True)
class McpTool:
    server: str
    name: str
    description: str
    input_schema: dict[str, Any]
    read_only: bool  # annotations.readOnlyHint; False when absent


@dataclass
class _Server:
    """Per-server state. Written on the loop thread; read anywhere (each field is one value)."""

    spec: McpServerSpec
    state: str = "connecting"
    tools: tuple[McpTool, ...] = ()
    session: ClientSession | None = None
    ended: asyncio.Event | None = None  # set when the live connection is over
    lost_reason: str | None = None
    tried: bool = False  # the first attempt has finished, one way or the other
    warned: bool = False  # a warning for the current outage is in the log
    ever_connected: bool = False
    connected_at: float | None = None  # monotonic time the live session began
    pids: tuple[int, ...] = ()  # the stdio child, as found in /proc (backstop for close)


class McpHub:
    """One asyncio event loop on its own thread for all MCP servers."""

    def __init__(
        self,
        specs: list[McpServerSpec],
        *,
        connect_timeout_s: float = 10.0,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError("MCP server names must be unique")
        self._servers = {s.name: _Server(s) for s in specs}
        self._tokens = tuple(s.token for s in specs if s.token)
        self._connect_timeout_s = connect_timeout_s
        self._on_change = on_change
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._closing = False
        self._grace_s = 2.5
        self._background: set[asyncio.Task[Any]] = set()
        self._generation = 0  # moves whenever a server's state or tool list changes

    # ---- public API, any thread -------------------------------------------------------------

    def start(self) -> None:
        """Start the loop thread; every server connects in the background."""
        if self._thread is not None:
            return
        _quiet_libraries()
        loop_ready = threading.Event()
        self._thread = threading.Thread(
            target=self._thread_main, args=(loop_ready,), name="omnid-mcp", daemon=True
        )
        self._thread.start()
        loop_ready.wait()

    def close(self, timeout_s: float = 3.0) -> None:
        """Stop everything: sessions closed, stdio children stopped (killed if need be), joined."""
        self._closing = True
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        deadline = time.monotonic() + timeout_s
        self._grace_s = max(0.1, timeout_s - 0.5)
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.call_soon_threadsafe(self._request_stop)
        if threading.current_thread() is thread:  # from on_change: it cannot wait for itself
            return
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            log.warning("MCP client did not stop within %.1f s", timeout_s)
        with self._cond:
            for srv in self._servers.values():
                _kill_children(srv.pids)
                srv.pids = ()
                srv.session = None
                srv.state, srv.tools = "down: closed", ()
            self._cond.notify_all()

    @property
    def servers(self) -> tuple[str, ...]:
        return tuple(self._servers)

    @property
    def generation(self) -> int:
        """Changes whenever a server's state or tools do: the toolbox's cue to look again."""
        return self._generation

    def state(self, server: str) -> str:
        """One of: connecting, connected, "down: <reason>", "refused: <reason>" (401/403)."""
        return self._servers[server].state

    def tools(self, server: str) -> list[McpTool]:
        srv = self._servers[server]
        return list(srv.tools) if srv.state == "connected" else []

    def wait_ready(self, timeout_s: float) -> dict[str, str]:
        """Block until every server is connected or has failed once; return the states."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._closing and not all(
                s.tried or s.state == "connected" for s in self._servers.values()
            ):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        return {name: srv.state for name, srv in self._servers.items()}

    def call(
        self, server: str, tool: str, arguments: dict[str, Any], timeout_s: float
    ) -> tuple[str, str]:
        """Call `tool` on `server`, blocking (never from the loop thread). -> (outcome, text).

        outcome "ok" (text content, at most 4096 characters), "error" (the server said isError,
        or the call failed; says why, briefly) or "timeout" (no answer within `timeout_s`; the
        call is cancelled). A server that is not connected gets no call at all.
        """
        srv = self._servers.get(server)
        if srv is None:
            return "error", f"no MCP server named {server!r}"
        loop = self._loop
        if threading.current_thread() is self._thread:
            raise RuntimeError("McpHub.call would block its own event loop")
        session = srv.session
        if session is None or loop is None or self._closing or srv.state != "connected":
            return "error", f"{server} is not connected ({self._why_not(srv)})"
        try:
            future = asyncio.run_coroutine_threadsafe(
                self._call(srv, session, tool, arguments), loop
            )
        except RuntimeError:  # the loop has just closed
            return "error", f"{server} is not connected (closing)"
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return "timeout", f"{server} did not answer {tool} within {timeout_s:g} s"
        except concurrent.futures.CancelledError:
            return "error", f"{server}: the MCP client is closing"

    # ---- the loop thread -------------------------------------------------------------------

    def _thread_main(self, loop_ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._stop = asyncio.Event()
        loop_ready.set()
        try:
            loop.run_until_complete(self._main())
        except Exception:
            log.exception("MCP client loop failed")
        finally:
            with contextlib.suppress(Exception):
                _cancel_all(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._notify()

    def _request_stop(self) -> None:
        assert self._stop is not None
        self._stop.set()
        for srv in self._servers.values():
            if srv.ended is not None:
                srv.lost_reason = srv.lost_reason or "closing"
                srv.ended.set()

    async def _main(self) -> None:
        assert self._stop is not None
        if self._closing:
            return
        tasks = [asyncio.create_task(self._run_server(s)) for s in self._servers.values()]
        await self._stop.wait()
        _done, pending = await asyncio.wait(tasks, timeout=self._grace_s)
        for task in pending:
            task.cancel()  # still connecting: the SDK's exits stop the child on cancellation
        if pending:
            await asyncio.wait(pending, timeout=0.5)

    async def _run_server(self, srv: _Server) -> None:
        assert self._stop is not None
        delay = BACKOFF_BASE_S
        while not self._stop.is_set():
            srv.connected_at = None
            refused = False
            try:
                reason = await self._connect_once(srv)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # an ExceptionGroup from the transports' task groups
                refused, reason = self._classify(exc, srv.spec)
            if self._stop.is_set():
                break
            if srv.connected_at is not None and time.monotonic() - srv.connected_at >= STABLE_S:
                delay = BACKOFF_BASE_S
            prefix = "refused" if refused else "down"
            self._set(srv, f"{prefix}: {reason}", ())
            if not srv.warned:
                srv.warned = True
                if refused:
                    log.warning("MCP server %s refused the connection: %s", srv.spec.name, reason)
                else:
                    log.warning("MCP server %s is down: %s", srv.spec.name, reason)
            else:
                log.debug("MCP server %s still %s: %s", srv.spec.name, prefix, reason)
            wait = max(delay, REFUSED_RETRY_S) if refused else delay
            delay = min(delay * 2, BACKOFF_CAP_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), wait)

    async def _connect_once(self, srv: _Server) -> str:
        """Connect, initialize, list; then hold the session until it is lost. -> why it ended."""
        spec = srv.spec
        async with contextlib.AsyncExitStack() as stack:
            if spec.command is not None:
                read, write = await stack.enter_async_context(_open_stdio(spec))
            else:
                read, write = await stack.enter_async_context(_open_http(spec))
            ended = asyncio.Event()
            # The session reads through a relay, so the end of the transport's stream (a stdio
            # child that exited) is seen at once rather than at the next request.
            relay_in, relay_out = anyio.create_memory_object_stream[SessionMessage | Exception](0)
            group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(group.cancel_scope.cancel)
            group.start_soon(_relay, read, relay_in, ended)
            session = await stack.enter_async_context(
                ClientSession(
                    relay_out, write, message_handler=functools.partial(self._on_message, srv)
                )
            )
            with anyio.fail_after(self._connect_timeout_s):
                await session.initialize()
                tools = await _list_tools(session, spec.name)
            if spec.command is not None:
                srv.pids = _find_children(_child_argv(spec))
            srv.lost_reason = None
            srv.connected_at = time.monotonic()
            srv.ended = ended
            srv.session = session
            back = srv.ever_connected
            srv.warned = False
            srv.ever_connected = True
            self._set(srv, "connected", tools)
            log.info(
                "MCP server %s %s: %d tools",
                spec.name,
                "is back" if back else "connected",
                len(tools),
            )
            try:
                return await self._hold(srv, session, ended)
            finally:
                srv.session = None
                srv.ended = None

    async def _hold(self, srv: _Server, session: ClientSession, ended: asyncio.Event) -> str:
        stdio = srv.spec.command is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), PING_INTERVAL_S)
                return srv.lost_reason or ("server exited" if stdio else "connection closed")
            try:
                with anyio.fail_after(PING_TIMEOUT_S):
                    await session.send_ping()
            except TimeoutError:
                return f"no answer to a ping in {PING_TIMEOUT_S:g} s"
            except Exception as exc:
                if ended.is_set():
                    continue
                return self._classify(exc, srv.spec)[1]

    async def _on_message(self, srv: _Server, message: Any) -> None:
        """The session's handler for what the server sends on its own (in its receive loop)."""
        if isinstance(message, types.ServerNotification) and isinstance(
            message.root, types.ToolListChangedNotification
        ):
            session = srv.session
            if session is not None:  # a request from here would deadlock the receive loop
                self._spawn(self._relist(srv, session))
        elif isinstance(message, Exception):
            log.debug("MCP server %s sent something unreadable: %s", srv.spec.name, type(message))

    async def _relist(self, srv: _Server, session: ClientSession) -> None:
        try:
            with anyio.fail_after(self._connect_timeout_s):
                tools = await _list_tools(session, srv.spec.name)
        except Exception as exc:
            log.debug("MCP server %s: re-listing tools failed (%s)", srv.spec.name, type(exc))
            return
        if srv.session is session and tools != srv.tools:
            self._set(srv, "connected", tools)
            log.info("MCP server %s changed its tools: %d now", srv.spec.name, len(tools))

    async def _call(
        self, srv: _Server, session: ClientSession, tool: str, arguments: dict[str, Any]
    ) -> tuple[str, str]:
        name = srv.spec.name
        ended = srv.ended
        if srv.session is not session or ended is None or ended.is_set():
            return "error", f"{name} is not connected ({self._why_not(srv)})"
        call = asyncio.ensure_future(session.call_tool(tool, arguments))
        lost = asyncio.ensure_future(ended.wait())
        try:
            await asyncio.wait({call, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not call.done():
                call.cancel()  # on our own cancellation (the caller's timeout) too
        if not call.done() or call.cancelled():
            return "error", self._scrub(
                f"{name} lost its connection during the call ({srv.lost_reason or 'closed'})"
            )
        try:
            result = call.result()
        except McpError as exc:
            if exc.error.code == types.CONNECTION_CLOSED or exc.error.message == (
                SESSION_TERMINATED
            ):
                self._lose(srv, ended, "connection closed")
                return "error", f"{name} lost its connection during the call"
            return "error", self._scrub(f"{name}: {_cut(exc.error.message, ERROR_MAX_CHARS)}")
        except Exception as exc:
            reason = self._classify(exc, srv.spec)[1]
            if isinstance(exc, httpx.TransportError | anyio.ClosedResourceError):
                self._lose(srv, ended, reason)
            return "error", self._scrub(f"{name}: the call failed ({reason})")
        text = self._scrub(_result_text(result))
        if result.isError:
            return "error", _cut(text or "the tool reported an error", ERROR_MAX_CHARS)
        return "ok", _cut(text, RESULT_MAX_CHARS)

    # ---- helpers ---------------------------------------------------------------------------

    def _lose(self, srv: _Server, ended: asyncio.Event, reason: str) -> None:
        if not ended.is_set():
            srv.lost_reason = reason
            ended.set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _set(self, srv: _Server, state: str, tools: tuple[McpTool, ...]) -> None:
        state = self._scrub(state)
        with self._cond:
            changed = state != srv.state or tools != srv.tools
            srv.state = state
            srv.tools = tools
            self._generation += changed
            if state != "connecting":
                srv.tried = True
            self._cond.notify_all()
        if changed and self._on_change is not None:
            try:
                self._on_change()
            except Exception:
                log.exception("MCP on_change callback failed")

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _why_not(self, srv: _Server) -> str:
        if self._closing:
            return "closing"
        return srv.state if srv.state != "connected" else "reconnecting"

    def _scrub(self, text: str) -> str:
        for token in self._tokens:
            text = text.replace(token, "***")
        return text

    def _classify(self, exc: BaseException, spec: McpServerSpec) -> tuple[bool, str]:
        """-> (refused, a short reason with no secret in it)."""
        refused, reason = _classify(exc, spec, self._connect_timeout_s)
        return refused, self._scrub(reason)


# ---- transports ----------------------------------------------------------------------------


def child_environment() -> dict[str, str]:
    """The whole environment of a stdio server: nothing of the daemon's but TZ."""
    env = {"PATH": CHILD_PATH, "LANG": "C.UTF-8"}
    tz = os.environ.get("TZ")
    if tz:
        env["TZ"] = tz
    return env


def _child_argv(spec: McpServerSpec) -> list[str]:
    assert spec.command is not None
    return list(spec.command)


def _errlog() -> TextIO:
    """The child's stderr goes where ours goes (the journal), if that is a real file."""
    try:
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return _devnull()
    return sys.stderr


@functools.cache
def _devnull() -> TextIO:
    return open(os.devnull, "w")  # kept open for the life of the process


@contextlib.asynccontextmanager
async def _open_stdio(spec: McpServerSpec) -> Any:
    assert spec.command is not None
    program = spec.command[0]
    if not os.access(program, os.X_OK):
        raise _CannotStart(f"cannot start {os.path.basename(program)} (not executable)")
    env = child_environment()
    # The SDK adds HOME, USER, SHELL… of the daemon to whatever env it is given; `env -i`
    # clears them, so the child sees exactly `env`.
    if os.access(ENV_BINARY, os.X_OK):
        command = ENV_BINARY
        args = ["-i", *(f"{k}={v}" for k, v in env.items()), *spec.command]
    else:  # pragma: no cover - every Debian has /usr/bin/env
        command, args = program, list(spec.command[1:])
    params = StdioServerParameters(command=command, args=args, env=env)
    async with stdio_client(params, errlog=_errlog()) as (read, write):
        yield read, write


@contextlib.asynccontextmanager
async def _open_http(spec: McpServerSpec) -> Any:
    assert spec.url is not None
    headers = {"Authorization": f"Bearer {spec.token}"} if spec.token else {}
    # trust_env off: no .netrc credentials or proxy variables slip in; TLS is verified.
    async with (
        httpx.AsyncClient(
            headers=headers, timeout=HTTP_TIMEOUT, verify=True, trust_env=False
        ) as client,
        streamable_http_client(spec.url, http_client=client) as (read, write, _session_id),
    ):
        yield read, write


class _CannotStart(Exception):
    pass


async def _relay(
    source: ReadStream, sink: MemoryObjectSendStream[Any], ended: asyncio.Event
) -> None:
    try:
        async with sink:
            async for item in source:
                await sink.send(item)
    except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
        pass
    finally:
        ended.set()


async def _list_tools(session: ClientSession, server: str) -> tuple[McpTool, ...]:
    tools: list[McpTool] = []
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(LIST_PAGES_MAX):
        if cursor is None:
            page = await session.list_tools()
        else:
            page = await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor))
        for t in page.tools:
            annotations = t.annotations
            tools.append(
                McpTool(
                    server=server,
                    name=t.name,
                    description=t.description or "",
                    input_schema=dict(t.inputSchema),
                    read_only=bool(annotations is not None and annotations.readOnlyHint),
                )
            )
        cursor = page.nextCursor
        if not cursor or cursor in seen:
            break
        seen.add(cursor)
    return tuple(tools)


# ---- results and reasons -------------------------------------------------------------------


def _result_text(result: types.CallToolResult) -> str:
    parts = [_describe(block) for block in result.content]
    text = "\n".join(p for p in parts if p)
    if not text and result.structuredContent is not None:
        text = json.dumps(result.structuredContent, ensure_ascii=False)
    return text


def _describe(block: Any) -> str:
    if isinstance(block, types.TextContent):
        return block.text
    if isinstance(block, types.ImageContent | types.AudioContent):
        return f"[{block.mimeType}, {_size(_b64_len(block.data))}]"
    if isinstance(block, types.ResourceLink):
        return f"[link: {block.name} {block.uri}]"
    if isinstance(block, types.EmbeddedResource):
        res = block.resource
        if isinstance(res, types.TextResourceContents):
            return res.text
        mime = res.mimeType or "application/octet-stream"
        return f"[{mime}, {_size(_b64_len(res.blob))}]"
    return f"[{getattr(block, 'type', 'content')}]"


def _b64_len(data: str) -> int:
    data = data.strip()
    return max(0, len(data) * 3 // 4 - data[-2:].count("="))


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{round(n / 1024)} KB"
    return f"{n / (1024 * 1024):.1f} MB"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _classify(exc: BaseException, spec: McpServerSpec, timeout_s: float) -> tuple[bool, str]:
    leaves = [e for e in _leaves(exc) if not isinstance(e, asyncio.CancelledError)]
    if not leaves:
        return False, "cancelled"

    def rank(e: BaseException) -> int:  # the most telling cause first
        if isinstance(e, httpx.HTTPStatusError):
            return 0
        if isinstance(e, httpx.HTTPError | _CannotStart | OSError):
            return 1
        if isinstance(e, McpError):
            return 2
        return 3

    first = min(leaves, key=rank)
    return _reason(first, spec, timeout_s)


def _reason(exc: BaseException, spec: McpServerSpec, timeout_s: float) -> tuple[bool, str]:
    stdio = spec.command is not None
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        if code in (401, 403):
            return True, f"HTTP {code} (check the token)"
        if code == 404:
            return False, "HTTP 404 (wrong URL?)"
        return False, f"HTTP {code}"
    if isinstance(exc, _CannotStart):
        return False, str(exc)
    if isinstance(exc, httpx.ConnectTimeout):
        return False, "connect timeout"
    if isinstance(exc, httpx.ConnectError):
        for cause in _chain(exc):
            if isinstance(cause, ssl.SSLCertVerificationError):
                return False, "TLS certificate not trusted"
            if isinstance(cause, ssl.SSLError):
                return False, "TLS error"
            if isinstance(cause, ConnectionRefusedError):
                return False, "connection refused"
            if isinstance(cause, socket.gaierror):
                return False, "host not found"
        text = str(exc).lower()
        if "refused" in text or "all connection attempts failed" in text:
            return False, "connection refused"
        if "name or service" in text or "nodename" in text:
            return False, "host not found"
        return False, "cannot connect"
    if isinstance(exc, httpx.TimeoutException):
        return False, "timeout"
    if isinstance(exc, httpx.HTTPError):
        return False, "connection lost"
    if isinstance(exc, TimeoutError):
        return False, f"no answer within {timeout_s:g} s"
    if isinstance(exc, McpError):
        if exc.error.code == types.CONNECTION_CLOSED:
            return False, "server exited" if stdio else "connection closed"
        if exc.error.message == SESSION_TERMINATED:
            return False, "the server ended the session"
        return False, f"protocol error: {_cut(exc.error.message, 80)}"
    if isinstance(exc, anyio.ClosedResourceError | anyio.BrokenResourceError | EOFError):
        return False, "server exited" if stdio else "connection closed"
    if isinstance(exc, OSError):
        return False, f"cannot start ({exc.strerror or type(exc).__name__})"
    return False, type(exc).__name__


# ---- child processes (backstop for close) --------------------------------------------------


def _find_children(argv: list[str]) -> tuple[int, ...]:
    """Our children whose command line is `argv` (the stdio server once `env` exec'd it), or
    ends with it (a script: the kernel puts its interpreter first)."""
    me = os.getpid()
    found: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return ()
    want = [a.encode() for a in argv]
    for entry in entries:
        if not entry.isdigit():
            continue
        pid = int(entry)
        if _ppid(pid) != me:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().rstrip(b"\0").split(b"\0")
        except OSError:
            continue
        if cmdline[-len(want) :] == want:
            found.append(pid)
    return tuple(found)


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    if len(fields) < 2 or fields[0] == b"Z":
        return None
    return int(fields[1])


def _kill_children(pids: tuple[int, ...]) -> None:
    """Kill what is still running of our stdio children's process groups."""
    me = os.getpid()
    for pid in pids:
        if _ppid(pid) != me:
            continue  # gone (or reaped and the pid reused by someone else's process)
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)  # the SDK starts each child in a session of its own
        log.warning("MCP stdio server (pid %d) did not stop; killed", pid)


def _quiet_libraries() -> None:
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.wait(pending, timeout=0.5))
