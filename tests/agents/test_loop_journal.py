"""The agent loop's journal in memory: steps recorded, a journal left by a dead worker replayed, unusable
entries run again, only a context's first loop journaled, and a delegated call sent again on replay under
the id it had, so that the delegated agent answers it from the store instead of running it twice. (Across
real processes, with a SIGKILL: ``tests/agents/test_journal_processes.py``.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from relaybus import Agent, AgentContext, AgentTask, AgentTool, ExecutionResult, tool
from relaybus.agents.loop.calls import sub_task_id
from relaybus.executor.llm.chat import ToolResultMessage
from relaybus.state import ClaimOutcome, StateStore, store_from_url, task_digest
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


# -- delegated calls: the same sub-task ids on replay --------------------------------------------------------

counted: list[AgentTask] = []


class Counter(Agent):
    """The delegated agent: each task it runs is a side effect, counted."""

    name = "counter"
    topics = ("count.it",)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        counted.append(task)
        return f"counted {task.prompt}"


COUNT = AgentTool("count.it", name="count", description="Count something")


class Delegator(Agent):
    name = "delegator"
    topics = ("delegate.it",)
    tools = (COUNT,)
    max_turns = 3


def delegating_model(seen: SeenRequest) -> ScriptedAnswer:
    """Turn 1 asks the counter to count "apples", turn 2 answers with what came back."""
    done = [m.content for m in seen.messages if isinstance(m, ToolResultMessage)]
    if not done:
        return ScriptedAnswer(tool_calls=[ScriptedToolCall("count", {"prompt": "apples"})], usage=(10, 1))
    return ScriptedAnswer(text=" | ".join(done), usage=(10, 1))


def count_step(call_id: str) -> dict[str, Any]:
    step = model_step(call_id, "unused")
    step["tool_calls"] = [{"id": call_id, "name": "count", "arguments": '{"prompt": "apples"}'}]
    return step


@pytest.fixture(autouse=True)
def _reset_counted() -> None:
    counted.clear()


async def test_a_delegated_call_is_sent_under_an_id_derived_from_the_task_the_step_and_the_call(
    store: StateStore,
) -> None:
    async with AgentTestHarness(
        [Delegator(), Counter()], executor=FakeExecutor(script=delegating_model), state=store
    ) as h:
        task = AgentTask(topic="delegate.it", prompt="go")
        result = await h.run(task)
    assert result.output == "counted apples", result.error
    call_id = (await store.journal(task.id))[0].data["tool_calls"][0]["id"]  # type: ignore[index, call-overload]
    assert [sub.id for sub in counted] == [sub_task_id(task.id, 1, call_id)]
    assert sub_task_id(task.id, 1, call_id) != sub_task_id(task.id, 3, call_id)  # another step
    assert sub_task_id(task.id, 1, call_id) != sub_task_id(task.id, 1, call_id, 1)  # a second call of it


async def test_a_delegated_call_in_flight_when_the_worker_died_is_answered_from_the_store_not_run_again(
    store: StateStore,
) -> None:
    # The dead worker's loop had the model's answer (step 0) journaled and sent its call; the counter ran it
    # and stored its result, which never reached the dead worker.
    task = AgentTask(topic="delegate.it", prompt="go")
    await store.journal_append(task.id, 0, "model", count_step("c1"))
    sent = COUNT.build_task({"prompt": "apples"})
    assert isinstance(sent, AgentTask)
    sent = sent.model_copy(update={"id": sub_task_id(task.id, 1, "c1")})
    claim = await store.claim(sent.id, worker="counter-before", lease_s=30, digest=task_digest(sent))
    assert claim.outcome is ClaimOutcome.ACQUIRED
    await store.complete(sent.id, "counter-before", ExecutionResult.success(sent.id, "counted apples before"))
    executor = FakeExecutor(script=delegating_model)
    async with AgentTestHarness([Delegator(), Counter()], executor=executor, state=store) as h:
        result = await h.run(task)
    assert result.ok, result.error
    assert result.output == "counted apples before"  # the stored answer of the call sent before the crash
    assert counted == []  # the counter did not count twice
    assert len(executor.requests) == 1  # turn 1 came from the journal


async def test_without_a_store_each_delegated_call_gets_a_fresh_id() -> None:
    async with AgentTestHarness(
        [Delegator(), Counter()], executor=FakeExecutor(script=delegating_model)
    ) as h:
        first = await h.run(AgentTask(topic="delegate.it", prompt="go"))
        second = await h.run(AgentTask(topic="delegate.it", prompt="go"))
    assert first.ok, first.error
    assert second.ok, second.error
    assert len({sub.id for sub in counted}) == 2
