"""What ``MemoryBus`` and ``AmqpBus`` do identically: argument checks, dead-letter headers, handler runs.

Both buses call into this module, so that they cannot drift apart again; the contract tests
(``tests/bus/test_contract.py``) pin each rule on both. A caller may rely on:

- **Declarations** (:class:`BusBase`): queue names and binding patterns are strings of at most 255 UTF-8
  bytes (AMQP short strings); queue names are not empty and do not start with ``amq.``; ``bindings`` is a
  sequence of patterns, never a bare string (which would bind each character); ``delivery_limit`` is an
  integer >= 0 or None; ``prefetch`` is 1-65535. A bad one is a ``ConfigError`` before anything is declared.
- **Dead-letter reasons** (``relaybus-error``) have secrets masked (:func:`relaybus.secrets.mask_secrets`), an
  empty one reads :data:`NO_REASON`, and a long one is cut to :data:`MAX_REASON_CHARS` ending in ``...``.
- **Broker dead letters** (``x-first-death-reason`` set: a reject without requeue, the delivery limit, ...)
  get ``relaybus-error`` worded from :data:`DEATH_REASONS` and the ``relaybus-original-*`` headers, so
  readers of ``relaybus.dead`` see one format whoever dead-lettered the message.
- **Handlers** run in a task of their own (:func:`start_handler`); an exception is logged (``handler_failed``)
  and an unsettled delivery returned with ``nack(requeue=True)``; a handler that returns without settling is
  logged (``handler_returned_unsettled``) and its delivery stays unsettled.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, Self, TypeVar

from relaybus.exceptions import BusError, ConfigError
from relaybus.secrets import mask_secrets

from .base import (
    DEAD_AT_HEADER,
    DEFAULT_DELIVERY_LIMIT,
    ERROR_HEADER,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_QUEUE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    TRACESTATE_HEADER,
    Delivery,
    Handler,
    HeaderValue,
    check_expires,
)

if TYPE_CHECKING:
    from relaybus.log import FilteringBoundLogger

__all__ = [
    "DEATH_REASONS",
    "DELIVERY_COUNT_HEADER",
    "FIRST_DEATH_EXCHANGE_HEADER",
    "FIRST_DEATH_QUEUE_HEADER",
    "FIRST_DEATH_REASON_HEADER",
    "MAX_NAME_BYTES",
    "MAX_REASON_CHARS",
    "NO_REASON",
    "BusBase",
    "ConsumedDelivery",
    "DeliveryFields",
    "MessageFields",
    "QueueDeclaration",
    "already_settled",
    "body_too_large",
    "check_name",
    "check_positive_options",
    "check_prefetch",
    "check_queue_declaration",
    "dead_letter_headers",
    "dead_letter_reason",
    "fill_death_headers",
    "run_handler",
    "start_handler",
    "truncate",
    "with_trace",
]

MAX_NAME_BYTES = 255
"""AMQP short strings: queue names, routing keys, binding patterns."""
MAX_REASON_CHARS = 1000
"""The longest ``relaybus-error`` reason (and logged error text); longer ones end in ``...``."""
NO_REASON = "dead-lettered (no reason given)"
DELIVERY_COUNT_HEADER = "x-delivery-count"
FIRST_DEATH_REASON_HEADER = "x-first-death-reason"
FIRST_DEATH_QUEUE_HEADER = "x-first-death-queue"
FIRST_DEATH_EXCHANGE_HEADER = "x-first-death-exchange"
DEATH_REASONS = {
    "delivery_limit": "delivery limit exceeded: redelivered more times than the queue's delivery limit",
    "rejected": "rejected by a consumer without requeue",
    "expired": "message TTL expired",
    "maxlen": "queue length limit exceeded",
}
"""RabbitMQ's ``x-death`` reasons in words (an unknown reason is shown as it is)."""

V = TypeVar("V")

# -- argument checks --------------------------------------------------------------------------------------


def check_name(what: str, value: object, *, allow_empty: bool = False) -> None:
    """Raise ``ConfigError`` unless ``value`` is a string of at most 255 UTF-8 bytes (and not empty)."""
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a string, got {type(value).__name__}")
    if not value and not allow_empty:
        raise ConfigError(f"{what} is empty; give it a name")
    if len(value.encode("utf-8")) > MAX_NAME_BYTES:
        raise ConfigError(f"{what} {value[:40]!r}... is longer than {MAX_NAME_BYTES} bytes, the AMQP limit")


@dataclass(frozen=True, slots=True)
class QueueDeclaration:
    """The checked arguments of one ``Bus.declare_queue`` call."""

    name: str
    bindings: tuple[str, ...]
    durable: bool
    delivery_limit: int | None
    expires_s: float | None


def check_queue_declaration(
    name: str, bindings: Sequence[str], durable: bool, delivery_limit: int | None, expires_s: float | None
) -> QueueDeclaration:
    """The arguments of ``Bus.declare_queue``, checked (``ConfigError`` naming the first bad one)."""
    check_name("queue name", name)
    if name.startswith("amq."):
        raise ConfigError(f"queue name {name!r} starts with 'amq.', which AMQP reserves; choose another")
    if isinstance(bindings, str | bytes):
        raise ConfigError(
            f"bindings must be a sequence of patterns, not the string {bindings!r}: bindings=[{bindings!r}]"
        )
    if not isinstance(bindings, Collection):
        raise ConfigError(f"bindings must be a sequence of patterns, got {type(bindings).__name__}")
    patterns = tuple(bindings)
    for pattern in patterns:
        check_name("binding pattern", pattern, allow_empty=True)
    if delivery_limit is not None and (
        isinstance(delivery_limit, bool) or not isinstance(delivery_limit, int) or delivery_limit < 0
    ):
        raise ConfigError(f"delivery_limit must be an integer >= 0 or None, got {delivery_limit!r}")
    check_expires(expires_s)
    return QueueDeclaration(name, patterns, bool(durable), delivery_limit, expires_s)


def check_prefetch(prefetch: int) -> None:
    if isinstance(prefetch, bool) or not isinstance(prefetch, int) or not 1 <= prefetch <= 65535:
        raise ConfigError(f"prefetch must be an integer between 1 and 65535, got {prefetch!r}")


def check_positive_options(owner: str, options: Mapping[str, object]) -> None:
    """Raise ``ConfigError`` naming the first of ``options`` (name -> value) that is not a number > 0."""
    for name, value in options.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigError(f"{owner} option {name} must be > 0, got {value!r}")


def body_too_large(size: int, limit: int, routing_key: str) -> BusError:
    """The error of a publish whose body is over ``max_body_bytes`` (built only when it is)."""
    return BusError(
        f"message body is {size} bytes, over the limit of {limit} bytes (routing key {routing_key!r}): "
        "send large data by reference (a URL or a path) or raise max_body_bytes"
    )


def already_settled(message_id: str | None, queue: str, state: str) -> BusError:
    """The error of a second ``ack``/``nack``/``dead_letter`` of one delivery."""
    return BusError(
        f"delivery {message_id!r} from queue {queue!r} was already settled ({state}); call ack, nack or "
        "dead_letter once per delivery"
    )


# -- dead letters -----------------------------------------------------------------------------------------


def truncate(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` cut to ``limit`` characters, ending in ``...`` when it was longer."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def dead_letter_reason(reason: str, *secrets: str | None) -> str:
    """``reason`` as it goes into ``relaybus-error``: secrets masked, never empty, at most 1000 characters."""
    text = mask_secrets(str(reason), *secrets)
    return truncate(text) if text.strip() else NO_REASON


def dead_letter_headers(
    headers: Mapping[str, V],
    *,
    reason: str,
    queue: str,
    routing_key: str,
    exchange: str,
    secrets: Sequence[str | None] = (),
) -> dict[str, V | str]:
    """The headers of a message dead-lettered by a consumer (``Delivery.dead_letter``) or by relaybus itself.

    The original headers (without ``x-delivery-count``, which belongs to the queue it left), the reason (see
    :func:`dead_letter_reason`), and the queue, routing key and exchange it came from.
    """
    copy: dict[str, V | str] = {k: v for k, v in headers.items() if k != DELIVERY_COUNT_HEADER}
    copy[ERROR_HEADER] = dead_letter_reason(reason, *secrets)
    copy[ORIGINAL_QUEUE_HEADER] = queue
    copy[ORIGINAL_ROUTING_KEY_HEADER] = routing_key
    copy[ORIGINAL_EXCHANGE_HEADER] = exchange
    copy[DEAD_AT_HEADER] = f"{time.time():.3f}"
    return copy


def with_trace(headers: dict[str, HeaderValue], trace: Mapping[str, str] | None) -> dict[str, HeaderValue]:
    """``headers`` (a message's own copy, changed in place and returned) with the trace headers of its
    publish (``traceparent``, maybe ``tracestate``) in place of any it had; ``trace`` None (control
    traffic) leaves them as they are."""
    if trace:
        headers.pop(TRACESTATE_HEADER, None)
        headers.update(trace)
    return headers


def fill_death_headers(
    headers: dict[str, HeaderValue], *, routing_key: str | None, died_at: float | None = None
) -> None:
    """Add ``relaybus-error``, ``relaybus-original-*`` and (given ``died_at``) ``relaybus-dead-at``, unless
    present, to the headers of a message the broker dead-lettered, derived from its ``x-first-death-*`` and
    ``x-death`` headers; other headers are left alone."""
    reason = headers.get(FIRST_DEATH_REASON_HEADER)
    if not isinstance(reason, str):
        return
    queue = headers.get(FIRST_DEATH_QUEUE_HEADER)
    where = f", queue {queue!r}" if isinstance(queue, str) else ""
    words = DEATH_REASONS.get(reason, reason)
    headers.setdefault(ERROR_HEADER, f"{words} (x-death reason {reason!r}{where})")
    if isinstance(queue, str):
        headers.setdefault(ORIGINAL_QUEUE_HEADER, queue)
    exchange = headers.get(FIRST_DEATH_EXCHANGE_HEADER)
    if isinstance(exchange, str):
        headers.setdefault(ORIGINAL_EXCHANGE_HEADER, exchange)
    if routing_key is not None:
        headers.setdefault(ORIGINAL_ROUTING_KEY_HEADER, routing_key)
    if died_at is not None:
        headers.setdefault(DEAD_AT_HEADER, f"{died_at:.3f}")


# -- buses, deliveries and their handlers -------------------------------------------------------------------


class BusBase(ABC):
    """What the two buses share as a class: ``declare_queue`` checks its arguments in one place
    (:func:`check_queue_declaration`) before the bus declares, and ``async with bus:`` connects on entry and
    closes on exit."""

    __slots__ = ()

    @abstractmethod
    async def connect(self) -> None: ...

    @abstractmethod
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
        """See :meth:`relaybus.bus.base.Bus.declare_queue`; ``ConfigError`` for a bad argument."""
        await self._declare_queue(check_queue_declaration(name, bindings, durable, delivery_limit, expires_s))

    @abstractmethod
    async def _declare_queue(self, queue: QueueDeclaration) -> None:
        """Declare ``queue`` as ``declare_queue`` says."""

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class MessageFields(Protocol):
    """The message fields a delivery shows (aio-pika's ``IncomingMessage`` and the memory bus's message)."""

    @property
    def body(self) -> bytes: ...
    @property
    def routing_key(self) -> str | None: ...
    @property
    def exchange(self) -> str | None: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def reply_to(self) -> str | None: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def priority(self) -> int | None: ...


M = TypeVar("M", bound=MessageFields)


class DeliveryFields(Generic[M]):
    """The read-only properties of the ``Delivery`` protocol, read from ``_message`` and ``_headers``.

    A subclass sets both in its ``__init__`` and adds ``redelivered``, ``delivery_count`` and settling.
    """

    __slots__ = ("_headers", "_message")
    _message: M
    _headers: Mapping[str, HeaderValue]

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
    def user_id(self) -> str | None:
        # AMQP's user_id property; MemoryBus messages have none.
        value = getattr(self._message, "user_id", None)
        return value if isinstance(value, str) and value else None


class ConsumedDelivery(Delivery, Protocol):
    """A delivery as its bus's consumer sees it: which queue it came from, and whether it is settled."""

    @property
    def queue(self) -> str: ...
    @property
    def settled(self) -> bool: ...


def start_handler(
    handler: Handler,
    delivery: ConsumedDelivery,
    log: FilteringBoundLogger,
    *,
    running: set[asyncio.Task[None]],
    name: str,
    on_done: Callable[[asyncio.Task[None]], object],
) -> None:
    """Run ``handler(delivery)`` (see :func:`run_handler`) in a task of its own, kept in ``running``.

    Its own task: user code must not be cancelled half-way by whatever delivered the message (aiormq cancels
    the tasks it spawned when their channel closes). ``on_done`` runs when it ends (it discards the task).
    """
    task = asyncio.get_running_loop().create_task(run_handler(handler, delivery, log), name=name)
    running.add(task)
    task.add_done_callback(on_done)


async def run_handler(handler: Handler, delivery: ConsumedDelivery, log: FilteringBoundLogger) -> None:
    """Await ``handler(delivery)``: an exception is logged and an unsettled delivery returned (requeued);
    a handler that returns without settling is logged and its delivery left unsettled."""
    try:
        await handler(delivery)
    except Exception as exc:
        log.error(
            "handler_failed",
            queue=delivery.queue,
            message_id=delivery.message_id,
            delivery_count=delivery.delivery_count,
            error_type=type(exc).__name__,
            error=truncate(mask_secrets(str(exc))),
            exc_info=True,
        )
        if not delivery.settled:
            try:
                await delivery.nack(requeue=True)
            except Exception as nack_exc:  # the consumer must go on whatever happens to one message
                log.warning(
                    "nack_failed",
                    queue=delivery.queue,
                    message_id=delivery.message_id,
                    error=type(nack_exc).__name__,
                )
    else:
        if not delivery.settled:
            log.warning(
                "handler_returned_unsettled",
                queue=delivery.queue,
                message_id=delivery.message_id,
                hint="ack, nack or dead_letter every delivery; it stays unacked until its consumer stops",
            )
