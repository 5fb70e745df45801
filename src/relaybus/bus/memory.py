"""``MemoryBus``: a RabbitMQ-shaped broker inside one process, the embedded default and the bus for tests.

Each ``MemoryBus`` is its own broker (no global state). It behaves like the RabbitMQ topology of DESIGN.md,
and passes the same contract tests as ``AmqpBus`` (``tests/bus/test_contract.py``):

- Exchanges ``relaybus`` (topic, matching as :func:`relaybus.bus.topic.topic_matches`), ``""`` (the default
  exchange: routing key = queue name) and ``relaybus.dlx`` (fanout) bound to the queue ``relaybus.dead``,
  all declared by :meth:`MemoryBus.connect`. Publishing to any other exchange raises ``BusError``.
- A message goes to every queue with a matching binding (fan-out), once per queue; the consumers of one
  queue compete for its messages, round robin among those below their ``prefetch``.
- A mandatory message that reaches no queue raises :class:`~relaybus.NoRouteError`; a non-mandatory one is
  dropped, as in AMQP.
- Queues are FIFO; returned messages (nack with requeue, handler exception, cancelled consumer) are
  delivered again before the others, in the order they came back, like RabbitMQ quorum queues. Message
  priority is carried but not used for ordering (RabbitMQ 3.10 quorum queues ignore it as well).
- ``delivery_count`` is 0 on the first delivery and grows by one each time the message is returned. A
  durable queue with ``delivery_limit=N`` dead-letters a message when it is returned with ``delivery_count``
  already at N, i.e. after N + 1 deliveries, with header ``x-first-death-reason: delivery_limit`` (RabbitMQ
  3.10 quorum queues do exactly this). Non-durable queues have no delivery limit (RabbitMQ's classic queues
  don't either).
- ``nack(requeue=False)`` dead-letters with ``x-first-death-reason: rejected``; ``dead_letter(reason)`` with
  ``relaybus-error: <reason>``. Every dead-lettered message carries ``relaybus-error`` and the
  ``relaybus-original-queue / -routing-key / -exchange`` headers (for broker dead-letters they are derived
  from the death reason, as ``AmqpDelivery`` does from ``x-death``). It keeps its routing key and arrives
  from exchange ``relaybus.dlx``. ``relaybus.dead`` itself has no delivery limit and no dead-letter target.
- A handler that raises is logged and its delivery returned (nack with requeue); the consumer goes on.
  A handler that returns without settling keeps its delivery (and its prefetch slot) unsettled, as with
  AMQP manual acks, until someone settles it or the consumer goes away.
- ``Subscription.cancel()`` stops new deliveries, waits for running handlers, then returns the deliveries
  still unsettled to the queue. :meth:`MemoryBus.close` does the same for every consumer (handlers still
  running after ``close_timeout`` are cancelled), then deletes the non-durable queues; durable queues keep
  their messages, and a later ``connect()`` on the same object finds them (how a test "restarts" a process).
- A queue declared with ``expires_s`` is deleted with its messages once it has had no consumer (and no
  re-declaration) for that many seconds, as RabbitMQ's ``x-expires`` does; a durable one keeps its messages
  across ``close()`` / ``connect()`` until then.
- Bodies over ``max_body_bytes`` are refused at publish with ``BusError``.
- All asyncio, no threads. :meth:`MemoryBus.join` waits until every delivery is handled and settled.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Self

from relaybus.exceptions import BusError, ConfigError, NoRouteError
from relaybus.log import get_logger

from .base import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    DEFAULT_DELIVERY_LIMIT,
    DEFAULT_EXCHANGE,
    ERROR_HEADER,
    EXCHANGE,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_QUEUE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    Handler,
    HeaderValue,
    OutgoingMessage,
    check_expires,
)
from .codec import DEFAULT_MAX_BODY_BYTES
from .topic import topic_matches

__all__ = ["MemoryBus", "MemoryDelivery", "MemorySubscription", "QueueStats"]

FIRST_DEATH_REASON_HEADER = "x-first-death-reason"
FIRST_DEATH_QUEUE_HEADER = "x-first-death-queue"
FIRST_DEATH_EXCHANGE_HEADER = "x-first-death-exchange"
_MAX_NAME_BYTES = 255  # AMQP short strings: queue names, routing keys, binding keys
_MAX_REASON = 1000
_HEADER_TYPES = (str, int, float, bool, type(None))
_DEATH_REASONS = {
    "delivery_limit": "delivery limit exceeded: redelivered more times than the queue's delivery limit",
    "rejected": "rejected by a consumer without requeue",
}


@dataclass(frozen=True, slots=True)
class QueueStats:
    """A snapshot of one queue: messages waiting, deliveries not yet settled, active consumers."""

    ready: int
    unsettled: int
    consumers: int


class _Message:
    """A message as a queue holds it. Immutable parts are shared; headers are copied per delivery."""

    __slots__ = (
        "body",
        "content_type",
        "correlation_id",
        "delivery_count",
        "exchange",
        "headers",
        "message_id",
        "priority",
        "reply_to",
        "routing_key",
    )

    def __init__(
        self,
        *,
        body: bytes,
        routing_key: str,
        exchange: str,
        message_id: str | None,
        correlation_id: str | None,
        reply_to: str | None,
        headers: dict[str, HeaderValue],
        content_type: str | None,
        priority: int,
    ) -> None:
        self.body = body
        self.routing_key = routing_key
        self.exchange = exchange
        self.message_id = message_id
        self.correlation_id = correlation_id
        self.reply_to = reply_to
        self.headers = headers
        self.content_type = content_type
        self.priority = priority
        self.delivery_count = 0

    def copy(self, *, exchange: str, headers: dict[str, HeaderValue]) -> _Message:
        return _Message(
            body=self.body,
            routing_key=self.routing_key,
            exchange=exchange,
            message_id=self.message_id,
            correlation_id=self.correlation_id,
            reply_to=self.reply_to,
            headers=headers,
            content_type=self.content_type,
            priority=self.priority,
        )


class _Queue:
    __slots__ = (
        "consumers",
        "delivery_limit",
        "durable",
        "expires_s",
        "expiry",
        "name",
        "ready",
        "returned",
        "rr",
    )

    def __init__(
        self, name: str, *, durable: bool, delivery_limit: int | None, expires_s: float | None = None
    ) -> None:
        self.name = name
        self.durable = durable
        self.delivery_limit = delivery_limit if durable else None
        self.expires_s = expires_s
        self.expiry: asyncio.TimerHandle | None = None  # armed while the queue has no consumer
        self.ready: deque[_Message] = deque()
        self.returned: deque[_Message] = deque()  # delivered before `ready`, like quorum queue returns
        self.consumers: list[_Consumer] = []
        self.rr = 0

    def __len__(self) -> int:
        return len(self.ready) + len(self.returned)

    def pop(self) -> _Message:
        return self.returned.popleft() if self.returned else self.ready.popleft()


class _Consumer:
    __slots__ = ("active", "handler", "prefetch", "queue", "tag", "tasks", "unsettled")

    def __init__(self, queue: _Queue, handler: Handler, prefetch: int, tag: str) -> None:
        self.queue = queue
        self.handler = handler
        self.prefetch = prefetch
        self.tag = tag
        self.active = True
        self.unsettled: dict[int, MemoryDelivery] = {}
        self.tasks: set[asyncio.Task[None]] = set()


class MemoryDelivery:
    """One delivery of a message to a consumer of a :class:`MemoryBus` (implements ``Delivery``)."""

    __slots__ = ("_bus", "_consumer", "_count", "_headers", "_message", "_state", "_tag")

    def __init__(self, bus: MemoryBus, consumer: _Consumer, message: _Message, tag: int) -> None:
        self._bus = bus
        self._consumer = consumer
        self._message = message
        self._tag = tag
        self._count = message.delivery_count  # this delivery's count; the message's grows when returned
        self._headers: Mapping[str, HeaderValue] = MappingProxyType(dict(message.headers))
        self._state = "unsettled"  # -> "acked" | "nacked" | "dead-lettered" | "returned" (channel gone)

    @property
    def body(self) -> bytes:
        return self._message.body

    @property
    def routing_key(self) -> str:
        return self._message.routing_key

    @property
    def exchange(self) -> str:
        return self._message.exchange

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
        return self._message.priority

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

    def _begin_settle(self) -> bool:
        """Claim the delivery for settling; False when its queue is gone (settling is then a no-op)."""
        if self._state == "returned":
            raise BusError(
                f"delivery {self.message_id!r} from queue {self.queue!r} can no longer be settled: its "
                "consumer was cancelled or the bus closed, so the message was returned to the queue"
            )
        if self._state != "unsettled":
            raise BusError(
                f"delivery {self.message_id!r} from queue {self.queue!r} was already settled "
                f"({self._state}); call ack, nack or dead_letter once per delivery"
            )
        return self._bus._take_unsettled(self)

    async def ack(self) -> None:
        if self._begin_settle():
            self._state = "acked"
            self._bus._after_settle(self._consumer.queue)
        else:
            self._state = "acked"

    async def nack(self, *, requeue: bool = True) -> None:
        """Return the message (``requeue``: counts against the delivery limit) or dead-letter it."""
        live = self._begin_settle()
        self._state = "nacked"
        if live:
            queue = self._consumer.queue
            if requeue:
                self._bus._return_message(queue, self._message)
            else:
                self._bus._broker_dead_letter(queue, self._message, "rejected")
            self._bus._after_settle(queue)

    async def dead_letter(self, reason: str) -> None:
        """Move the message to ``relaybus.dead`` with ``reason`` in the ``relaybus-error`` header."""
        live = self._begin_settle()
        self._state = "dead-lettered"
        if live:
            queue = self._consumer.queue
            self._bus._consumer_dead_letter(queue, self._message, reason)
            self._bus._after_settle(queue)

    def __repr__(self) -> str:
        return (
            f"MemoryDelivery(queue={self.queue!r}, message_id={self.message_id!r}, "
            f"delivery_count={self.delivery_count}, state={self._state!r})"
        )


class MemorySubscription:
    """A consumer on a :class:`MemoryBus` queue (implements ``Subscription``)."""

    def __init__(self, bus: MemoryBus, consumer: _Consumer) -> None:
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


class MemoryBus:
    """An in-process broker with RabbitMQ's semantics; see the module docstring for what it guarantees."""

    def __init__(
        self,
        url: str = "memory://",
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        close_timeout: float = 30.0,
    ) -> None:
        if max_body_bytes < 1:
            raise ConfigError(f"MemoryBus option max_body_bytes must be at least 1, got {max_body_bytes!r}")
        if close_timeout <= 0:
            raise ConfigError(f"MemoryBus option close_timeout must be > 0, got {close_timeout!r}")
        self._url = url
        self.max_body_bytes = max_body_bytes
        self.close_timeout = close_timeout
        self._connected = False
        self._queues: dict[str, _Queue] = {}
        self._topic_bindings: dict[str, set[str]] = {}  # queue name -> binding patterns on EXCHANGE
        self._route_cache: dict[str, tuple[str, ...]] = {}
        self._tags = itertools.count(1)
        self._changed = asyncio.Event()
        self._log = get_logger("relaybus.bus.memory", bus=url)

    # -- Bus protocol ---------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._url

    @property
    def connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        """Declare ``relaybus``, ``relaybus.dlx`` and ``relaybus.dead`` (idempotent; also after ``close``)."""
        self._connected = True
        if DEAD_LETTER_QUEUE not in self._queues:
            self._queues[DEAD_LETTER_QUEUE] = _Queue(DEAD_LETTER_QUEUE, durable=True, delivery_limit=None)
        for queue in self._queues.values():
            self._dispatch(queue)

    async def close(self) -> None:
        """Drop the "connection", like ``AmqpBus.close``: stop every consumer and wait for its running
        handlers (at most ``close_timeout`` seconds, then they are cancelled), return the deliveries still
        unsettled to their queues, and delete the non-durable queues. Durable queues keep their messages
        for a later ``connect()``.
        """
        if not self._connected:
            return
        consumers = [c for q in self._queues.values() for c in q.consumers]
        for consumer in consumers:
            self._detach(consumer)
        me = asyncio.current_task()
        tasks = [t for c in consumers for t in c.tasks if t is not me]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.close_timeout)
            for task in late:
                task.cancel()
            if late:
                self._log.warning("handlers_cancelled_on_close", count=len(late))
                await asyncio.wait(late)
        self._connected = False
        for consumer in consumers:
            self._return_unsettled(consumer)
        for name in [q.name for q in self._queues.values() if not q.durable]:
            self._remove_queue(name)
        self._notify()

    async def declare_queue(
        self,
        name: str,
        *,
        bindings: Sequence[str] = (),
        durable: bool = True,
        delivery_limit: int | None = DEFAULT_DELIVERY_LIMIT,
        expires_s: float | None = None,
    ) -> None:
        """Declare ``name`` and bind it to ``relaybus`` with each pattern (idempotent; bindings add up).

        Re-declaring with a different ``durable``, ``expires_s`` or (durable queues) ``delivery_limit``
        raises ``BusError``, as RabbitMQ refuses inequivalent arguments. ``expires_s``: see the module
        docstring (deleted after that long without a consumer, even while the bus is closed).
        """
        self._require_connected()
        _check_name("queue name", name)
        if name.startswith("amq."):
            raise ConfigError(f"queue name {name!r} starts with 'amq.', which AMQP reserves; choose another")
        if isinstance(bindings, str):
            raise ConfigError(f"bindings must be a sequence of patterns, not the string {bindings!r}")
        for pattern in bindings:
            _check_name("binding pattern", pattern, allow_empty=True)
        if delivery_limit is not None and delivery_limit < 0:
            raise ConfigError(f"delivery_limit must be >= 0 or None, got {delivery_limit!r}")
        check_expires(expires_s)
        existing = self._queues.get(name)
        if existing is None:
            existing = _Queue(name, durable=durable, delivery_limit=delivery_limit, expires_s=expires_s)
            self._queues[name] = existing
        elif (
            existing.durable != durable
            or (durable and existing.delivery_limit != delivery_limit)
            or existing.expires_s != expires_s
        ):
            raise BusError(
                f"queue {name!r} already exists with durable={existing.durable}, "
                f"delivery_limit={existing.delivery_limit}, expires_s={existing.expires_s}; it cannot be "
                f"re-declared with durable={durable}, delivery_limit={delivery_limit}, "
                f"expires_s={expires_s}: delete it first or declare it as it is"
            )
        self._arm_expiry(existing)  # a declaration counts as use: the countdown starts again
        if bindings:
            self._topic_bindings.setdefault(name, set()).update(bindings)
            self._route_cache.clear()

    async def delete_queue(self, name: str) -> None:
        """Delete ``name`` with its messages and bindings; its consumers stop. A missing queue is fine."""
        self._require_connected()
        queue = self._queues.get(name)
        if queue is None:
            return
        for consumer in list(queue.consumers):
            self._detach(consumer)
            consumer.unsettled.clear()  # messages of a deleted queue are gone; settling them is a no-op
        self._remove_queue(name)
        self._notify()

    async def purge_queue(self, name: str) -> int:
        """Remove the ready messages of ``name`` (unsettled deliveries stay); return how many."""
        self._require_connected()
        queue = self._get_queue(name)
        count = len(queue)
        queue.ready.clear()
        queue.returned.clear()
        self._notify()
        return count

    async def publish(self, message: OutgoingMessage) -> None:
        """Route ``message`` to its queues; returns once they hold it (the in-memory publisher confirm)."""
        self._require_connected()
        stored = self._accept(message)
        targets = self._route(message.exchange, message.routing_key)
        if not targets:
            if message.mandatory:
                raise NoRouteError(message.routing_key, message.exchange)
            self._log.debug("message_unroutable", exchange=message.exchange, routing_key=message.routing_key)
        for name in targets:
            self._enqueue(self._queues[name], stored)
        # A network publish always yields to the loop; doing the same keeps producers and consumers fair.
        await asyncio.sleep(0)

    async def consume(self, queue: str, handler: Handler, *, prefetch: int = 16) -> MemorySubscription:
        """Call ``handler`` for each delivery of ``queue``, at most ``prefetch`` unsettled at once."""
        self._require_connected()
        if prefetch < 1 or prefetch > 65535:
            raise ConfigError(f"prefetch must be between 1 and 65535, got {prefetch!r}")
        target = self._get_queue(queue)
        consumer = _Consumer(target, handler, prefetch, f"memory-consumer-{next(self._tags)}")
        target.consumers.append(consumer)
        self._arm_expiry(target)
        self._dispatch(target)
        return MemorySubscription(self, consumer)

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

    # -- extras for tests and tools -------------------------------------------------------------------------

    def queue_names(self) -> list[str]:
        return sorted(self._queues)

    def stats(self, name: str) -> QueueStats:
        """Messages ``name`` holds ready, deliveries not yet settled, and consumers, right now."""
        queue = self._get_queue(name)
        return QueueStats(
            ready=len(queue),
            unsettled=sum(len(c.unsettled) for c in queue.consumers),
            consumers=len(queue.consumers),
        )

    async def join(self, *queues: str) -> None:
        """Wait until nothing is in flight: no handler running, no delivery unsettled, and no ready message
        in a queue that has a consumer (ready messages no one consumes don't count).

        Checks ``queues`` only, or every queue. A delivery a handler leaves unsettled keeps ``join`` waiting,
        so wrap it in ``asyncio.timeout`` in tests.
        """
        while not self._idle(queues):
            self._changed.clear()
            await self._changed.wait()
        # Let done-callbacks of finished handler tasks run before the caller looks at the results.
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        state = "connected" if self._connected else "closed"
        return f"MemoryBus({self._url!r}, {state}, queues={len(self._queues)})"

    # -- internals ------------------------------------------------------------------------------------------

    def _require_connected(self) -> None:
        if not self._connected:
            raise BusError("MemoryBus is not connected: call `await bus.connect()` or use `async with bus:`")

    def _get_queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            raise BusError(f"queue {name!r} does not exist; declare it first: bus.declare_queue({name!r})")
        return queue

    def _remove_queue(self, name: str) -> None:
        queue = self._queues.pop(name, None)
        if queue is not None and queue.expiry is not None:
            queue.expiry.cancel()
            queue.expiry = None
        if self._topic_bindings.pop(name, None) is not None:
            self._route_cache.clear()

    def _accept(self, message: OutgoingMessage) -> _Message:
        body = message.body
        if not isinstance(body, bytes | bytearray | memoryview):
            raise BusError(f"message body must be bytes, got {type(body).__name__}; encode it first")
        if len(body) > self.max_body_bytes:
            raise BusError(
                f"message body is {len(body)} bytes; this bus accepts at most {self.max_body_bytes} "
                "(max_body_bytes); send large data by reference (a URL or a path) instead"
            )
        _check_name("routing key", message.routing_key, allow_empty=True)
        headers: dict[str, HeaderValue] = {}
        for key, value in message.headers.items():
            if not isinstance(key, str) or not isinstance(value, _HEADER_TYPES):
                raise BusError(
                    f"header {key!r} has a value of type {type(value).__name__}; "
                    "header values must be str, int, float, bool or None"
                )
            headers[key] = value
        return _Message(
            body=bytes(body),  # a copy when the publisher handed in a mutable buffer
            routing_key=message.routing_key,
            exchange=message.exchange,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            reply_to=message.reply_to,
            headers=headers,
            content_type=message.content_type,
            priority=message.priority,
        )

    def _route(self, exchange: str, routing_key: str) -> tuple[str, ...]:
        if exchange == DEFAULT_EXCHANGE:
            return (routing_key,) if routing_key in self._queues else ()
        if exchange == DEAD_LETTER_EXCHANGE:
            return (DEAD_LETTER_QUEUE,) if DEAD_LETTER_QUEUE in self._queues else ()
        if exchange != EXCHANGE:
            raise BusError(
                f"exchange {exchange!r} does not exist on this bus; publish to {EXCHANGE!r} (tasks and "
                f"events), {DEFAULT_EXCHANGE!r} (a queue by name) or {DEAD_LETTER_EXCHANGE!r}"
            )
        cached = self._route_cache.get(routing_key)
        if cached is None:
            cached = tuple(
                name
                for name, patterns in self._topic_bindings.items()
                if any(topic_matches(p, routing_key) for p in patterns)
            )
            if len(self._route_cache) >= 10_000:
                self._route_cache.clear()
            self._route_cache[routing_key] = cached
        return cached

    def _enqueue(self, queue: _Queue, message: _Message) -> None:
        # Each queue gets its own message object: delivery counts are per queue.
        copy = message.copy(exchange=message.exchange, headers=message.headers)
        queue.ready.append(copy)
        self._dispatch(queue)

    def _dispatch(self, queue: _Queue) -> None:
        if not self._connected or self._queues.get(queue.name) is not queue:
            return
        while len(queue):
            consumer = self._next_consumer(queue)
            if consumer is None:
                break
            self._deliver(consumer, queue.pop())
        self._notify()

    def _next_consumer(self, queue: _Queue) -> _Consumer | None:
        count = len(queue.consumers)
        for offset in range(count):
            index = (queue.rr + offset) % count
            consumer = queue.consumers[index]
            if consumer.active and len(consumer.unsettled) < consumer.prefetch:
                queue.rr = (index + 1) % count
                return consumer
        return None

    def _deliver(self, consumer: _Consumer, message: _Message) -> None:
        tag = next(self._tags)
        delivery = MemoryDelivery(self, consumer, message, tag)
        consumer.unsettled[tag] = delivery
        task = asyncio.get_running_loop().create_task(
            self._run_handler(consumer, delivery), name=f"relaybus-memory-{consumer.tag}-{tag}"
        )
        consumer.tasks.add(task)
        task.add_done_callback(lambda t: self._handler_done(consumer, t))

    async def _run_handler(self, consumer: _Consumer, delivery: MemoryDelivery) -> None:
        try:
            await consumer.handler(delivery)
        except Exception:
            self._log.exception(
                "handler_failed",
                queue=consumer.queue.name,
                message_id=delivery.message_id,
                delivery_count=delivery.delivery_count,
            )
            if not delivery.settled:
                await delivery.nack(requeue=True)
        else:
            if not delivery.settled:
                self._log.warning(
                    "delivery_left_unsettled",
                    queue=consumer.queue.name,
                    message_id=delivery.message_id,
                    hint="ack, nack or dead_letter every delivery; it stays unacked until its consumer stops",
                )

    def _handler_done(self, consumer: _Consumer, task: asyncio.Task[None]) -> None:
        consumer.tasks.discard(task)
        self._notify()

    def _take_unsettled(self, delivery: MemoryDelivery) -> bool:
        """Remove ``delivery`` from its consumer; False when its queue was deleted meanwhile."""
        consumer = delivery._consumer
        consumer.unsettled.pop(delivery._tag, None)
        return self._queues.get(consumer.queue.name) is consumer.queue

    def _after_settle(self, queue: _Queue) -> None:
        self._dispatch(queue)

    def _return_message(self, queue: _Queue, message: _Message) -> None:
        message.delivery_count += 1
        limit = queue.delivery_limit
        if limit is not None and message.delivery_count > limit:
            self._broker_dead_letter(queue, message, "delivery_limit")
        else:
            queue.returned.append(message)

    def _broker_dead_letter(self, queue: _Queue, message: _Message, reason: str) -> None:
        """Dead-letter as the broker does (reject or delivery limit): x-first-death-* headers."""
        if queue.name == DEAD_LETTER_QUEUE:
            self._log.warning("dead_letter_dropped", queue=queue.name, message_id=message.message_id)
            return
        headers = dict(message.headers)
        if FIRST_DEATH_REASON_HEADER not in headers:
            headers[FIRST_DEATH_REASON_HEADER] = reason
            headers[FIRST_DEATH_QUEUE_HEADER] = queue.name
            headers[FIRST_DEATH_EXCHANGE_HEADER] = message.exchange
        # Readers of relaybus.dead see one format whoever dead-lettered (AmqpDelivery derives the same).
        headers.setdefault(ERROR_HEADER, f"{_DEATH_REASONS[reason]} (queue {queue.name!r})")
        headers.setdefault(ORIGINAL_QUEUE_HEADER, queue.name)
        headers.setdefault(ORIGINAL_ROUTING_KEY_HEADER, message.routing_key)
        headers.setdefault(ORIGINAL_EXCHANGE_HEADER, message.exchange)
        self._to_dead_letter_queue(message.copy(exchange=DEAD_LETTER_EXCHANGE, headers=headers), reason)

    def _consumer_dead_letter(self, queue: _Queue, message: _Message, reason: str) -> None:
        reason = reason if len(reason) <= _MAX_REASON else reason[: _MAX_REASON - 3] + "..."
        headers = dict(message.headers)
        headers[ERROR_HEADER] = reason
        headers[ORIGINAL_QUEUE_HEADER] = queue.name
        headers[ORIGINAL_ROUTING_KEY_HEADER] = message.routing_key
        headers[ORIGINAL_EXCHANGE_HEADER] = message.exchange
        self._to_dead_letter_queue(message.copy(exchange=DEAD_LETTER_EXCHANGE, headers=headers), reason)

    def _to_dead_letter_queue(self, message: _Message, reason: str) -> None:
        dead = self._queues.get(DEAD_LETTER_QUEUE)
        self._log.info("message_dead_lettered", message_id=message.message_id, reason=reason)
        if dead is None:
            self._log.warning("dead_letter_queue_missing", message_id=message.message_id)
            return
        dead.ready.append(message)
        self._dispatch(dead)

    def _detach(self, consumer: _Consumer) -> None:
        consumer.active = False
        queue = consumer.queue
        if consumer in queue.consumers:
            queue.consumers.remove(consumer)
            queue.rr = 0
            if self._queues.get(queue.name) is queue:
                self._arm_expiry(queue)

    def _arm_expiry(self, queue: _Queue) -> None:
        """(Re)start the ``expires_s`` countdown of a queue without consumers; stop it while it has some."""
        if queue.expiry is not None:
            queue.expiry.cancel()
            queue.expiry = None
        if queue.expires_s is None or queue.consumers:
            return
        queue.expiry = asyncio.get_running_loop().call_later(queue.expires_s, self._expire, queue)

    def _expire(self, queue: _Queue) -> None:
        queue.expiry = None
        if self._queues.get(queue.name) is not queue or queue.consumers:
            return
        self._log.info("queue_expired", queue=queue.name, dropped=len(queue), expires_s=queue.expires_s)
        self._remove_queue(queue.name)
        self._notify()

    def _return_unsettled(self, consumer: _Consumer) -> None:
        queue = consumer.queue
        pending = sorted(consumer.unsettled.items())
        consumer.unsettled.clear()
        live = self._queues.get(queue.name) is queue
        for _, delivery in pending:
            delivery._state = "returned"
            if live:
                self._return_message(queue, delivery._message)
        if live:
            self._dispatch(queue)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()

    def _idle(self, names: Sequence[str]) -> bool:
        queues = [self._queues[n] for n in names if n in self._queues] if names else self._queues.values()
        for queue in queues:
            if any(c.tasks or c.unsettled for c in queue.consumers):
                return False
            if len(queue) and any(c.active for c in queue.consumers):
                return False
        return True


def _check_name(what: str, value: str, *, allow_empty: bool = False) -> None:
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a string, got {type(value).__name__}")
    if not value and not allow_empty:
        raise ConfigError(f"{what} is empty; give it a name")
    if len(value.encode("utf-8")) > _MAX_NAME_BYTES:
        raise ConfigError(f"{what} {value[:40]!r}... is longer than {_MAX_NAME_BYTES} bytes, the AMQP limit")
