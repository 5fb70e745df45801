"""Dead letters can be listed with their reasons, sent back where they came from, and purged.

Runs on MemoryBus and on a real RabbitMQ; the RabbitMQ side uses a vhost of its own so that purging
``relaybus.dead`` cannot touch what other test runs leave there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from relaybus.bus.base import SCHEMA_HEADER, Bus, Delivery, OutgoingMessage
from relaybus.bus.codec import decode_delivery, encode_task
from relaybus.bus.memory import MemoryBus
from relaybus.dlq import list_dead_letters, purge_dead_letters, replay_dead_letters
from relaybus.exceptions import ConfigError
from relaybus.messages import AgentTask


@pytest.fixture(params=["memory", pytest.param("amqp", marks=pytest.mark.integration)])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    if request.param == "memory":
        async with MemoryBus() as memory_bus:
            yield memory_bus
        return
    from relaybus.bus.amqp import AmqpBus

    url = request.getfixturevalue("amqp_vhost_url")
    async with AmqpBus(url, reconnect_timeout=10) as amqp_bus:
        yield amqp_bus


async def _dead_letter_some(bus: Bus, queue: str, tasks: list[AgentTask], bad: list[bytes]) -> None:
    """Publish ``bad`` bodies (refused by validation) and ``tasks`` (dead-lettered by the consumer)."""
    await bus.declare_queue(queue, bindings=[f"task.{queue}.#"])
    done = asyncio.Event()
    seen = 0

    async def handler(delivery: Delivery) -> None:
        nonlocal seen
        task = await decode_delivery(delivery, AgentTask)
        if task is not None:
            await delivery.dead_letter(f"gave up on {task.prompt}")
        seen += 1
        if seen == len(tasks) + len(bad):
            done.set()

    sub = await bus.consume(queue, handler)
    for i, body in enumerate(bad):
        await bus.publish(
            OutgoingMessage(
                body=body, routing_key=f"task.{queue}.x", message_id=f"bad-{i}", headers={SCHEMA_HEADER: 1}
            )
        )
    for task in tasks:
        await bus.publish(encode_task(task, reply_to=None))
    await asyncio.wait_for(done.wait(), 20)
    await sub.cancel()


async def test_list_shows_reasons_and_origin_and_keeps_the_letters(bus: Bus) -> None:
    queue = "dlqtest"
    tasks = [AgentTask(topic=f"{queue}.work", prompt=f"p{i}") for i in range(3)]
    await _dead_letter_some(bus, queue, tasks, [b"not json", b'{"topic": 1}'])

    letters = {letter.message_id: letter for letter in await list_dead_letters(bus, idle_s=0.5)}
    assert set(letters) == {str(t.id) for t in tasks} | {"bad-0", "bad-1"}
    assert "not valid JSON" in letters["bad-0"].reason
    assert "invalid AgentTask" in letters["bad-1"].reason
    first = letters[str(tasks[0].id)]
    assert first.reason == "gave up on p0"
    assert (first.queue, first.exchange, first.routing_key) == (queue, "relaybus", f"task.{queue}.work")
    assert first.preview.startswith("{")

    again = await list_dead_letters(bus, idle_s=0.5)
    assert len(again) == 5, "listing must not consume the letters"


async def test_replay_sends_chosen_letters_back_to_their_queue(bus: Bus) -> None:
    queue = "dlqreplay"
    tasks = [AgentTask(topic=f"{queue}.work", prompt=f"p{i}") for i in range(3)]
    await _dead_letter_some(bus, queue, tasks, [b"junk"])

    received: list[Delivery] = []
    got = asyncio.Event()

    async def handler(delivery: Delivery) -> None:
        received.append(delivery)
        await delivery.ack()
        got.set()

    report = await replay_dead_letters(bus, ids={str(tasks[1].id)}, idle_s=0.5)
    assert report.replayed == [str(tasks[1].id)]
    assert not report.failed
    sub = await bus.consume(queue, handler)
    await asyncio.wait_for(got.wait(), 10)
    await sub.cancel()
    assert [d.message_id for d in received] == [str(tasks[1].id)]
    assert "relaybus-error" not in received[0].headers, "the death reason is not sent back"
    assert {letter.message_id for letter in await list_dead_letters(bus, idle_s=0.5)} == {
        str(tasks[0].id),
        str(tasks[2].id),
        "bad-0",
    }


async def test_replay_with_a_fixed_body(bus: Bus) -> None:
    queue = "dlqfix"
    await _dead_letter_some(bus, queue, [], [b'{"topic": 1}'])
    fixed = encode_task(AgentTask(topic=f"{queue}.work", prompt="fixed"), reply_to=None)
    with pytest.raises(ConfigError, match="exactly one"):
        await replay_dead_letters(bus, replace_body=fixed.body)
    report = await replay_dead_letters(bus, ids=["bad-0"], replace_body=fixed.body, idle_s=0.5)
    assert report.replayed == ["bad-0"]

    bodies: list[AgentTask] = []
    got = asyncio.Event()

    async def handler(delivery: Delivery) -> None:
        task = await decode_delivery(delivery, AgentTask)
        assert task is not None, delivery.headers
        bodies.append(task)
        await delivery.ack()
        got.set()

    sub = await bus.consume(queue, handler)
    await asyncio.wait_for(got.wait(), 10)
    await sub.cancel()
    assert [t.prompt for t in bodies] == ["fixed"]


async def test_replay_keeps_letters_that_cannot_be_routed(bus: Bus) -> None:
    queue = "dlqgone"
    tasks = [AgentTask(topic=f"{queue}.work")]
    await _dead_letter_some(bus, queue, tasks, [])
    await bus.delete_queue(queue)
    report = await replay_dead_letters(bus, idle_s=0.5)
    assert list(report.failed) == [str(tasks[0].id)]
    assert "no queue is bound" in report.failed[str(tasks[0].id)]
    assert [x.message_id for x in await list_dead_letters(bus, idle_s=0.5)] == [str(tasks[0].id)]


async def test_purge_drops_every_letter(bus: Bus) -> None:
    await _dead_letter_some(bus, "dlqpurge", [], [b"a", b"b", b"c"])
    assert await purge_dead_letters(bus) == 3
    assert await list_dead_letters(bus, idle_s=0.3) == []


async def test_limit_is_checked(bus: Bus) -> None:
    with pytest.raises(ConfigError, match="limit"):
        await list_dead_letters(bus, limit=0)
