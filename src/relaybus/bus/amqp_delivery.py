"""What ``AmqpBus`` consumers get: a received message (``AmqpDelivery`` over aiormq's ``AmqpMessage``).

- **dead_letter(reason)** publishes a copy of the message to ``relaybus.dlx`` with the headers of
  :func:`relaybus.bus.core.dead_letter_headers` (``relaybus-error`` and ``relaybus-original-*``), waits for
  the confirm, then acks the original. ``nack(requeue=False)`` is a plain AMQP reject: the broker
  dead-letters the message itself (``x-first-death-reason: rejected``) through the queue's
  ``x-dead-letter-exchange``, which every queue declared by ``AmqpBus`` has.
- Settling a delivery whose channel is gone (a broker restart, ``close``) raises ``BusError``: the broker has
  already returned the message to its queue, so it will be delivered again (at-least-once).
- ``ack`` and ``nack`` do not wait for the frame to be written: the settles of one loop turn go out together
  (:class:`~relaybus.bus.amqp_settle.SettleBatch`; AMQP answers no settle, so waiting would tell nothing).
- Headers are plain ``HeaderValue``s: bytes decoded, AMQP tables and arrays as JSON text.

What RabbitMQ 3.10.8 really does with quorum queues (measured by ``tests/bus/test_amqp.py``):

- ``x-delivery-limit: N`` allows N+1 deliveries: the first and N redeliveries. The delivery after the N-th
  redelivery does not happen; the broker dead-letters the message instead. ``N = 0`` means one delivery.
- A redelivery carries ``x-delivery-count`` = 1, 2, ... N; the first delivery has no such header
  (:attr:`AmqpDelivery.delivery_count` is then 0). Returns by ``nack(requeue=True)`` and by a consumer's
  channel closing both count.
- The broker's dead-lettered copy keeps the original headers and routing key and gains ``x-death``
  (``[{reason: 'delivery_limit', queue, exchange, routing-keys, count, time}]``) and ``x-first-death-reason``
  / ``-queue`` / ``-exchange``; it has **no** ``relaybus-error`` header. So that readers of ``relaybus.dead``
  see one format, :attr:`AmqpDelivery.headers` fills in ``relaybus-error`` and the ``relaybus-original-*``
  headers from them when absent (:func:`relaybus.bus.core.fill_death_headers`, as ``MemoryBus`` does).
- Quorum queues ignore message priority (supported from RabbitMQ 4.0); ``priority`` is carried anyway.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import aio_pika
import aiormq
from aio_pika.exceptions import ChannelInvalidStateError
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from relaybus.exceptions import BusError

from .amqp_settle import SettleBatch
from .base import DEAD_LETTER_EXCHANGE, ERROR_HEADER, HeaderValue
from .core import (
    DELIVERY_COUNT_HEADER,
    FIRST_DEATH_REASON_HEADER,
    DeliveryFields,
    already_settled,
    dead_letter_headers,
    fill_death_headers,
)

if TYPE_CHECKING:
    from .amqp import AmqpBus

__all__ = ["AmqpDelivery", "AmqpMessage"]

_PLAIN = frozenset({str, int, float, bool, type(None)})


def _header_value(value: Any) -> HeaderValue:
    """An AMQP field value as a plain ``HeaderValue`` (bytes decoded, tables and arrays as JSON text)."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return json.dumps(value, default=str, sort_keys=True)


def _first_death_routing_key(raw: Mapping[str, Any]) -> str | None:
    """The routing key a dead-lettered message had when it first died (RabbitMQ's oldest ``x-death``)."""
    deaths = raw.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[-1], Mapping):
        keys = deaths[-1].get("routing-keys")
        if isinstance(keys, list) and keys:
            return str(_header_value(keys[0]))
    return None


def _last_death_time(raw: Mapping[str, Any]) -> float | None:
    """When RabbitMQ last dead-lettered the message (the newest ``x-death`` entry's ``time``)."""
    deaths = raw.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], Mapping):
        when = deaths[0].get("time")
        if isinstance(when, datetime):  # AMQP timestamps are UTC
            return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    return None


class AmqpMessage:
    """One message as aiormq delivered it, with the fields a delivery shows (``MessageFields``) and its
    settling on the channel it came in on.

    relaybus consumes on aiormq's channel under aio-pika's robust one: aio-pika's ``IncomingMessage`` and the
    Task it starts per delivery cost about a quarter of a delivery's CPU (``bench/PROFILE.md``,
    ``bench.consume_paths``), and the bus reads only these fields.
    """

    __slots__ = (
        "_settles",
        "body",
        "channel",
        "delivery_tag",
        "exchange",
        "properties",
        "redelivered",
        "routing_key",
    )

    def __init__(self, delivered: DeliveredMessage, settles: SettleBatch) -> None:
        deliver = cast(Basic.Deliver, delivered.delivery)  # a consumer's deliveries are all Basic.Deliver
        self._settles = settles
        self.body: bytes = delivered.body
        self.channel: aiormq.abc.AbstractChannel = delivered.channel
        self.properties: Basic.Properties = delivered.header.properties
        self.routing_key: str = deliver.routing_key or ""
        self.exchange: str = deliver.exchange or ""
        self.delivery_tag: int = deliver.delivery_tag or 0
        self.redelivered: bool = bool(deliver.redelivered)

    @property
    def headers(self) -> Mapping[str, Any]:
        return self.properties.headers or {}

    @property
    def message_id(self) -> str | None:
        return self.properties.message_id

    @property
    def correlation_id(self) -> str | None:
        return self.properties.correlation_id

    @property
    def reply_to(self) -> str | None:
        return self.properties.reply_to

    @property
    def content_type(self) -> str | None:
        return self.properties.content_type

    @property
    def content_encoding(self) -> str | None:
        return self.properties.content_encoding

    @property
    def priority(self) -> int | None:
        return self.properties.priority

    @property
    def user_id(self) -> str | None:
        return self.properties.user_id

    @property
    def app_id(self) -> str | None:
        return self.properties.app_id

    @property
    def type(self) -> str | None:
        return self.properties.message_type

    def ack(self) -> None:
        """Ack on this delivery's channel with the other settles of this loop turn (raises
        ``ChannelInvalidStateError`` once the channel is closed)."""
        self._settles.ack(self.delivery_tag)

    def nack(self, *, requeue: bool) -> None:
        self._settles.nack(self.delivery_tag, requeue=requeue)


class AmqpDelivery(DeliveryFields[AmqpMessage]):
    """One received message (the :class:`~relaybus.bus.base.Delivery` protocol). Settle it exactly once.

    Settling after the consumer's channel was lost (a broker restart, ``close``) raises ``BusError``: the
    broker has already returned the message to its queue, so it will be delivered again (at-least-once).
    """

    __slots__ = ("_bus", "_queue", "_state")

    def __init__(self, message: AmqpMessage, *, queue: str, bus: AmqpBus) -> None:
        self._message = message
        self._queue = queue
        self._bus = bus
        self._state: str | None = None  # how it was settled
        raw = message.headers
        # Most values arrive plain (str, int): kept as they are without a call each.
        headers: dict[str, HeaderValue] = {
            str(k): v if type(v) in _PLAIN else _header_value(v) for k, v in raw.items()
        }
        if FIRST_DEATH_REASON_HEADER in raw:
            fill_death_headers(
                headers, routing_key=_first_death_routing_key(raw), died_at=_last_death_time(raw)
            )
        self._headers = headers

    @property
    def redelivered(self) -> bool:
        return self._message.redelivered

    @property
    def delivery_count(self) -> int:
        count = self._message.headers.get(DELIVERY_COUNT_HEADER)
        return count if isinstance(count, int) and not isinstance(count, bool) else 0

    @property
    def queue(self) -> str:
        """The queue this delivery came from."""
        return self._queue

    @property
    def settled(self) -> bool:
        return self._state is not None

    def _settle(self, state: str) -> None:
        if self._state is not None:
            raise already_settled(self.message_id, self._queue, self._state)
        self._state = state

    async def ack(self) -> None:
        self._settle("acked")
        self._on_channel("ack", self._message.ack)

    async def nack(self, *, requeue: bool = True) -> None:
        """Return the message (``requeue``: counts against the delivery limit) or have it dead-lettered."""
        self._settle("nacked")
        self._on_channel("nack", lambda: self._message.nack(requeue=requeue))

    async def dead_letter(self, reason: str) -> None:
        """Publish a copy to ``relaybus.dlx`` with the dead-letter headers, wait for its confirm, then ack."""
        self._settle("dead-lettered")
        message, bus = self._message, self._bus
        headers = dead_letter_headers(
            message.headers,
            reason=reason,
            queue=self._queue,
            routing_key=message.routing_key,
            exchange=message.exchange,
            secrets=bus._link.secrets(),
        )
        # What ``aio_pika.Message(...).properties`` would be: every property kept, the message persistent.
        copy = Basic.Properties(
            headers=headers,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            delivery_mode=int(aio_pika.DeliveryMode.PERSISTENT),
            priority=message.priority or 0,
            correlation_id=message.correlation_id or None,
            reply_to=message.reply_to or None,
            message_id=message.message_id or None,
            message_type=message.type or None,
            app_id=message.app_id or None,
        )
        await bus._publish(message.body, copy, DEAD_LETTER_EXCHANGE, message.routing_key, mandatory=True)
        bus._log.info(
            "message_dead_lettered",
            queue=self._queue,
            message_id=message.message_id,
            reason=headers[ERROR_HEADER],
        )
        self._on_channel("ack", message.ack)

    def _on_channel(self, verb: str, op: Callable[[], None]) -> None:
        try:
            # The delivery's own (aiormq) channel, not the robust wrapper: after a reconnect the wrapper has a
            # new channel, and this delivery tag means nothing there. Its batch checks the channel itself.
            if self._message.channel.connection.is_closed:
                raise ChannelInvalidStateError("the delivery's connection is closed")
            op()
        except (ChannelInvalidStateError, aiormq.exceptions.AMQPError) as exc:
            self._bus._log.warning(
                "settle_failed_channel_closed",
                verb=verb,
                queue=self._queue,
                message_id=self.message_id,
                error=type(exc).__name__,
            )
            raise BusError(
                f"cannot {verb} message {self.message_id!r} from queue {self._queue!r}: its channel "
                f"closed ({type(exc).__name__}, e.g. the broker restarted), so RabbitMQ returned it to the "
                "queue and will deliver it again; drop the duplicate by its id"
            ) from None

    def __repr__(self) -> str:
        return (
            f"AmqpDelivery(queue={self._queue!r}, message_id={self.message_id!r}, "
            f"routing_key={self.routing_key!r}, delivery_count={self.delivery_count})"
        )
