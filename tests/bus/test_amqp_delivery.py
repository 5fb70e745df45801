"""``AmqpDelivery``: a settle that never completes is bounded (the bus's settle watchdog); plain headers."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from relaybus.bus import amqp_delivery
from relaybus.bus.amqp import AmqpBus
from relaybus.bus.amqp_delivery import AmqpDelivery
from relaybus.bus.base import Delivery, OutgoingMessage
from relaybus.exceptions import BusError
from tests.eventually import eventually

pytestmark = pytest.mark.integration


async def test_a_settle_that_never_completes_fails_in_time_and_the_handler_goes_on(
    amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(amqp_delivery, "_SETTLE_TIMEOUT_S", 0.2)
    queue = f"relaybus.test.settle.{uuid.uuid4().hex[:8]}"
    outcome: list[tuple[float, dict[str, object]]] = []

    async def handler(delivery: Delivery) -> None:
        assert isinstance(delivery, AmqpDelivery)
        began = asyncio.get_running_loop().time()
        with pytest.raises(BusError, match=r"cannot ack message 'm1' .* closed \(TimeoutError"):
            await delivery._on_channel("ack", asyncio.Event().wait)
        waited = asyncio.get_running_loop().time() - began
        await asyncio.sleep(0.01)  # the timeout was taken back: this task is not cancelled
        await delivery._on_channel("ack", delivery._message.ack)  # the real ack still goes through
        outcome.append((waited, dict(delivery.headers)))

    async with AmqpBus(amqp_url) as bus:
        await bus.declare_queue(queue, durable=False)
        await bus.consume(queue, handler)
        headers = {"n": 7, "s": "text", "b": True, "f": 1.5}
        await bus.publish(
            OutgoingMessage(b"x", routing_key=queue, exchange="", message_id="m1", headers=headers)
        )
        await eventually(lambda: bool(outcome), timeout=10)
        assert await bus.queue_backlog(queue) == 0
    waited, got = outcome[0]
    assert waited >= 0.2
    assert {k: got[k] for k in headers} == headers
    assert all(type(got[k]) is type(v) for k, v in headers.items())
    assert "traceparent" in got
