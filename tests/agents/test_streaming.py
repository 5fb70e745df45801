"""Streaming on the worker's side, in memory: ``ctx.emit``, the model's text, the agent loop's steps and the
events of delegated tasks reach the caller in ``seq`` order, the ``result`` event last; nothing is sent to a
caller that does not stream."""

from __future__ import annotations

from typing import Any

import pytest

from relaybus import Agent, AgentContext, AgentTask, TaskEvent, tool
from relaybus.bus.base import EVENT_HEADER, Delivery
from relaybus.exceptions import ConfigError
from relaybus.executor import ExecutorConfig, ProviderConfig, TaskExecutor
from relaybus.testing import (
    AgentTestHarness,
    FakeExecutor,
    FakeLLMServer,
    ScriptedAnswer,
    ScriptedToolCall,
)


class Narrator(Agent):
    name = "narrator"
    topics = ("story.tell",)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        await ctx.emit("progress", text="once")
        await ctx.emit("progress", text="upon", data={"step": 2})
        return {"streaming": ctx.streaming}


class Editor(Agent):
    name = "editor"
    topics = ("story.edit",)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        await ctx.emit("progress", text="editing")
        result = await ctx.delegate(AgentTask(topic="story.tell"))
        await ctx.emit("progress", text="edited")
        return result.output


class Writer(Agent):
    """The default handle: one call of the executor, streamed when the caller streams."""

    name = "writer"
    topics = ("story.write",)


@tool
async def shout(word: str) -> str:
    """Say ``word`` loudly."""
    return word.upper()


class Shouter(Agent):
    name = "shouter"
    topics = ("story.shout",)
    tools = (shout,)


def texts(events: list[TaskEvent], kind: str) -> list[str]:
    return [e.text for e in events if e.kind == kind]


async def test_emitted_lines_come_in_order_and_the_result_event_ends_the_stream() -> None:
    async with AgentTestHarness([Narrator()]) as h:
        task = AgentTask(topic="story.tell")
        result, events = await h.run_streamed(task)
    assert result.ok
    assert result.output == {"streaming": True}
    assert [(e.seq, e.kind, e.text) for e in events] == [
        (1, "progress", "once"),
        (2, "progress", "upon"),
        (3, "result", ""),
    ]
    assert events[1].data == {"step": 2}
    assert events[0].agent == "narrator"
    assert events[-1].result == result
    assert all(e.task_id == task.id for e in events)


async def test_a_caller_that_does_not_stream_gets_no_event() -> None:
    seen: list[Delivery] = []
    async with AgentTestHarness([Narrator()]) as h:
        original = h.bus.publish

        async def spy(message):  # type: ignore[no-untyped-def]
            if EVENT_HEADER in message.headers:
                seen.append(message)
            await original(message)

        h.bus.publish = spy  # type: ignore[method-assign]
        result = await h.run(AgentTask(topic="story.tell"))
        assert result.output == {"streaming": False}
        _, events = await h.run_streamed(AgentTask(topic="story.tell"))
    assert len(seen) == 2 == len(events) - 1  # only the streamed task's two lines were ever published


async def test_a_delegated_agents_events_reach_the_original_caller_tagged() -> None:
    async with AgentTestHarness([Editor(), Narrator()]) as h:
        result, events = await h.run_streamed(AgentTask(topic="story.edit"))
    assert result.ok
    assert [(e.seq, e.text, e.agent) for e in events[:-1]] == [
        (1, "editing", "editor"),
        (2, "once", "narrator"),
        (3, "upon", "narrator"),
        (4, "edited", "editor"),
    ]
    subs = {e.sub_task_id for e in events[1:3]}
    assert len(subs) == 1
    assert None not in subs
    assert events[0].sub_task_id is None
    assert events[-1].kind == "result"


async def test_the_agent_loop_streams_its_tool_steps() -> None:
    script = [
        ScriptedAnswer(tool_calls=[ScriptedToolCall("shout", {"word": "hey"})]),
        ScriptedAnswer(text="done"),
    ]
    async with AgentTestHarness([Shouter()], script=script) as h:
        result, events = await h.run_streamed(AgentTask(topic="story.shout"))
    assert result.ok
    assert result.output == "done"
    kinds = [e.kind for e in events]
    assert kinds == ["tool_call", "tool_result", "delta", "result"]  # the final answer's text streamed too
    assert events[2].text == "done"
    call, answer = events[0], events[1]
    assert call.text == "shout"
    assert call.data["arguments"] == '{"word": "hey"}'
    assert answer.data["content"] == "HEY"
    assert answer.data["is_error"] is False
    assert call.data["id"] == answer.data["id"]  # type: ignore[index]


async def test_the_models_text_streams_from_the_provider_and_joins_to_the_output() -> None:
    async with FakeLLMServer(chunk_size=3) as server:
        config = ExecutorConfig(provider=ProviderConfig(kind="openai", base_url=server.openai_base_url))
        async with TaskExecutor(config) as executor, AgentTestHarness([Writer()], executor=executor) as h:
            result, events = await h.run_streamed(AgentTask(topic="story.write", prompt="a tale of two"))
            plain = await h.run(AgentTask(topic="story.write", prompt="a tale of two"))
        assert server.streams == 1  # the caller that does not stream is answered without a stream
    assert result.ok
    assert result.output == plain.output == "fake reply: a tale of two"
    deltas = texts(events, "delta")
    assert deltas
    assert "".join(deltas) == result.output
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_the_fake_executors_text_answer_streams_as_one_delta() -> None:
    executor = FakeExecutor(respond=lambda task, agent: f"answer to {task.prompt}")
    async with AgentTestHarness([Writer()], executor=executor) as h:
        result, events = await h.run_streamed(AgentTask(topic="story.write", prompt="q"))
    assert [(e.kind, e.text) for e in events[:-1]] == [("delta", "answer to q")]
    assert result.output == "answer to q"


async def test_emit_refuses_the_result_kind() -> None:
    class Cheater(Agent):
        name = "cheater"
        topics = ("story.cheat",)

        async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
            with pytest.raises(ConfigError, match="cannot be emitted"):
                await ctx.emit("result", text="fake")  # type: ignore[arg-type]
            return "ok"

    async with AgentTestHarness([Cheater()]) as h:
        result, events = await h.run_streamed(AgentTask(topic="story.cheat"))
    assert result.output == "ok"
    assert [e.kind for e in events] == ["result"]
