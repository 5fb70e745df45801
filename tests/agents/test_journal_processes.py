"""Resumable agent loops across ``relaybus worker`` processes on RabbitMQ, with a shared state store.

A worker is SIGKILLed in turn 3 of a scripted conversation (its tool hangs there); the broker redelivers the
task to another worker, which waits for the dead worker's lease to expire, takes the task over and replays
the journal: the fake model server counts the requests, and none of the first three turns is asked again.
A worker killed while its loop's delegated call (an ``AgentTool``) runs: the resumed loop sends the call
again under the same id, and the delegated agent answers it from its cache (or, restarted, from its store),
so its side effect happens once.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relaybus.bus.rpc import ReplyRouter
from relaybus.executor.llm.chat import ToolResultMessage
from relaybus.messages import AgentTask, Usage
from relaybus.state import StateStore, store_from_url
from relaybus.testing import FakeLLMServer, ScriptedAnswer, ScriptedToolCall, SeenRequest
from tests.eventually import eventually

from . import processes
from .processes import Fleet

pytestmark = [pytest.mark.integration, pytest.mark.slow]
fleet = processes.fleet

TURNS = [(10, 1), (20, 2), (30, 3), (40, 4)]


def model(seen: SeenRequest) -> ScriptedAnswer:
    """Turn 1 and 2 look keys up, turn 3 calls the tool that hangs, turn 4 answers with what they gave."""
    done = [m.content for m in seen.messages if isinstance(m, ToolResultMessage)]
    usage = TURNS[min(len(done), 3)]
    if len(done) == 0:
        return ScriptedAnswer(tool_calls=[ScriptedToolCall("lookup", {"key": "a"})], usage=usage)
    if len(done) == 1:
        return ScriptedAnswer(tool_calls=[ScriptedToolCall("lookup", {"key": "b"})], usage=usage)
    if len(done) == 2:
        return ScriptedAnswer(tool_calls=[ScriptedToolCall("stall", {"note": "turn 3"})], usage=usage)
    return ScriptedAnswer(text=" | ".join(done), usage=usage)


@pytest.fixture
async def server() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer(answers=model) as fake:
        yield fake


@pytest.fixture
async def store(state_url: str) -> AsyncIterator[StateStore]:
    async with store_from_url(state_url) as opened:
        yield opened


async def test_a_worker_killed_in_turn_3_is_resumed_by_another_without_asking_the_model_again(
    fleet: Fleet, server: FakeLLMServer, state_url: str, store: StateStore, tmp_path: Path
) -> None:
    llm = {
        "RELAYBUS_LLM_PROVIDER": "openai",
        "OPENAI_BASE_URL": server.openai_base_url,
        "RELAYBUS_LLM_MODEL": "fake-model",
    }
    stalled = tmp_path / "stalled"
    args = ("--state-url", state_url, "--lease", "2")
    first = await fleet.start("Journaled", env={**llm, "RELAYBUS_TEST_STALL_FILE": str(stalled)}, args=args)
    task = AgentTask(topic=fleet.topic("journal"), prompt="resume me")
    async with ReplyRouter(fleet.bus) as router:
        pending = asyncio.ensure_future(router.request(task, timeout=120))
        await eventually(lambda: stalled.exists() or pending.done(), timeout=60)
        assert not pending.done(), pending.result()
        assert server.requests == 3  # turn 3's answer came, its tool hangs
        first.signal(signal.SIGKILL)
        await first.wait()
        second = await fleet.start("Journaled", env=llm, args=args)
        result = await pending
    assert result.ok, result.error
    assert result.output == "value of a | value of b | went on after turn 3"
    assert server.requests == 4  # the three turns done before the kill were replayed, not asked again
    assert result.worker == second.worker_id
    assert result.usage.prompt_tokens == sum(p for p, _ in TURNS)  # replayed turns still count
    assert result.usage.completion_tokens == sum(c for _, c in TURNS)
    journal = await store.journal(task.id)
    assert journal.steps == [0, 1, 2, 3, 4, 5, 6]  # 4 model answers and 3 tool results
    assert [entry.kind for entry in journal] == ["model", "tool"] * 3 + ["model"]
    assert "task_taken_over" in second.log()
    assert "loop_resumed_from_journal" in second.log()
    assert result.usage != Usage()


def delegating(seen: SeenRequest) -> ScriptedAnswer:
    """Turn 1 asks the counter to count "apples", turn 2 answers with what came back."""
    done = [m.content for m in seen.messages if isinstance(m, ToolResultMessage)]
    if not done:
        return ScriptedAnswer(tool_calls=[ScriptedToolCall("count", {"prompt": "apples"})], usage=(10, 1))
    return ScriptedAnswer(text=" | ".join(done), usage=(10, 1))


@pytest.mark.parametrize(
    "counter_restarted", [False, True], ids=["answered-from-cache", "answered-from-store"]
)
async def test_a_delegated_call_in_flight_when_its_caller_was_killed_is_not_run_twice(
    fleet: Fleet, state_url: str, tmp_path: Path, counter_restarted: bool
) -> None:
    counts, release = tmp_path / "counted", tmp_path / "release"
    counter_env = {"RELAYBUS_TEST_COUNT_FILE": str(counts), "RELAYBUS_TEST_RELEASE_FILE": str(release)}
    args = ("--state-url", state_url, "--lease", "2")
    async with FakeLLMServer(answers=delegating) as server:
        llm = {
            "RELAYBUS_LLM_PROVIDER": "openai",
            "OPENAI_BASE_URL": server.openai_base_url,
            "RELAYBUS_LLM_MODEL": "fake-model",
        }
        counter = await fleet.start("CountedOnce", env=counter_env, args=args)
        first = await fleet.start("JournaledDelegator", env=llm, args=args)
        task = AgentTask(topic=fleet.topic("journal.delegate"), prompt="count for me")
        async with ReplyRouter(fleet.bus) as router:
            pending = asyncio.ensure_future(router.request(task, timeout=120))
            await eventually(lambda: counts.exists() or pending.done(), timeout=60)
            assert not pending.done(), pending.result()
            first.signal(signal.SIGKILL)  # while its delegated call runs
            await first.wait()
            release.touch()  # the call finishes; its result goes to a caller that is gone
            if counter_restarted:
                await eventually(lambda: "task_done" in counter.log(), timeout=30)
                counter.signal(signal.SIGTERM)
                await counter.wait()
                counter = await fleet.start("CountedOnce", env=counter_env, args=args)
            second = await fleet.start("JournaledDelegator", env=llm, args=args)
            result = await pending
    assert result.ok, result.error
    assert result.output == "counted apples"
    assert result.worker == second.worker_id
    assert len(counts.read_text().splitlines()) == 1  # the side effect happened once
    assert server.requests == 2  # turn 1 came from the journal
    expected = (
        "duplicate_task_answered_from_store" if counter_restarted else "duplicate_task_answered_from_cache"
    )
    assert expected in counter.log()
