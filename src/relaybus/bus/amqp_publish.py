"""``AmqpBus``'s publishing side: its message properties, its one confirmed channel, and refusals in words.

After the loss of a quorum queue's leader, RabbitMQ 3.10 nacks publishes on the channels that had published
to it for a minute or more, while a new channel is confirmed once a new leader is elected: so a nacked
publish is retried on a fresh channel (:meth:`PublishChannel.renew`), replaced once for all the publishes
the old one nacked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

import aio_pika
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from aio_pika.exceptions import ChannelClosed
from pamqp.commands import Basic

from relaybus.exceptions import BusError

from .amqp_connection import TRANSIENT
from .base import OutgoingMessage
from .core import with_trace

__all__ = ["DeadlineWatchdog", "PublishChannel", "amqp_properties", "publishing", "refused"]

T = TypeVar("T")
_PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)
_NOT_PERSISTENT = int(aio_pika.DeliveryMode.NOT_PERSISTENT)


def publishing(exchange: str, routing_key: str) -> str:
    """What a publish was doing, for an error message."""
    return f"publishing to exchange {exchange!r} with routing key {routing_key!r}"


def amqp_properties(
    message: OutgoingMessage, user_id: str | None, trace: Mapping[str, str] | None = None
) -> Basic.Properties:
    """``message``'s AMQP properties, with ``trace`` for its trace headers (``with_trace``); ``user_id`` is
    the login RabbitMQ checks it against.

    Built as aiormq takes them (what ``aio_pika.Message.properties`` builds at publish), without an
    ``aio_pika.Message`` first: its ``__setattr__`` checks a lock on each of its fields. Empty strings are
    left out, as ``aio_pika.Message`` leaves them out."""
    headers: dict[str, Any] = with_trace(dict(message.headers), trace)
    return Basic.Properties(
        content_type=message.content_type,
        headers=headers,
        delivery_mode=_PERSISTENT if message.persistent else _NOT_PERSISTENT,
        priority=message.priority or 0,
        correlation_id=message.correlation_id or None,
        reply_to=message.reply_to or None,
        message_id=message.message_id or None,
        user_id=user_id or None,
    )


def refused(exchange: str, routing_key: str, nack: str, waited_s: float) -> BusError:
    """The error of a publish RabbitMQ kept refusing (``nack`` described) for ``waited_s`` seconds."""
    return BusError(
        f"{publishing(exchange, routing_key)}: RabbitMQ refused the message (basic.nack, {nack}) for "
        f"{waited_s:g} s; a queue it routes to is full (x-overflow reject-publish) or has no quorum: drain "
        "it, or bring its nodes back, and retry"
    )


class DeadlineWatchdog:
    """Deadlines of a bus's publishes waiting for their confirm, on one timer armed for the earliest.

    What ``asyncio.timeout_at`` (or ``wait_for``) does per operation, without a timer (or a Task) per
    operation (bench/PROFILE.md): an operation past its deadline has its task cancelled, and that
    cancellation (and only that one) comes out of :meth:`bound` as ``TimeoutError``. Meant for operations
    of one timeout each, whose deadlines come in order: the timer is re-armed only for an earlier one.
    """

    def __init__(self) -> None:
        # The tasks waiting for an operation, each with its deadline and how often it was cancelled already.
        self._waiting: dict[asyncio.Task[Any], tuple[float, int]] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._when = 0.0

    async def bound(self, operation: Awaitable[T], deadline: float) -> T:
        """Await ``operation`` in this task, cancelled at ``deadline`` (loop time) with ``TimeoutError``, as
        ``asyncio.timeout_at`` would (a cancellation from anyone else propagates as it is)."""
        task = asyncio.current_task()
        assert task is not None
        self._waiting[task] = (deadline, task.cancelling())
        if self._timer is None or deadline < self._when:
            self._arm(deadline)
        try:
            result = await operation
        except BaseException as exc:
            self._end(task, exc)
            raise
        self._end(task, None)
        return result

    def _end(self, task: asyncio.Task[Any], exc: BaseException | None) -> None:
        _, cancelling = self._waiting.pop(task)
        if self._expired and task in self._expired:
            self._expired.discard(task)
            # What ``asyncio.timeout`` does on exit: take back its cancellation; if that was the only one,
            # the publish timed out.
            if task.uncancel() <= cancelling and isinstance(exc, asyncio.CancelledError):
                raise TimeoutError from exc

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._when = when
        self._timer = asyncio.get_running_loop().call_at(when, self._expire)

    def _expire(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        earliest: float | None = None
        for task, (deadline, _) in self._waiting.items():
            if deadline <= now:
                if task not in self._expired:
                    self._expired.add(task)
                    task.cancel()
            elif earliest is None or deadline < earliest:
                earliest = deadline
        if earliest is not None:
            self._arm(earliest)


class PublishChannel:
    """The bus's one publish channel (confirms on, unroutable messages returned as errors)."""

    def __init__(self, operation_timeout: float) -> None:
        self.channel: AbstractRobustChannel | None = None
        self._operation_timeout = operation_timeout
        self._lock = asyncio.Lock()

    async def open(self, conn: AbstractRobustConnection) -> None:
        self.channel = conn.channel(publisher_confirms=True, on_return_raises=True)
        await self.channel

    async def renew(
        self, conn: AbstractRobustConnection, nacked: AbstractRobustChannel
    ) -> AbstractRobustChannel:
        """Replace the channel that was nacked, once for all the publishes it nacked; if no new one opens now
        (the connection is down), keep the old one: aio-pika restores it."""
        async with self._lock:
            current = self.channel
            assert current is not None
            if current is not nacked:
                return current
            fresh = conn.channel(publisher_confirms=True, on_return_raises=True)
            try:
                await asyncio.wait_for(fresh.initialize(), self._operation_timeout)
            except (*TRANSIENT, ChannelClosed):
                with contextlib.suppress(Exception):
                    await fresh.close()
                return nacked
            self.channel = fresh
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nacked.close(), self._operation_timeout)
        return fresh
