"""One MCP client session kept open by one asyncio task, over stdio or streamable HTTP (the ``mcp`` SDK).

The SDK's transports and ``ClientSession`` are anyio context managers whose task groups must be entered and
exited by the same task. A session is therefore owned by one long-lived task that enters them, hands the
open session out, and waits until told to stop (or until the transport fails) to exit them; any other task
may send requests on the session meanwhile. Nothing here imports the SDK until a session is opened.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from relaybus.exceptions import ConfigError, MCPConnectionError
from relaybus.log import get_logger
from relaybus.secrets import Secret, mask_url

if TYPE_CHECKING:
    from mcp import ClientSession
    from mcp.client._transport import TransportStreams
    from mcp.types import Tool as MCPToolInfo

__all__ = ["MCPConnectionError", "OpenSession", "Transport", "open_session", "require_mcp"]

_log = get_logger("relaybus.tools.mcp")

_MAX_LIST_PAGES = 100
_HTTP_CONNECT_TIMEOUT_S = 30.0
_HTTP_READ_TIMEOUT_S = 300.0  # what the SDK uses: a server may hold a response stream open that long


def require_mcp() -> None:
    """Raise a ConfigError naming the extra to install when the ``mcp`` SDK is not installed."""
    if importlib.util.find_spec("mcp") is None:
        raise ConfigError("MCP servers need the official MCP SDK: pip install 'relaybus[mcp]'")


class Transport(Protocol):
    """How to reach one MCP server: ``describe()`` for messages, ``enter(stack)`` opens its streams."""

    def describe(self) -> str: ...

    async def enter(self, stack: AsyncExitStack) -> TransportStreams: ...


class StdioTransport:
    """A server started as a child process, speaking JSON-RPC on its stdin/stdout; never through a shell."""

    def __init__(
        self, command: Sequence[str], env: Mapping[str, str] | None, cwd: str | os.PathLike[str] | None
    ):
        if isinstance(command, str | bytes) or not isinstance(command, Sequence):
            raise ConfigError(
                "MCPServer.stdio takes the command as a list of arguments (['python', '-m', 'my_server']), "
                f"not {type(command).__name__} {command!r} (it never runs a shell)"
            )
        if not command or not all(isinstance(part, str) and part for part in command):
            raise ConfigError("MCPServer.stdio: the command must be a non-empty list of non-empty strings")
        if env is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise ConfigError("MCPServer.stdio: env must map strings to strings")
        self.command = tuple(command)
        self._env = (
            None if env is None else {key: Secret(value) for key, value in env.items()}
        )  # may hold keys
        self.cwd = None if cwd is None else Path(cwd)

    def describe(self) -> str:
        if "-m" in self.command[:-1]:
            return self.command[self.command.index("-m") + 1]
        return Path(self.command[0]).name

    async def enter(self, stack: AsyncExitStack) -> TransportStreams:
        from mcp.client.stdio import StdioServerParameters, stdio_client

        params = StdioServerParameters(
            command=self.command[0],
            args=list(self.command[1:]),
            env=None if self._env is None else {key: value.reveal() for key, value in self._env.items()},
            cwd=self.cwd,
        )
        return await stack.enter_async_context(stdio_client(params))


class HttpTransport:
    """A server reached over streamable HTTP at ``url``, with ``headers`` (kept secret) on every request."""

    def __init__(self, url: str, headers: Mapping[str, str] | None) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"MCPServer.http needs an http:// or https:// URL, got {url!r}")
        if headers is not None and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ConfigError("MCPServer.http: headers must map strings to strings")
        self.url = url
        self._headers = {key: Secret(value) for key, value in (headers or {}).items()}

    def describe(self) -> str:
        return mask_url(self.url)

    async def enter(self, stack: AsyncExitStack) -> TransportStreams:
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        client = await stack.enter_async_context(
            httpx2.AsyncClient(
                headers={key: value.reveal() for key, value in self._headers.items()},
                timeout=httpx2.Timeout(_HTTP_CONNECT_TIMEOUT_S, read=_HTTP_READ_TIMEOUT_S),
            )
        )
        return await stack.enter_async_context(streamable_http_client(self.url, http_client=client))


class OpenSession:
    """An initialized client session and the tools it listed; ``alive`` until :meth:`end` or a lost server."""

    def __init__(self, client: ClientSession, tools: list[MCPToolInfo], stop: asyncio.Event) -> None:
        self.client = client
        self.tools = tools
        self._stop = stop

    @property
    def alive(self) -> bool:
        return not self._stop.is_set()

    def end(self) -> None:
        """Let the owning task close the session (at once, or after a call found the server gone)."""
        self._stop.set()


async def open_session(
    transport: Transport, timeout_s: float, owners: set[asyncio.Task[None]]
) -> OpenSession:
    """Start a task that opens and owns one session, and return the session once it is initialized.

    The task is added to ``owners`` until it ends, so that whoever closes can wait for it. Raises
    :class:`MCPConnectionError` when the server cannot be started or reached or does not answer its
    ``initialize`` and ``tools/list`` within ``timeout_s``.
    """
    ready: asyncio.Future[OpenSession] = asyncio.get_running_loop().create_future()
    owner = asyncio.create_task(_own_session(transport, ready), name=f"relaybus-mcp {transport.describe()}")
    owners.add(owner)
    owner.add_done_callback(owners.discard)
    try:
        async with asyncio.timeout(timeout_s):
            return await asyncio.shield(ready)
    except TimeoutError:
        owner.cancel()
        raise MCPConnectionError(
            f"MCP server {transport.describe()} did not open a session within {timeout_s:g} s"
        ) from None
    except BaseException:
        owner.cancel()  # the opening failed or was cancelled: the owner exits what it entered
        raise


async def _own_session(transport: Transport, ready: asyncio.Future[OpenSession]) -> None:
    from mcp import ClientSession

    stop = asyncio.Event()
    try:
        async with AsyncExitStack() as stack:
            read, write = await transport.enter(stack)
            client = await stack.enter_async_context(ClientSession(_EndWatcher(read, stop.set), write))
            await client.initialize()
            tools = await _list_tools(client)
            ready.set_result(OpenSession(client, tools, stop))
            await stop.wait()
    except Exception as exc:
        if not ready.done():
            ready.set_exception(
                MCPConnectionError(
                    f"MCP server {transport.describe()}: could not open a session: {_reason(exc)}"
                )
            )
        else:
            _log.warning("mcp_session_lost", server=transport.describe(), error=_reason(exc))
    finally:
        stop.set()
        if not ready.done():
            ready.cancel()


async def _list_tools(client: ClientSession) -> list[MCPToolInfo]:
    from mcp.types import PaginatedRequestParams

    tools: list[MCPToolInfo] = []
    cursor: str | None = None
    for _ in range(_MAX_LIST_PAGES):
        page = await client.list_tools(
            params=None if cursor is None else PaginatedRequestParams(cursor=cursor)
        )
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _reason(exc: BaseException) -> str:
    """The first real error inside anyio's exception groups, as ``Type: message``."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


class _EndWatcher:
    """The transport's read stream, calling ``on_end`` when it ends: a stdio server that exited is then known
    to be gone before the next call, which opens a new session instead of failing."""

    def __init__(self, inner: Any, on_end: Callable[[], None]) -> None:
        import anyio

        self._inner = inner
        self._on_end = on_end
        self._ended = (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError)

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except self._ended:
            self._on_end()
            raise

    def __aiter__(self) -> _EndWatcher:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except self._ended:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _EndWatcher:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
