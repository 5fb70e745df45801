"""Each agent's tools are started once per worker, before it takes a task, and closed when it stops.

The MCP server is the project's own (examples/mcp_server.py), a real child process over stdio.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from relaybus import Agent, AgentTask, AgentWorker, ConfigError, MCPConnectionError, MCPServer, tool
from relaybus.bus.memory import MemoryBus
from relaybus.executor.llm.chat import ToolResultMessage
from relaybus.testing import AgentTestHarness, FakeExecutor, ScriptedAnswer, ScriptedToolCall, SeenRequest

REPO = Path(__file__).resolve().parents[2]
SERVER = MCPServer.stdio([sys.executable, "-m", "examples.mcp_server"], cwd=REPO, name="example")


class McpUser(Agent):
    name = "loop-mcp-user"
    topics = ("loop.mcp",)
    tools = (SERVER,)


def ask_server_info(seen: SeenRequest) -> ScriptedAnswer | str:
    if seen.tool_results:
        return seen.tool_results[0].content  # the final answer: what the server said
    return ScriptedAnswer(tool_calls=[ScriptedToolCall("server_info", {})])


async def test_concurrent_tasks_call_an_mcp_server_over_one_session_opened_at_start() -> None:
    async with AgentTestHarness([McpUser()], script=ask_server_info) as h:
        assert SERVER.is_connected  # opened when the worker started, before any task
        results = await h.run_many([AgentTask(topic="loop.mcp", prompt=f"who {i}") for i in range(8)])
        first = h.executor.requests[0]  # type: ignore[attr-defined]
        opened = SERVER.sessions_opened
    assert all(r.ok for r in results), [r.error for r in results]
    answers = [json.loads(str(r.output)) for r in results]
    assert len({a["pid"] for a in answers}) == 1
    assert {a["initializations"] for a in answers} == {1}
    assert opened == 1
    assert {"add", "word_count", "server_info"} <= {s.name for s in first.tools}
    assert not SERVER.is_connected  # closed when the worker stopped


async def test_an_mcp_server_that_cannot_start_fails_the_workers_start_naming_the_agent() -> None:
    class Broken(Agent):
        name = "loop-broken-tools"
        topics = ("loop.broken",)
        tools = (MCPServer.stdio(["/nonexistent/mcp-server"], connect_timeout_s=10),)

    async with MemoryBus() as bus:
        worker = AgentWorker(bus, [Broken()], executor=FakeExecutor())
        with pytest.raises(MCPConnectionError, match="agent 'loop-broken-tools' cannot start its tools"):
            await worker.start()
        assert not worker.is_running
        assert "relaybus.agent.loop-broken-tools" not in bus.queue_names()  # it never took a task


@tool
def add(a: int, b: int) -> int:
    """Add."""
    return a + b


@tool(name="add")
def add_again(a: int, b: int) -> int:
    """Add, under the same name."""
    return a + b


def test_tools_are_checked_when_the_class_is_defined() -> None:
    with pytest.raises(ConfigError, match="must be a tuple of tools"):

        class Single(Agent):
            tools = add  # type: ignore[assignment]

    with pytest.raises(ConfigError, match="is not a tool"):

        class Undecorated(Agent):
            tools = (len,)  # type: ignore[assignment]

    with pytest.raises(ConfigError, match="max_turns must be a positive integer"):

        class NoTurns(Agent):
            max_turns = 0

    with pytest.raises(ConfigError, match="output_schema must be a pydantic model class"):

        class NotAModel(Agent):
            output_schema = dict  # type: ignore[assignment]


async def test_a_loop_agent_with_a_mode_or_two_tools_of_one_name_is_refused_at_start() -> None:
    class Scripted(Agent):
        name = "loop-scripted"
        mode = "script"
        tools = (add,)

    class Twice(Agent):
        name = "loop-twice"
        tools = (add, add_again)

    async with MemoryBus() as bus:
        with pytest.raises(ConfigError, match="its mode 'script' would never be used"):
            AgentWorker(bus, [Scripted()])
        worker = AgentWorker(bus, [Twice()], executor=FakeExecutor())
        with pytest.raises(ConfigError, match="two tools are named 'add'"):
            await worker.start()


async def test_tools_reach_the_model_through_the_harness_default_executor() -> None:
    class Adder(Agent):
        name = "loop-adder"
        topics = ("loop.add",)
        tools = (add,)

    script = [ScriptedAnswer(tool_calls=[ScriptedToolCall("add", {"a": 2, "b": 2})]), "4"]
    async with AgentTestHarness([Adder()], script=script) as h:
        result = await h.run(AgentTask(topic="loop.add", prompt="2+2"))
        second = h.executor.requests[1]  # type: ignore[attr-defined]
    assert result.output == "4"
    assert second.messages[-1] == ToolResultMessage("call_1_0", "4")
