"""The ``Bus`` protocol, the message types it moves, and the AMQP topology names of DESIGN.md.

A bus moves opaque bodies between exchanges and queues with RabbitMQ's semantics; it knows nothing of tasks
or results (that is :mod:`relaybus.bus.codec`). ``MemoryBus`` and ``AmqpBus`` implement it and pass the same
contract tests (``tests/bus/test_contract.py``), so code written against ``Bus`` runs unchanged on either.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from relaybus.exceptions import ConfigError

__all__ = [
    "DEAD_LETTER_EXCHANGE",
    "DEAD_LETTER_QUEUE",
    "DEFAULT_DELIVERY_LIMIT",
    "DEFAULT_EXCHANGE",
    "ERROR_HEADER",
    "EXCHANGE",
    "SCHEMA_HEADER",
    "Bus",
    "Delivery",
    "Handler",
    "HeaderValue",
    "OutgoingMessage",
    "Subscription",
    "agent_queue_name",
    "agent_routing_key",
    "check_expires",
    "event_routing_key",
    "task_routing_key",
]

EXCHANGE = "relaybus"
"""The topic exchange for tasks (``task.<topic>``, ``agent.<name>``) and events (``event.<topic>``)."""
DEFAULT_EXCHANGE = ""
"""AMQP's default exchange: the routing key is a queue name. Results go this way to ``reply_to``."""
DEAD_LETTER_EXCHANGE = "relaybus.dlx"
DEAD_LETTER_QUEUE = "relaybus.dead"
DEFAULT_DELIVERY_LIMIT = 5
"""Redeliveries allowed after the first delivery before a message is dead-lettered (``x-delivery-limit``)."""
SCHEMA_HEADER = "relaybus-schema"
ERROR_HEADER = "relaybus-error"
"""Header carrying the reason a message was dead-lettered."""
ORIGINAL_QUEUE_HEADER = "relaybus-original-queue"
ORIGINAL_ROUTING_KEY_HEADER = "relaybus-original-routing-key"
ORIGINAL_EXCHANGE_HEADER = "relaybus-original-exchange"
DEAD_AT_HEADER = "relaybus-dead-at"
"""When a message was dead-lettered, Unix epoch seconds as a decimal string (what ``relaybus dlq`` ages)."""

DEADLINE_HEADER = "relaybus-deadline"
"""Absolute deadline of a task, Unix epoch seconds as a decimal string; the worker enforces it."""
DELEGATION_HEADER = "relaybus-delegation"
"""Comma-separated agent names of a delegation chain, outermost first (loop and depth checks)."""
STREAM_HEADER = "relaybus-stream"
"""On a task: ``1`` asks its worker to send the task's events (:class:`~relaybus.messages.TaskEvent`) while
it runs, to the queue named by ``relaybus-events-to`` or else to the task's ``reply_to``. Without it no event
is sent."""
EVENTS_TO_HEADER = "relaybus-events-to"
"""On a streamed task: the caller's events queue (``relaybus.events.<32 hex digits>``, classic, not durable)
that gets the task's events instead of its ``reply_to``; a value of another form is ignored."""
EVENT_HEADER = "relaybus-event"
"""On a task event (``correlation_id`` = task id): the event's ``kind``."""
TRACEPARENT_HEADER = "traceparent"
TRACESTATE_HEADER = "tracestate"
CANCEL_ROUTING_KEY = "event.relaybus.cancel"
"""Event asking every worker to cancel a running task; body is a ``CancelRequest``."""
WORKER_EVENT_PREFIX = "event.relaybus.worker"
"""Workers announce themselves on ``event.relaybus.worker.<kind>`` (``heartbeat``, ``stopped``)."""

HeaderValue = str | int | float | bool | None
_MAX_EXPIRES_S = 2**31 // 1000  # x-expires is a signed 32-bit number of milliseconds


def check_expires(expires_s: float | None) -> None:
    """Raise ``ConfigError`` unless ``expires_s`` is None or a positive number of seconds."""
    if expires_s is None:
        return
    if isinstance(expires_s, bool) or not isinstance(expires_s, int | float) or not expires_s > 0:
        raise ConfigError(
            f"expires_s must be a positive number of seconds or None, got {expires_s!r}; e.g. 300 deletes "
            "the queue 5 minutes after its last consumer went away"
        )
    if expires_s > _MAX_EXPIRES_S:
        raise ConfigError(f"expires_s must be at most {_MAX_EXPIRES_S} seconds, got {expires_s!r}")


def task_routing_key(topic: str) -> str:
    return f"task.{topic}"


def agent_routing_key(name: str) -> str:
    return f"agent.{name}"


def event_routing_key(topic: str) -> str:
    return f"event.{topic}"


def agent_queue_name(name: str) -> str:
    return f"relaybus.agent.{name}"


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message to publish. ``exchange=""`` sends straight to the queue named by ``routing_key``.

    ``mandatory`` messages that match no queue make ``publish`` raise :class:`~relaybus.NoRouteError`.
    """

    body: bytes
    routing_key: str
    exchange: str = EXCHANGE
    message_id: str | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    headers: Mapping[str, HeaderValue] = field(default_factory=dict)
    priority: int = 0
    content_type: str | None = "application/json"
    mandatory: bool = True
    persistent: bool = True


class Delivery(Protocol):
    """A received message. Settle it exactly once: ``ack``, ``nack`` or ``dead_letter``.

    ``delivery_count`` is how many times it was delivered before and returned (0 on the first delivery).
    A delivery left unsettled when its consumer's channel closes is requeued, as in AMQP.
    """

    @property
    def body(self) -> bytes: ...
    @property
    def routing_key(self) -> str: ...
    @property
    def exchange(self) -> str: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def reply_to(self) -> str | None: ...
    @property
    def headers(self) -> Mapping[str, HeaderValue]: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def priority(self) -> int: ...
    @property
    def redelivered(self) -> bool: ...
    @property
    def delivery_count(self) -> int: ...
    @property
    def user_id(self) -> str | None:
        """The AMQP ``user_id`` property: on RabbitMQ, the login of the connection that published the
        message (the broker refuses any other value, so it cannot be forged); None on MemoryBus."""
        ...

    async def ack(self) -> None: ...
    async def nack(self, *, requeue: bool = True) -> None:
        """Return the message (``requeue``: counts against the delivery limit) or dead-letter it."""
        ...

    async def dead_letter(self, reason: str) -> None:
        """Move the message to ``relaybus.dead`` with ``reason`` in the ``relaybus-error`` header."""
        ...


Handler = Callable[[Delivery], Awaitable[None]]


class Subscription(Protocol):
    async def cancel(self) -> None:
        """Stop consuming; deliveries not yet settled are requeued once their handlers return."""
        ...


@runtime_checkable
class Bus(Protocol):
    """What relaybus needs from a message broker. See the module docstring."""

    @property
    def url(self) -> str:
        """The URL this bus was made for, password masked."""
        ...

    @property
    def is_connected(self) -> bool:
        """True after ``connect()`` and before ``close()`` while the broker is reachable (``AmqpBus`` says
        False during an outage, while aio-pika restores the connection)."""
        ...

    async def connect(self) -> None:
        """Connect and declare the shared topology (idempotent)."""
        ...

    async def close(self) -> None: ...

    async def declare_queue(
        self,
        name: str,
        *,
        bindings: Sequence[str] = (),
        durable: bool = True,
        delivery_limit: int | None = DEFAULT_DELIVERY_LIMIT,
        expires_s: float | None = None,
    ) -> None:
        """Declare ``name`` and bind it to ``EXCHANGE`` with each pattern in ``bindings`` (idempotent).

        ``durable=True``: a durable quorum queue with a delivery limit, dead-lettering to ``relaybus.dlx``
        at-least-once; it survives a broker restart. ``durable=False``: a private queue deleted when this
        connection closes (for event taps and control queues); on ``AmqpBus`` it is re-declared after a
        reconnect, but messages routed to it while the connection is down are lost.

        ``expires_s`` (AMQP ``x-expires``): the queue is deleted, with its messages, once it has had no
        consumer and no re-declaration for that many seconds (checked by the broker every few seconds, so
        give it minutes, not milliseconds). A durable queue with ``expires_s`` is what a caller's private
        reply queue should be: it outlives a broker restart and a reconnect, and goes away by itself after
        its owner died. Re-declaring a queue with another ``durable``, ``delivery_limit`` or ``expires_s``
        raises ``BusError`` (RabbitMQ refuses inequivalent arguments).
        """
        ...

    async def delete_queue(self, name: str) -> None: ...

    async def purge_queue(self, name: str) -> int:
        """Remove the ready messages of ``name``; return how many."""
        ...

    async def publish(self, message: OutgoingMessage) -> None:
        """Publish and return once the broker has taken responsibility for the message (a confirm).

        Raises :class:`~relaybus.NoRouteError` for a mandatory message no queue is bound for, and
        :class:`~relaybus.BusError` when the broker refuses it.
        """
        ...

    async def consume(self, queue: str, handler: Handler, *, prefetch: int = 16) -> Subscription:
        """Call ``handler`` for each delivery, at most ``prefetch`` unsettled at once.

        Each call runs in an asyncio task of its own (the worker cancels one task's ``handle`` on a deadline
        without touching the others), and a handler exception nacks an unsettled delivery with requeue.
        """
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
