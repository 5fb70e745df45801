"""``AmqpBus``: the :class:`~relaybus.bus.base.Bus` protocol on RabbitMQ, through aio-pika.

What a caller may rely on:

- **One robust connection.** aio-pika's ``RobustConnection`` (what ``connect_robust`` builds) reconnects by
  itself and re-declares every exchange, queue, binding, QoS and consumer this bus made; relaybus adds no
  second reconnection layer. The *first* connect is not retried: it fails within ``connect_timeout`` with
  :class:`~relaybus.ConnectionFailed` naming the URL (password masked) and the fix.
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
  losses are not.
- **consume** opens one channel per consumer with ``prefetch`` as its QoS and manual acks. Each delivery runs
  its handler in its own task (so up to ``prefetch`` run at once). A handler that raises is logged and its
  delivery is returned with ``nack(requeue=True)`` (counting against the delivery limit); the consumer goes
  on. A handler that returns without settling is logged and its delivery stays unsettled (holding a prefetch
  slot) until settled or until the consumer's channel closes, as with any AMQP manual-ack consumer.
- **dead_letter(reason)** publishes a copy of the message to ``relaybus.dlx`` with the headers
  ``relaybus-error`` (the reason), ``relaybus-original-queue``, ``-routing-key`` and ``-exchange``, waits for
  the confirm, then acks the original. ``nack(requeue=False)`` is a plain AMQP reject: the broker
  dead-letters the message itself (``x-first-death-reason: rejected``) through the queue's
  ``x-dead-letter-exchange``, which every queue declared by ``AmqpBus`` has.
- Settling a delivery whose channel is gone (a broker restart, ``close``) raises ``BusError``: the broker has
  already returned the message to its queue, so it will be delivered again (at-least-once).
- **close** is a lost connection: running handlers are cancelled, their unsettled deliveries go back to their
  queues. To let in-flight work finish first, ``cancel()`` the subscriptions (which waits for running
  handlers) before closing.
- **Bodies over** ``max_body_bytes`` (default 1 MiB) are refused by :meth:`AmqpBus.publish` with a
  ``BusError`` before anything is sent.
- The password of the URL never appears in ``repr``, ``str``, logs or error messages.

What RabbitMQ 3.10.8 really does with quorum queues (measured by ``tests/bus/test_amqp.py``):

- ``x-delivery-limit: N`` allows N+1 deliveries: the first and N redeliveries. The delivery after the N-th
  redelivery does not happen; the broker dead-letters the message instead. ``N = 0`` means one delivery.
- A redelivery carries ``x-delivery-count`` = 1, 2, ... N; the first delivery has no such header
  (:attr:`AmqpDelivery.delivery_count` is then 0). Returns by ``nack(requeue=True)`` and by a consumer's
  channel closing both count.
- The broker's dead-lettered copy keeps the original headers and routing key and gains ``x-death``
  (``[{reason: 'delivery_limit', queue, exchange, routing-keys, count, time}]``) and ``x-first-death-reason``
  / ``-queue`` / ``-exchange``; it has **no** ``relaybus-error`` header. So that readers of ``relaybus.dead``
  see one format, :attr:`AmqpDelivery.headers` fills in ``relaybus-error`` (e.g. ``"delivery limit exceeded
  ..."``) and the three ``relaybus-original-*`` headers from ``x-death`` when they are absent.
- Quorum queues ignore message priority (supported from RabbitMQ 4.0); ``priority`` is carried anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel, AbstractRobustQueue
from aio_pika.connection import make_url
from aio_pika.exceptions import (
    AuthenticationError,
    ChannelClosed,
    ChannelInvalidStateError,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
    DeliveryError,
    ProbableAuthenticationError,
    PublishError,
)
from aiormq.exceptions import ChannelAccessRefused

from relaybus.exceptions import BusError, ConfigError, ConnectionFailed, NoRouteError
from relaybus.log import get_logger
from relaybus.secrets import Secret, mask_secrets, mask_url

from .base import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    DEFAULT_DELIVERY_LIMIT,
    ERROR_HEADER,
    EXCHANGE,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_QUEUE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    Bus,
    Delivery,
    Handler,
    HeaderValue,
    OutgoingMessage,
    check_expires,
)
from .codec import DEFAULT_MAX_BODY_BYTES

__all__ = ["AmqpBus", "AmqpDelivery", "AmqpSubscription", "validate_amqp_url"]

_SCHEMES = ("amqp", "amqps")
_MAX_REASON = 1000
_SETTLE_TIMEOUT_S = 5.0  # an ack is one frame written; longer means the channel is dead
_START_HINT = "start RabbitMQ (rabbitmq-server -detached) or pass --amqp-url / RELAYBUS_AMQP_URL"
_URL_HINT = "use amqp://user:password@host:5672/vhost (or amqps:// for TLS)"
# Errors that mean "the connection or channel went away", not "the broker refused this": worth waiting
# for aio-pika to restore the connection and trying again.
_TRANSIENT = (
    aiormq.exceptions.AMQPConnectionError,
    ChannelInvalidStateError,
    ConnectionError,
    OSError,
    RuntimeError,  # aiormq's "Writer is None" while the transport is being replaced
    TimeoutError,
)
_DEATH_REASONS = {
    "delivery_limit": "delivery limit exceeded: redelivered more times than the queue's x-delivery-limit",
    "rejected": "rejected by a consumer without requeue",
    "expired": "message TTL expired",
    "maxlen": "queue length limit exceeded",
}


def validate_amqp_url(url: str) -> None:
    """Raise :class:`ConfigError` (password masked) unless ``url`` is a usable amqp:// or amqps:// URL."""
    shown = mask_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid AMQP URL {shown!r}: {mask_secrets(str(exc))}; {_URL_HINT}") from None
    if parts.scheme not in _SCHEMES:
        raise ConfigError(f"invalid AMQP URL {shown!r}: scheme must be amqp or amqps; {_URL_HINT}")
    if not parts.hostname:
        raise ConfigError(f"invalid AMQP URL {shown!r}: no host; {_URL_HINT}")
    if port == 0:
        raise ConfigError(f"invalid AMQP URL {shown!r}: port 0; {_URL_HINT}")


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


def _plain(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else value


def _death_headers(raw: Mapping[str, Any]) -> dict[str, HeaderValue]:
    """``relaybus-error`` and ``relaybus-original-*`` derived from RabbitMQ's own ``x-death`` headers."""
    reason = _plain(raw.get("x-first-death-reason"))
    if not isinstance(reason, str):
        return {}
    queue = _plain(raw.get("x-first-death-queue"))
    derived: dict[str, HeaderValue] = {
        ERROR_HEADER: f"{_DEATH_REASONS.get(reason, reason)} (RabbitMQ x-death reason {reason!r}"
        + (f", queue {queue!r})" if queue else ")"),
    }
    if isinstance(queue, str):
        derived[ORIGINAL_QUEUE_HEADER] = queue
    exchange = _plain(raw.get("x-first-death-exchange"))
    if isinstance(exchange, str):
        derived[ORIGINAL_EXCHANGE_HEADER] = exchange
    deaths = raw.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[-1], Mapping):
        keys = deaths[-1].get("routing-keys")
        if isinstance(keys, list) and keys:
            derived[ORIGINAL_ROUTING_KEY_HEADER] = str(_plain(keys[0]))
    return derived


def _publishing(exchange: str, routing_key: str) -> str:
    return f"publishing to exchange {exchange!r} with routing key {routing_key!r}"


class AmqpDelivery:
    """One received message (the :class:`~relaybus.bus.base.Delivery` protocol). Settle it exactly once.

    Settling after the consumer's channel was lost (a broker restart, ``close``) raises ``BusError``: the
    broker has already returned the message to its queue, so it will be delivered again (at-least-once).
    """

    __slots__ = ("_bus", "_headers", "_message", "_queue", "_settled")

    def __init__(self, message: AbstractIncomingMessage, *, queue: str, bus: AmqpBus) -> None:
        self._message = message
        self._queue = queue
        self._bus = bus
        self._settled = False
        raw = message.headers or {}
        headers = {str(k): _header_value(v) for k, v in raw.items()}
        for key, value in _death_headers(raw).items():
            headers.setdefault(key, value)
        self._headers: Mapping[str, HeaderValue] = headers

    @property
    def body(self) -> bytes:
        return self._message.body

    @property
    def routing_key(self) -> str:
        return self._message.routing_key or ""

    @property
    def exchange(self) -> str:
        return self._message.exchange or ""

    @property
    def message_id(self) -> str | None:
        return self._message.message_id

    @property
    def correlation_id(self) -> str | None:
        return self._message.correlation_id

    @property
    def reply_to(self) -> str | None:
        return self._message.reply_to

    @property
    def headers(self) -> Mapping[str, HeaderValue]:
        return self._headers

    @property
    def content_type(self) -> str | None:
        return self._message.content_type

    @property
    def priority(self) -> int:
        return self._message.priority or 0

    @property
    def redelivered(self) -> bool:
        return bool(self._message.redelivered)

    @property
    def delivery_count(self) -> int:
        count = (self._message.headers or {}).get("x-delivery-count")
        return count if isinstance(count, int) and not isinstance(count, bool) else 0

    @property
    def queue(self) -> str:
        """The queue this delivery came from."""
        return self._queue

    @property
    def settled(self) -> bool:
        return self._settled

    def _settle(self, verb: str) -> None:
        if self._settled:
            raise BusError(
                f"cannot {verb} message {self.message_id!r} from queue {self._queue!r}: it was already "
                "settled (ack, nack and dead_letter may be called once per delivery)"
            )
        self._settled = True

    async def ack(self) -> None:
        self._settle("ack")
        await self._bus._settle_on_channel(self, "ack", self._message.ack)

    async def nack(self, *, requeue: bool = True) -> None:
        """Return the message (``requeue``: counts against the delivery limit) or have it dead-lettered."""
        self._settle("nack")
        await self._bus._settle_on_channel(self, "nack", lambda: self._message.nack(requeue=requeue))

    async def dead_letter(self, reason: str) -> None:
        self._settle("dead-letter")
        await self._bus._dead_letter(self._message, queue=self._queue, reason=reason)
        await self._bus._settle_on_channel(self, "ack", self._message.ack)

    def __repr__(self) -> str:
        return (
            f"AmqpDelivery(queue={self._queue!r}, message_id={self.message_id!r}, "
            f"routing_key={self.routing_key!r}, delivery_count={self.delivery_count})"
        )


class AmqpSubscription:
    """A consumer on its own channel. ``cancel`` stops it, waits for running handlers, closes the channel."""

    def __init__(
        self, bus: AmqpBus, queue_name: str, handler: Handler, channel: AbstractRobustChannel
    ) -> None:
        self._bus = bus
        self.queue = queue_name
        self._handler = handler
        self._channel = channel
        self._queue: AbstractRobustQueue | None = None
        self._tag: str | None = None
        self._running: set[asyncio.Task[Any]] = set()
        self._cancelled = False
        self._log = get_logger(__name__, queue=queue_name)

    async def _start(self, queue: AbstractRobustQueue) -> None:
        self._queue = queue
        self._tag = await queue.consume(self._on_message, no_ack=False)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # Run the handler in a task of our own: aiormq cancels the tasks it spawned for deliveries when their
        # channel closes, and a broker restart must not cancel user code half-way. The handler finishes; its
        # ack then fails (the broker has requeued the message) and the redelivery is deduplicated by id.
        delivery = AmqpDelivery(message, queue=self.queue, bus=self._bus)
        task = asyncio.create_task(self._run(delivery), name=f"relaybus-handler:{self.queue}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, delivery: AmqpDelivery) -> None:
        try:
            await self._handler(delivery)
        except Exception as exc:
            self._log.error(
                "handler_failed",
                message_id=delivery.message_id,
                error_type=type(exc).__name__,
                error=mask_secrets(str(exc))[:_MAX_REASON],
                exc_info=True,
            )
            if not delivery.settled:
                await self._return_quietly(delivery)
        else:
            if not delivery.settled:
                self._log.warning("handler_returned_unsettled", message_id=delivery.message_id)

    async def _return_quietly(self, delivery: AmqpDelivery) -> None:
        try:
            await delivery.nack(requeue=True)
        except Exception as exc:  # the consumer must go on whatever happens to one message
            self._log.warning("nack_failed", message_id=delivery.message_id, error=type(exc).__name__)

    async def cancel(self) -> None:
        """Stop consuming; unsettled deliveries are requeued once their handlers return."""
        if self._cancelled:
            return
        self._cancelled = True
        self._bus._forget(self)
        if self._queue is not None and self._tag is not None:
            with contextlib.suppress(Exception):  # the connection may be down: closing the channel suffices
                await asyncio.wait_for(self._queue.cancel(self._tag), self._bus.operation_timeout)
        current = asyncio.current_task()
        running = [t for t in self._running if t is not current]
        if running:
            await asyncio.wait(running)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._channel.close(), self._bus.operation_timeout)

    async def _abort(self) -> None:
        """The connection is going away: cancel running handlers (their deliveries return to the queue)."""
        self._cancelled = True
        current = asyncio.current_task()
        running = [t for t in self._running if t is not current]
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)

    def __repr__(self) -> str:
        return f"AmqpSubscription(queue={self.queue!r}, running={len(self._running)})"


@dataclass(frozen=True)
class _QueueSpec:
    durable: bool
    arguments: Mapping[str, Any]
    bindings: set[str] = field(default_factory=set, compare=False)


class AmqpBus:
    """RabbitMQ through aio-pika; see the module docstring for the guarantees.

    ``AmqpBus(url)`` only stores its configuration; ``await bus.connect()`` (or ``async with bus``) connects
    and declares the topology. Options:

    - ``connect_timeout``: seconds the *first* connection may take before ``ConnectionFailed`` (default 10).
    - ``reconnect_timeout``: seconds ``publish`` and the declare/purge/delete calls wait for a lost connection
      to come back before ``ConnectionFailed`` (default 60).
    - ``reconnect_interval``: seconds between aio-pika's reconnection attempts (default 1).
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
        validate_amqp_url(url)
        for name, value in (
            ("connect_timeout", connect_timeout),
            ("reconnect_timeout", reconnect_timeout),
            ("reconnect_interval", reconnect_interval),
            ("operation_timeout", operation_timeout),
            ("max_body_bytes", max_body_bytes),
        ):
            if value <= 0:
                raise ConfigError(f"AmqpBus option {name} must be > 0, got {value!r}")
        if (ssl_context or ca_file or cert_file) and urlsplit(url).scheme != "amqps":
            raise ConfigError(
                f"TLS options given for {mask_url(url)!r}: use an amqps:// URL to connect over TLS"
            )
        self._raw_url = Secret(url)  # wrapped, like the password: vars(bus) must not show them
        self._url = mask_url(url)
        self._password = Secret(urlsplit(url).password or "")
        self.connect_timeout = connect_timeout
        self.reconnect_timeout = reconnect_timeout
        self.reconnect_interval = reconnect_interval
        self.operation_timeout = operation_timeout
        self.max_body_bytes = max_body_bytes
        self._ssl_context = ssl_context
        self._ssl_files = (ca_file, cert_file, key_file)
        self._connection_name = connection_name
        self._conn: aio_pika.RobustConnection | None = None
        self._publish_channel: AbstractRobustChannel | None = None
        self._topology_channel: AbstractRobustChannel | None = None
        self._queues: dict[str, AbstractRobustQueue] = {}
        self._specs: dict[str, _QueueSpec] = {}
        self._subscriptions: set[AmqpSubscription] = set()
        self._connect_lock = asyncio.Lock()
        self._closed = False
        self.reconnect_count = 0
        self._last_close: BaseException | None = None
        self._up = True
        """How many times aio-pika restored the connection (with its channels and consumers) so far."""
        self._log = get_logger(__name__, url=self._url)

    # -- identity -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The broker URL with its password masked."""
        return self._url

    @property
    def is_connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed and not self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected" if self._conn is not None else "new"
        return f"AmqpBus(url={self._url!r}, state={state})"

    __str__ = __repr__

    def _mask(self, text: str) -> str:
        return mask_secrets(text, self._password)

    def _describe(self, exc: BaseException) -> str:
        text = self._mask(str(exc)).strip() or type(exc).__name__
        return f"{type(exc).__name__}: {text}"[:_MAX_REASON]

    # -- lifecycle ------------------------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext | None:
        if self._ssl_context is not None:
            return self._ssl_context
        ca_file, cert_file, key_file = self._ssl_files
        if urlsplit(self._url).scheme != "amqps":
            return None
        try:
            context = ssl.create_default_context(cafile=ca_file)
            if cert_file:
                context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load TLS files for {self._url!r} ({self._describe(exc)}): check ca_file, cert_file "
                "and key_file"
            ) from None
        return context

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
            conn = aio_pika.RobustConnection(
                make_url(self._raw_url.reveal()),
                ssl_context=self._tls_context(),
                client_properties={"connection_name": self._connection_name},
                reconnect_interval=self.reconnect_interval,
            )
            try:
                await asyncio.wait_for(conn.connect(timeout=self.connect_timeout), self.connect_timeout + 1.0)
            except (Exception, asyncio.CancelledError) as exc:
                with contextlib.suppress(Exception):
                    await conn.close()
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise self._connect_error(exc) from None
            try:
                self._publish_channel = conn.channel(publisher_confirms=True, on_return_raises=True)
                await self._publish_channel
                self._topology_channel = conn.channel(publisher_confirms=False)
                await self._topology_channel
                self._conn = conn
                conn.reconnect_callbacks.add(self._on_reconnect)
                conn.close_callbacks.add(self._on_connection_closed)
                await self._declare_topology()
            except BaseException:
                self._conn = None
                with contextlib.suppress(Exception):
                    await conn.close()
                raise
            self._log.info("amqp_connected")

    def _connect_error(self, exc: BaseException) -> ConnectionFailed:
        cause = self._describe(exc)
        if isinstance(exc, AuthenticationError | ProbableAuthenticationError):
            fix = "check the user name and password in the URL"
        elif isinstance(exc, ssl.SSLError) or "SSL" in cause:
            fix = (
                "check that the port speaks TLS (RabbitMQ's TLS port is usually 5671) and the TLS settings "
                "(ca_file, ssl_context)"
            )
        elif isinstance(exc, asyncio.TimeoutError | TimeoutError):
            cause = f"no answer within {self.connect_timeout:g} s"
            fix = _START_HINT
        else:
            fix = _START_HINT
        return ConnectionFailed(f"cannot connect to RabbitMQ at {self._url} ({cause}): {fix}")

    def _on_connection_closed(self, _sender: Any, exc: BaseException | None = None, *_: Any) -> None:
        if self._closed:
            return
        # Kept for error messages: publish only sees "timed out waiting", the cause is here.
        self._last_close = exc
        error = self._describe(exc) if exc else None
        if self._up:  # once per outage; aio-pika's failed reconnection attempts land here too
            self._up = False
            self._log.warning("amqp_connection_lost", error=error)
        else:
            self._log.debug("amqp_reconnect_failed", error=error)

    def _on_reconnect(self, *_: Any) -> None:
        self._up = True
        self.reconnect_count += 1
        self._log.info("amqp_reconnected", reconnects=self.reconnect_count)

    async def close(self) -> None:
        """Close like a lost connection: running handlers are cancelled, unsettled deliveries return to their
        queues, exclusive queues disappear. Idempotent. Cancel subscriptions first to let handlers finish."""
        if self._closed:
            return
        self._closed = True
        subscriptions, self._subscriptions = list(self._subscriptions), set()
        for sub in subscriptions:
            await sub._abort()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
            self._log.info("amqp_closed")

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _connection(self) -> aio_pika.RobustConnection:
        if self._closed:
            raise BusError(f"{self!r} is closed")
        if self._conn is None:
            raise BusError(f"{self!r} is not connected: call `await bus.connect()` or use `async with bus`")
        return self._conn

    # -- retries --------------------------------------------------------------------------------------

    async def _wait_ready(self, channel: AbstractRobustChannel, deadline: float) -> None:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise TimeoutError
        await asyncio.wait_for(channel.ready(), remaining)

    def _outage(self, what: str, exc: BaseException | None) -> ConnectionFailed:
        causes = [f"last error {self._describe(exc)}"] if exc is not None else []
        closed_by = self._last_close
        if closed_by is not None and closed_by is not exc:
            causes.append(f"the connection last closed with {self._describe(closed_by)}")
        cause = f" ({'; '.join(causes)})" if causes else ""
        fix = _START_HINT
        if isinstance(closed_by, aiormq.exceptions.ConnectionInternalError):
            fix = (
                "RabbitMQ failed internally while aio-pika restored this bus's queues (see the broker log); "
                "on RabbitMQ 3.10 a stopped rabbit_fifo_dlx_sup breaks at-least-once quorum queues until "
                "`rabbitmqctl stop_app && rabbitmqctl start_app`"
            )
        return ConnectionFailed(
            f"{what}: the connection to RabbitMQ at {self._url} was not restored within "
            f"{self.reconnect_timeout:g} s{cause}; {fix}"
        )

    def _channel_error(self, what: str, exc: ChannelClosed) -> BusError:
        text = self._describe(exc)
        if isinstance(exc, ChannelPreconditionFailed):
            return BusError(
                f"{what}: RabbitMQ refused ({text}); the queue or exchange already exists with other "
                "arguments: delete it (rabbitmqctl delete_queue NAME) or use the same settings"
            )
        if isinstance(exc, ChannelNotFoundEntity):
            return BusError(f"{what}: RabbitMQ says it does not exist ({text}); declare it first")
        if isinstance(exc, ChannelAccessRefused):
            return BusError(f"{what}: access refused ({text}); check the user's permissions on the vhost")
        return BusError(f"{what}: RabbitMQ refused ({text})")

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
                raise self._channel_error(what, exc) from None
            except _TRANSIENT as exc:
                last = exc
                if self._closed or asyncio.get_running_loop().time() >= deadline:
                    raise self._outage(what, last) from None
                await asyncio.sleep(min(self.reconnect_interval, 0.5))

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

    async def declare_queue(
        self,
        name: str,
        *,
        bindings: Sequence[str] = (),
        durable: bool = True,
        delivery_limit: int | None = DEFAULT_DELIVERY_LIMIT,
        expires_s: float | None = None,
    ) -> None:
        """See :meth:`Bus.declare_queue`; re-declared (with bindings) after a reconnect."""
        if not name or len(name.encode()) > 255 or name.startswith("amq."):
            raise ConfigError(f"invalid queue name {name!r}: 1-255 bytes, not starting with 'amq.'")
        if delivery_limit is not None and delivery_limit < 0:
            raise ConfigError(f"delivery_limit must be >= 0 or None, got {delivery_limit!r}")
        check_expires(expires_s)
        arguments = self._queue_arguments(durable, delivery_limit, expires_s)

        async def declare(channel: AbstractRobustChannel) -> None:
            known = self._queues.get(name)
            # Re-declaring checks the arguments (and re-creates a deleted queue) without registering a
            # second object for aio-pika to restore.
            queue = await channel.declare_queue(
                name, durable=durable, exclusive=not durable, arguments=arguments, robust=known is None
            )
            if known is None:
                self._queues[name] = known = queue
            for pattern in bindings:
                await known.bind(EXCHANGE, routing_key=pattern)

        await self._on_topology(f"declaring queue {name!r}", declare)
        spec = self._specs.setdefault(name, _QueueSpec(durable, arguments))
        spec.bindings.update(bindings)

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

    # -- publish --------------------------------------------------------------------------------------

    async def publish(self, message: OutgoingMessage) -> None:
        """See :meth:`Bus.publish` and the module docstring (confirms, retries, size cap)."""
        size = len(message.body)
        if size > self.max_body_bytes:
            raise BusError(
                f"message body is {size} bytes, over the limit of {self.max_body_bytes} bytes "
                f"(routing key {message.routing_key!r}): send large data by reference (a URL or a path) "
                "or raise max_body_bytes"
            )
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
                    f"{what}: RabbitMQ refused the message (basic.nack, {self._describe(exc)}); a queue it "
                    "routes to is full (x-overflow reject-publish) or unavailable: drain it and retry"
                ) from None
            except ChannelClosed as exc:
                what = _publishing(exchange, routing_key)
                raise self._channel_error(what, exc) from None
            except _TRANSIENT as exc:
                last = exc
                if self._closed or loop.time() >= deadline:
                    what = _publishing(exchange, routing_key)
                    raise self._outage(what, last) from None
                self._log.debug("publish_waiting_for_connection", error=type(exc).__name__)
                await asyncio.sleep(min(self.reconnect_interval, 0.2 * attempt))

    async def _dead_letter(self, message: AbstractIncomingMessage, *, queue: str, reason: str) -> None:
        headers = {k: v for k, v in (message.headers or {}).items() if k != "x-delivery-count"}
        headers[ERROR_HEADER] = self._mask(reason)[:_MAX_REASON] or "dead-lettered (no reason given)"
        headers[ORIGINAL_QUEUE_HEADER] = queue
        headers[ORIGINAL_ROUTING_KEY_HEADER] = message.routing_key or ""
        headers[ORIGINAL_EXCHANGE_HEADER] = message.exchange or ""
        copy = aio_pika.Message(
            body=message.body,
            headers=headers,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            priority=message.priority,
            correlation_id=message.correlation_id,
            reply_to=message.reply_to,
            message_id=message.message_id,
            type=message.type,
            app_id=message.app_id,
        )
        # No size cap here: an oversized body is exactly what may need dead-lettering, and it already
        # passed the broker once. mandatory: if relaybus.dead were unbound, fail instead of dropping.
        await self._publish(copy, DEAD_LETTER_EXCHANGE, message.routing_key or "", mandatory=True)
        self._log.info(
            "message_dead_lettered",
            queue=queue,
            message_id=message.message_id,
            reason=headers[ERROR_HEADER],
        )

    async def _settle_on_channel(self, delivery: AmqpDelivery, verb: str, op: Any) -> None:
        try:
            # The delivery's own (aiormq) channel, not the robust wrapper: after a reconnect the wrapper has a
            # new channel, and this delivery tag means nothing there. Writing to the dead channel's bounded
            # write queue would wait forever once it is full, so check first and bound the wait.
            channel = delivery._message.channel
            connection = getattr(channel, "connection", None)
            if getattr(channel, "is_closed", False) or getattr(connection, "is_closed", False):
                raise ChannelInvalidStateError("the delivery's channel is closed")
            await asyncio.wait_for(op(), min(self.operation_timeout, _SETTLE_TIMEOUT_S))
        except (ChannelInvalidStateError, aiormq.exceptions.AMQPError, ConnectionError, TimeoutError) as exc:
            self._log.warning(
                "settle_failed_channel_closed",
                verb=verb,
                queue=delivery.queue,
                message_id=delivery.message_id,
                error=type(exc).__name__,
            )
            raise BusError(
                f"cannot {verb} message {delivery.message_id!r} from queue {delivery.queue!r}: its channel "
                f"closed ({type(exc).__name__}, e.g. the broker restarted), so RabbitMQ returned it to the "
                "queue and will deliver it again; drop the duplicate by its id"
            ) from None

    # -- consume --------------------------------------------------------------------------------------

    async def consume(self, queue: str, handler: Handler, *, prefetch: int = 16) -> AmqpSubscription:
        """See :meth:`Bus.consume`; the consumer comes back by itself after a reconnect."""
        if prefetch < 1 or prefetch > 65535:
            raise ConfigError(f"prefetch must be between 1 and 65535, got {prefetch!r}")
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
            raise self._channel_error(f"consuming from queue {queue!r}", exc) from None
        except _TRANSIENT as exc:
            with contextlib.suppress(Exception):
                await channel.close()
            raise self._outage(f"consuming from queue {queue!r}", exc) from None
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
