"""AmqpBus survives a RabbitMQ restart: nothing published is lost, consumers come back by themselves.

Stops the shared broker's application (``rabbitmqctl stop_app``) for a few seconds; the fixture always starts
it again and waits until it answers, whatever the test did.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from uuid import uuid4

import pytest

from relaybus.bus.amqp import AmqpBus
from relaybus.bus.amqp_writes import WRITE_QUEUE_FRAMES
from relaybus.bus.base import Delivery, OutgoingMessage
from relaybus.exceptions import BusError, ConnectionFailed
from relaybus.secrets import mask_url

from .amqp_support import Broker, broker, unique

__all__ = ["broker"]  # the fixture, used by this module's tests

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.broker_restart]

TASKS = 1000
RESTART_AFTER = 300


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
            # the new connection's writes are coalesced again, its write queue widened again
            conn = bus._conn
            assert conn is not None
            assert conn.transport is not None
            assert conn.writes.writer is not None
            assert conn.writes.writer.flushes >= 1
            assert conn.transport.connection.write_queue.maxsize == WRITE_QUEUE_FRAMES  # type: ignore[attr-defined]
        finally:
            await broker.start()
            await bus.delete_queue(queue)


async def test_a_result_sent_before_the_caller_reconnects_waits_in_its_reply_queue(
    amqp_url: str, broker: Broker
) -> None:
    """Why anonymous reply queues are durable (with x-expires): after a broker restart, a worker may publish a
    result before the caller's connection is back. An exclusive queue would be gone then (NoRoute, result
    lost); the durable one is there, keeps the result, and the caller gets it once it reconnects."""
    from relaybus.bus.codec import encode_result
    from relaybus.bus.rpc import ReplyRouter
    from relaybus.messages import ExecutionResult

    async with (
        AmqpBus(amqp_url, reconnect_interval=20.0, reconnect_timeout=60) as caller_bus,
        AmqpBus(amqp_url, reconnect_interval=0.3, reconnect_timeout=60) as worker_bus,
        ReplyRouter(caller_bus) as router,
    ):
        result = ExecutionResult.success(uuid4(), "made during the caller's outage")
        waiting = router.expect(result.task_id)
        await broker.restart()
        # The worker's bus is back within a fraction of a second, the caller's only after 10-20 s (its
        # interval with jitter: half of it at least, more than a slow restart takes).
        assert not caller_bus.is_connected
        await worker_bus.publish(encode_result(result, reply_to=router.queue))
        assert not caller_bus.is_connected  # published while the caller was still away
        got = await asyncio.wait_for(waiting, 45)
        assert got.output == "made during the caller's outage"
