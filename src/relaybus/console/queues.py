"""Queue depth and consumers of each agent's queue, read with a passive declare (it creates nothing).

:class:`AmqpQueueProbe` keeps one AMQP connection of its own (the bus's channels are not disturbed: a
passive declare of a missing queue closes its channel) and opens it on first use, again after a loss.
:class:`NoQueueProbe` is for buses that have no broker to ask (``memory://``): it knows nothing.
:class:`QueueWatch` keeps the latest figures, refreshed in the background, for the pages to read at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from relaybus.log import get_logger
from relaybus.secrets import mask_secrets

from .periodic import Periodic

if TYPE_CHECKING:
    import aio_pika.abc

__all__ = ["AmqpQueueProbe", "NoQueueProbe", "QueueProbe", "QueueStats", "QueueWatch"]


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Messages ready in a queue and consumers attached, as the broker said."""

    messages: int
    consumers: int


class QueueProbe(Protocol):
    async def stats(self, queue: str) -> QueueStats | None:
        """The queue's figures, or None when it does not exist or the broker cannot be asked."""

    async def close(self) -> None: ...


class NoQueueProbe:
    """Knows no queue (an in-process bus has no broker to ask)."""

    async def stats(self, queue: str) -> QueueStats | None:
        return None

    async def close(self) -> None:
        return None


class AmqpQueueProbe:
    """Passive declares over a connection of its own to the broker at ``url``."""

    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        self._urls = [u.strip() for u in url.split(",") if u.strip()]  # a cluster: the next on a loss
        self._timeout_s = timeout_s
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._log = get_logger("relaybus.console.queues")

    async def _open_channel(self) -> aio_pika.abc.AbstractChannel:
        import aio_pika

        if self._connection is None or self._connection.is_closed:
            self._connection = await aio_pika.connect(self._urls[0], timeout=self._timeout_s)
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel(publisher_confirms=False)
        return self._channel

    async def stats(self, queue: str) -> QueueStats | None:
        import aio_pika.exceptions
        import aiormq.exceptions

        try:
            channel = await self._open_channel()
            declared = await channel.declare_queue(queue, passive=True, timeout=self._timeout_s)
        except aio_pika.exceptions.ChannelClosed:
            self._channel = None  # the queue does not exist: the broker closed the channel
            return None
        except (aiormq.exceptions.AMQPError, OSError, TimeoutError) as exc:
            self._log.debug("queue_probe_failed", queue=queue, error=mask_secrets(repr(exc))[:200])
            await self.close()
            self._urls.append(self._urls.pop(0))  # try the next broker next time
            return None
        result = declared.declaration_result
        return QueueStats(messages=result.message_count or 0, consumers=result.consumer_count or 0)

    async def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()


class QueueWatch:
    """The latest figures of the queues asked for, refreshed every ``interval_s`` in the background, so
    that a page never waits for the broker. ``names()`` says which queues to look at each time."""

    def __init__(self, probe: QueueProbe, names: Callable[[], Iterable[str]], *, interval_s: float) -> None:
        self._probe = probe
        self._names = names
        self._latest: dict[str, QueueStats | None] = {}
        self._loop = Periodic("queues", self.refresh, interval_s)

    def stats(self, queue: str) -> QueueStats | None:
        return self._latest.get(queue)

    async def refresh(self) -> None:
        names = sorted(set(self._names()))
        latest = {}
        for name in names:  # one channel: one passive declare at a time
            latest[name] = await self._probe.stats(name)
        self._latest = latest

    def start(self) -> None:
        self._loop.start()

    async def close(self) -> None:
        await self._loop.close()
        await self._probe.close()
