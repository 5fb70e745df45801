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
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass, field

from relaybus.bus.base import (
    DEAD_LETTER_QUEUE,
    ERROR_HEADER,
    EXCHANGE,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_QUEUE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    Bus,
    Delivery,
    HeaderValue,
    OutgoingMessage,
)
from relaybus.exceptions import BusError, ConfigError, NoRouteError

__all__ = ["DeadLetter", "ReplayReport", "list_dead_letters", "purge_dead_letters", "replay_dead_letters"]

_PREVIEW_CHARS = 200
# Headers that describe the death, not the message: dropped when a message is sent back.
_DEATH_HEADER_PREFIXES = ("x-death", "x-first-death-", "x-last-death-", "relaybus-original-", ERROR_HEADER)
MAX_BATCH = 10_000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter as read from ``relaybus.dead``."""

    message_id: str | None
    reason: str
    queue: str | None
    exchange: str
    routing_key: str
    size: int
    preview: str
    headers: Mapping[str, HeaderValue] = field(repr=False)
    body: bytes = field(default=b"", repr=False)
    """The whole body, as it died (``preview`` is its first characters as text)."""

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
            body=delivery.body,
        )


@dataclass(slots=True)
class ReplayReport:
    """What :func:`replay_dead_letters` did: ids sent back, and ids left in the queue with the reason."""

    replayed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


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

    async def handler(delivery: Delivery) -> None:
        if len(taken) >= limit:
            await delivery.nack(requeue=True)
            return
        taken.append(delivery)
        arrived.set()
        await release.wait()  # keep it unsettled: the caller settles it

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
        for delivery in taken:
            with contextlib.suppress(BusError):
                await delivery.nack(requeue=True)  # no-op error for those already settled
        release.set()
        await subscription.cancel()


async def list_dead_letters(bus: Bus, *, limit: int = 100, idle_s: float = 1.0) -> list[DeadLetter]:
    """Up to ``limit`` dead letters; every one stays in ``relaybus.dead``."""
    async with _taken(bus, limit, idle_s) as deliveries:
        return [DeadLetter.from_delivery(d) for d in deliveries]


def _replay_headers(headers: Mapping[str, HeaderValue]) -> dict[str, HeaderValue]:
    return {k: v for k, v in headers.items() if not k.startswith(_DEATH_HEADER_PREFIXES)}


async def replay_dead_letters(
    bus: Bus,
    *,
    ids: Collection[str] | None = None,
    limit: int = 100,
    idle_s: float = 1.0,
    replace_body: bytes | None = None,
) -> ReplayReport:
    """Send dead letters back where they came from (their original exchange and routing key).

    ``ids``: only those message ids (None: every dead letter, up to ``limit``). ``replace_body``: a fixed body
    to send instead (only with exactly one id). A letter is removed from ``relaybus.dead`` only after the
    broker confirmed the re-publish; one that cannot be routed stays there and is reported in ``failed``.
    """
    if replace_body is not None and (ids is None or len(ids) != 1):
        raise ConfigError("a replacement body needs exactly one message id (--id ID)")
    wanted = set(ids) if ids is not None else None
    report = ReplayReport()
    async with _taken(bus, limit, idle_s) as deliveries:
        for delivery in deliveries:
            if wanted is None or delivery.message_id in wanted:
                await _replay_one(bus, delivery, replace_body, report)
    return report


async def _replay_one(bus: Bus, delivery: Delivery, replace_body: bytes | None, report: ReplayReport) -> None:
    letter = DeadLetter.from_delivery(delivery)
    key = letter.message_id or f"(no id, routing key {letter.routing_key})"
    message = OutgoingMessage(
        body=replace_body if replace_body is not None else delivery.body,
        routing_key=letter.routing_key,
        exchange=letter.exchange,
        message_id=delivery.message_id,
        correlation_id=delivery.correlation_id,
        reply_to=delivery.reply_to,
        headers=_replay_headers(delivery.headers),
        priority=delivery.priority,
        content_type=delivery.content_type,
        mandatory=True,
    )
    try:
        await bus.publish(message)
    except (NoRouteError, BusError) as exc:
        report.failed[key] = str(exc)
        return  # left unsettled: returned to the dead queue
    await delivery.ack()
    report.replayed.append(key)


async def purge_dead_letters(bus: Bus) -> int:
    """Drop every ready dead letter; return how many."""
    return await bus.purge_queue(DEAD_LETTER_QUEUE)
