"""AmqpBus survives a RabbitMQ restart: nothing published is lost, consumers come back by themselves.

Stops the shared broker's application (``rabbitmqctl stop_app``) for a few seconds; the fixture always starts
it again and waits until it answers, whatever the test did.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import pytest

from relaybus.bus.amqp import AmqpBus
from relaybus.bus.base import Delivery, OutgoingMessage
from relaybus.exceptions import BusError

from .amqp_support import rabbitmqctl, unique

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


@pytest.fixture
async def restart_broker(amqp_url: str) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """``await restart()`` stops and starts the RabbitMQ application; teardown always brings it back."""
    parts = urlsplit(amqp_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5672

    async def restart() -> None:
        await rabbitmqctl("stop_app")
        await asyncio.sleep(1.0)  # stay down long enough for every client to notice
        await rabbitmqctl("start_app")

    try:
        yield restart
    finally:
        try:
            await rabbitmqctl("start_app")
        finally:
            deadline = time.monotonic() + 60
            while not await _answers(host, port):
                assert time.monotonic() < deadline, f"RabbitMQ at {host}:{port} did not come back in 60 s"
                await asyncio.sleep(0.5)


async def test_a_thousand_tasks_survive_a_broker_restart(
    amqp_url: str,
    restart_broker: Callable[[], Awaitable[None]],
    record_property: Callable[[str, object], None],
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
            ids = [f"{queue}-{i}" for i in range(TASKS)]
            restart: asyncio.Task[None] | None = None
            started = time.monotonic()
            for i, mid in enumerate(ids):
                if i == RESTART_AFTER:
                    restart = asyncio.create_task(restart_broker())
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
        finally:
            await producer.delete_queue(queue)
