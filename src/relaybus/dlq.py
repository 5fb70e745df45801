"""Dead letters: see them with their reasons, send them back, or drop them.

Everything relaybus refuses or gives up on ends in the durable queue ``relaybus.dead`` with the reason in the
``relaybus-error`` header and where it came from in ``relaybus-original-*`` headers (see
:mod:`relaybus.bus.base`). These functions work on any :class:`~relaybus.bus.base.Bus`.

Reading a queue over AMQP means taking its messages: :func:`list_dead_letters` takes up to ``limit`` of
them, reads them and returns every one to the queue (nothing is lost if it is interrupted: unsettled messages
go back when the channel closes). Order in ``relaybus.dead`` is kept only as far as RabbitMQ keeps it for
returned messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass, field

from relaybus.bus.base import (
    DEAD_AT_HEADER,
    DEAD_LETTER_QUEUE,
    DEFAULT_EXCHANGE,
    ERROR_HEADER,
    EXCHANGE,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_QUEUE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    SCHEMA_HEADER,
    Bus,
    Delivery,
    HeaderValue,
    OutgoingMessage,
)
from relaybus.bus.rpc import REPLY_QUEUE_PREFIX, is_private_reply_queue, is_reply_queue
from relaybus.exceptions import BusError, ConfigError, NoRouteError

__all__ = [
    "DeadLetter",
    "ReplayReport",
    "list_dead_letters",
    "purge_dead_letters",
    "replay_dead_letters",
    "show_dead_letter",
]

_PREVIEW_CHARS = 200
# Headers that describe the death, not the message: dropped when a message is sent back.
_DEATH_HEADER_PREFIXES = (
    "x-death",
    "x-first-death-",
    "x-last-death-",
    "relaybus-original-",
    ERROR_HEADER,
    DEAD_AT_HEADER,
)
MAX_BATCH = 10_000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter as read from ``relaybus.dead``: where it came from, why, when, the whole message."""

    message_id: str | None
    reason: str
    queue: str | None
    exchange: str
    routing_key: str
    size: int
    preview: str
    headers: Mapping[str, HeaderValue] = field(repr=False)
    died_at: float | None = None
    """When it was dead-lettered (Unix seconds), where the ``relaybus-dead-at`` header says so."""
    body: bytes = field(default=b"", repr=False)
    """The whole body, as it died (``preview`` is its first characters as text)."""
    correlation_id: str | None = None
    reply_to: str | None = None
    content_type: str | None = None

    @classmethod
    def from_delivery(cls, delivery: Delivery) -> DeadLetter:
        headers = delivery.headers
        reason = headers.get(ERROR_HEADER)
        exchange = headers.get(ORIGINAL_EXCHANGE_HEADER)
        routing_key = headers.get(ORIGINAL_ROUTING_KEY_HEADER)
        queue = headers.get(ORIGINAL_QUEUE_HEADER)
        return cls(
            message_id=delivery.message_id,
            reason=str(reason) if reason is not None else "unknown (no relaybus-error header)",
            queue=str(queue) if queue is not None else None,
            exchange=str(exchange) if exchange is not None else EXCHANGE,
            routing_key=str(routing_key) if routing_key is not None else delivery.routing_key,
            size=len(delivery.body),
            preview=delivery.body[:_PREVIEW_CHARS].decode("utf-8", "replace"),
            headers=dict(headers),
            died_at=_seconds(headers.get(DEAD_AT_HEADER)),
            body=delivery.body,
            correlation_id=delivery.correlation_id,
            reply_to=delivery.reply_to,
            content_type=delivery.content_type,
        )

    def age_s(self, now: float | None = None) -> float | None:
        """Seconds since it was dead-lettered, None when that is not known."""
        if self.died_at is None:
            return None
        return max(0.0, (time.time() if now is None else now) - self.died_at)

    @property
    def is_result(self) -> bool:
        """Whether it is a result that found its caller's reply queue gone."""
        return self.exchange == DEFAULT_EXCHANGE and is_reply_queue(self.routing_key)

    @property
    def is_task(self) -> bool:
        """Whether it is a task (sent to the relaybus exchange as ``task.<topic>`` or ``agent.<name>``)."""
        return self.exchange == EXCHANGE and self.routing_key.startswith(("task.", "agent."))

    @property
    def hint(self) -> str:
        """What to do with it."""
        key = self.message_id or "ID"
        if self.is_result:
            if is_private_reply_queue(self.routing_key):
                return (
                    f"a result for an anonymous caller whose queue {self.routing_key} is gone for good: "
                    "nobody can receive it, purge it"
                )
            name = self.routing_key.removeprefix(REPLY_QUEUE_PREFIX)
            return (
                f"a result for the orchestrator named {name!r}: once it runs again (relaybus run PLAN --name "
                f"{name}) its queue {self.routing_key} exists, then relaybus dlq replay --id {key}"
            )
        if self.is_task:
            return (
                f"a task: fix what the reason says, then relaybus dlq replay --id {key} (--body FILE to send "
                "a corrected body, --wait to see its result)"
            )
        return f"fix what the reason says, then relaybus dlq replay --id {key}"


def _seconds(value: HeaderValue) -> float | None:
    try:
        return float(value) if value is not None and not isinstance(value, bool) else None
    except ValueError:
        return None


@dataclass(slots=True)
class ReplayReport:
    """What :func:`replay_dead_letters` did: ids sent back, and ids left in the queue with the reason."""

    replayed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    tasks: dict[str, str] = field(default_factory=dict)
    """Of the letters replayed, the tasks: letter id -> the task id its result will carry."""


@contextlib.asynccontextmanager
async def _taken(bus: Bus, limit: int, idle_s: float) -> AsyncIterator[list[Delivery]]:
    """Hold up to ``limit`` dead letters unsettled while the block runs; settle them inside it.

    Collection stops at ``limit`` or once no message arrived for ``idle_s``. Whatever the block leaves
    unsettled is returned to the queue.
    """
    if not 1 <= limit <= MAX_BATCH:
        raise ConfigError(f"limit must be between 1 and {MAX_BATCH}, got {limit}")
    taken: list[Delivery] = []
    arrived = asyncio.Event()
    release = asyncio.Event()
    closing = False

    async def handler(delivery: Delivery) -> None:
        if closing or len(taken) >= limit:  # one too many, or a letter returned below coming round again
            await _give_back(delivery)
            return
        taken.append(delivery)
        arrived.set()
        await release.wait()  # keep it unsettled: the caller settles it
        await _give_back(delivery)  # what the caller left unsettled goes back to the queue

    subscription = await bus.consume(DEAD_LETTER_QUEUE, handler, prefetch=limit)
    try:
        while len(taken) < limit:
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), timeout=idle_s)
            except TimeoutError:
                break
        yield list(taken)
    finally:
        # Stop the consumer first, so the letters given back are not delivered to it again (each such
        # redelivery was a handler left waiting, logged as unsettled, one line per other letter).
        closing = True
        cancelling = asyncio.ensure_future(subscription.cancel())
        await asyncio.sleep(0)
        release.set()
        await cancelling


async def _give_back(delivery: Delivery) -> None:
    if not getattr(delivery, "settled", False):  # every bus's deliveries say (ConsumedDelivery)
        with contextlib.suppress(BusError):  # the channel is gone: the broker returns it by itself
            await delivery.nack(requeue=True)


async def list_dead_letters(bus: Bus, *, limit: int = 100, idle_s: float = 1.0) -> list[DeadLetter]:
    """Up to ``limit`` dead letters; every one stays in ``relaybus.dead``."""
    async with _taken(bus, limit, idle_s) as deliveries:
        return [DeadLetter.from_delivery(d) for d in deliveries]


def _replay_headers(headers: Mapping[str, HeaderValue]) -> dict[str, HeaderValue]:
    return {k: v for k, v in headers.items() if not k.startswith(_DEATH_HEADER_PREFIXES)}


async def show_dead_letter(
    bus: Bus, message_id: str, *, limit: int = 100, idle_s: float = 1.0
) -> DeadLetter | None:
    """The first dead letter with ``message_id`` among the first ``limit``; it stays in ``relaybus.dead``."""
    async with _taken(bus, limit, idle_s) as deliveries:
        for delivery in deliveries:
            if delivery.message_id == message_id:
                return DeadLetter.from_delivery(delivery)
    return None


async def replay_dead_letters(
    bus: Bus,
    *,
    ids: Collection[str] | None = None,
    limit: int = 100,
    idle_s: float = 1.0,
    replace_body: bytes | None = None,
    reply_to: str | None = None,
) -> ReplayReport:
    """Send dead letters back where they came from (their original exchange and routing key).

    ``ids``: only those message ids (None: every dead letter, up to ``limit``). ``replace_body``: a fixed body
    to send instead (only with exactly one id); a task's body carries its id, which then becomes the message
    id, and the ``relaybus-schema`` header is added when the letter had none. ``reply_to``: where the results
    of the tasks among them go instead of their own ``reply_to`` (to wait for them; see
    :attr:`ReplayReport.tasks`). A letter is removed from ``relaybus.dead`` only after the broker confirmed
    the re-publish; one that cannot be routed stays there and is reported in ``failed``.
    """
    if replace_body is not None and (ids is None or len(ids) != 1):
        raise ConfigError("a replacement body needs exactly one message id (--id ID)")
    wanted = set(ids) if ids is not None else None
    report = ReplayReport()
    async with _taken(bus, limit, idle_s) as deliveries:
        for delivery in deliveries:
            if wanted is None or delivery.message_id in wanted:
                await _replay_one(bus, delivery, replace_body, reply_to, report)
    return report


async def _replay_one(
    bus: Bus, delivery: Delivery, replace_body: bytes | None, reply_to: str | None, report: ReplayReport
) -> None:
    letter = DeadLetter.from_delivery(delivery)
    key = letter.message_id or f"(no id, routing key {letter.routing_key})"
    headers = _replay_headers(delivery.headers)
    message_id = delivery.message_id
    if replace_body is not None:
        message_id = _body_id(replace_body) or message_id
        headers.setdefault(SCHEMA_HEADER, "1")
    message = OutgoingMessage(
        body=replace_body if replace_body is not None else delivery.body,
        routing_key=letter.routing_key,
        exchange=letter.exchange,
        message_id=message_id,
        correlation_id=delivery.correlation_id,
        reply_to=reply_to if reply_to is not None and letter.is_task else delivery.reply_to,
        headers=headers,
        priority=delivery.priority,
        content_type=delivery.content_type,
        mandatory=True,
    )
    try:
        await bus.publish(message)
    except (NoRouteError, BusError) as exc:
        report.failed[key] = f"{exc}; {letter.hint}"
        return  # left unsettled: returned to the dead queue
    await delivery.ack()
    report.replayed.append(key)
    if letter.is_task and message_id:
        report.tasks[key] = message_id


def _body_id(body: bytes) -> str | None:
    """The ``id`` a JSON object body (a task) carries."""
    try:
        value = json.loads(body)
    except ValueError:
        return None
    task_id = value.get("id") if isinstance(value, dict) else None
    return task_id if isinstance(task_id, str) and task_id else None


async def purge_dead_letters(bus: Bus) -> int:
    """Drop every ready dead letter; return how many."""
    return await bus.purge_queue(DEAD_LETTER_QUEUE)
