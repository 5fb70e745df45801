"""``Toolbox``: one agent's tools by name, as the agent loop uses them (its MCP part: test_mcp.py)."""

from __future__ import annotations

import pytest

import relaybus
import relaybus.tools
from relaybus import AgentTask, AgentTool, ConfigError, ExecutionResult, UsageError, tool
from relaybus.tools import Toolbox, ToolOutcome


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool(name="add")
def plus(a: int) -> int:
    """Another tool named add."""
    return a


WRITE = AgentTool(agent="writer", name="write", description="Write a text")


async def _answer(task: AgentTask, /, *, timeout: float | None = None) -> ExecutionResult:
    return ExecutionResult.success(task.id, f"wrote: {task.prompt}")


async def test_a_toolbox_calls_tools_by_name_and_gives_agent_tools_the_delegate() -> None:
    box = Toolbox([add, WRITE])  # no MCP server: usable without a start
    assert [s.name for s in box.specs] == ["add", "write"]
    assert box.get("write") is WRITE
    assert await box.call("add", '{"a": 1, "b": 2}') == ToolOutcome("3")
    assert await box.call("write", {"prompt": "a poem"}, delegate=_answer) == ToolOutcome("wrote: a poem")


async def test_an_unknown_tool_name_is_an_error_outcome_listing_the_tools() -> None:
    outcome = await Toolbox([add, WRITE]).call("multiply", {})
    assert outcome == ToolOutcome(
        "there is no tool named 'multiply'; the tools are: add, write", is_error=True
    )


async def test_an_agent_tool_called_without_a_delegate_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"delegate=ctx\.delegate"):
        await Toolbox([WRITE]).call("write", {"prompt": "x"})


def test_two_tools_with_one_name_or_something_that_is_not_a_tool_are_refused() -> None:
    with pytest.raises(ConfigError, match="two tools are named 'add'"):
        Toolbox([add, plus])

    def bare(a: int) -> int:
        return a

    with pytest.raises(ConfigError, match="decorate a function with @tool"):
        Toolbox([bare])  # type: ignore[list-item]


def test_every_exported_name_imports_and_relaybus_exports_the_four_names() -> None:
    missing = [name for name in relaybus.tools.__all__ if getattr(relaybus.tools, name, None) is None]
    assert missing == []
    assert relaybus.tool is relaybus.tools.tool
    assert {"tool", "Tool", "AgentTool", "MCPServer"} <= set(relaybus.__all__)
