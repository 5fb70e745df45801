"""AmqpBus survives a RabbitMQ restart: nothing published is lost, consumers come back by themselves.

Stops the shared broker's application (``rabbitmqctl stop_app``) for a few seconds; the fixture always starts
it again and waits until it answers, whatever the test did.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import pytest

from relaybus.bus.amqp import AmqpBus
from relaybus.bus.base import Delivery, OutgoingMessage
from relaybus.exceptions import BusError, ConnectionFailed
from relaybus.secrets import mask_url

from .amqp_support import heal_dead_letter_supervisor, rabbitmqctl, unique

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.broker_restart]

TASKS = 1000
RESTART_AFTER = 300


async def _answers(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
    except (OSError, TimeoutError):
        return False
    writer.close()
    await writer.wait_closed()
    return True


class Broker:
    """Stops and starts the shared RabbitMQ application (never the Erlang node)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    async def stop(self) -> None:
        await rabbitmqctl("stop_app")

    async def start(self) -> None:
        await rabbitmqctl("start_app")
        deadline = time.monotonic() + 60
        while not await _answers(self.host, self.port):
            assert time.monotonic() < deadline, (
                f"RabbitMQ at {self.host}:{self.port} did not come back in 60 s"
            )
            await asyncio.sleep(0.5)
        await heal_dead_letter_supervisor()

    async def restart(self) -> None:
        await self.stop()
        await asyncio.sleep(1.0)  # stay down long enough for every client to notice
        await self.start()


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[Broker]:
    """The broker of ``amqp_url``; teardown always starts it again and waits until it answers."""
    parts = urlsplit(amqp_url)
    b = Broker(parts.hostname or "127.0.0.1", parts.port or 5672)
    try:
        yield b
    finally:
        await b.start()
        # queues deleted by other test runs just after the restart can still stop it (see the helper)
        await asyncio.sleep(2.0)
        await heal_dead_letter_supervisor()


async def test_a_thousand_tasks_survive_a_broker_restart(
    amqp_url: str, broker: Broker, record_property: Callable[[str, object], None]
) -> None:
    options = {"reconnect_interval": 0.5, "reconnect_timeout": 60.0}
    queue = unique("restart")
    handled: Counter[str] = Counter()
    all_handled = asyncio.Event()
    ack_lost = 0

    async def handler(d: Delivery) -> None:
        nonlocal ack_lost
        handled[d.message_id or ""] += 1
        if len(handled) == TASKS:
            all_handled.set()
        await asyncio.sleep(0.01)  # "work": keeps deliveries in flight when the broker goes away
        try:
            await d.ack()
        except BusError:  # the channel died under us: RabbitMQ requeued it, we will see it again
            ack_lost += 1

    async with AmqpBus(amqp_url, **options) as producer, AmqpBus(amqp_url, **options) as consumer:
        await producer.declare_queue(queue, bindings=[f"task.{queue}"])
        try:
            await consumer.consume(queue, handler, prefetch=32)
            # a private reply queue: gone with the old connection, re-declared and consumed again by aio-pika
            replies: asyncio.Queue[bytes] = asyncio.Queue()
            reply_queue = unique("reply")
            await consumer.declare_queue(reply_queue, durable=False)

            async def on_reply(d: Delivery) -> None:
                await replies.put(d.body)
                await d.ack()

            await consumer.consume(reply_queue, on_reply)
            ids = [f"{queue}-{i}" for i in range(TASKS)]
            restart: asyncio.Task[None] | None = None
            started = time.monotonic()
            for i, mid in enumerate(ids):
                if i == RESTART_AFTER:
                    restart = asyncio.create_task(broker.restart())
                    await asyncio.sleep(0.3)  # let stop_app begin while we keep publishing
                await producer.publish(
                    OutgoingMessage(body=b"{}", routing_key=f"task.{queue}", message_id=mid)
                )
            assert restart is not None
            await restart
            await asyncio.wait_for(all_handled.wait(), 60)
            elapsed = time.monotonic() - started

            assert set(handled) == set(ids)  # every task handled at least once: none lost
            duplicates = sum(handled.values()) - TASKS
            record_property("duplicates", duplicates)
            print(
                f"\n{TASKS} tasks across a broker restart in {elapsed:.1f} s: {duplicates} duplicates"
                f" (removed by id), {ack_lost} acks lost with the old channel, reconnects "
                f"producer={producer.reconnect_count} consumer={consumer.reconnect_count}"
            )
            assert producer.reconnect_count >= 1
            assert consumer.reconnect_count >= 1
            await producer.publish(OutgoingMessage(body=b"reply", routing_key=reply_queue, exchange=""))
            assert await asyncio.wait_for(replies.get(), 20) == b"reply"
        finally:
            await producer.delete_queue(queue)


async def test_publish_during_an_outage_waits_then_fails_naming_the_url_and_recovers_after(
    amqp_url: str, broker: Broker
) -> None:
    queue = unique("outage")
    async with AmqpBus(amqp_url, reconnect_interval=0.5, reconnect_timeout=1.5) as bus:
        await bus.declare_queue(queue, bindings=[f"task.{queue}"])
        try:
            await broker.stop()
            with pytest.raises(ConnectionFailed) as err:
                await asyncio.wait_for(
                    bus.publish(OutgoingMessage(body=b"1", routing_key=f"task.{queue}")), 30
                )
            text = str(err.value)
            assert "was not restored within 1.5 s" in text
            assert mask_url(amqp_url) in text
            assert "\n" not in text
            await broker.start()
            bus.reconnect_timeout = 60.0
            # the same bus is usable again once aio-pika has restored its connection by itself
            await bus.publish(OutgoingMessage(body=b"2", routing_key=f"task.{queue}"))
            assert await bus.purge_queue(queue) == 1
            assert bus.reconnect_count >= 1
        finally:
            await broker.start()
            await bus.delete_queue(queue)
