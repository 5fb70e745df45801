"""A ``relaybus worker`` process rides out a RabbitMQ restart: in-flight tasks finish once, new ones run.

Stops the shared broker's application for about a second (the fixture always starts it again).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest

from relaybus.bus.rpc import ReplyRouter
from relaybus.messages import AgentTask, ExecutionStatus
from tests.bus import amqp_support
from tests.bus.amqp_support import Broker

from . import processes
from .processes import Fleet

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.broker_restart]
fleet = processes.fleet
broker = amqp_support.broker


async def test_worker_resumes_after_a_broker_restart_and_runs_each_task_once(
    fleet: Fleet, broker: Broker
) -> None:
    worker = await fleet.start("Echo", log_level="DEBUG")  # task_done is DEBUG on success
    started_key = f"event.{fleet.topic('started')}"
    # A named router has a durable reply queue: results published while it reconnects wait there for it.
    router = ReplyRouter(fleet.bus, name=f"test-restart-{uuid.uuid4().hex[:8]}")
    await router.start()
    try:
        tasks = [
            AgentTask(
                topic=fleet.topic("echo"), prompt=f"through-{i}", input={"sleep_s": 3, "announce": True}
            )
            for i in range(3)
        ]
        pending = [asyncio.ensure_future(router.request(t, timeout=90)) for t in tasks]
        await fleet.wait_for(lambda e: e.routing_key == started_key, count=3, what="3 tasks running")
        await broker.restart()
        results = await asyncio.gather(*pending)
        assert [r.status for r in results] == [ExecutionStatus.SUCCESS] * 3
        assert [r.output for r in results] == [{"echo": f"through-{i}"} for i in range(3)]
        after = await router.request(AgentTask(topic=fleet.topic("echo"), prompt="after"), timeout=60)
        assert after.ok, after.error
        assert after.worker == worker.worker_id
    finally:
        await router.close()
        await fleet.bus.delete_queue(router.queue)
    # Redelivered after the restart (their acks were lost with the connection), but answered from the
    # worker's result cache: each task ran once.
    runs = Counter(e.payload["task_id"] for e in fleet.events if e.routing_key == started_key)
    assert runs == Counter({str(t.id): 1 for t in tasks})
    assert worker.log().count('"event": "task_done"') == 4, worker.log()[-3000:]
    assert worker.proc.returncode is None
