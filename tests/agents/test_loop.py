"""The agent loop in memory: real workers on a MemoryBus, the model scripted (``FakeExecutor(script=...)``).

What the model sees is asserted on the requests it was sent (``h.executor.requests``); concurrency is proven
with barriers that only open when every call of a turn is running at once, never with times. The same
scenarios run with worker processes on RabbitMQ against the fake server over HTTP in
``tests/agents/test_loop_processes.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from relaybus import Agent, AgentContext, AgentTask, AgentTool, ExecutionStatus, Usage, tool
from relaybus.executor.llm.chat import AssistantMessage, FinishReason, ToolResultMessage, UserMessage
from relaybus.testing import (
    AgentTestHarness,
    FakeExecutor,
    ScriptedAnswer,
    ScriptedToolCall,
    SeenRequest,
)

BARRIER_TIMEOUT_S = 5.0


def calls(*items: tuple[str, Any]) -> ScriptedAnswer:
    return ScriptedAnswer(tool_calls=[ScriptedToolCall(name, arguments) for name, arguments in items])


def tool_results(request_messages: Any) -> list[ToolResultMessage]:
    return [m for m in request_messages if isinstance(m, ToolResultMessage)]


class Rendezvous:
    """Opens only when ``parties`` calls wait at once: a call that runs alone times out and says so."""

    def __init__(self, parties: int) -> None:
        self.barrier = asyncio.Barrier(parties)
        self.met = 0

    async def meet(self, who: str) -> str:
        try:
            async with asyncio.timeout(BARRIER_TIMEOUT_S):
                await self.barrier.wait()
        except TimeoutError:
            return f"{who} waited alone"
        self.met += 1
        return f"{who} met the others"


# --- the agents -------------------------------------------------------------------------------------------

meeting = Rendezvous(3)


@tool
async def local_lookup(key: str) -> str:
    """Look a key up (a Python tool that waits for the agents called in the same turn)."""
    return await meeting.meet(f"lookup {key}")


class Left(Agent):
    name = "loop-left"
    topics = ("loop.left",)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        return {"left": await meeting.meet("left")}


class Right(Agent):
    name = "loop-right"
    topics = ("loop.right",)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        return {"right": await meeting.meet("right")}


class Coordinator(Agent):
    """The agent under test: two agents over the bus and a Python tool."""

    name = "loop-coordinator"
    topics = ("loop.coordinate",)
    system_prompt = "Coordinate the others."
    tools = (
        AgentTool("loop.left", name="ask_left", description="Ask the left agent"),
        AgentTool(agent="loop-right", name="ask_right", description="Ask the right agent"),
        local_lookup,
    )


async def test_every_call_of_a_turn_runs_at_once_and_the_results_go_back_in_call_order() -> None:
    global meeting
    meeting = Rendezvous(3)
    script = [
        calls(("ask_left", {"prompt": "l"}), ("ask_right", {"prompt": "r"}), ("local_lookup", {"key": "k"})),
        "all three answered",
    ]
    async with AgentTestHarness([Coordinator(), Left(), Right()], script=script) as h:
        result = await h.run(AgentTask(topic="loop.coordinate", prompt="go", input={"n": 1}))
        requests = h.executor.requests  # type: ignore[attr-defined]
    assert result.status is ExecutionStatus.SUCCESS, result.error
    assert result.output == "all three answered"
    assert result.agent == "loop-coordinator"
    assert meeting.met == 3  # the barrier opened: all three calls were running at the same time
    first, second = requests
    assert [m.role for m in first.messages] == ["system", "user"]
    assert first.messages[1] == UserMessage('go\n\nInput (JSON):\n{\n  "n": 1\n}')
    assert [s.name for s in first.tools] == ["ask_left", "ask_right", "local_lookup"]
    assert isinstance(second.messages[2], AssistantMessage)
    answered = tool_results(second.messages)
    assert [m.tool_call_id for m in answered] == ["call_1_0", "call_1_1", "call_1_2"]
    assert [m.content for m in answered] == [
        '{"left":"left met the others"}',
        '{"right":"right met the others"}',
        "lookup k met the others",
    ]
    assert not any(m.is_error for m in answered)


@tool
def explode(reason: str) -> str:
    """Always raises."""
    raise RuntimeError(f"boom: {reason}")


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Clumsy(Agent):
    name = "loop-clumsy"
    topics = ("loop.clumsy",)
    tools = (explode, add)


async def test_a_raising_tool_invalid_arguments_and_an_unknown_tool_go_back_to_the_model_as_errors() -> None:
    script = [
        calls(
            ("explode", {"reason": "why not"}),
            ("add", {"a": "one", "b": 2}),
            ("add", "{not json"),
            ("divide", {"a": 1}),
            ("add", {"a": 1, "b": 2}),
        ),
        "I noticed the errors",
    ]
    async with AgentTestHarness([Clumsy()], script=script) as h:
        result = await h.run(AgentTask(topic="loop.clumsy", prompt="try"))
        requests = h.executor.requests  # type: ignore[attr-defined]
    assert result.ok, result.error  # tool faults do not fail the task: the model hears about them
    answered = tool_results(requests[1].messages)
    assert [m.is_error for m in answered] == [True, True, True, True, False]
    assert answered[0].content == "explode raised RuntimeError: boom: why not"
    assert answered[1].content.startswith("invalid arguments for add: a: Input should be a valid integer")
    assert answered[2].content.startswith("invalid arguments for add: the arguments are not valid JSON")
    assert answered[3].content == "there is no tool named 'divide'; the tools are: explode, add"
    assert answered[4].content == "3"


class Restless(Agent):
    name = "loop-restless"
    topics = ("loop.restless",)
    tools = (add,)
    max_turns = 3


async def test_a_model_that_never_stops_calling_tools_fails_with_max_turns_exceeded() -> None:
    def always_a_tool(seen: SeenRequest) -> ScriptedAnswer:
        return calls(("add", {"a": seen.number, "b": 1}))

    async with AgentTestHarness([Restless()], script=always_a_tool) as h:
        result = await h.run(AgentTask(topic="loop.restless", prompt="count forever"))
        requests = h.executor.requests  # type: ignore[attr-defined]
    assert result.status is ExecutionStatus.FAILURE
    assert result.error is not None
    assert result.error.type == "MaxTurnsExceeded"
    assert "max_turns=3" in result.error.message
    assert len(requests) == 3  # three model turns, and the third turn's calls were not run
    assert len(tool_results(requests[2].messages)) == 2
    assert result.usage.requests == 3


class Asker(Agent):
    name = "loop-asker"
    topics = ("loop.ask",)
    tools = (AgentTool("loop.answer", name="ask", description="Ask the answerer"),)


class Answerer(Agent):
    """Answers with one executor call of its own (whose usage the FakeExecutor reports)."""

    name = "loop-answerer"
    topics = ("loop.answer",)
    system_prompt = "Answer."


async def test_usage_adds_up_every_turn_and_the_delegated_call() -> None:
    script = [
        ScriptedAnswer(tool_calls=[ScriptedToolCall("ask", {"prompt": "one two three"})], usage=(10, 2)),
        ScriptedAnswer(text="done", usage=(20, 3)),
    ]
    async with AgentTestHarness([Asker(), Answerer()], script=script) as h:
        result = await h.run(AgentTask(topic="loop.ask", prompt="ask"))
    assert result.ok, result.error
    # two turns (10+20 prompt, 2+3 completion) and the answerer's call (3 prompt words, 1 completion token)
    assert result.usage == Usage(prompt_tokens=33, completion_tokens=6, requests=3)


async def test_the_deadline_ends_a_loop_stuck_in_tool_calls_and_cancels_them_and_the_sub_task() -> None:
    cancelled: list[str] = []
    started = asyncio.Event()

    @tool
    async def hang() -> str:
        """Never answers."""
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append("tool")
            raise
        return "never"

    class Sleeper(Agent):
        name = "loop-sleeper"
        topics = ("loop.sleep",)

        async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
            started.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.append("sub-task")
                raise

    class Stuck(Agent):
        name = "loop-stuck"
        topics = ("loop.stuck",)
        tools = (hang, AgentTool("loop.sleep", name="sleep", description="Sleep"))

    script = [calls(("hang", {}), ("sleep", {"prompt": "zzz"}))]
    async with AgentTestHarness([Stuck(), Sleeper()], script=script) as h:
        result = await h.run(AgentTask(topic="loop.stuck", prompt="wait", timeout_s=0.5))
        async with asyncio.timeout(5):
            while len(cancelled) < 2:
                await asyncio.sleep(0.01)
    assert started.is_set()
    assert result.status is ExecutionStatus.TIMEOUT
    assert result.error is not None
    assert result.error.type == "DeadlineExceeded"
    assert sorted(cancelled) == ["sub-task", "tool"]
    assert result.usage.requests == 1  # the turn before the deadline still counts


async def test_a_delegated_agent_that_is_down_gives_the_model_a_timeout_at_the_tools_deadline() -> None:
    class Caller(Agent):
        name = "loop-caller"
        topics = ("loop.call",)
        tools = (AgentTool("loop.down", name="ask_down", description="Nobody home", timeout_s=0.3),)

    script = [calls(("ask_down", {"prompt": "hello?"})), "nobody answered"]
    async with AgentTestHarness([Caller()], script=script) as h:
        # The agent is deployed (its queue is there) but no worker runs it.
        await h.bus.declare_queue("relaybus.agent.loop-down", bindings=("task.loop.down",))
        result = await h.run(AgentTask(topic="loop.call", prompt="call"))
        requests = h.executor.requests  # type: ignore[attr-defined]
    assert result.ok, result.error
    (answer,) = tool_results(requests[1].messages)
    assert answer.is_error
    assert "ask_down: topic 'loop.down' answered TIMEOUT" in answer.content


class Plain(Agent):
    name = "loop-plain"
    topics = ("loop.plain",)
    tools = (add,)


@pytest.mark.parametrize(
    ("answer", "error_type", "output"),
    [
        (ScriptedAnswer(text="cut he", finish_reason=FinishReason.LENGTH), "OutputTruncated", "cut he"),
        (ScriptedAnswer(refusal="I will not add"), "Refused", "I will not add"),
        (ScriptedAnswer(text="x", finish_reason=FinishReason.CONTENT_FILTER), "ContentFiltered", "x"),
    ],
)
async def test_an_answer_that_cannot_be_used_ends_the_loop_with_its_failure(
    answer: ScriptedAnswer, error_type: str, output: str
) -> None:
    async with AgentTestHarness([Plain()], script=[calls(("add", {"a": 1, "b": 1})), answer]) as h:
        result = await h.run(AgentTask(topic="loop.plain", prompt="add"))
    assert result.status is ExecutionStatus.FAILURE
    assert result.error is not None
    assert result.error.type == error_type
    assert result.output == output
    assert result.usage.requests == 2


async def test_a_model_call_that_fails_ends_the_loop_with_that_failure() -> None:
    async with AgentTestHarness([Plain()], script=[calls(("add", {"a": 1, "b": 1}))]) as h:
        result = await h.run(AgentTask(topic="loop.plain", prompt="add"))  # the script runs out at turn 2
    assert result.status is ExecutionStatus.FAILURE
    assert result.error is not None
    assert result.error.type == "ConfigError"
    assert "no answer left" in result.error.message


class Custom(Agent):
    """A handle of its own that runs the loop twice with overrides and reports the tool calls it saw."""

    name = "loop-custom"
    topics = ("loop.custom",)
    system_prompt = "The agent's own prompt."
    tools = (explode,)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        first = await ctx.run_loop(tools=(add,), max_turns=2, system_prompt="Only add.")
        second = await ctx.run_loop(task.model_copy(update={"prompt": "again"}))
        calls_seen = [[c.turn, c.name, c.content, c.is_error] for c in ctx.tool_calls]
        return {"first": first.output, "second": second.output, "calls": calls_seen}


async def test_a_custom_handle_runs_the_loop_with_overrides_and_sees_its_tool_calls() -> None:
    script = [calls(("add", {"a": 2, "b": 3})), "five", "no tools needed"]
    async with AgentTestHarness([Custom()], script=script) as h:
        result = await h.run(AgentTask(topic="loop.custom", prompt="add"))
        requests = h.executor.requests  # type: ignore[attr-defined]
    assert result.ok, result.error
    assert result.output == {"first": "five", "second": "no tools needed", "calls": [[1, "add", "5", False]]}
    assert requests[0].system == "Only add."
    assert [s.name for s in requests[0].tools] == ["add"]
    assert requests[2].system == "The agent's own prompt."
    assert [s.name for s in requests[2].tools] == ["explode"]
    assert requests[2].user == "again"
    assert result.usage.requests == 3  # both loops count for the task


async def test_an_agent_without_tools_keeps_the_single_executor_call() -> None:
    executor = FakeExecutor(respond=lambda task, agent: "one call")

    class Single(Agent):
        name = "loop-single"
        topics = ("loop.single",)

    async with AgentTestHarness([Single()], executor=executor) as h:
        result = await h.run(AgentTask(topic="loop.single", prompt="hi"))
    assert result.output == "one call"
    assert len(executor.calls) == 1
    assert executor.requests == []


async def test_parallel_delegations_give_the_slot_back_once_and_take_it_back_once() -> None:
    """With 2 slots, a task whose turn delegates twice at once must leave both slots free after it: a slot
    taken twice (once per delegation) would leave the next such task waiting forever."""

    class Echo(Agent):
        name = "loop-echo"
        topics = ("loop.echo",)

        async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
            return task.prompt

    class Twice(Agent):
        name = "loop-twice"
        topics = ("loop.twice",)
        tools = (AgentTool("loop.echo", name="echo", description="Echo"),)

    def model(seen: SeenRequest) -> ScriptedAnswer | str:
        if seen.tool_results:
            return "+".join(m.content for m in seen.tool_results)
        return calls(("echo", {"prompt": "a"}), ("echo", {"prompt": "b"}))

    async with AgentTestHarness([Twice(), Echo()], script=model, concurrency=2, timeout_s=5) as h:
        results = [await h.run(AgentTask(topic="loop.twice", prompt=str(i))) for i in range(4)]
        both = await h.run_many([AgentTask(topic="loop.echo", prompt=p) for p in ("x", "y")])
    assert [r.output for r in results] == ["a+b"] * 4
    assert [r.output for r in both] == ["x", "y"]
