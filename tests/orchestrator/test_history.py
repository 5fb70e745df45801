"""Run history: an orchestrator with a state store records each plan run, and resumes a recorded run id."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from relaybus.agents import Agent, AgentContext, AgentWorker
from relaybus.bus.base import Delivery
from relaybus.bus.memory import MemoryBus
from relaybus.bus.topic import topic_binding
from relaybus.exceptions import ConfigError
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus, Usage
from relaybus.orchestrator import ModelPrice, Plan, ProjectOrchestrator
from relaybus.state import StateStore, TaskState, store_from_url
from relaybus.telemetry import start_trace
from relaybus.telemetry.trace_context import trace_id_of


class Worded(Agent):
    """Answers with the prompt's words; a prompt "fail" fails; counts runs per prompt."""

    name = "worded"
    topics = ("words.*",)
    runs: dict[str, int]

    def __init__(self) -> None:
        self.runs = {}

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        self.runs[task.prompt] = self.runs.get(task.prompt, 0) + 1
        if task.prompt == "fail":
            raise ValueError("asked to fail")
        return ExecutionResult.success(
            task.id, task.prompt.split(), usage=Usage(prompt_tokens=10, completion_tokens=5)
        )


def plan_of(*prompts: str, chain: bool = False) -> Plan:
    tasks: list[AgentTask] = []
    for prompt in prompts:
        deps = (tasks[-1].id,) if chain and tasks else ()
        tasks.append(AgentTask(topic="words.count", prompt=prompt, depends_on=deps, metadata={"model": "m"}))
    return Plan(tuple(tasks), name="words", keys={task.id: task.prompt for task in tasks})


@pytest.fixture
async def store(state_url: str) -> AsyncIterator[StateStore]:
    async with store_from_url(state_url) as opened:
        yield opened


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    async with MemoryBus(close_timeout=1) as memory_bus:
        yield memory_bus


async def test_a_plan_run_is_recorded_with_each_tasks_status_worker_timings_usage_cost_and_result(
    bus: MemoryBus, store: StateStore
) -> None:
    plan = plan_of("one two", "fail", "never runs", chain=True)
    prices = {"m": ModelPrice(prompt_per_million=1e6)}
    async with (
        AgentWorker(bus, [Worded()], worker_id="w1"),
        ProjectOrchestrator(bus, state=store, prices=prices) as orchestrator,
    ):
        result = await orchestrator.run_plan(plan, run_id="run-a")
    assert not result.ok
    [summary] = await store.runs()
    assert (summary.run_id, summary.name, summary.task_count) == ("run-a", "words", 3)
    assert summary.statuses == {TaskState.SUCCESS: 1, TaskState.FAILURE: 1, TaskState.CANCELLED: 1}
    assert summary.is_finished
    assert summary.tokens == 15  # the one success reported 10 + 5 tokens; the failure none
    detail = await store.run("run-a")
    assert detail is not None
    one, failed, cancelled = detail.tasks
    assert [task.key for task in detail.tasks] == ["one two", "fail", "never runs"]  # plan order
    assert (one.status, one.worker, one.attempts) == (TaskState.SUCCESS, "w1", 1)
    assert one.result is not None
    assert one.result.output == ["one", "two"]
    assert one.published_at is not None
    assert one.finished_at is not None
    assert one.duration_s is not None
    assert one.cost == pytest.approx(10.0)
    assert [event.kind for event in one.events] == ["published", "finished"]
    assert failed.status is TaskState.FAILURE
    assert failed.result is not None
    assert failed.result.error is not None
    assert failed.result.error.type == "ValueError"
    assert cancelled.status is TaskState.CANCELLED  # its dependency failed: never published
    assert cancelled.published_at is None


async def tap(bus: MemoryBus, pattern: str) -> dict[str, str | None]:
    """Message id -> the trace id in the ``traceparent`` of every message published to ``pattern`` from now
    on (a queue of its own, beside the agents')."""
    seen: dict[str, str | None] = {}

    async def keep(delivery: Delivery) -> None:
        seen[str(delivery.message_id)] = trace_id_of(delivery.headers)
        await delivery.ack()

    await bus.declare_queue("tap", bindings=[pattern], durable=False)
    await bus.consume("tap", keep)
    return seen


@pytest.mark.parametrize("in_a_trace", [False, True], ids=["outside-any-trace", "in-the-callers-trace"])
async def test_each_task_is_recorded_with_the_trace_id_its_published_message_carries(
    bus: MemoryBus, store: StateStore, in_a_trace: bool
) -> None:
    plan = plan_of("one", "two", "three", chain=True)
    published = await tap(bus, topic_binding("words.*"))
    progress: dict[str, str | None] = {}
    async with AgentWorker(bus, [Worded()]), ProjectOrchestrator(bus, state=store) as orchestrator:
        with contextlib.ExitStack() as stack:
            caller = stack.enter_context(start_trace("caller")) if in_a_trace else None
            await orchestrator.run_plan(
                plan,
                run_id="traced",
                on_progress=lambda e: (
                    progress.update({str(e.task.id): e.trace_id}) if e.kind == "published" else None
                ),
            )
        await bus.join()
    detail = await store.run("traced")
    assert detail is not None
    stored = {str(task.task_id): task.trace_id for task in detail.tasks}
    assert set(published) == set(stored)  # each task published once, to the tap too
    assert stored == published
    assert progress == published  # what on_progress is told is what the message carries
    assert all(trace_id is not None and len(trace_id) == 32 for trace_id in stored.values())
    if in_a_trace:
        assert set(stored.values()) == {caller}
    else:
        assert len(set(stored.values())) == 3  # a task published outside any trace starts its own


async def test_a_recorded_run_id_resumes_with_the_stored_results_without_publishing_them_again(
    bus: MemoryBus, store: StateStore
) -> None:
    plan = plan_of("first", "second")
    agent = Worded()
    async with AgentWorker(bus, [agent]), ProjectOrchestrator(bus, state=store) as orchestrator:
        first = await orchestrator.run_plan(plan, run_id="again")
        published: list[str] = []
        again = await orchestrator.run_plan(
            plan,
            run_id="again",
            on_progress=lambda e: published.append(e.key) if e.kind == "published" else None,
        )
    assert agent.runs == {"first": 1, "second": 1}
    assert published == []  # answered from the store: nothing went to the bus
    assert again.results == first.results
    assert len(await store.runs()) == 1


async def test_a_task_cancelled_by_the_caller_is_left_unfinished_so_that_a_resumed_run_runs_it(
    bus: MemoryBus, store: StateStore
) -> None:
    class Slow(Worded):
        async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
            await asyncio.sleep(60)

    plan = plan_of("slow")
    [task] = plan.tasks
    async with AgentWorker(bus, [Slow()]), ProjectOrchestrator(bus, state=store) as orchestrator:
        running = asyncio.ensure_future(orchestrator.run_plan(plan, run_id="cut"))
        while orchestrator.in_flight == 0:
            await asyncio.sleep(0.01)
        await orchestrator.cancel(task.id)
        result = await running
    assert result.results[task.id].status is ExecutionStatus.CANCELLED
    detail = await store.run("cut")
    assert detail is not None
    assert detail.tasks[0].status is TaskState.PUBLISHED
    assert not detail.is_finished


async def test_a_run_id_recorded_for_another_plan_is_refused(bus: MemoryBus, store: StateStore) -> None:
    async with AgentWorker(bus, [Worded()]), ProjectOrchestrator(bus, state=store) as orchestrator:
        await orchestrator.run_plan(plan_of("x"), run_id="taken")
        other = Plan(plan_of("y").tasks, name="another-plan")
        with pytest.raises(ConfigError, match="taken"):
            await orchestrator.run_plan(other, run_id="taken")


async def test_the_orchestrator_opens_a_store_it_is_given_closed_and_closes_it(
    bus: MemoryBus, state_url: str
) -> None:
    store = store_from_url(state_url)
    async with AgentWorker(bus, [Worded()]), ProjectOrchestrator(bus, state=store) as orchestrator:
        await orchestrator.run_plan(plan_of("x"))
        assert store.is_open
    assert not store.is_open
