"""``execute_tasks`` holds many tasks in flight with a future each, not an asyncio Task each.

The promises are those of ``execute_task``, for every task of the batch: the first result wins, a task past
its own deadline ends TIMEOUT and its worker is told to stop, a refused publish ends the task at once, and
``cancel()`` ends one wait at once.
"""

from __future__ import annotations

import asyncio

from relaybus import AgentTask, ExecutionStatus
from relaybus.bus.memory import MemoryBus
from relaybus.orchestrator import ProjectOrchestrator
from relaybus.orchestrator.batch import PUBLISHERS

from .conftest import eventually
from .responder import Responder, echo
from .test_orchestrator import cancel_listener


async def test_thousands_in_flight_need_a_bounded_number_of_asyncio_tasks(bus: MemoryBus) -> None:
    silent = Responder(bus, behave=lambda _task: None)  # takes every task, never answers
    await silent.start()
    tasks = [AgentTask(topic="work.silent", timeout_s=60) for _ in range(3000)]
    async with ProjectOrchestrator(bus) as orchestrator:
        before = len(asyncio.all_tasks())
        batch = asyncio.create_task(orchestrator.execute_tasks(tasks))
        await eventually(lambda: len(silent.seen) == len(tasks), what="every task to be delivered")
        assert orchestrator.in_flight == len(tasks)
        assert len(asyncio.all_tasks()) - before < PUBLISHERS + 10  # the bus's own delivery tasks aside
        batch.cancel()
        await asyncio.gather(batch, return_exceptions=True)
        assert orchestrator.in_flight == 0  # a cancelled batch stops waiting for every task


async def test_each_task_ends_at_its_own_deadline_and_its_worker_is_told_to_stop(bus: MemoryBus) -> None:
    worker = Responder(bus, behave=lambda task: None if task.prompt == "silent" else echo(task))
    await worker.start()
    cancels = await cancel_listener(bus)
    tasks = [
        AgentTask(topic="work.a", prompt="silent", timeout_s=0.5),
        AgentTask(topic="work.a", prompt="answered", timeout_s=30),
        AgentTask(topic="work.a", prompt="silent", timeout_s=0.2),
    ]
    async with ProjectOrchestrator(bus) as orchestrator:
        results = await asyncio.wait_for(orchestrator.execute_tasks(tasks), 20)
        await bus.join("test.cancels")
    assert [r.status for r in results] == [
        ExecutionStatus.TIMEOUT,
        ExecutionStatus.SUCCESS,
        ExecutionStatus.TIMEOUT,
    ]
    assert results[0].error is not None
    assert "0.5s" in results[0].error.message
    assert sorted(c.task_id for c in cancels) == sorted([tasks[0].id, tasks[2].id])
    assert orchestrator.in_flight == 0


async def test_cancel_ends_one_task_of_a_running_batch_and_the_others_carry_on(bus: MemoryBus) -> None:
    worker = Responder(bus, delay=lambda task: 0.5 if task.prompt == "slow" else 30)
    await worker.start()
    slow, stuck = AgentTask(topic="work.c", prompt="slow"), AgentTask(topic="work.c", prompt="stuck")
    async with ProjectOrchestrator(bus) as orchestrator:
        batch = asyncio.create_task(orchestrator.execute_tasks([slow, stuck]))
        await eventually(lambda: len(worker.seen) == 2, what="both tasks to reach the worker")
        await orchestrator.cancel(stuck.id, "not needed")
        results = await asyncio.wait_for(batch, 20)
    assert [r.status for r in results] == [ExecutionStatus.SUCCESS, ExecutionStatus.CANCELLED]


async def test_tasks_nobody_subscribes_to_end_at_once_beside_those_that_run(bus: MemoryBus) -> None:
    worker = Responder(bus)
    await worker.start()
    tasks = [AgentTask(topic="work.ok", timeout_s=60), AgentTask(topic="nobody.here", timeout_s=60)]
    async with ProjectOrchestrator(bus) as orchestrator:
        results = await asyncio.wait_for(orchestrator.execute_tasks(tasks), 20)
    assert [r.status for r in results] == [ExecutionStatus.SUCCESS, ExecutionStatus.REJECTED]


async def test_an_empty_batch_returns_nothing(bus: MemoryBus) -> None:
    async with ProjectOrchestrator(bus) as orchestrator:
        assert await orchestrator.execute_tasks([]) == []
