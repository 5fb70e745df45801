"""``AmqpBus``: the :class:`~relaybus.bus.base.Bus` protocol on RabbitMQ, through aio-pika.

What a caller may rely on (the connection: :mod:`relaybus.bus.amqp_connection`; deliveries, settling and
what RabbitMQ 3.10 really does with quorum queues: :mod:`relaybus.bus.amqp_delivery`):

- **Topology** (DESIGN.md), declared idempotently by :meth:`AmqpBus.connect`: exchange ``relaybus`` (topic,
  durable); ``relaybus.dlx`` (fanout, durable) bound to ``relaybus.dead`` (durable quorum queue).
  ``declare_queue(durable=True)`` makes a durable quorum queue with ``x-delivery-limit``,
  ``x-dead-letter-exchange: relaybus.dlx``, ``x-dead-letter-strategy: at-least-once`` and
  ``x-overflow: reject-publish`` (at-least-once dead-lettering needs reject-publish; RabbitMQ 3.10+).
  ``durable=False`` makes an exclusive classic queue (owned by this connection, deleted when it closes,
  re-declared with its bindings after a reconnect). It is deliberately *not* auto-delete: auto-delete would
  drop the queue and its waiting messages the moment its last consumer cancels. ``expires_s`` adds
  ``x-expires`` (milliseconds); RabbitMQ 3.10 quorum queues honour it (deleted after that long without a
  consumer), and keep it across a broker restart.
- **publish** uses one channel with publisher confirms and returns only after the broker's ack. Messages
  are persistent unless asked otherwise. An unroutable ``mandatory`` message raises
  :class:`~relaybus.NoRouteError`; a broker ``basic.nack`` (e.g. a full queue with ``reject-publish``) raises
  :class:`~relaybus.BusError`. While the connection is down, publish waits for aio-pika to restore it and
  publishes again, for at most ``reconnect_timeout`` seconds, then raises ``ConnectionFailed``. A publish
  whose confirm was lost is sent again: duplicates are possible (consumers drop them by message id),
  losses are not. Bodies over ``max_body_bytes`` (default 1 MiB) are refused before anything is sent.
- **consume** opens one channel per consumer with ``prefetch`` as its QoS and manual acks. Each delivery runs
  its handler in its own task (so up to ``prefetch`` run at once), as :func:`relaybus.bus.core.run_handler`
  says: an exception is logged and the delivery returned with ``nack(requeue=True)`` (counting against the
  delivery limit); a delivery left unsettled holds a prefetch slot until settled or its channel closes.
- **close** is a lost connection: running handlers are cancelled, their unsettled deliveries go back to their
  queues. To let in-flight work finish first, ``cancel()`` the subscriptions (which waits for running
  handlers) before closing.
- The password of the URL never appears in ``repr``, ``str``, logs or error messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aio_pika
from aio_pika.abc import AbstractRobustChannel, AbstractRobustQueue
from aio_pika.exceptions import ChannelClosed, DeliveryError, PublishError

from relaybus.exceptions import BusError, NoRouteError
from relaybus.log import get_logger
from relaybus.secrets import mask_url

from .amqp_connection import TRANSIENT, AmqpLink, validate_amqp_url
from .amqp_delivery import AmqpDelivery, AmqpSubscription
from .base import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    EXCHANGE,
    Bus,
    Delivery,
    Handler,
    OutgoingMessage,
)
from .codec import DEFAULT_MAX_BODY_BYTES
from .core import BusBase, QueueDeclaration, body_too_large, check_positive_options, check_prefetch

__all__ = ["AmqpBus", "AmqpDelivery", "AmqpSubscription", "validate_amqp_url"]


def _publishing(exchange: str, routing_key: str) -> str:
    return f"publishing to exchange {exchange!r} with routing key {routing_key!r}"


@dataclass(frozen=True)
class _QueueSpec:
    durable: bool
    arguments: Mapping[str, Any]
    bindings: set[str] = field(default_factory=set, compare=False)


class AmqpBus(BusBase):
    """RabbitMQ through aio-pika; see the module docstring for the guarantees.

    ``AmqpBus(url)`` only stores its configuration; ``await bus.connect()`` (or ``async with bus``) connects
    and declares the topology. Options:

    - ``connect_timeout``: seconds the *first* connection may take before ``ConnectionFailed`` (default 10).
    - ``reconnect_timeout``: seconds ``publish`` and the declare/purge/delete calls wait for a lost connection
      to come back before ``ConnectionFailed`` (default 60).
    - ``reconnect_interval``: seconds between aio-pika's reconnection attempts (default 1).
    - ``operation_timeout``: seconds one declare/purge/delete/cancel may take (default 30).
    - ``max_body_bytes``: the largest body ``publish`` sends (default 1 MiB).
    - ``ssl_context`` or ``ca_file`` / ``cert_file`` / ``key_file``: TLS for ``amqps://`` URLs.
    - ``connection_name``: shown in the RabbitMQ management UI.
    """

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 10.0,
        reconnect_timeout: float = 60.0,
        reconnect_interval: float = 1.0,
        operation_timeout: float = 30.0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        ssl_context: ssl.SSLContext | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        connection_name: str = "relaybus",
    ) -> None:
        self._log = get_logger(__name__, url=mask_url(url))
        self._link = AmqpLink(
            url,
            ssl_context=ssl_context,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            connection_name=connection_name,
            log=self._log,
        )
        check_positive_options(
            "AmqpBus",
            {
                "connect_timeout": connect_timeout,
                "reconnect_timeout": reconnect_timeout,
                "reconnect_interval": reconnect_interval,
                "operation_timeout": operation_timeout,
                "max_body_bytes": max_body_bytes,
            },
        )
        self._url = self._link.url
        self.connect_timeout = connect_timeout
        self.reconnect_timeout = reconnect_timeout
        self.reconnect_interval = reconnect_interval
        self.operation_timeout = operation_timeout
        self.max_body_bytes = max_body_bytes
        self._conn: aio_pika.RobustConnection | None = None
        self._publish_channel: AbstractRobustChannel | None = None
        self._topology_channel: AbstractRobustChannel | None = None
        self._queues: dict[str, AbstractRobustQueue] = {}
        self._specs: dict[str, _QueueSpec] = {}
        self._subscriptions: set[AmqpSubscription] = set()
        self._connect_lock = asyncio.Lock()
        self._closed = False

    # -- identity and lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The broker URL with its password masked."""
        return self._url

    @property
    def is_connected(self) -> bool:
        """True while connected: after ``connect()``, before ``close()``, and not during an outage."""
        # A RobustConnection is not ``is_closed`` while it reconnects; its ``connected`` event is clear then.
        conn = self._conn
        return conn is not None and not conn.is_closed and conn.connected.is_set() and not self._closed

    @property
    def reconnect_count(self) -> int:
        """How many times aio-pika restored the connection (with its channels and consumers) so far."""
        return self._link.reconnect_count

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected" if self._conn is not None else "new"
        return f"AmqpBus(url={self._url!r}, state={state})"

    __str__ = __repr__

    async def connect(self) -> None:
        """Connect and declare the shared topology; a second call does nothing.

        Raises :class:`ConnectionFailed` (one line: the masked URL, the cause, the fix) when the broker does
        not answer within ``connect_timeout``, and :class:`BusError` when the topology exists with other
        arguments.
        """
        async with self._connect_lock:
            if self._closed:
                raise BusError(f"{self!r} is closed; create a new bus to connect again")
            if self._conn is not None:
                return
            conn = await self._link.open(
                connect_timeout=self.connect_timeout, reconnect_interval=self.reconnect_interval
            )
            try:
                self._publish_channel = conn.channel(publisher_confirms=True, on_return_raises=True)
                await self._publish_channel
                self._topology_channel = conn.channel(publisher_confirms=False)
                await self._topology_channel
                self._conn = conn
                self._link.watch(conn)
                await self._declare_topology()
            except BaseException:
                self._conn = None
                with contextlib.suppress(Exception):
                    await conn.close()
                raise
            self._log.info("amqp_connected")

    async def close(self) -> None:
        """Close like a lost connection: running handlers are cancelled, unsettled deliveries return to their
        queues, exclusive queues disappear. Idempotent. Cancel subscriptions first to let handlers finish."""
        if self._closed:
            return
        self._closed = True
        self._link.unwatch()
        subscriptions, self._subscriptions = list(self._subscriptions), set()
        for sub in subscriptions:
            await sub._abort()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
            self._log.info("amqp_closed")

    def _connection(self) -> aio_pika.RobustConnection:
        if self._closed:
            raise BusError(f"{self!r} is closed")
        if self._conn is None:
            raise BusError(f"{self!r} is not connected: call `await bus.connect()` or use `async with bus`")
        return self._conn

    # -- topology -------------------------------------------------------------------------------------

    async def _declare_topology(self) -> None:
        async def declare(channel: AbstractRobustChannel) -> None:
            exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
            dlx = await channel.declare_exchange(
                DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
            )
            dead = await channel.declare_queue(
                DEAD_LETTER_QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
            )
            await dead.bind(dlx, routing_key="")
            del exchange

        await self._on_topology("declaring the relaybus topology", declare)

    @staticmethod
    def _queue_arguments(
        durable: bool, delivery_limit: int | None, expires_s: float | None
    ) -> dict[str, Any]:
        args: dict[str, Any] = {"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE}
        if expires_s is not None:
            args["x-expires"] = max(1, round(expires_s * 1000))
        if durable:
            args.update(
                {
                    "x-queue-type": "quorum",
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                }
            )
            if delivery_limit is not None:
                args["x-delivery-limit"] = delivery_limit
        return args

    async def _declare_queue(self, queue: QueueDeclaration) -> None:
        """See :meth:`Bus.declare_queue`; re-declared (with bindings) after a reconnect."""
        name, durable = queue.name, queue.durable
        arguments = self._queue_arguments(durable, queue.delivery_limit, queue.expires_s)

        async def declare(channel: AbstractRobustChannel) -> None:
            known = self._queues.get(name)
            # Re-declaring checks the arguments (and re-creates a deleted queue) without registering a
            # second object for aio-pika to restore.
            declared = await channel.declare_queue(
                name, durable=durable, exclusive=not durable, arguments=arguments, robust=known is None
            )
            if known is None:
                self._queues[name] = known = declared
            for pattern in queue.bindings:
                await known.bind(EXCHANGE, routing_key=pattern)

        await self._on_topology(f"declaring queue {name!r}", declare)
        spec = self._specs.setdefault(name, _QueueSpec(durable, arguments))
        spec.bindings.update(queue.bindings)

    async def delete_queue(self, name: str) -> None:
        """Cancel this bus's consumers of ``name`` and delete it (no error if it does not exist)."""
        for sub in [s for s in self._subscriptions if s.queue == name]:
            await sub.cancel()

        async def delete(channel: AbstractRobustChannel) -> None:
            await channel.queue_delete(name)

        await self._on_topology(f"deleting queue {name!r}", delete)
        self._queues.pop(name, None)
        self._specs.pop(name, None)

    async def purge_queue(self, name: str) -> int:
        """Remove the ready messages of ``name``; return how many."""

        async def purge(channel: AbstractRobustChannel) -> int:
            underlay = await channel.get_underlay_channel()
            result = await underlay.queue_purge(name)
            return int(result.message_count or 0)

        count: int = await self._on_topology(f"purging queue {name!r}", purge)
        return count

    async def queue_backlog(self, name: str) -> int:
        """How many messages wait in ``name``, ready for a consumer (a passive declare: creates nothing)."""

        async def count(channel: AbstractRobustChannel) -> int:
            underlay = await channel.get_underlay_channel()
            result = await underlay.queue_declare(name, passive=True)
            return int(result.message_count or 0)

        backlog: int = await self._on_topology(f"counting the messages of queue {name!r}", count)
        return backlog

    async def _on_topology(self, what: str, op: Any) -> Any:
        """Run ``op(channel)`` on the topology channel, waiting out connection losses."""
        self._connection()
        channel = self._topology_channel
        assert channel is not None
        deadline = asyncio.get_running_loop().time() + self.reconnect_timeout
        last: BaseException | None = None
        while True:
            try:
                await self._wait_ready(channel, deadline)
                return await asyncio.wait_for(op(channel), self.operation_timeout)
            except ChannelClosed as exc:
                raise self._link.channel_error(what, exc) from None
            except TRANSIENT as exc:
                last = exc
                if self._closed or asyncio.get_running_loop().time() >= deadline:
                    raise self._link.outage(what, last, self.reconnect_timeout) from None
                await asyncio.sleep(min(self.reconnect_interval, 0.5))

    async def _wait_ready(self, channel: AbstractRobustChannel, deadline: float) -> None:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise TimeoutError
        await asyncio.wait_for(channel.ready(), remaining)

    # -- publish and consume --------------------------------------------------------------------------

    async def publish(self, message: OutgoingMessage) -> None:
        """See :meth:`Bus.publish` and the module docstring (confirms, retries, size cap)."""
        size = len(message.body)
        if size > self.max_body_bytes:
            raise body_too_large(size, self.max_body_bytes, message.routing_key)
        amqp_message = aio_pika.Message(
            body=message.body,
            headers=dict(message.headers),
            content_type=message.content_type,
            delivery_mode=(
                aio_pika.DeliveryMode.PERSISTENT
                if message.persistent
                else aio_pika.DeliveryMode.NOT_PERSISTENT
            ),
            priority=message.priority,
            correlation_id=message.correlation_id,
            reply_to=message.reply_to,
            message_id=message.message_id,
        )
        await self._publish(amqp_message, message.exchange, message.routing_key, mandatory=message.mandatory)

    async def _publish(
        self, message: aio_pika.Message, exchange: str, routing_key: str, *, mandatory: bool
    ) -> None:
        self._connection()
        channel = self._publish_channel
        assert channel is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reconnect_timeout
        last: BaseException | None = None
        attempt = 0
        while True:
            attempt += 1
            try:
                # While the channel is open, publish straight away under one timer: ``wait_for`` (3.11)
                # wraps its awaitable in a Task, and ``_wait_ready`` + ``wait_for`` cost two Tasks and ~4
                # loop turns per publish (bench/PROFILE.md A2). Retries wait for the connection first.
                if attempt > 1 or channel.is_closed:
                    await self._wait_ready(channel, deadline)
                underlay = await channel.get_underlay_channel()
                async with asyncio.timeout_at(deadline):
                    await underlay.basic_publish(
                        message.body,
                        exchange=exchange,
                        routing_key=routing_key,
                        properties=message.properties,
                        mandatory=mandatory,
                    )
                if attempt > 1:
                    self._log.info("publish_retried", routing_key=routing_key, attempts=attempt)
                return
            except PublishError:
                raise NoRouteError(routing_key, exchange) from None
            except DeliveryError as exc:
                what = _publishing(exchange, routing_key)  # worded only on failure
                raise BusError(
                    f"{what}: RabbitMQ refused the message (basic.nack, {self._link.describe(exc)}); a queue "
                    "it routes to is full (x-overflow reject-publish) or unavailable: drain it and retry"
                ) from None
            except ChannelClosed as exc:
                what = _publishing(exchange, routing_key)
                raise self._link.channel_error(what, exc) from None
            except TRANSIENT as exc:
                last = exc
                if self._closed or loop.time() >= deadline:
                    what = _publishing(exchange, routing_key)
                    raise self._link.outage(what, last, self.reconnect_timeout) from None
                self._log.debug("publish_waiting_for_connection", error=type(exc).__name__)
                await asyncio.sleep(min(self.reconnect_interval, 0.2 * attempt))

    async def consume(self, queue: str, handler: Handler, *, prefetch: int = 16) -> AmqpSubscription:
        """See :meth:`Bus.consume`; the consumer comes back by itself after a reconnect."""
        check_prefetch(prefetch)
        conn = self._connection()
        channel = conn.channel(publisher_confirms=False)
        subscription = AmqpSubscription(self, queue, handler, channel)

        async def start() -> None:
            await channel.initialize()
            await channel.set_qos(prefetch_count=prefetch)
            spec = self._specs.get(queue)
            if spec is not None:
                # Declared by this bus: declare it the same way on this channel, so that aio-pika's restore
                # re-creates an exclusive queue even if this channel comes back first.
                amqp_queue = await channel.declare_queue(
                    queue, durable=spec.durable, exclusive=not spec.durable, arguments=dict(spec.arguments)
                )
            else:
                amqp_queue = await channel.declare_queue(queue, passive=True)
            await subscription._start(amqp_queue)

        try:
            await asyncio.wait_for(start(), self.reconnect_timeout)
        except ChannelClosed as exc:
            with contextlib.suppress(Exception):
                await channel.close()
            raise self._link.channel_error(f"consuming from queue {queue!r}", exc) from None
        except TRANSIENT as exc:
            with contextlib.suppress(Exception):
                await channel.close()
            raise self._link.outage(f"consuming from queue {queue!r}", exc, self.reconnect_timeout) from None
        except BaseException:
            with contextlib.suppress(Exception):
                await channel.close()
            raise
        self._subscriptions.add(subscription)
        self._log.debug("consumer_started", queue=queue, prefetch=prefetch)
        return subscription

    def _forget(self, subscription: AmqpSubscription) -> None:
        self._subscriptions.discard(subscription)


if TYPE_CHECKING:  # mypy checks that the classes implement the protocols
    _delivery: type[Delivery] = AmqpDelivery
    _bus: type[Bus] = AmqpBus
