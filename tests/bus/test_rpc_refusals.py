"""A result the caller refuses ends its task at once as FAILURE ``InvalidResult`` with the reason (and is
dead-lettered), not as a TIMEOUT blaming a slow worker; a naive timestamp is one such refusal, so ``run_plan``
never meets it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from relaybus.bus.base import (
    DEAD_LETTER_QUEUE,
    DEFAULT_EXCHANGE,
    ERROR_HEADER,
    SCHEMA_HEADER,
    Delivery,
    OutgoingMessage,
)
from relaybus.bus.codec import decode
from relaybus.bus.memory import MemoryBus
from relaybus.bus.rpc import ReplyRouter
from relaybus.messages import AgentTask, ExecutionStatus
from relaybus.orchestrator import ProjectOrchestrator
from tests.bus.foreign import reply_raw

NOW = "2026-12-01T10:00:00+00:00"


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    async with MemoryBus() as memory_bus:
        yield memory_bus


async def foreign_worker(bus: MemoryBus, **extra: Any) -> None:
    """A worker of another make: answers each task with a result body holding ``extra``."""
    await bus.declare_queue("foreign", bindings=["task.#"])

    async def handle(delivery: Delivery) -> None:
        task = decode(delivery.body, delivery.headers, AgentTask)
        body = {"task_id": str(task.id), "status": "success", "output": task.prompt, **extra}
        await reply_raw(bus, delivery, body)
        await delivery.ack()

    await bus.consume("foreign", handle)


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"cost": 1}, "cost: Extra inputs are not permitted"),
        ({"status": "done"}, "status: Input should be 'success'"),
        (
            {"started_at": "2026-12-01T10:00:00", "finished_at": NOW},
            "started_at: Input should have timezone info",
        ),
    ],
)
async def test_a_refused_result_ends_its_task_as_invalid_result_at_once(
    bus: MemoryBus, extra: dict[str, Any], reason: str
) -> None:
    await foreign_worker(bus, **extra)
    async with ReplyRouter(bus) as router:
        task = AgentTask(topic="t.x", prompt="p")
        result = await router.request(task, timeout=30)
    assert result.task_id == task.id
    assert result.status is ExecutionStatus.FAILURE
    assert result.error is not None
    assert result.error.type == "InvalidResult"
    assert reason in result.error.message
    letters: list[str] = []

    async def read(delivery: Delivery) -> None:
        letters.append(str(delivery.headers[ERROR_HEADER]))
        await delivery.ack()

    await bus.consume(DEAD_LETTER_QUEUE, read)
    await bus.join()
    assert len(letters) == 1
    assert reason in letters[0]


async def test_run_plan_with_naive_timestamps_from_a_worker_ends_invalid_without_type_error(
    bus: MemoryBus,
) -> None:
    await foreign_worker(bus, started_at="2026-12-01T10:00:00", finished_at=NOW)
    async with ProjectOrchestrator(bus) as orchestrator:
        first = AgentTask(topic="t.a", prompt="a")
        second = AgentTask(topic="t.b", prompt="b", depends_on=(first.id,))
        plan = await orchestrator.run_plan([first, second])
    assert plan.results[first.id].error is not None
    assert plan.results[first.id].error.type == "InvalidResult"
    assert plan.results[second.id].status is not ExecutionStatus.SUCCESS  # its dependency failed


async def test_an_invalid_result_nobody_waits_for_is_only_dead_lettered(bus: MemoryBus) -> None:
    async with ReplyRouter(bus) as router:
        task = AgentTask(topic="t.x")
        await bus.publish(
            OutgoingMessage(
                body=json.dumps({"task_id": str(task.id), "status": "?"}).encode(),
                routing_key=router.queue,
                exchange=DEFAULT_EXCHANGE,
                headers={SCHEMA_HEADER: 1},
            )
        )
        await bus.join()
        assert not router.expect(task.id).done()  # a later, valid result is still taken
