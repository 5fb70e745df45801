"""No junk from callers that left: a worker drops a task whose deadline passed before it started, and a
result whose anonymous caller is gone for good; both are logged and counted, neither is dead-lettered. A
result for a named caller's missing queue is still dead-lettered (that queue comes back)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from relaybus.agents import AgentWorker
from relaybus.bus.base import DEAD_LETTER_QUEUE, DEADLINE_HEADER, agent_queue_name
from relaybus.bus.codec import encode_task
from relaybus.bus.memory import MemoryBus
from relaybus.bus.rpc import ReplyRouter, is_private_reply_queue
from relaybus.exceptions import ConfigError
from relaybus.telemetry.metrics import WorkerMetrics
from relaybus.testing.agents import FakeExecutor
from tests.telemetry.scrape import sample

from .test_worker import Probe, Results, bus, dead_letters, probe_task

__all__ = ["bus"]  # the MemoryBus fixture of the worker tests


async def test_a_task_whose_deadline_passed_in_the_queue_is_dropped_unrun_and_counted(bus: MemoryBus) -> None:
    probe, metrics, results = Probe(), WorkerMetrics(), Results(bus)
    await results.start()
    task = probe_task("too late")
    async with AgentWorker(bus, [probe], executor=FakeExecutor(), metrics=metrics):
        headers = {DEADLINE_HEADER: f"{time.time() - 1:.3f}"}
        await bus.publish(encode_task(task, reply_to=results.queue, headers=headers))
        await bus.join(agent_queue_name("probe"))
    assert probe.calls == []
    assert results.items == []  # no TIMEOUT result: the caller stopped waiting at that deadline
    assert await dead_letters(bus) == []
    assert sample(metrics.render(), "relaybus_tasks_expired_total", agent="probe") == 1


async def test_a_task_whose_deadline_passes_while_it_waits_for_a_slot_is_dropped_too(bus: MemoryBus) -> None:
    probe, metrics, results = Probe(), WorkerMetrics(), Results(bus)
    await results.start()
    busy, waiting = probe_task("busy", sleep_s=1.0), probe_task("waits")
    async with AgentWorker(bus, [probe], executor=FakeExecutor(), concurrency=1, metrics=metrics):
        await bus.publish(encode_task(busy, reply_to=results.queue))
        await probe.started.wait()
        headers = {DEADLINE_HEADER: f"{time.time() + 0.2:.3f}"}
        await bus.publish(encode_task(waiting, reply_to=results.queue, headers=headers))
        await bus.join(agent_queue_name("probe"))
    assert [t.id for t in probe.calls] == [busy.id]
    assert [r.task_id for r in results.items] == [busy.id]
    assert await dead_letters(bus) == []
    assert sample(metrics.render(), "relaybus_tasks_expired_total", agent="probe") == 1


async def test_a_result_for_an_anonymous_caller_that_is_gone_is_dropped_and_counted(bus: MemoryBus) -> None:
    probe, metrics = Probe(), WorkerMetrics()
    router = ReplyRouter(bus)  # the queue name of an anonymous caller, never declared: it is gone
    assert is_private_reply_queue(router.queue)
    async with AgentWorker(bus, [probe], executor=FakeExecutor(), metrics=metrics):
        for _ in range(2):  # delivered twice (a lost ack): still one drop
            await bus.publish(encode_task(probe_task("nobody waits"), reply_to=router.queue))
        await bus.join(agent_queue_name("probe"))
    assert len(probe.calls) == 2  # two tasks with their own ids
    assert await dead_letters(bus) == []
    text = metrics.render()
    assert sample(text, "relaybus_results_orphaned_total", agent="probe") == 2
    assert sample(text, "relaybus_dead_letters_total", reason="reply_queue_gone") == 0


async def test_a_result_for_a_named_callers_missing_queue_is_still_dead_lettered(bus: MemoryBus) -> None:
    probe = Probe()
    async with AgentWorker(bus, [probe], executor=FakeExecutor()):
        await bus.publish(encode_task(probe_task(), reply_to="relaybus.reply.nightly"))
        await bus.join(agent_queue_name("probe"))
    [letter] = await dead_letters(bus)
    assert letter.routing_key == "relaybus.reply.nightly"
    await bus.join(DEAD_LETTER_QUEUE)


def test_only_anonymous_and_direct_reply_queues_are_private() -> None:
    assert is_private_reply_queue(f"relaybus.reply.{uuid.uuid4().hex}")
    assert is_private_reply_queue("amq.rabbitmq.reply-to.g1h2AA")
    assert not is_private_reply_queue("relaybus.reply.nightly")
    assert not is_private_reply_queue(f"relaybus.reply.{uuid.uuid4().hex}x")


async def test_a_router_name_of_the_anonymous_form_is_refused(bus: MemoryBus) -> None:
    with pytest.raises(ConfigError, match="32 hex digits"):
        ReplyRouter(bus, name=uuid.uuid4().hex)
    await asyncio.sleep(0)
