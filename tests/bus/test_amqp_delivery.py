"""``AmqpDelivery``: an ack does not wait for the connection's writer, and still reaches the broker; plain
headers."""

from __future__ import annotations

import uuid
from collections.abc import Coroutine
from typing import Any

import pytest

from relaybus.bus.amqp import AmqpBus
from relaybus.bus.amqp_delivery import AmqpDelivery
from relaybus.bus.base import Delivery, OutgoingMessage
from tests.eventually import eventually

pytestmark = pytest.mark.integration


def completes_at_once(step: Coroutine[Any, Any, None]) -> bool:
    """Whether ``step`` runs to its end without once giving the loop back."""
    try:
        step.send(None)
    except StopIteration:
        return True
    step.close()
    return False


async def test_an_ack_does_not_wait_for_the_writer_and_still_reaches_the_broker(amqp_url: str) -> None:
    queue = f"relaybus.test.settle.{uuid.uuid4().hex[:8]}"
    outcome: list[tuple[bool, dict[str, object]]] = []

    async def handler(delivery: Delivery) -> None:
        assert isinstance(delivery, AmqpDelivery)
        outcome.append((completes_at_once(delivery.ack()), dict(delivery.headers)))

    async with AmqpBus(amqp_url) as bus:
        await bus.declare_queue(queue)
        await bus.consume(queue, handler)
        headers = {"n": 7, "s": "text", "b": True, "f": 1.5}
        await bus.publish(
            OutgoingMessage(b"x", routing_key=queue, exchange="", message_id="m1", headers=headers)
        )
        await eventually(lambda: bool(outcome), timeout=10)
    # The consumer's connection is closed: a message it had not acked would be back in the queue.
    async with AmqpBus(amqp_url) as bus:
        assert await bus.queue_backlog(queue) == 0
        await bus.delete_queue(queue)
    at_once, got = outcome[0]
    assert at_once
    assert {k: got[k] for k in headers} == headers
    assert all(type(got[k]) is type(v) for k, v in headers.items())
    assert "traceparent" in got
