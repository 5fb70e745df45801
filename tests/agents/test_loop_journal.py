"""The agent loop's journal in memory: steps recorded, a journal left by a dead worker replayed, unusable
entries run again, and only a context's first loop journaled. (Across real processes, with a SIGKILL:
``tests/agents/test_journal_processes.py``.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from relaybus import Agent, AgentContext, AgentTask, tool
from relaybus.executor.llm.chat import ToolResultMessage
from relaybus.state import StateStore, store_from_url
from relaybus.testing import AgentTestHarness, FakeExecutor, ScriptedAnswer, ScriptedToolCall, SeenRequest

looked_up: list[str] = []


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    looked_up.append(key)
    return f"value of {key}"


class Looker(Agent):
    name = "looker"
    topics = ("look.up",)
    tools = (lookup,)
    max_turns = 5


class TwoLoops(Looker):
    name = "two-loops"
    topics = ("look.twice",)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        first = await ctx.run_loop()
        second = await ctx.run_loop()
        return [first.output, second.output]


def model(seen: SeenRequest) -> ScriptedAnswer:
    """Turn 1 looks "a" up, turn 2 "b", turn 3 answers with what came back."""
    done = [m.content for m in seen.messages if isinstance(m, ToolResultMessage)]
    if len(done) < 2:
        key = "ab"[len(done)]
        return ScriptedAnswer(tool_calls=[ScriptedToolCall("lookup", {"key": key})], usage=(10, 1))
    return ScriptedAnswer(text=" | ".join(done), usage=(10, 1))


@pytest.fixture
async def store(tmp_path: Any) -> AsyncIterator[StateStore]:
    async with store_from_url(f"sqlite:///{tmp_path / 'state.db'}") as opened:
        yield opened


@pytest.fixture(autouse=True)
def _reset() -> None:
    looked_up.clear()


def model_step(call_id: str, key: str) -> dict[str, Any]:
    return {
        "text": "",
        "model": "scripted",
        "finish_reason": "tool_calls",
        "tool_calls": [{"id": call_id, "name": "lookup", "arguments": f'{{"key": "{key}"}}'}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1, "requests": 1},
        "attempts": 1,
    }


def tool_step(call_id: str, content: str) -> dict[str, Any]:
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0}
    return {"call_id": call_id, "name": "lookup", "content": content, "is_error": False, "usage": usage}


async def test_each_finished_step_is_journaled_in_order(store: StateStore) -> None:
    executor = FakeExecutor(script=model)
    async with AgentTestHarness([Looker()], executor=executor, state=store) as h:
        task = AgentTask(topic="look.up", prompt="go")
        result = await h.run(task)
    assert result.ok, result.error
    journal = await store.journal(task.id)
    assert [entry.kind for entry in journal] == ["model", "tool", "model", "tool", "model"]
    assert journal[1].data == tool_step(journal[0].data["tool_calls"][0]["id"], "value of a")  # type: ignore[index, call-overload]


async def test_a_journal_left_by_a_dead_worker_is_replayed_and_only_the_rest_is_asked(
    store: StateStore,
) -> None:
    task = AgentTask(topic="look.up", prompt="go")
    await store.journal_append(task.id, 0, "model", model_step("c1", "a"))
    await store.journal_append(task.id, 1, "tool", tool_step("c1", "value of a (from the journal)"))
    await store.journal_append(task.id, 2, "model", model_step("c2", "b"))
    executor = FakeExecutor(script=model)
    async with AgentTestHarness([Looker()], executor=executor, state=store) as h:
        result = await h.run(task)
    assert result.ok, result.error
    assert result.output == "value of a (from the journal) | value of b"
    assert looked_up == ["b"]  # the tool of step 1 was not run again; that of step 3 was
    assert len(executor.requests) == 1  # only turn 3 went to the model
    assert result.usage.prompt_tokens == 30  # the two replayed turns still count
    assert (await store.journal(task.id)).steps == [0, 1, 2, 3, 4]


async def test_an_unusable_journal_entry_is_run_again(store: StateStore) -> None:
    task = AgentTask(topic="look.up", prompt="go")
    await store.journal_append(task.id, 0, "model", model_step("c1", "a"))
    await store.journal_append(task.id, 1, "tool", {"call_id": "c1", "content": 42})  # no usable fields
    executor = FakeExecutor(script=model)
    async with AgentTestHarness([Looker()], executor=executor, state=store) as h:
        result = await h.run(task)
    assert result.ok, result.error
    assert looked_up == ["a", "b"]  # step 1's tool ran again
    assert len(executor.requests) == 2  # turns 2 and 3; turn 1 came from the journal


async def test_only_the_first_loop_of_a_context_is_journaled(store: StateStore) -> None:
    executor = FakeExecutor(script=model)
    async with AgentTestHarness([TwoLoops()], executor=executor, state=store) as h:
        task = AgentTask(topic="look.twice", prompt="go")
        result = await h.run(task)
    assert result.ok, result.error
    assert result.output == ["value of a | value of b"] * 2
    assert len(executor.requests) == 6  # the second loop did not replay the first one's steps
    assert len(await store.journal(task.id)) == 5


async def test_without_a_store_nothing_is_journaled_and_the_loop_runs_as_before() -> None:
    executor = FakeExecutor(script=model)
    async with AgentTestHarness([Looker()], executor=executor) as h:
        result = await h.run(AgentTask(topic="look.up", prompt="go"))
    assert result.output == "value of a | value of b"
    assert len(executor.requests) == 3
