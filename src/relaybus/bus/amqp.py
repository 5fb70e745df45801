"""``AmqpBus``: the :class:`~relaybus.bus.base.Bus` protocol on RabbitMQ, through aio-pika.

What a caller may rely on (the connection: :mod:`relaybus.bus.amqp_connection`; deliveries, settling and
what RabbitMQ 3.10 really does with quorum queues: :mod:`relaybus.bus.amqp_delivery`):

- **Topology** (DESIGN.md), declared idempotently by :meth:`AmqpBus.connect`: exchange ``relaybus`` (topic,
  durable); ``relaybus.dlx`` (fanout, durable) bound to ``relaybus.dead`` (durable quorum queue,
  bounded in length and age, the oldest letters dropped first: :mod:`relaybus.bus.dead_letters`).
  ``declare_queue(durable=True)`` makes a durable quorum queue with ``x-delivery-limit``,
  ``x-dead-letter-exchange: relaybus.dlx``, ``x-dead-letter-strategy: at-least-once`` and
  ``x-overflow: reject-publish`` (at-least-once dead-lettering needs reject-publish; RabbitMQ 3.10+).
  ``durable=False`` makes an exclusive classic queue (owned by this connection, deleted when it closes,
  re-declared with its bindings after a reconnect). It is deliberately *not* auto-delete: auto-delete would
  drop the queue and its waiting messages the moment its last consumer cancels. ``expires_s`` adds
  ``x-expires`` (milliseconds); RabbitMQ 3.10 quorum queues honour it (deleted after that long without a
  consumer), and keep it across a broker restart. On a cluster (several URLs) quorum queues, reply queues and
  ``relaybus.dead`` get ``x-quorum-initial-group-size`` (``quorum_group_size``; by default the number of
  URLs, as :func:`~relaybus.bus.amqp_cluster.quorum_group_size` rounds it); one URL declares them as before.
- **publish** uses one channel with publisher confirms and returns only after the broker's ack. Messages
  are persistent unless asked otherwise. An unroutable ``mandatory`` message raises
  :class:`~relaybus.NoRouteError`. A broker ``basic.nack`` is sent again on a fresh channel until
  ``reconnect_timeout`` (RabbitMQ 3.10 nacks publishes on an existing channel for a minute or more after the
  node leading a quorum queue dies), then raises :class:`~relaybus.BusError` (also what a queue full with
  ``reject-publish`` gives). While the connection is down, publish waits for aio-pika to restore it and
  publishes again, for at most ``reconnect_timeout`` seconds, then raises ``ConnectionFailed``. A publish
  whose confirm was lost is sent again: duplicates are possible (consumers drop them by message id),
  losses are not. Bodies over ``max_body_bytes`` (default 1 MiB) are refused before anything is sent.
  Every message carries the AMQP ``user_id`` of the URL's user (RabbitMQ refuses any other value), so a
  consumer can tell who published it (:attr:`~relaybus.bus.base.Delivery.user_id`); not with
  ``auth=external`` (the login is the certificate's, unknown here).
- **consume** opens one channel per consumer with ``prefetch`` as its QoS and manual acks. Each delivery runs
  its handler in its own task (so up to ``prefetch`` run at once), as :func:`relaybus.bus.core.run_handler`
  says: an exception is logged and the delivery returned with ``nack(requeue=True)`` (counting against the
  delivery limit); a delivery left unsettled holds a prefetch slot until settled or its channel closes.
  It comes back after a reconnect and after the broker cancels it (:mod:`relaybus.bus.amqp_consumer`).
- **close** is a lost connection: running handlers are cancelled, their unsettled deliveries go back to their
  queues. To let in-flight work finish first, ``cancel()`` the subscriptions (which waits for running
  handlers) before closing.
- The password of the URL never appears in ``repr``, ``str``, logs or error messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import aio_pika
import aiormq
from aio_pika.abc import AbstractRobustChannel, AbstractRobustQueue
from aio_pika.exceptions import ChannelClosed, DeliveryError, PublishError
from pamqp.commands import Basic

from relaybus.exceptions import BusError, NoRouteError
from relaybus.log import get_logger
from relaybus.secrets import mask_url
from relaybus.telemetry.hooks import traced_consume, traced_publish

from .amqp_cluster import (
    GROUP_SIZE_ARG,
    ClusterConnection,
    group_args,
    keep_existing_group_size,
    queue_arguments,
    split_urls,
)
from .amqp_cluster import quorum_group_size as _group_size
from .amqp_connection import TRANSIENT, AmqpLink, close_connection, lost_connection, validate_amqp_url
from .amqp_consumer import AmqpSubscription
from .amqp_delivery import AmqpDelivery
from .amqp_publish import DeadlineWatchdog, PublishChannel, amqp_properties, publishing, refused
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
from .dead_letters import DEFAULT_DEAD_LETTER_LIMITS, DeadLetterLimits, declare_dead_letter_queue

__all__ = ["AmqpBus", "AmqpDelivery", "AmqpSubscription", "validate_amqp_url"]


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
    - ``dead_letter_limits``: how many letters and how old ``relaybus.dead`` keeps, newest kept
      (:class:`~relaybus.bus.dead_letters.DeadLetterLimits`; default 100,000 letters, 14 days).
    - ``quorum_group_size``: ``x-quorum-initial-group-size`` of the quorum queues this bus declares (default:
      none for one URL; for several, their number rounded down to an odd one, at most 5).

    ``url`` may name several nodes of a cluster (comma-separated, or a list): see
    :mod:`relaybus.bus.amqp_cluster`.
    """

    def __init__(
        self,
        url: str | Sequence[str],
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
        dead_letter_limits: DeadLetterLimits = DEFAULT_DEAD_LETTER_LIMITS,
        quorum_group_size: int | None = None,
    ) -> None:
        if not isinstance(url, str):
            url = ",".join(split_urls(url))
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
        self.quorum_group_size = _group_size(len(self._link.endpoints), quorum_group_size)
        """``x-quorum-initial-group-size`` of the quorum queues this bus declares (``None``: not set)."""
        self.connect_timeout = connect_timeout
        self.reconnect_timeout = reconnect_timeout
        self.reconnect_interval = reconnect_interval
        self.operation_timeout = operation_timeout
        self.max_body_bytes = max_body_bytes
        self.dead_letter_limits = dead_letter_limits
        self.dead_letter_limited = False
        """True once ``relaybus.dead`` is known to have ``dead_letter_limits`` (False when it existed with
        other arguments: see :mod:`relaybus.bus.dead_letters`)."""
        self._conn: ClusterConnection | None = None
        self._publisher = PublishChannel(operation_timeout)
        self._watchdog = DeadlineWatchdog()  # the deadline of every confirmed publish
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
    def blocked(self) -> str | None:
        """RabbitMQ's reason while it blocks this bus's publishing (``connection.blocked``: a memory or disk
        alarm), else None; see :mod:`relaybus.bus.amqp_blocked`."""
        return self._link.blocked.reason

    @property
    def node(self) -> str | None:
        """``host:port`` of the broker node the bus is connected to now (``None`` while down or closed)."""
        conn = self._conn
        return None if conn is None or self._closed else conn.address

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
                await self._publisher.open(conn)
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
        self._watchdog.close()
        subscriptions, self._subscriptions = list(self._subscriptions), set()
        for sub in subscriptions:
            await sub._abort()
        conn, self._conn = self._conn, None
        if conn is not None:
            await close_connection(conn, self._log)

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
            del exchange, dlx

        await self._on_topology("declaring the relaybus topology", declare)
        conn = self._connection()
        try:
            self.dead_letter_limited = await asyncio.wait_for(
                declare_dead_letter_queue(
                    conn,
                    self.dead_letter_limits,
                    vhost=self._link.vhost,
                    log=self._log,
                    extra_arguments=group_args(self.quorum_group_size),
                ),
                self.operation_timeout,
            )
        except ChannelClosed as exc:
            raise self._link.channel_error(f"declaring queue {DEAD_LETTER_QUEUE!r}", exc) from None

    async def _declare_queue(self, queue: QueueDeclaration) -> None:
        """See :meth:`Bus.declare_queue`; re-declared (with bindings) after a reconnect."""
        name, durable = queue.name, queue.durable
        arguments = queue_arguments(queue, self.quorum_group_size)

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

        await self._on_topology(f"declaring queue {name!r}", declare, arguments)
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

    async def _on_topology(self, what: str, op: Any, arguments: dict[str, Any] | None = None) -> Any:
        """Run ``op(channel)`` on the topology channel, waiting out connection losses; when it declares a
        queue with ``arguments``, adopt an existing queue's group size (``keep_existing_group_size``)."""
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
                if arguments is None or not keep_existing_group_size(str(exc), arguments):
                    raise self._link.channel_error(what, exc) from None
                self._log.info("quorum_group_size_kept", what=what, size=arguments.get(GROUP_SIZE_ARG))
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

    @traced_publish
    async def publish(self, message: OutgoingMessage, trace: Mapping[str, str] | None = None) -> None:
        """See :meth:`Bus.publish` and the module docstring (confirms, retries, size cap)."""
        size = len(message.body)
        if size > self.max_body_bytes:
            raise body_too_large(size, self.max_body_bytes, message.routing_key)
        properties = amqp_properties(message, self._link.login, trace)
        await self._publish(
            message.body, properties, message.exchange, message.routing_key, mandatory=message.mandatory
        )

    async def _publish(
        self, body: bytes, properties: Basic.Properties, exchange: str, routing_key: str, *, mandatory: bool
    ) -> None:
        self._connection()
        channel = self._publisher.channel
        assert channel is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reconnect_timeout
        last: BaseException | None = None
        nack: DeliveryError | None = None
        attempt = 0
        while True:
            attempt += 1
            try:
                # At once under the bus's one watchdog (no Task or timer per publish); retries wait first.
                if attempt > 1 or channel.is_closed:
                    await self._wait_ready(channel, deadline)
                underlay = cast(aiormq.Channel, await channel.get_underlay_channel())
                sent = underlay.basic_publish(
                    body,
                    exchange=exchange,
                    routing_key=routing_key,
                    mandatory=mandatory,
                    properties=properties,
                    wait=False,  # the confirm is awaited below; waiting for the write too would serialize
                )
                await self._watchdog.bound(sent, deadline)
                if attempt > 1:
                    self._log.info("publish_retried", routing_key=routing_key, attempts=attempt)
                return
            except PublishError:
                raise NoRouteError(routing_key, exchange) from None
            except DeliveryError as exc:
                # After the loss of a quorum queue's leader, RabbitMQ 3.10 nacks publishes on the channels
                # that had published to it for a minute or more; a new channel is confirmed once a new
                # leader is elected. A queue full with reject-publish nacks too: until the deadline.
                last = nack = exc
                pause = min(self.reconnect_interval, 0.2 * attempt)
                if self._closed or loop.time() + pause >= deadline:
                    raise refused(
                        exchange, routing_key, self._link.describe(nack), self.reconnect_timeout
                    ) from None
                self._log.warning("publish_nacked", routing_key=routing_key, attempt=attempt)
                channel = await self._publisher.renew(self._connection(), channel)
                await asyncio.sleep(pause)
            except ChannelClosed as exc:
                what = publishing(exchange, routing_key)
                raise self._link.channel_error(what, exc) from None
            except (*TRANSIENT, asyncio.CancelledError) as exc:
                if not lost_connection(exc):  # a real cancellation of this task
                    raise
                last = exc
                if self._closed or loop.time() >= deadline:
                    if nack is not None and isinstance(exc, TimeoutError):
                        raise refused(
                            exchange, routing_key, self._link.describe(nack), self.reconnect_timeout
                        ) from None
                    what = publishing(exchange, routing_key)
                    raise self._link.outage(what, last, self.reconnect_timeout) from None
                self._log.debug("publish_waiting_for_connection", error=type(exc).__name__)
                await asyncio.sleep(min(self.reconnect_interval, 0.2 * attempt))

    @traced_consume
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
