"""``MCPServer``: every tool of an MCP server, served through one client session per server per process."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from relaybus.exceptions import ConfigError, UsageError
from relaybus.log import get_logger

from .mcp_session import (
    HttpTransport,
    MCPConnectionError,
    OpenSession,
    StdioTransport,
    Transport,
    open_session,
    require_mcp,
)
from .outcome import (
    DEFAULT_MAX_OUTPUT_BYTES,
    DEFAULT_TIMEOUT_S,
    Arguments,
    ToolOutcome,
    check_max_output_bytes,
    check_timeout,
    parse_arguments,
)
from .spec import TOOL_NAME_RE, DescribedBySpec, ToolSpec

if TYPE_CHECKING:
    from mcp.types import CallToolResult
    from mcp.types import Tool as MCPToolInfo

__all__ = ["MCPConnectionError", "MCPServer", "MCPTool"]

_log = get_logger("relaybus.tools.mcp")

DEFAULT_CONNECT_TIMEOUT_S = 30.0


class MCPServer:
    """The tools of one MCP server, through the official ``mcp`` SDK (``pip install 'relaybus[mcp]'``).

    Make one with :meth:`stdio` (a child process; the command is an argument list, never a shell string) or
    :meth:`http` (streamable HTTP). ``async with server:`` (or :meth:`start` / :meth:`close`) opens ONE client
    session, initializes it and caches its tool list as :attr:`tools`; every call of every tool, from any
    number of concurrent tasks, goes over that session. Starting is counted: several workers of one process
    sharing the server (an ``Agent.tools`` class attribute) share that one session, which closes when the
    last of them closes.

    A server that dies is reopened: the calls in flight when it died come back as error outcomes, and the
    next call opens a new session (a new process for stdio) and goes through. A stdio server's exit is seen
    at once; an HTTP server's when a call fails to reach it, so the call after that one reopens.

    Arguments are checked to be a JSON object and otherwise validated by the server against its own schema
    (the MCP SDK's servers do, and answer a readable error): the server is the authority on its schema, and a
    partial JSON Schema check here could refuse calls it accepts.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        name: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        tool_prefix: str = "",
    ) -> None:
        require_mcp()
        self.name = name if name is not None else transport.describe()
        owner = f"MCP server {self.name!r}"
        if not isinstance(tool_prefix, str) or (tool_prefix and not TOOL_NAME_RE.match(tool_prefix)):
            raise ConfigError(f"{owner}: tool_prefix {tool_prefix!r} must be letters, digits, '_' or '-'")
        self.timeout_s = check_timeout(owner, timeout_s)
        self.connect_timeout_s = check_timeout(owner, connect_timeout_s)
        self.max_output_bytes = check_max_output_bytes(owner, max_output_bytes)
        self.tool_prefix = tool_prefix
        self.sessions_opened = 0
        """How many sessions this process opened to the server: 1, plus one per reopening."""
        self._transport = transport
        self._users = 0
        self._current: OpenSession | None = None
        self._opening: asyncio.Task[OpenSession] | None = None
        self._owners: set[asyncio.Task[None]] = set()
        self._tools: tuple[MCPTool, ...] | None = None

    @classmethod
    def stdio(
        cls,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        name: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        tool_prefix: str = "",
    ) -> MCPServer:
        """A server run as ``command`` (``["python", "-m", "my_server"]``), speaking on stdin/stdout.

        ``env`` is added to the few variables the SDK passes on (PATH, HOME, ...); its values are kept out of
        logs and reprs. ``timeout_s`` bounds each call, ``connect_timeout_s`` the start of the server and its
        session. ``tool_prefix`` is put before every tool's name (two servers may offer the same names).
        """
        return cls(
            StdioTransport(command, env, cwd),
            name=name,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            max_output_bytes=max_output_bytes,
            tool_prefix=tool_prefix,
        )

    @classmethod
    def http(
        cls,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        name: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        tool_prefix: str = "",
    ) -> MCPServer:
        """A server at a streamable-HTTP endpoint (``http://host:port/mcp``); ``headers`` (e.g. an
        ``Authorization``) go with every request and are kept out of logs and reprs."""
        return cls(
            HttpTransport(url, headers),
            name=name,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            max_output_bytes=max_output_bytes,
            tool_prefix=tool_prefix,
        )

    def __repr__(self) -> str:
        return f"<MCPServer {self.name!r} ({self._transport.describe()}) started={self._users > 0}>"

    @property
    def is_connected(self) -> bool:
        """Whether a session is open now (False between a lost server and the call that reopens it)."""
        return self._current is not None and self._current.alive

    @property
    def tools(self) -> tuple[MCPTool, ...]:
        """The server's tools as listed when it started; UsageError before :meth:`start`."""
        if self._tools is None:
            raise UsageError(
                f"MCP server {self.name!r}: its tools are known once started (`async with server:`)"
            )
        return self._tools

    @property
    def specs(self) -> tuple[ToolSpec, ...]:
        return tuple(t.spec for t in self.tools)

    async def start(self) -> None:
        """Open the session and list the tools (once per process; later starts only count a user).

        Raises :class:`MCPConnectionError` when the server cannot be started, reached or initialized.
        """
        self._users += 1
        try:
            session = await self._session()
        except BaseException:
            self._users -= 1
            if self._users == 0:
                await self._wait_owners()
            raise
        if self._tools is None:
            self._tools = self._make_tools(session.tools)

    async def close(self) -> None:
        """Close the session when the last user closes; a server never started is left as it is."""
        if self._users == 0:
            return
        self._users -= 1
        if self._users > 0:
            return
        if self._opening is not None:
            self._opening.cancel()
        if self._current is not None:
            self._current.end()
            self._current = None
        await self._wait_owners()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def call_tool(self, tool: MCPTool, arguments: Mapping[str, Any]) -> CallToolResult | str:
        """Call ``tool`` on the session (reopened if the server was lost): its result, or a message."""
        session: OpenSession | None = None
        try:
            async with asyncio.timeout(tool.timeout_s) as deadline:
                session = await self._session()
                return await session.client.call_tool(tool.remote_name, dict(arguments))
        except TimeoutError as exc:
            if deadline.expired():
                return f"{tool.name} did not answer within its timeout of {tool.timeout_s:g} s"
            return f"{tool.name}: the MCP server {self.name!r} timed out: {exc}"
        except (UsageError, MCPConnectionError):
            raise
        except Exception as exc:
            if session is not None and _session_lost(exc):
                session.end()  # the next call opens a new session
                _log.warning("mcp_server_lost", server=self.name, tool=tool.remote_name, error=repr(exc))
            return f"{tool.name}: the MCP server {self.name!r} failed: {type(exc).__name__}: {exc}"

    async def _session(self) -> OpenSession:
        if self._users == 0:
            raise UsageError(f"MCP server {self.name!r} is not started: use `async with server:` first")
        current = self._current
        if current is not None and current.alive:
            return current
        if self._opening is None:
            self._opening = asyncio.create_task(self._open())
            self._opening.add_done_callback(_retrieve)
        return await asyncio.shield(self._opening)

    async def _open(self) -> OpenSession:
        try:
            session = await open_session(self._transport, self.connect_timeout_s, self._owners)
        finally:
            self._opening = None
        self._current = session
        self.sessions_opened += 1
        _log.info(
            "mcp_session_opened", server=self.name, tools=len(session.tools), sessions=self.sessions_opened
        )
        return session

    async def _wait_owners(self) -> None:
        """Wait for the tasks owning sessions to exit them (bounded: a hung server is then cancelled)."""
        owners = list(self._owners)
        if not owners:
            return
        _, pending = await asyncio.wait(owners, timeout=self.connect_timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    def _make_tools(self, listed: list[MCPToolInfo]) -> tuple[MCPTool, ...]:
        tools: dict[str, MCPTool] = {}
        for info in listed:
            name = re.sub(r"[^A-Za-z0-9_-]", "_", self.tool_prefix + info.name)[:64]
            schema = info.input_schema
            if name in tools or not isinstance(schema, dict) or schema.get("type") != "object":
                _log.warning(
                    "mcp_tool_skipped", server=self.name, tool=info.name, reason="duplicate name or schema"
                )
                continue
            description = info.description or info.title or ""
            tools[name] = MCPTool(
                self, info.name, ToolSpec(name=name, description=description, parameters=schema)
            )
        return tuple(tools.values())


class MCPTool(DescribedBySpec):
    """One tool of an :class:`MCPServer`; :meth:`call` sends it over the server's session.

    ``spec`` is the server's name (with the server's ``tool_prefix``, characters models refuse replaced by
    ``_``), description and input schema. :meth:`call` never raises for a fault: arguments that are not a
    JSON object, an error the tool reports (``isError``), a server that fails or is lost mid-call and a call
    longer than the server's ``timeout_s`` become error outcomes. Text content is joined; a result with only
    structured content is sent as JSON; other content (images, audio) is named, not sent.
    """

    def __init__(self, server: MCPServer, remote_name: str, spec: ToolSpec) -> None:
        self.server = server
        self.remote_name = remote_name
        self.spec = spec
        self.timeout_s = server.timeout_s
        self.max_output_bytes = server.max_output_bytes

    def __repr__(self) -> str:
        return f"<MCPTool {self.name!r} of {self.server.name!r}>"

    async def call(self, arguments: Arguments) -> ToolOutcome:
        """Call the tool with the model's ``arguments``; see the class docstring."""
        parsed = parse_arguments(arguments)
        if isinstance(parsed, str):
            return ToolOutcome.error(
                f"invalid arguments for {self.name}: {parsed}", max_bytes=self.max_output_bytes
            )
        try:
            result = await self.server.call_tool(self, parsed)
        except MCPConnectionError as exc:
            return ToolOutcome.error(f"{self.name} is unavailable: {exc}", max_bytes=self.max_output_bytes)
        if isinstance(result, str):
            return ToolOutcome.error(result, max_bytes=self.max_output_bytes)
        return result_outcome(self.name, result, self.max_output_bytes)


def result_outcome(name: str, result: CallToolResult, max_bytes: int) -> ToolOutcome:
    """The outcome of the tool ``name`` that answered ``result``: its text, or its structured content alone
    as JSON; an error outcome when the tool reports an error (``isError``)."""
    text = _content_text(result)
    if result.is_error:
        return ToolOutcome.error(f"{name}: {text or 'the tool reported an error'}", max_bytes=max_bytes)
    value: Any = text if text or result.structured_content is None else result.structured_content
    return ToolOutcome.from_value(value, max_bytes=max_bytes)


def _content_text(result: CallToolResult) -> str:
    parts = []
    for block in result.content:
        if block.type == "text":
            parts.append(block.text)
        elif block.type == "resource" and isinstance(getattr(block.resource, "text", None), str):
            parts.append(block.resource.text)  # type: ignore[union-attr]
        else:
            parts.append(f"[{block.type} content, not shown]")
    return "\n".join(parts)


def _session_lost(exc: Exception) -> bool:
    """Whether a call's failure means the session is gone (rather than the server refusing one request)."""
    from mcp import MCPError
    from mcp.types import CONNECTION_CLOSED, INVALID_REQUEST

    if isinstance(exc, MCPError):
        # INVALID_REQUEST is what an HTTP server answers for a session it does not know ("Session not found").
        return exc.code in (CONNECTION_CLOSED, INVALID_REQUEST)
    return True  # closed streams, broken pipes, HTTP errors: the transport failed


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Read an opening's outcome, so asyncio does not warn when every caller waiting for it gave up."""
    if not task.cancelled():
        task.exception()
