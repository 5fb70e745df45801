"""``BlockedWatch`` on a stand-in for aiormq's connection; the deadline of a publish that never returns."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import structlog

from relaybus.bus.amqp_blocked import BlockedWatch
from relaybus.bus.base import OutgoingMessage
from relaybus.bus.memory import MemoryBus
from relaybus.bus.rpc import ReplyRouter
from relaybus.log import get_logger
from relaybus.messages import AgentTask, ExecutionStatus
from relaybus.orchestrator import ProjectOrchestrator


class Underlay:
    """What aiormq's Connection has: the two (name-mangled) handlers of the notifications."""

    def __init__(self) -> None:
        self.frames: list[Any] = []

    async def _Connection__handle_connection_blocked(self, frame: Any) -> None:
        self.frames.append(frame)

    async def _Connection__handle_connection_unblocked(self, frame: Any) -> None:
        self.frames.append(frame)


def connection(underlay: object) -> Any:
    return SimpleNamespace(transport=SimpleNamespace(connection=underlay))


async def test_a_blocked_spell_is_logged_once_and_its_reason_kept_until_unblocked() -> None:
    underlay = Underlay()
    watch = BlockedWatch(get_logger("test"))
    watch.attach(connection(underlay))
    with structlog.testing.capture_logs() as events:
        for _ in range(3):
            await underlay._Connection__handle_connection_blocked(SimpleNamespace(reason=b"low on memory"))
        assert watch.reason == "low on memory"
        await underlay._Connection__handle_connection_unblocked(SimpleNamespace())
    assert watch.reason is None
    assert [e["event"] for e in events] == ["amqp_connection_blocked", "amqp_connection_unblocked"]
    assert watch.spells == 1
    assert len(underlay.frames) == 4  # aiormq's own handling still runs


def test_without_the_hooks_the_watch_reports_nothing() -> None:
    watch = BlockedWatch(get_logger("test"))
    watch.attach(connection(object()))
    watch.attach(SimpleNamespace(transport=None))
    assert watch.reason is None


class BlockedBus(MemoryBus):
    """A MemoryBus whose task publishes never return, as under RabbitMQ's connection.blocked."""

    blocked = "low on memory"

    async def publish(self, message: OutgoingMessage) -> None:
        if message.routing_key.startswith("task."):
            await asyncio.Event().wait()
        await super().publish(message)


async def test_the_deadline_bounds_a_publish_that_never_returns() -> None:
    async with BlockedBus() as bus:
        await bus.declare_queue("relaybus.agent.a", bindings=["task.t"])
        async with ProjectOrchestrator(bus) as orchestrator:
            result = await orchestrator.execute_task(AgentTask(topic="t", prompt="p", timeout_s=0.2))
        async with ReplyRouter(bus) as router:
            routed = await router.request(AgentTask(topic="t", prompt="p"), timeout=0.2)
    for got in (result, routed):
        assert got.status is ExecutionStatus.TIMEOUT
        assert got.error is not None
        assert got.error.type == "PublishTimeout"
        assert "RabbitMQ blocks publishing (low on memory)" in got.error.message
