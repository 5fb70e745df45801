"""``AmqpBus``'s publishing side: its message properties, its one confirmed channel, and refusals in words.

After the loss of a quorum queue's leader, RabbitMQ 3.10 nacks publishes on the channels that had published
to it for a minute or more, while a new channel is confirmed once a new leader is elected: so a nacked
publish is retried on a fresh channel (:meth:`PublishChannel.renew`), replaced once for all the publishes
the old one nacked.
"""

from __future__ import annotations

import asyncio
import contextlib

import aio_pika
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from aio_pika.exceptions import ChannelClosed

from relaybus.exceptions import BusError

from .amqp_connection import TRANSIENT
from .base import OutgoingMessage

__all__ = ["PublishChannel", "amqp_message", "publishing", "refused"]


def publishing(exchange: str, routing_key: str) -> str:
    """What a publish was doing, for an error message."""
    return f"publishing to exchange {exchange!r} with routing key {routing_key!r}"


def amqp_message(message: OutgoingMessage, user_id: str | None) -> aio_pika.Message:
    """``message`` with its AMQP properties; ``user_id`` is the login RabbitMQ checks it against."""
    return aio_pika.Message(
        body=message.body,
        headers=dict(message.headers),
        content_type=message.content_type,
        delivery_mode=(
            aio_pika.DeliveryMode.PERSISTENT if message.persistent else aio_pika.DeliveryMode.NOT_PERSISTENT
        ),
        priority=message.priority,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        message_id=message.message_id,
        user_id=user_id,
    )


def refused(exchange: str, routing_key: str, nack: str, waited_s: float) -> BusError:
    """The error of a publish RabbitMQ kept refusing (``nack`` described) for ``waited_s`` seconds."""
    return BusError(
        f"{publishing(exchange, routing_key)}: RabbitMQ refused the message (basic.nack, {nack}) for "
        f"{waited_s:g} s; a queue it routes to is full (x-overflow reject-publish) or has no quorum: drain "
        "it, or bring its nodes back, and retry"
    )


class PublishChannel:
    """The bus's one publish channel (confirms on, unroutable messages returned as errors)."""

    def __init__(self, operation_timeout: float) -> None:
        self.channel: AbstractRobustChannel | None = None
        self._operation_timeout = operation_timeout
        self._lock = asyncio.Lock()

    async def open(self, conn: AbstractRobustConnection) -> None:
        self.channel = conn.channel(publisher_confirms=True, on_return_raises=True)
        await self.channel

    async def renew(
        self, conn: AbstractRobustConnection, nacked: AbstractRobustChannel
    ) -> AbstractRobustChannel:
        """Replace the channel that was nacked, once for all the publishes it nacked; if no new one opens now
        (the connection is down), keep the old one: aio-pika restores it."""
        async with self._lock:
            current = self.channel
            assert current is not None
            if current is not nacked:
                return current
            fresh = conn.channel(publisher_confirms=True, on_return_raises=True)
            try:
                await asyncio.wait_for(fresh.initialize(), self._operation_timeout)
            except (*TRANSIENT, ChannelClosed):
                with contextlib.suppress(Exception):
                    await fresh.close()
                return nacked
            self.channel = fresh
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nacked.close(), self._operation_timeout)
        return fresh
