"""The tools of a worker's agents: one started ``Toolbox`` per agent, for the worker's lifetime."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from relaybus.exceptions import MCPConnectionError
from relaybus.tools import Toolbox

if TYPE_CHECKING:
    from relaybus.agents.agent import Agent

__all__ = ["open_toolboxes"]


async def open_toolboxes(agents: Iterable[Agent], stack: AsyncExitStack) -> dict[str, Toolbox]:
    """Start a toolbox for each agent that has tools (its MCP servers' sessions opened, their tools listed)
    and push its closing onto ``stack``; the toolboxes by agent name.

    Raises :class:`~relaybus.MCPConnectionError` naming the agent when one of its MCP servers cannot start,
    and :class:`~relaybus.ConfigError` when two of its tools share a name; those already started are closed
    by ``stack``.
    """
    toolboxes: dict[str, Toolbox] = {}
    for agent in agents:
        if not agent.tools:
            continue
        toolbox = Toolbox(agent.tools)
        try:
            await toolbox.start()
        except MCPConnectionError as exc:
            raise MCPConnectionError(f"agent {agent.name!r} cannot start its tools: {exc}") from exc
        stack.push_async_callback(toolbox.close)
        toolboxes[agent.name] = toolbox
    return toolboxes
