"""The memory bus's storage: messages as a queue holds them, queues with their consumers, and routing."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from relaybus.exceptions import BusError

from .base import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    DEFAULT_EXCHANGE,
    EXCHANGE,
    Handler,
    HeaderValue,
    OutgoingMessage,
)
from .core import body_too_large, check_name, with_trace
from .topic import topic_matches

if TYPE_CHECKING:
    from .memory import MemoryDelivery

__all__ = ["MemoryConsumer", "MemoryQueue", "QueueStats", "Routes", "StoredMessage", "accept"]

_HEADER_TYPES = (str, int, float, bool, type(None))
_ROUTE_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class QueueStats:
    """A snapshot of one queue: messages waiting, deliveries not yet settled, active consumers."""

    ready: int
    unsettled: int
    consumers: int


class StoredMessage:
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

    def copy(self, *, exchange: str, headers: dict[str, HeaderValue]) -> StoredMessage:
        """A copy for another queue (its own delivery count), from ``exchange`` with ``headers``."""
        return StoredMessage(
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


def accept(
    message: OutgoingMessage, max_body_bytes: int, trace: Mapping[str, str] | None = None
) -> StoredMessage:
    """``message`` as a queue stores it, with ``trace`` for its trace headers (``with_trace``); ``BusError``
    for what a broker would refuse (body, headers)."""
    body = message.body
    if not isinstance(body, bytes | bytearray | memoryview):
        raise BusError(f"message body must be bytes, got {type(body).__name__}; encode it first")
    if len(body) > max_body_bytes:
        raise body_too_large(len(body), max_body_bytes, message.routing_key)
    check_name("routing key", message.routing_key, allow_empty=True)
    headers: dict[str, HeaderValue] = {}
    for key, value in message.headers.items():
        if not isinstance(key, str) or not isinstance(value, _HEADER_TYPES):
            raise BusError(
                f"header {key!r} has a value of type {type(value).__name__}; "
                "header values must be str, int, float, bool or None"
            )
        headers[key] = value
    return StoredMessage(
        body=bytes(body),  # a copy when the publisher handed in a mutable buffer
        routing_key=message.routing_key,
        exchange=message.exchange,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        headers=with_trace(headers, trace),
        content_type=message.content_type,
        priority=message.priority,
    )


class MemoryConsumer:
    """One ``consume`` call: its handler, prefetch, unsettled deliveries by tag and running handler tasks."""

    __slots__ = ("active", "handler", "prefetch", "queue", "tag", "tasks", "unsettled")

    def __init__(self, queue: MemoryQueue, handler: Handler, prefetch: int, tag: str) -> None:
        self.queue = queue
        self.handler = handler
        self.prefetch = prefetch
        self.tag = tag
        self.active = True
        self.unsettled: dict[int, MemoryDelivery] = {}
        self.tasks: set[asyncio.Task[None]] = set()


class MemoryQueue:
    """A FIFO queue; returned messages come before the others, as with RabbitMQ quorum queues."""

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
        self.ready: deque[StoredMessage] = deque()
        self.returned: deque[StoredMessage] = deque()
        self.consumers: list[MemoryConsumer] = []
        self.rr = 0

    def __len__(self) -> int:
        return len(self.ready) + len(self.returned)

    def pop(self) -> StoredMessage:
        return self.returned.popleft() if self.returned else self.ready.popleft()

    def give_back(self, message: StoredMessage) -> bool:
        """Return ``message`` (one more delivery counted); False when that is past the delivery limit."""
        message.delivery_count += 1
        limit = self.delivery_limit
        if limit is not None and message.delivery_count > limit:
            return False
        self.returned.append(message)
        return True

    def next_consumer(self) -> MemoryConsumer | None:
        """The next active consumer below its prefetch, round robin; None when all are full."""
        count = len(self.consumers)
        for offset in range(count):
            index = (self.rr + offset) % count
            consumer = self.consumers[index]
            if consumer.active and len(consumer.unsettled) < consumer.prefetch:
                self.rr = (index + 1) % count
                return consumer
        return None

    def stats(self) -> QueueStats:
        return QueueStats(
            ready=len(self),
            unsettled=sum(len(c.unsettled) for c in self.consumers),
            consumers=len(self.consumers),
        )


class Routes:
    """Which queues a message published to an exchange with a routing key goes to."""

    __slots__ = ("_bindings", "_cache")

    def __init__(self) -> None:
        self._bindings: dict[str, set[str]] = {}  # queue name -> binding patterns on EXCHANGE
        self._cache: dict[str, tuple[str, ...]] = {}

    def bind(self, queue: str, patterns: tuple[str, ...]) -> None:
        if patterns:
            self._bindings.setdefault(queue, set()).update(patterns)
            self._cache.clear()

    def unbind(self, queue: str) -> None:
        if self._bindings.pop(queue, None) is not None:
            self._cache.clear()

    def route(self, exchange: str, routing_key: str, queues: Mapping[str, MemoryQueue]) -> tuple[str, ...]:
        """The names of the queues in ``queues`` the message goes to; ``BusError`` for an unknown exchange."""
        if exchange == DEFAULT_EXCHANGE:
            return (routing_key,) if routing_key in queues else ()
        if exchange == DEAD_LETTER_EXCHANGE:
            return (DEAD_LETTER_QUEUE,) if DEAD_LETTER_QUEUE in queues else ()
        if exchange != EXCHANGE:
            raise BusError(
                f"exchange {exchange!r} does not exist on this bus; publish to {EXCHANGE!r} (tasks and "
                f"events), {DEFAULT_EXCHANGE!r} (a queue by name) or {DEAD_LETTER_EXCHANGE!r}"
            )
        cached = self._cache.get(routing_key)
        if cached is None:
            cached = tuple(
                name
                for name, patterns in self._bindings.items()
                if any(topic_matches(p, routing_key) for p in patterns)
            )
            if len(self._cache) >= _ROUTE_CACHE_SIZE:
                self._cache.clear()
            self._cache[routing_key] = cached
        return cached
