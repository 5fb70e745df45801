"""``Toolbox``: an agent's tools by name, for the agent loop: the specs to send, and one call by name."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

from relaybus.exceptions import ConfigError, UsageError

from .agent_tool import AgentTool, Delegate
from .function import Tool
from .mcp import MCPServer, MCPTool
from .outcome import Arguments, ToolOutcome
from .spec import ToolSpec

__all__ = ["AnyTool", "Toolbox"]

AnyTool = Tool[..., Any] | AgentTool | MCPTool
"""One tool the model can call by name."""


class Toolbox:
    """The tools of one agent: ``@tool`` functions, :class:`AgentTool` s and :class:`MCPServer` s' tools.

    ``async with Toolbox(agent.tools) as box:`` starts the MCP servers (each once per process, see
    :class:`MCPServer`) and closes them after. :attr:`specs` are what the model is told; :meth:`call` runs one
    tool call of the model by name and, like every tool, never raises for a fault of the call: an unknown
    name is an error outcome listing the names there are. Two tools with one name are refused
    (:class:`~relaybus.ConfigError`), at construction or, for an MCP server's tools, at start.
    """

    def __init__(self, tools: Iterable[AnyTool | MCPServer]) -> None:
        self._sources = tuple(tools)
        self._servers: list[MCPServer] = []
        self._tools: dict[str, AnyTool] = {}
        for source in self._sources:
            if isinstance(source, MCPServer):
                self._servers.append(source)
            elif isinstance(source, Tool | AgentTool | MCPTool):
                self._add(source)
            else:
                raise ConfigError(
                    f"{source!r} is not a tool: decorate a function with @tool, or give an AgentTool or an "
                    "MCPServer"
                )
        self._started = not self._servers  # nothing to start: usable at once

    def _add(self, tool: AnyTool) -> None:
        if tool.name in self._tools:
            raise ConfigError(
                f"two tools are named {tool.name!r} ({self._tools[tool.name]!r} and {tool!r}); give one of "
                "them another name (name=..., or an MCP server's tool_prefix)"
            )
        self._tools[tool.name] = tool

    @property
    def tools(self) -> tuple[AnyTool, ...]:
        """Every tool, in the order given (an MCP server's in its listing order)."""
        self._check_started()
        return tuple(self._tools.values())

    @property
    def specs(self) -> tuple[ToolSpec, ...]:
        """What the model is told about each tool, in the order of :attr:`tools`."""
        return tuple(t.spec for t in self.tools)

    def get(self, name: str) -> AnyTool | None:
        self._check_started()
        return self._tools.get(name)

    async def start(self) -> None:
        """Start the MCP servers and add their tools; on a failure the ones already started are closed."""
        if self._started:
            return
        started: list[MCPServer] = []
        try:
            for server in self._servers:
                await server.start()
                started.append(server)
            for server in self._servers:
                for tool in server.tools:
                    self._add(tool)
        except BaseException:
            for server in reversed(started):
                await server.close()
            self._tools = {name: t for name, t in self._tools.items() if not isinstance(t, MCPTool)}
            raise
        self._started = True

    async def close(self) -> None:
        """Close the MCP servers this toolbox started."""
        if not self._started or not self._servers:
            return
        self._started = False
        for server in reversed(self._servers):
            await server.close()
        self._tools = {name: t for name, t in self._tools.items() if not isinstance(t, MCPTool)}

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def call(self, name: str, arguments: Arguments, *, delegate: Delegate | None = None) -> ToolOutcome:
        """Run the tool the model named; ``delegate`` (``ctx.delegate``) is needed by :class:`AgentTool` s."""
        tool = self.get(name)
        if tool is None:
            known = ", ".join(self._tools) or "none"
            return ToolOutcome.error(f"there is no tool named {name!r}; the tools are: {known}")
        if isinstance(tool, AgentTool):
            if delegate is None:
                raise UsageError(
                    f"tool {name!r} delegates to another agent: call it with delegate=ctx.delegate"
                )
            return await tool.call(arguments, delegate)
        return await tool.call(arguments)

    def _check_started(self) -> None:
        if not self._started:
            raise UsageError(
                "the toolbox has MCP servers: start it first (`async with Toolbox(...) as box:`)"
            )
