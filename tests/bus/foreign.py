"""What a worker of another make does on the bus, without relaybus's encoders: reply with a raw JSON body."""

from __future__ import annotations

import json
from typing import Any

from relaybus.bus.base import DEFAULT_EXCHANGE, SCHEMA_HEADER, Bus, Delivery, HeaderValue, OutgoingMessage


async def reply_raw(bus: Bus, delivery: Delivery, body: dict[str, Any], version: HeaderValue = 1) -> None:
    """Publish ``body`` as the result of ``delivery``'s task: to its reply_to, its correlation_id echoed."""
    assert delivery.reply_to
    await bus.publish(
        OutgoingMessage(
            body=json.dumps(body).encode(),
            routing_key=delivery.reply_to,
            exchange=DEFAULT_EXCHANGE,
            correlation_id=delivery.correlation_id,
            headers={SCHEMA_HEADER: version},
        )
    )
