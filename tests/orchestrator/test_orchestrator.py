"""ProjectOrchestrator on the in-memory bus: single tasks, many tasks, deadlines, cancellation, refusals."""

from __future__ import annotations

import asyncio
import time

import pytest

from relaybus import AgentTask, ExecutionResult, ExecutionStatus, Usage
from relaybus.bus.base import CANCEL_ROUTING_KEY, DEADLINE_HEADER, Delivery, OutgoingMessage
from relaybus.bus.memory import MemoryBus
from relaybus.exceptions import BusError
from relaybus.messages import CancelRequest
from relaybus.orchestrator import ProjectOrchestrator

from .conftest import eventually
from .responder import Responder


async def cancel_listener(bus: MemoryBus) -> list[CancelRequest]:
    got: list[CancelRequest] = []

    async def handle(delivery: Delivery) -> None:
        got.append(CancelRequest.model_validate_json(delivery.body))
        await delivery.ack()

    await bus.declare_queue("test.cancels", bindings=[CANCEL_ROUTING_KEY], durable=False)
    await bus.consume("test.cancels", handle)
    return got


async def test_execute_task_returns_the_workers_result_and_sends_the_deadline(bus: MemoryBus) -> None:
    worker = Responder(bus)
    await worker.start()
    task = AgentTask(topic="work.one", prompt="hi", timeout_s=30)
    async with ProjectOrchestrator(bus) as orchestrator:
        before = time.time()
        result = await orchestrator.execute_task(task)
    assert result.status is ExecutionStatus.SUCCESS
    assert result.output == {"prompt": "hi", "input": {}}
    deadline = float(str(worker.by_id(task.id).headers[DEADLINE_HEADER]))
    assert before + 29 < deadline < time.time() + 31


async def test_execute_tasks_returns_results_in_the_order_of_the_tasks(bus: MemoryBus) -> None:
    # later tasks finish first, so arrival order is the reverse of task order
    worker = Responder(bus, delay=lambda t: 0.05 * (5 - int(t.prompt)))
    await worker.start()
    tasks = [AgentTask(topic="work.x", prompt=str(i)) for i in range(5)]
    async with ProjectOrchestrator(bus) as orchestrator:
        results = await orchestrator.execute_tasks([*tasks, tasks[0]])
    assert [r.task_id for r in results] == [t.id for t in tasks] + [tasks[0].id]
    assert [r.output["prompt"] for r in results] == ["0", "1", "2", "3", "4", "0"]  # type: ignore[index,call-overload]
    assert worker.ids().count(tasks[0].id) == 1


async def test_a_task_no_agent_subscribes_to_is_rejected_at_once_with_the_fix(bus: MemoryBus) -> None:
    async with ProjectOrchestrator(bus) as orchestrator:
        result = await orchestrator.execute_task(AgentTask(topic="nobody.listens", timeout_s=60))
    assert result.status is ExecutionStatus.REJECTED
    assert result.error is not None
    assert result.error.type == "NoRouteError"
    assert "task.nobody.listens" in result.error.message
    assert "relaybus worker" in result.error.message


async def test_a_worker_that_never_answers_gives_a_timeout_by_the_deadline(bus: MemoryBus) -> None:
    worker = Responder(bus, behave=lambda _t: None)
    await worker.start()
    cancels = await cancel_listener(bus)
    task = AgentTask(topic="work.silent", timeout_s=0.3)
    async with ProjectOrchestrator(bus) as orchestrator:
        started = time.monotonic()
        result = await orchestrator.execute_task(task)
        waited = time.monotonic() - started
        assert orchestrator.in_flight == 0
    assert result.status is ExecutionStatus.TIMEOUT
    assert result.error is not None
    assert result.error.retryable
    assert 0.25 < waited < 5
    await bus.join()
    assert [c.task_id for c in cancels] == [task.id]


async def test_a_late_result_after_the_timeout_is_dropped(bus: MemoryBus) -> None:
    worker = Responder(bus, delay=lambda t: 0.4 if t.prompt == "slow" else 0.0)
    await worker.start()
    async with ProjectOrchestrator(bus, default_timeout_s=0.1) as orchestrator:
        slow = AgentTask(topic="work.x", prompt="slow")
        assert (await orchestrator.execute_task(slow)).status is ExecutionStatus.TIMEOUT
        await bus.join()  # the worker answers late: its result arrives now
        assert orchestrator.duplicates_dropped == 1  # dropped, not kept for a later call
        fast = AgentTask(topic="work.x", prompt="fast", timeout_s=5)
        result = await orchestrator.execute_task(fast)
    assert result.task_id == fast.id
    assert result.ok


async def test_cancel_ends_the_wait_at_once_and_tells_the_worker(bus: MemoryBus) -> None:
    worker = Responder(bus, delay=lambda _t: 3)
    await worker.start()
    cancels = await cancel_listener(bus)
    task = AgentTask(topic="work.long", timeout_s=60)
    async with ProjectOrchestrator(bus) as orchestrator:
        running = asyncio.create_task(orchestrator.execute_task(task))
        await eventually(lambda: bool(worker.seen), what="the worker to get the task")
        await orchestrator.cancel(task.id, "the user changed their mind")
        result = await asyncio.wait_for(running, 5)
    assert result.status is ExecutionStatus.CANCELLED
    assert result.error is not None
    assert result.error.message == "the user changed their mind"
    await bus.join("test.cancels")  # the worker itself still sleeps: wait for the cancel listener only
    assert [(c.task_id, c.reason) for c in cancels] == [(task.id, "the user changed their mind")]


async def test_a_cancel_request_that_cannot_be_published_raises_after_ending_the_wait(
    bus: MemoryBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = Responder(bus, delay=lambda _t: 3)
    await worker.start()
    task = AgentTask(topic="work.long", timeout_s=60)
    publish = bus.publish

    async def refuse_cancels(message: OutgoingMessage) -> None:
        if message.routing_key == CANCEL_ROUTING_KEY:
            raise BusError("the broker refused the cancel request")
        await publish(message)

    async with ProjectOrchestrator(bus) as orchestrator:
        running = asyncio.create_task(orchestrator.execute_task(task))
        await eventually(lambda: bool(worker.seen), what="the worker to get the task")
        monkeypatch.setattr(bus, "publish", refuse_cancels)
        with pytest.raises(BusError, match="refused the cancel request"):
            await orchestrator.cancel(task.id, "stop")
        result = await asyncio.wait_for(running, 5)  # the wait here ended all the same
    assert result.status is ExecutionStatus.CANCELLED


@pytest.mark.slow
async def test_thousands_of_tasks_are_in_flight_at_once_through_one_reply_queue(bus: MemoryBus) -> None:
    worker = Responder(bus, delay=lambda _t: 0.3)
    await worker.start()
    tasks = [AgentTask(topic="work.many", prompt=str(i), timeout_s=120) for i in range(3000)]
    async with ProjectOrchestrator(bus) as orchestrator:
        started = time.monotonic()
        results = await orchestrator.execute_tasks(tasks)
        wall = time.monotonic() - started
    assert all(r.ok for r in results)
    assert [r.output["prompt"] for r in results] == [t.prompt for t in tasks]  # type: ignore[index,call-overload]
    assert worker.max_running >= 1000  # they overlapped instead of running one at a time (a loaded machine
    # publishes the last ones after the first finished: 1,631 of 3,000 at once was seen with load 12)
    assert wall < 0.05 * len(tasks) * 0.3  # generous: one after another would take 900 s


async def test_usage_in_results_is_passed_through(bus: MemoryBus) -> None:
    worker = Responder(
        bus,
        behave=lambda t: ExecutionResult.success(
            t.id, "ok", agent="echo", usage=Usage(prompt_tokens=7, completion_tokens=3, requests=1)
        ),
    )
    await worker.start()
    async with ProjectOrchestrator(bus) as orchestrator:
        result = await orchestrator.execute_task(AgentTask(topic="work.u"))
    assert result.usage == Usage(prompt_tokens=7, completion_tokens=3, requests=1)


async def test_a_repeated_result_is_dropped_and_counted(bus: MemoryBus) -> None:
    from relaybus.bus.codec import encode_result

    worker = Responder(bus)
    await worker.start()
    task = AgentTask(topic="work.one", prompt="once", timeout_s=30)
    async with ProjectOrchestrator(bus) as orchestrator:
        result = await orchestrator.execute_task(task)
        # what a redelivered task answered by a second worker looks like to the orchestrator
        again = ExecutionResult.success(task.id, "second answer")
        await bus.publish(encode_result(again, reply_to=orchestrator.reply_queue))
        await bus.join()
        assert orchestrator.duplicates_dropped == 1
    assert result.output == {"prompt": "once", "input": {}}
