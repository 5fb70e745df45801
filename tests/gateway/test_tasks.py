"""TaskRegistry on the in-process MemoryBus: phases in order, idempotent ids, bounded retention, cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from relaybus import AgentTask, ExecutionStatus
from relaybus.agents import AgentWorker
from relaybus.bus.connect import connect
from relaybus.gateway import TaskPhase, TaskRegistry, TooManyTasks
from relaybus.orchestrator import ProjectOrchestrator

from .conftest import EchoAgent


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Setup:
    registry: TaskRegistry
    agent: EchoAgent
    clock: Clock


@pytest.fixture
async def setup(request: pytest.FixtureRequest) -> AsyncIterator[Setup]:
    limits = getattr(request, "param", {})
    bus = await connect("memory://")
    agent = EchoAgent()
    clock = Clock()
    async with AgentWorker(bus, [agent]), ProjectOrchestrator(bus) as orchestrator:
        registry = TaskRegistry(orchestrator, clock=clock, **limits)
        yield Setup(registry, agent, clock)
        await registry.close()
    await bus.close()


def _task(prompt: str = "p", **input: object) -> AgentTask:
    return AgentTask(topic="gw.echo", prompt=prompt, input=input)  # type: ignore[arg-type]


async def test_a_task_goes_submitted_working_finished_and_keeps_each_transition(setup: Setup) -> None:
    record, created = setup.registry.submit(_task("a"))
    assert created
    assert record.phase is TaskPhase.SUBMITTED
    assert await setup.registry.wait_finished(record, 10)
    assert [t.phase for t in record.transitions] == [
        TaskPhase.SUBMITTED,
        TaskPhase.WORKING,
        TaskPhase.FINISHED,
    ]
    assert record.result is not None
    assert record.result.output == {"echo": "a", "input": {}}
    seen = [t.phase async for t in setup.registry.transitions(record) if t is not None]
    assert seen == [TaskPhase.SUBMITTED, TaskPhase.WORKING, TaskPhase.FINISHED]
    assert setup.registry.in_flight == 0


async def test_the_same_task_id_is_submitted_once(setup: Setup) -> None:
    task = _task()
    first, created = setup.registry.submit(task)
    again, created_again = setup.registry.submit(task)
    assert again is first
    assert (created, created_again) == (True, False)
    await setup.registry.wait_finished(first, 10)
    assert len(setup.agent.started) == 1


@pytest.mark.parametrize("setup", [{"result_ttl_s": 60}], indirect=True)
async def test_a_finished_result_is_forgotten_after_the_ttl(setup: Setup) -> None:
    record, _ = setup.registry.submit(_task())
    await setup.registry.wait_finished(record, 10)
    setup.clock.now += 59
    assert setup.registry.get(record.id) is record
    setup.clock.now += 2
    assert setup.registry.get(record.id) is None
    assert setup.registry.retained == 0


@pytest.mark.parametrize("setup", [{"max_results": 3}], indirect=True)
async def test_only_the_newest_finished_results_are_kept(setup: Setup) -> None:
    records = [setup.registry.submit(_task(str(i)))[0] for i in range(5)]
    for record in records:
        await setup.registry.wait_finished(record, 10)
    assert setup.registry.retained == 3
    kept = {r.id for r in records if setup.registry.get(r.id) is not None}
    assert kept == {r.id for r in sorted(records, key=lambda r: r.updated_at)[-3:]}


@pytest.mark.parametrize("setup", [{"max_in_flight": 2}], indirect=True)
async def test_more_unfinished_tasks_than_allowed_are_refused(setup: Setup) -> None:
    running = [setup.registry.submit(_task(sleep_s=0.5))[0] for _ in range(2)]
    with pytest.raises(TooManyTasks, match="retry later"):
        setup.registry.submit(_task())
    for record in running:
        await setup.registry.wait_finished(record, 10)
    setup.registry.submit(_task())  # room again once they finished


async def test_a_task_cancelled_before_it_was_handed_to_the_bus_is_never_published(setup: Setup) -> None:
    record, _ = setup.registry.submit(_task())
    await setup.registry.cancel(record.id, "changed my mind")  # before its runner got to run
    assert record.result is not None
    assert record.result.status is ExecutionStatus.CANCELLED
    await asyncio.sleep(0.1)
    assert setup.agent.started == {}
    assert [t.phase for t in record.transitions] == [TaskPhase.SUBMITTED, TaskPhase.FINISHED]


async def test_cancelling_a_running_task_stops_it_on_the_worker(setup: Setup) -> None:
    record, _ = setup.registry.submit(_task(sleep_s=30))
    await setup.agent.wait_started(str(record.id))
    await setup.registry.cancel(record.id)
    assert record.result is not None
    assert record.result.status is ExecutionStatus.CANCELLED
    await setup.agent.wait_cancelled(str(record.id))
    finished = record.result
    await setup.registry.cancel(record.id)  # a finished task: nothing changes
    assert record.result is finished


async def test_stop_waiting_wakes_waiters_and_streams_while_the_task_goes_on(setup: Setup) -> None:
    record, _ = setup.registry.submit(_task(sleep_s=0.5))
    waiter = asyncio.create_task(setup.registry.wait_finished(record, 30))

    async def follow() -> list[TaskPhase]:
        return [t.phase async for t in setup.registry.transitions(record) if t is not None]

    stream = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    setup.registry.stop_waiting()
    assert await asyncio.wait_for(waiter, 1) is False
    assert TaskPhase.FINISHED not in await asyncio.wait_for(stream, 1)


async def test_an_idle_stream_yields_none_for_keep_alives(setup: Setup) -> None:
    record, _ = setup.registry.submit(_task(sleep_s=0.35))
    items = [t async for t in setup.registry.transitions(record, idle_s=0.1)]
    assert None in items
    assert [t.phase for t in items if t is not None][-1] is TaskPhase.FINISHED
