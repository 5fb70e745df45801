"""The agent loop in ``relaybus worker`` processes on RabbitMQ, the model a FakeLLMServer over real HTTP.

The tool agent runs in one worker process and the agents it calls as tools in another; the fake model's
script (one function of the request) decides by the task's prompt which scenario it plays, and every
request it got is asserted on. Concurrency is proven by ``Rendezvous``, which answers ``met`` only when the
calls of one turn wait in the other process at the same time. The same scenarios run in memory in
``tests/agents/test_loop.py``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from relaybus.bus.base import agent_queue_name
from relaybus.bus.codec import encode_cancel
from relaybus.bus.rpc import ReplyRouter
from relaybus.executor.llm.chat import ToolResultMessage, UserMessage
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus, Usage
from relaybus.testing import FakeLLMServer, ScriptedAnswer, ScriptedToolCall, SeenRequest

from . import processes
from .processes import Fleet

pytestmark = [pytest.mark.integration, pytest.mark.slow]
fleet = processes.fleet

TURN_ONE = (10, 2)
TURN_TWO = (20, 3)
WRITER = (7, 1)


def first_prompt(seen: SeenRequest) -> str:
    return next((m.text for m in seen.messages if isinstance(m, UserMessage)), "")


def call(name: str, arguments: dict[str, Any]) -> ScriptedToolCall:
    return ScriptedToolCall(name, arguments)


def model(seen: SeenRequest) -> ScriptedAnswer | str:
    """The fake model of every scenario here."""
    prompt = first_prompt(seen)
    answered = seen.tool_results
    if not seen.tools and seen.response_schema is None:  # the writer agent's single call
        return ScriptedAnswer(text="a fine sentence", usage=WRITER)
    if prompt.startswith("judge"):
        bad = '{"approve": "perhaps"}'
        good = ScriptedAnswer(output={"approve": True, "reasons": ["tested"]})
        repairing = any("not a valid Verdict" in m.text for m in seen.messages if isinstance(m, UserMessage))
        if prompt == "judge twice wrong" or not repairing:
            return bad
        return good
    if prompt == "forever":
        return ScriptedAnswer(tool_calls=[call("lookup", {"key": str(seen.number)})])
    if answered:  # every other scenario ends with what the tools said
        return ScriptedAnswer(text=" | ".join(m.content for m in answered), usage=TURN_TWO)
    group = uuid.uuid4().hex
    if prompt == "parallel":
        return ScriptedAnswer(
            tool_calls=[
                call("meet", {"prompt": "hi", "input": {"group": group, "size": 2}}),
                call("meet", {"prompt": "hi", "input": {"group": group, "size": 2}}),
                call("write", {"prompt": "one sentence"}),
                call("lookup", {"key": "k"}),
            ],
            usage=TURN_ONE,
        )
    if prompt == "errors":
        return ScriptedAnswer(
            tool_calls=[
                call("explode", {"reason": "on purpose"}),
                call("lookup", {"key": 5}),
                call("invented_tool", {}),
            ]
        )
    if prompt == "stuck":
        return ScriptedAnswer(
            tool_calls=[
                call("hang", {}),
                call("echo", {"prompt": "z", "input": {"sleep_s": 60, "announce": True}}),
            ]
        )
    if prompt == "down":
        return ScriptedAnswer(tool_calls=[call("ask_down", {"prompt": "anyone?"})])
    if prompt == "mcp":
        return ScriptedAnswer(tool_calls=[call("server_info", {})])
    raise AssertionError(f"no scenario for {prompt!r}")


@pytest.fixture
async def server() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer(answers=model) as fake:
        yield fake


def openai_env(server: FakeLLMServer) -> dict[str, str]:
    return {
        "RELAYBUS_LLM_PROVIDER": "openai",
        "OPENAI_BASE_URL": server.openai_base_url,
        "RELAYBUS_LLM_MODEL": "fake-model",
    }


def anthropic_env(server: FakeLLMServer) -> dict[str, str]:
    return {
        "RELAYBUS_LLM_PROVIDER": "anthropic",
        "ANTHROPIC_BASE_URL": server.base_url,
        "ANTHROPIC_API_KEY": "test-key",
        "RELAYBUS_LLM_MODEL": "fake-claude",
    }


async def start_fleet(fleet: Fleet, env: dict[str, str], *loop_agents: str) -> None:
    await fleet.start(*(loop_agents or ("ToolUser",)), env=env)
    await fleet.start("Rendezvous", "Writer", "Echo", env=env, args=("--concurrency", "8"))


async def run(fleet: Fleet, prompt: str, topic: str = "tools", **fields: Any) -> ExecutionResult:
    async with ReplyRouter(fleet.bus) as router:
        return await router.request(AgentTask(topic=fleet.topic(topic), prompt=prompt, **fields), timeout=60)


def tool_results_sent(server: FakeLLMServer, number: int) -> list[ToolResultMessage]:
    seen = server.calls[number].request
    assert seen is not None
    return [m for m in seen.messages if isinstance(m, ToolResultMessage)]


async def test_one_turns_calls_run_at_once_across_processes_and_usage_adds_up(
    fleet: Fleet, server: FakeLLMServer
) -> None:
    await start_fleet(fleet, openai_env(server))
    result = await run(fleet, "parallel")
    assert result.status is ExecutionStatus.SUCCESS, result.error
    met, also_met, written, looked_up = str(result.output).split(" | ")
    assert json.loads(met)["met"] is True  # both calls waited in the other process at the same time
    assert json.loads(also_met)["met"] is True
    assert written == "a fine sentence"  # the writer, in the other process, made an LLM call of its own
    assert looked_up == "value of k"
    assert result.worker == fleet.workers[0].worker_id
    # two turns of the loop and the writer's call, each with the usage the fake model reported
    assert result.usage == Usage(
        prompt_tokens=TURN_ONE[0] + TURN_TWO[0] + WRITER[0],
        completion_tokens=TURN_ONE[1] + TURN_TWO[1] + WRITER[1],
        requests=3,
    )
    assert server.requests == 3


async def test_tool_errors_reach_the_model_and_max_turns_ends_a_model_that_never_stops(
    fleet: Fleet, server: FakeLLMServer
) -> None:
    await start_fleet(fleet, openai_env(server))
    errors = await run(fleet, "errors")
    assert errors.ok, errors.error
    explode, lookup, invented = (m.content for m in tool_results_sent(server, 1))
    assert explode == "explode raised RuntimeError: boom: on purpose"
    assert lookup.startswith("invalid arguments for lookup: key: Input should be a valid string")
    assert invented.startswith("there is no tool named 'invented_tool'; the tools are: meet, write, echo")
    server.reset_stats()
    forever = await run(fleet, "forever")
    assert forever.status is ExecutionStatus.FAILURE
    assert forever.error is not None
    assert forever.error.type == "MaxTurnsExceeded"
    assert server.requests == 3  # ToolUser.max_turns


async def test_structured_output_with_one_repair_and_with_two_bad_answers(
    fleet: Fleet, server: FakeLLMServer
) -> None:
    await start_fleet(fleet, openai_env(server), "Judge")
    repaired = await run(fleet, "judge", topic="judge")
    assert repaired.ok, repaired.error
    assert repaired.output == {"approve": True, "reasons": ["tested"]}
    body = server.calls[0].body
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["name"] == "Verdict"
    failed = await run(fleet, "judge twice wrong", topic="judge")
    assert failed.status is ExecutionStatus.FAILURE
    assert failed.error is not None
    assert failed.error.type == "InvalidStructuredOutput"
    assert server.requests == 4


async def test_the_anthropic_format_end_to_end(fleet: Fleet, server: FakeLLMServer) -> None:
    await start_fleet(fleet, anthropic_env(server), "ToolUser", "Judge")
    parallel = await run(fleet, "parallel")
    judged = await run(fleet, "judge", topic="judge")
    assert parallel.ok, parallel.error
    assert [json.loads(part)["met"] for part in str(parallel.output).split(" | ")[:2]] == [True, True]
    assert judged.ok, judged.error
    assert judged.output == {"approve": True, "reasons": ["tested"]}
    assert {c.api for c in server.calls} == {"anthropic"}
    results = tool_results_sent(server, 2)  # turn 2 of the parallel task (after the writer's call)
    assert len(results) == 4
    verdict_call = next(c for c in server.calls if first_prompt(c.request) == "judge")  # type: ignore[arg-type]
    assert verdict_call.body["tool_choice"] == {"type": "tool", "name": "Verdict"}  # the forced output tool


def log_events(worker: processes.WorkerProcess, event: str) -> list[dict[str, Any]]:
    lines = (json.loads(line) for line in worker.log().splitlines() if line.startswith("{"))
    return [line for line in lines if line.get("event") == event]


async def test_the_deadline_or_a_cancel_stops_a_loop_stuck_in_tool_calls_and_its_sub_task(
    fleet: Fleet, server: FakeLLMServer
) -> None:
    await start_fleet(fleet, openai_env(server))
    helper = fleet.workers[1]
    timed_out = await run(fleet, "stuck", timeout_s=3)
    assert timed_out.status is ExecutionStatus.TIMEOUT
    assert timed_out.usage.requests == 1
    async with asyncio.timeout(20):  # the echo sub-task in the other process stopped too (its deadline)
        while not log_events(helper, "task_done"):
            await asyncio.sleep(0.1)
    assert log_events(helper, "task_done")[0]["status"] in ("timeout", "cancelled")

    task = AgentTask(topic=fleet.topic("tools"), prompt="stuck")
    async with ReplyRouter(fleet.bus) as router:
        pending = asyncio.create_task(router.request(task, timeout=60))
        await fleet.wait_for(
            lambda e: e.routing_key == f"event.{fleet.topic('started')}", what="the echo sub-task", count=2
        )
        await fleet.bus.publish(encode_cancel(task.id, "the test cancels it mid-turn"))
        cancelled = await pending
    assert cancelled.status is ExecutionStatus.CANCELLED
    async with asyncio.timeout(20):  # the loop's cancellation reached the sub-task in the other process
        while not log_events(helper, "task_cancel_requested"):
            await asyncio.sleep(0.1)


async def test_a_delegated_agent_that_is_down_is_a_timeout_the_model_hears_about(
    fleet: Fleet, server: FakeLLMServer
) -> None:
    await start_fleet(fleet, openai_env(server))
    await fleet.bus.declare_queue(
        agent_queue_name(fleet.name("down")), bindings=(f"task.{fleet.topic('down')}",)
    )
    result = await run(fleet, "down")
    assert result.ok, result.error
    (answer,) = tool_results_sent(server, 1)
    assert f"ask_down: topic '{fleet.topic('down')}' answered TIMEOUT" in answer.content
    assert "TIMEOUT" in str(result.output)


async def test_an_mcp_server_in_a_worker_process_serves_concurrent_tasks_over_one_session(
    fleet: Fleet, server: FakeLLMServer
) -> None:
    await fleet.start("McpUser", env=openai_env(server))
    async with ReplyRouter(fleet.bus) as router:
        results = await asyncio.gather(
            *(router.request(AgentTask(topic=fleet.topic("mcp"), prompt="mcp"), timeout=60) for _ in range(6))
        )
    assert all(r.ok for r in results), [r.error for r in results]
    infos = [json.loads(str(r.output)) for r in results]
    assert len({i["pid"] for i in infos}) == 1
    assert {i["initializations"] for i in infos} == {1}  # one client session for every task
