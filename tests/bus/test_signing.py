"""Signed messages (``SigningKey``, ``SignedBus``) on MemoryBus: what is covered, refused, shown."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from relaybus import AgentTask
from relaybus.agents import AgentWorker
from relaybus.bus.base import DEAD_LETTER_QUEUE, ERROR_HEADER, Delivery, OutgoingMessage
from relaybus.bus.memory import MemoryBus
from relaybus.bus.signing import SIGNATURE_HEADER, SignedBus, SigningKey
from relaybus.exceptions import ConfigError
from relaybus.orchestrator import ProjectOrchestrator
from tests.agents import sample_agents as sa

SECRET = "a shared secret of enough bytes"


def message(**changes: object) -> OutgoingMessage:
    base = OutgoingMessage(
        body=b'{"x": 1}',
        routing_key="q",
        exchange="",
        message_id="m1",
        correlation_id="c1",
        reply_to="relaybus.reply.a",
        headers={"relaybus-deadline": "123.5", "traceparent": "00-abc"},
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def deliveries_through(bus: SignedBus, *messages: OutgoingMessage) -> tuple[list[Delivery], list[str]]:
    """Publish ``messages`` raw to queue ``q``; return what the signed consumer got and the dead letters."""
    await bus.declare_queue("q")
    got: list[Delivery] = []
    dead: list[str] = []

    async def handler(delivery: Delivery) -> None:
        got.append(delivery)
        await delivery.ack()

    async def dead_handler(delivery: Delivery) -> None:
        dead.append(str(delivery.headers[ERROR_HEADER]))
        await delivery.ack()

    await bus.consume("q", handler)
    await bus.consume(DEAD_LETTER_QUEUE, dead_handler)
    for m in messages:
        await bus.inner.publish(m)
    for _ in range(100):
        if len(got) + len(dead) >= len(messages):
            break
        await asyncio.sleep(0.01)
    return got, dead


async def test_a_signed_message_passes_and_any_change_to_a_signed_part_is_refused() -> None:
    key = SigningKey(SECRET)
    good = key.sign(message())
    changed = [
        dataclasses.replace(good, body=b'{"x": 2}'),
        dataclasses.replace(good, correlation_id="c2"),
        dataclasses.replace(good, message_id="m2"),
        dataclasses.replace(good, reply_to="relaybus.reply.b"),
        dataclasses.replace(good, headers={**good.headers, "relaybus-deadline": "9e9"}),
    ]
    async with MemoryBus() as inner:
        got, dead = await deliveries_through(SignedBus(inner, key), good, *changed)
    assert [d.message_id for d in got] == ["m1"]
    assert len(dead) == 5
    assert all("does not match its content" in reason for reason in dead)


async def test_unsigned_and_wrongly_keyed_messages_are_refused_and_counted() -> None:
    key = SigningKey(SECRET)
    other = SigningKey("another secret of enough bytes")
    async with MemoryBus() as inner:
        bus = SignedBus(inner, key)
        got, dead = await deliveries_through(bus, message(), other.sign(message()))
    assert got == []
    assert f"no {SIGNATURE_HEADER} header" in dead[0]
    assert "signed with another key" in dead[1]
    assert bus.refused == 2


async def test_headers_outside_the_signed_set_may_change() -> None:
    key = SigningKey(SECRET)
    signed = key.sign(message())
    retraced = dataclasses.replace(signed, headers={**signed.headers, "traceparent": "00-other"})
    async with MemoryBus() as inner:
        got, dead = await deliveries_through(SignedBus(inner, key), retraced)
    assert (len(got), dead) == (1, [])


async def test_publishing_through_a_signed_bus_signs_and_verify_off_takes_anything() -> None:
    key = SigningKey(SECRET)
    async with MemoryBus() as inner:
        bus = SignedBus(inner, key, verify=False)
        got, dead = await deliveries_through(bus, message())
        await bus.publish(message(message_id="m2"))
        for _ in range(100):
            if len(got) == 2:
                break
            await asyncio.sleep(0.01)
    assert (len(got), dead) == (2, [])
    assert SIGNATURE_HEADER not in got[0].headers
    assert str(got[1].headers[SIGNATURE_HEADER]).startswith("v1=")
    assert key.check(got[1]) is None


def test_the_key_never_shows() -> None:
    key = SigningKey(SECRET)
    assert SECRET not in repr(key) + str(key)
    with pytest.raises(TypeError):
        vars(key)
    assert SECRET not in repr(SignedBus(MemoryBus(), key))


def test_a_short_key_or_a_missing_one_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="fewer than 16"):
        SigningKey("short")
    with pytest.raises(ConfigError, match="SigningKey"):
        SignedBus(MemoryBus(), SECRET)  # type: ignore[arg-type]
    assert SigningKey.from_env({}) is None
    assert SigningKey.from_env({"RELAYBUS_SIGNING_KEY": SECRET}) is not None


class RecordingSignedBus(SignedBus):
    """A SignedBus that records the routing key of each task event it publishes."""

    def __init__(self, bus: MemoryBus, key: SigningKey) -> None:
        super().__init__(bus, key)
        self.events_to: list[str] = []

    async def publish(self, message: OutgoingMessage) -> None:
        if "relaybus-event" in message.headers:
            self.events_to.append(message.routing_key)
        await super().publish(message)


async def test_a_streamed_tasks_events_reach_a_signing_caller_on_its_events_queue() -> None:

    key = SigningKey(SECRET)
    async with MemoryBus() as inner:
        worker_bus, caller_bus = RecordingSignedBus(inner, key), SignedBus(inner, key)
        async with (
            AgentWorker(worker_bus, [sa.Narrator()], heartbeat_interval_s=60),
            ProjectOrchestrator(caller_bus) as orchestrator,
        ):
            task = AgentTask(topic=sa.topic("narrate"), prompt="p")
            events = [e async for e in orchestrator.stream(task)]
    assert [(e.kind, e.text) for e in events[:-1]] == [("progress", "one"), ("progress", "two")]
    result = events[-1].result
    assert result is not None
    assert result.output == {"told": "p"}
    # both events went to the events queue, none to the reply queue
    assert [to.split(".")[1] for to in worker_bus.events_to] == [
        "events",
        "events",
    ]  # both events, none to the reply queue
    assert (worker_bus.refused, caller_bus.refused) == (0, 0)  # the event's signature covers its new route
