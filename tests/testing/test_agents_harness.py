"""relaybus.testing.agents: the same custom-agent scenarios as the RabbitMQ process tests, in memory.

``tests/agents/test_worker_processes.py`` deploys these agents as ``relaybus worker`` processes; here the
harness runs them on real AgentWorkers over a MemoryBus, as a user tests an agent before deploying it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from relaybus.agents import Agent, AgentContext
from relaybus.bus.memory import MemoryBus
from relaybus.exceptions import ConfigError, UsageError
from relaybus.executor.llm.chat import UserMessage
from relaybus.messages import AgentTask, ExecutionStatus
from relaybus.testing.agents import AgentTestHarness, FakeExecutor
from tests.agents import sample_agents as sa
from tests.eventually import eventually


async def test_500_tasks_are_spread_over_two_workers() -> None:
    async with AgentTestHarness([sa.Echo], workers=2, concurrency=8) as h:
        tasks = [
            AgentTask(topic=sa.topic("echo"), prompt=f"task-{i}", input={"sleep_s": 0.001})
            for i in range(500)
        ]
        results = await h.run_many(tasks)
        ids = {w.worker_id for w in h.workers}
    assert [r.output for r in results] == [{"echo": f"task-{i}"} for i in range(500)]
    by_worker = Counter(r.worker for r in results)
    assert set(by_worker) == ids
    assert len(ids) == 2
    assert min(by_worker.values()) >= 50, by_worker


async def test_delegation_chain_across_two_workers() -> None:
    async with AgentTestHarness([sa.ChainA, sa.ChainB, sa.ChainC], workers=2) as h:
        result = await h.run(AgentTask(topic=sa.topic("chain.a"), prompt="x"))
    assert result.output == {"text": "x>a>b>c<b<a", "chain": [sa.name("chain-a"), sa.name("chain-b")]}


async def test_a_stopped_worker_returns_its_task_and_the_other_finishes_it() -> None:
    """The in-memory counterpart of SIGKILL: one worker stops with no grace mid-task, nothing is lost."""
    async with AgentTestHarness([sa.Echo], workers=2, grace_s=0) as h:
        first, second = h.workers
        await second.stop()  # only `first` consumes while the task starts
        task = AgentTask(topic=sa.topic("echo"), prompt="survivor", input={"sleep_s": 0.3, "announce": True})
        pending = asyncio.create_task(h.run(task))
        await eventually(lambda: h.events(sa.topic("started")))
        rescuer = AgentTestHarness([sa.Echo], bus=h.bus, worker_id="rescuer")
        await first.stop(grace_s=0)
        async with rescuer:
            result = await pending
    assert result.ok
    assert result.output == {"echo": "survivor"}
    assert result.worker == "rescuer"


async def test_harness_on_a_bus_you_pass_leaves_it_open() -> None:
    async with MemoryBus() as bus:
        async with AgentTestHarness([sa.Echo()], bus=bus) as h:
            assert (await h.run(AgentTask(topic=sa.topic("echo"), prompt="a"))).ok
        assert bus.is_connected


async def test_run_times_out_with_a_timeout_result_when_nobody_answers() -> None:
    async with AgentTestHarness([sa.Echo()]) as h:
        task = AgentTask(topic=sa.topic("echo"), input={"sleep_s": 30})
        result = await h.run(task, timeout=0.2)
    assert result.status is ExecutionStatus.TIMEOUT


async def test_fake_executor_records_calls_and_can_be_cancelled() -> None:
    executor = FakeExecutor(delay_s=30)
    task = AgentTask(topic="t", prompt="two words")
    running = asyncio.create_task(executor.execute(task, agent="a"))
    await eventually(lambda: executor.calls)
    assert executor.cancel(task.id) is True
    result = await running
    assert result.status is ExecutionStatus.CANCELLED
    assert executor.calls == [task]
    assert executor.cancel(task.id) is False


async def test_fake_executor_reports_usage_and_custom_answers() -> None:
    executor = FakeExecutor(respond=lambda task, agent: {"len": len(task.prompt)})
    result = await executor.execute(AgentTask(topic="t", prompt="three small words"))
    assert result.output == {"len": 17}
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.requests) == (3, 1, 1)


def test_workers_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="workers must be at least 1, got 0"):
        AgentTestHarness([sa.Echo()], workers=0)


async def test_running_a_task_outside_the_async_with_block_is_a_usage_error() -> None:
    harness = AgentTestHarness([sa.Echo()])
    with pytest.raises(UsageError, match="inside `async with"):
        await harness.run(AgentTask(topic=sa.topic("echo")))
    async with harness:
        pass
    with pytest.raises(UsageError, match="inside `async with"):  # nor after it
        await harness.run(AgentTask(topic=sa.topic("echo")))


async def test_fake_executor_answers_model_turns_from_its_script_and_records_them() -> None:
    executor = FakeExecutor(script=["first", "second"])
    one = await executor.chat([UserMessage("a")])
    two = await executor.chat([UserMessage("b")])
    three = await executor.chat([UserMessage("c")])  # the script ran out: the turn fails, chat does not raise
    assert [t.completion.text for t in (one, two) if t.completion] == ["first", "second"]
    assert [r.user for r in executor.requests] == ["a", "b", "c"]
    assert three.failure is not None
    assert three.failure.type == "ConfigError"
    assert one.usage.requests == 1


async def test_fake_executor_without_a_script_replies_like_the_fake_server() -> None:
    turn = await FakeExecutor().chat([UserMessage("hello")])
    assert turn.completion is not None
    assert turn.completion.text == "fake reply: hello"


def test_a_script_goes_with_a_fake_executor_not_with_an_executor_of_ones_own() -> None:
    with pytest.raises(ConfigError, match="an executor or a script, not both"):
        AgentTestHarness([sa.Echo()], executor=FakeExecutor(), script=["x"])
    with pytest.raises(ConfigError, match="a script or a provider, not both"):
        FakeExecutor(script=["x"], provider=FakeExecutor().provider)


async def test_the_harness_streams_a_task_and_shows_its_events() -> None:
    class Stepper(Agent):
        name = "stepper"
        topics = ("steps.run",)

        async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
            await ctx.emit("progress", text="one")
            await ctx.emit("progress", text="two")
            return "done"

    async with AgentTestHarness([Stepper()]) as h:
        kinds = [event.kind async for event in h.stream(AgentTask(topic="steps.run"))]
        result, events = await h.run_streamed(AgentTask(topic="steps.run"))
        plain = await h.run(AgentTask(topic="steps.run"))
    assert kinds == ["progress", "progress", "result"]
    assert [e.text for e in events[:-1]] == ["one", "two"]
    assert result.output == plain.output == "done"
