"""A task's deadline under a memory alarm, on a PRIVATE RabbitMQ node (never the shared one).

Under a memory alarm RabbitMQ stops reading from publishing connections (``connection.blocked``); before,
a task with ``timeout_s=3`` ended after 17.9 s (the publish waited up to the 60 s reconnect timeout before
the deadline timer even started). Here three such tasks all end as ``TIMEOUT`` (``PublishTimeout``) within a
small multiple of their 3 s, far below the bus's 60 s ``reconnect_timeout``; the blocked connection is
logged once (not once per task) with RabbitMQ's reason, the worker's health and ``relaybus agents`` say why
(the latter ends within its listening time instead of hanging on its ping), and once
the alarm clears tasks run again and the bus is no longer blocked.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from relaybus.agents import Agent, AgentContext, AgentWorker
from relaybus.bus.amqp import AmqpBus
from relaybus.cli.agents import blocked_warning, collect_heartbeats
from relaybus.messages import AgentTask, ExecutionStatus
from relaybus.orchestrator import ProjectOrchestrator
from relaybus.telemetry.health import worker_health
from relaybus.testing import FakeExecutor
from tests.eventually import eventually
from tests.rabbitmq_nodes import PrivateNode

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RECONNECT_TIMEOUT_S = 60.0


class Echo(Agent):
    name = "alarmed"
    topics = ("alarm.echo",)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> str:
        return task.prompt


async def test_the_deadline_bounds_a_publish_blocked_by_a_memory_alarm(private_node: PrivateNode) -> None:
    async with (
        AmqpBus(private_node.url, reconnect_timeout=RECONNECT_TIMEOUT_S) as bus,
        AgentWorker(bus, [Echo()], executor=FakeExecutor(), heartbeat_interval_s=60) as worker,
        ProjectOrchestrator(bus) as orchestrator,
    ):
        before = await orchestrator.execute_task(AgentTask(topic="alarm.echo", prompt="before", timeout_s=30))
        assert before.status is ExecutionStatus.SUCCESS
        await asyncio.to_thread(private_node.ctl, "set_vm_memory_high_watermark", "0.000001")
        try:
            started = time.monotonic()
            tasks = [AgentTask(topic="alarm.echo", prompt=f"blocked {i}", timeout_s=3) for i in range(3)]
            results = await orchestrator.execute_tasks(tasks)
            elapsed = time.monotonic() - started
            assert [r.status for r in results] == [ExecutionStatus.TIMEOUT] * 3
            assert results[0].error is not None
            assert results[0].error.type == "PublishTimeout"
            assert "RabbitMQ blocks publishing" in results[0].error.message
            assert elapsed < RECONNECT_TIMEOUT_S / 4, elapsed  # 3 s deadlines, not the 60 s reconnect wait
            print(f"3 tasks with timeout_s=3 under a memory alarm all ended after {elapsed:.1f} s")
            # One spell, logged once as a warning (the log line itself: tests/bus/test_amqp_blocked.py; a
            # capture here misses it when an earlier in-process CLI test made structlog cache its loggers).
            assert bus._link.blocked.spells == 1
            assert bus.blocked is not None
            assert "memory" in bus.blocked
            health = worker_health(bus, worker)
            assert not health.ok
            assert "blocks publishing" in health.reason
            async with AmqpBus(private_node.url) as cli_bus:  # what `relaybus agents` does, bounded
                beats = await asyncio.wait_for(collect_heartbeats(cli_bus, 1.0), RECONNECT_TIMEOUT_S / 4)
                warning = blocked_warning(cli_bus)
            assert beats == {}
            assert warning is not None
            assert "RabbitMQ blocks publishing" in warning
        finally:
            await asyncio.to_thread(private_node.ctl, "set_vm_memory_high_watermark", "0.4")
        await eventually(lambda: bus.blocked is None, timeout=30, what="the broker unblocked the connection")
        after = await orchestrator.execute_task(AgentTask(topic="alarm.echo", prompt="after", timeout_s=30))
        assert after.status is ExecutionStatus.SUCCESS
        assert worker_health(bus, worker).ok
