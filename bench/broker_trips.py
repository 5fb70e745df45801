"""The broker's share of a streamed task's first token: the two trips relaybus makes, with raw aio-pika.

A task reaches its worker through a durable quorum queue (published persistent, confirmed) and its first
event comes back through the caller's classic, non-durable events queue. :class:`BrokerTrips` makes the same
two trips one after the other, publisher and consumer in this process, so ``bench.streaming`` can say how
much of what relaybus adds is the broker's (and the machine's: after an idle gap a trip costs several times
what it costs back to back) and how much is relaybus's own code.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any, Self

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from bench.common import amqp_url, unique
from bench.raw_amqp import DURABLE_REPLY_ARGUMENTS

__all__ = ["BrokerTrips"]


class BrokerTrips:
    """``async with BrokerTrips() as trips: seconds = await trips.measure()``; its queues go at the end."""

    def __init__(self) -> None:
        self._quorum_name = unique("bench.trip-quorum")
        self._arrived: asyncio.Queue[None] = asyncio.Queue()
        self._connection: Any = None
        self._channel: Any = None
        self._classic_name = ""
        self._consumers: list[tuple[Any, str]] = []

    async def __aenter__(self) -> Self:
        self._connection = await aio_pika.connect(amqp_url())
        self._channel = await self._connection.channel(publisher_confirms=True)
        quorum = await self._channel.declare_queue(
            self._quorum_name, durable=True, arguments=DURABLE_REPLY_ARGUMENTS
        )
        classic = await self._channel.declare_queue("", exclusive=True)
        self._classic_name = classic.name
        for queue in (quorum, classic):
            self._consumers.append((queue, await queue.consume(self._on_message)))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            for queue, tag in self._consumers:
                await queue.cancel(tag)
            await self._channel.queue_delete(self._quorum_name)
        finally:
            await self._connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        await message.ack()
        self._arrived.put_nowait(None)

    async def measure(self) -> float:
        """Seconds for a persistent, confirmed message through the quorum queue, then a transient one
        through the classic queue, each waited for at its consumer."""
        started = time.perf_counter()
        exchange = self._channel.default_exchange
        await exchange.publish(aio_pika.Message(b'{"task": 1}', delivery_mode=2), self._quorum_name)
        await self._arrived.get()
        await exchange.publish(aio_pika.Message(b'{"event": 1}', delivery_mode=1), self._classic_name)
        await self._arrived.get()
        return time.perf_counter() - started
