"""``AmqpSubscription`` keeps consuming when the broker cancels it: the queue is declared again (as this bus
declared it, with its bindings) or waited for (declared elsewhere), on the same connection."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pytest

from relaybus.bus.amqp import AmqpBus
from relaybus.bus.base import Delivery, OutgoingMessage
from relaybus.exceptions import NoRouteError
from tests.eventually import eventually

pytestmark = pytest.mark.integration


async def _delete_elsewhere(amqp_url: str, queue: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue)


async def test_a_consumer_whose_queue_someone_deletes_declares_it_again_with_its_bindings_and_goes_on(
    amqp_url: str,
) -> None:
    queue = f"relaybus.test.cancelled.{uuid.uuid4().hex[:8]}"
    got: list[bytes] = []

    async def handler(delivery: Delivery) -> None:
        got.append(delivery.body)
        await delivery.ack()

    async with AmqpBus(amqp_url) as bus:
        await bus.declare_queue(queue, bindings=[f"{queue}.#"])
        try:
            await bus.consume(queue, handler)
            await bus.publish(OutgoingMessage(b"before", routing_key=f"{queue}.a"))
            await eventually(lambda: got == [b"before"], timeout=10)

            await _delete_elsewhere(amqp_url, queue)  # the broker cancels the consumer (Basic.Cancel)

            async def arrives_again() -> bool:
                # Each try publishes through the topic exchange: refused as unroutable until the queue and
                # its binding are back, then consumed.
                try:
                    await bus.publish(OutgoingMessage(b"after", routing_key=f"{queue}.b"))
                except NoRouteError:
                    return False
                await asyncio.sleep(0.2)
                return b"after" in got

            await eventually(arrives_again, timeout=20)
            assert bus.reconnect_count == 0  # the rest of the connection was left alone
        finally:
            await bus.delete_queue(queue)


async def test_a_consumer_of_a_queue_declared_elsewhere_waits_for_it_to_exist_again(amqp_url: str) -> None:
    queue = f"relaybus.test.cancelled.{uuid.uuid4().hex[:8]}"
    got: list[bytes] = []

    async def handler(delivery: Delivery) -> None:
        got.append(delivery.body)
        await delivery.ack()

    async with AmqpBus(amqp_url) as owner, AmqpBus(amqp_url) as bus:
        await owner.declare_queue(queue)
        try:
            await bus.consume(queue, handler)  # not declared by this bus: consumed as it is
            await _delete_elsewhere(amqp_url, queue)
            await asyncio.sleep(1.0)  # the consumer tries again meanwhile and finds no queue
            await owner.declare_queue(queue)
            await owner.publish(OutgoingMessage(b"back", routing_key=queue, exchange=""))
            await eventually(lambda: got == [b"back"], timeout=20)
            assert bus.reconnect_count == 0
        finally:
            await owner.delete_queue(queue)
