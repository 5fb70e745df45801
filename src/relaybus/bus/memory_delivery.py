"""What ``MemoryBus`` consumers get: a delivery (``MemoryDelivery``) and a consumer of a queue.

A delivery is settled once: ``ack``, ``nack`` (requeue, or dead-letter as ``rejected``) or ``dead_letter``.
Settling one whose consumer went away (cancelled, or the bus closed) raises ``BusError``: its message was
returned to the queue. Settling one whose queue was deleted does nothing (the message is gone with it).
"""

from __future__ import annotations

import asyncio
from types import MappingProxyType
from typing import TYPE_CHECKING

from relaybus.exceptions import BusError

from .base import DEAD_LETTER_EXCHANGE
from .core import DeliveryFields, already_settled, dead_letter_headers
from .memory_queue import MemoryConsumer, MemoryQueue, StoredMessage

if TYPE_CHECKING:
    from .memory import MemoryBus

__all__ = ["MemoryDelivery", "MemorySubscription"]


class MemoryDelivery(DeliveryFields[StoredMessage]):
    """One delivery of a message to a consumer of a :class:`MemoryBus` (implements ``Delivery``)."""

    __slots__ = ("_bus", "_consumer", "_count", "_state", "_tag")

    def __init__(self, bus: MemoryBus, consumer: MemoryConsumer, message: StoredMessage, tag: int) -> None:
        self._bus = bus
        self._consumer = consumer
        self._message = message
        self._tag = tag
        self._count = message.delivery_count  # this delivery's count; the message's grows when returned
        self._headers = MappingProxyType(dict(message.headers))
        self._state = "unsettled"  # -> "acked" | "nacked" | "dead-lettered" | "returned" (channel gone)

    @property
    def redelivered(self) -> bool:
        return self._count > 0

    @property
    def delivery_count(self) -> int:
        return self._count

    @property
    def queue(self) -> str:
        """The queue this delivery came from."""
        return self._consumer.queue.name

    @property
    def settled(self) -> bool:
        """True once acked, nacked or dead-lettered, or returned because its consumer went away."""
        return self._state != "unsettled"

    def _begin_settle(self, state: str) -> MemoryQueue | None:
        """Claim the delivery for settling as ``state``; its queue, or None when the queue is gone (settling
        is then a no-op)."""
        if self._state == "returned":
            raise BusError(
                f"delivery {self.message_id!r} from queue {self.queue!r} can no longer be settled: its "
                "consumer was cancelled or the bus closed, so the message was returned to the queue"
            )
        if self._state != "unsettled":
            raise already_settled(self.message_id, self.queue, self._state)
        self._state = state
        return self._bus._take_unsettled(self)

    async def ack(self) -> None:
        queue = self._begin_settle("acked")
        if queue is not None:
            self._bus._dispatch(queue)

    async def nack(self, *, requeue: bool = True) -> None:
        """Return the message (``requeue``: counts against the delivery limit) or dead-letter it."""
        queue = self._begin_settle("nacked")
        if queue is not None:
            if requeue:
                self._bus._return_message(queue, self._message)
            else:
                self._bus._broker_dead_letter(queue, self._message, "rejected")
            self._bus._dispatch(queue)

    async def dead_letter(self, reason: str) -> None:
        """Move the message to ``relaybus.dead`` with ``reason`` in the ``relaybus-error`` header."""
        queue = self._begin_settle("dead-lettered")
        if queue is not None:
            message = self._message
            headers = dead_letter_headers(
                message.headers,
                reason=reason,
                queue=queue.name,
                routing_key=message.routing_key,
                exchange=message.exchange,
            )
            self._bus._to_dead_letter_queue(message.copy(exchange=DEAD_LETTER_EXCHANGE, headers=headers))
            self._bus._dispatch(queue)

    def __repr__(self) -> str:
        return (
            f"MemoryDelivery(queue={self.queue!r}, message_id={self.message_id!r}, "
            f"delivery_count={self.delivery_count}, state={self._state!r})"
        )


class MemorySubscription:
    """A consumer on a :class:`MemoryBus` queue (implements ``Subscription``)."""

    def __init__(self, bus: MemoryBus, consumer: MemoryConsumer) -> None:
        self._bus = bus
        self._consumer = consumer

    @property
    def queue(self) -> str:
        return self._consumer.queue.name

    @property
    def active(self) -> bool:
        return self._consumer.active

    async def cancel(self) -> None:
        """Stop consuming; wait for running handlers; then return deliveries still unsettled (idempotent)."""
        consumer = self._consumer
        if not consumer.active:
            return
        self._bus._detach(consumer)
        try:
            me = asyncio.current_task()
            running = [t for t in consumer.tasks if t is not me]
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        finally:
            self._bus._return_unsettled(consumer)
