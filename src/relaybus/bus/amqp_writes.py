"""``CoalescingTransportFactory``: the frames a loop turn makes go to the socket in one write.

aiormq's writer task writes each frame with its own ``StreamWriter.write``, and on an idle socket each write
is a ``send`` system call; over loopback TCP that call also runs the receiving side of the TCP stack, so it
costs tens of microseconds: at a thousand tasks a second it was the worker's and the orchestrator's largest
single cost (``StreamWriter.write`` in ``bench/PROFILE.md``). Here a connection's writes are gathered and
handed to the transport once per loop turn, in the order they were made, as one buffer: what TCP_CORK
does in the kernel, at the granularity of the event loop (the frames of one turn wait for the end of that
turn, never for a timer).

Nothing is held back past the points where aiormq needs its bytes on the wire: ``drain`` (a frame it waits
for, e.g. ``Connection.Close``), ``write_eof`` and ``close`` write the gathered bytes first. A connection
whose transport is closing drops them, as the transport itself would.

The second half is :func:`widen_write_queue`: aiormq's queue of frames for its writer holds 10, and a
channel's publishes take turns under its lock, so once 10 are queued the rest go one per loop turn and
there is nothing to gather. Each publisher waits for its confirm, so the frames queued are bounded by the
publishes in flight (the orchestrator's 256, the worker's concurrency), not by this queue.

aiormq picks its transport with ``Connection(transport_factory=...)``, its public extension point; this
factory opens the same TCP or TLS stream as aiormq's own factories and wraps the writer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import aiormq
import aiormq.abc
from aiormq.connection import TCPTransportFactory, TLSTransportFactory, TransportFactory
from yarl import URL

__all__ = ["WRITE_QUEUE_FRAMES", "CoalescingTransportFactory", "CoalescingWriter", "widen_write_queue"]

WRITE_QUEUE_FRAMES = 4096
"""Frames aiormq's writer queue may hold here (its own default: 10)."""


class CoalescingWriter:
    """Gathers ``write`` calls on ``writer`` and writes them as one buffer once per loop turn."""

    __slots__ = ("_buffer", "_drain", "_loop", "_scheduled", "_stream", "_write", "flushes", "writes")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._stream = writer
        self._write = writer.write
        self._drain = writer.drain
        self._loop = asyncio.get_running_loop()
        self._buffer: list[bytes] = []
        self._scheduled = False
        self.writes = 0
        """``write`` calls gathered so far (for the tests and the benchmarks)."""
        self.flushes = 0
        """Writes handed to the transport so far."""

    def install(self) -> None:
        """Route the stream's ``write`` and ``drain`` through this writer; ``write_eof`` and ``close`` write
        what was gathered first."""
        stream: Any = self._stream
        stream.write = self.write
        stream.drain = self.drain
        for name in ("write_eof", "close"):
            setattr(stream, name, self._flushing_first(getattr(stream, name)))

    def _flushing_first(self, method: Callable[[], None]) -> Callable[[], None]:
        def flushed() -> None:
            self.flush()
            method()

        return flushed

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes += 1
        self._buffer.append(bytes(data) if not isinstance(data, bytes) else data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        """Hand what was gathered to the transport now (dropped when the transport is closing)."""
        buffer = self._buffer
        if not buffer:
            return
        data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
        buffer.clear()
        if self._stream.transport.is_closing():
            return
        self.flushes += 1
        self._write(data)

    async def drain(self) -> None:
        self.flush()
        await self._drain()


class CoalescingTransportFactory(TransportFactory):
    """aiormq's TCP (``amqp://``) or TLS (``amqps://``) stream, its writes coalesced per loop turn."""

    def __init__(self) -> None:
        self._tcp = TCPTransportFactory()
        self._tls = TLSTransportFactory()
        self.writer: CoalescingWriter | None = None
        """The writer of the last stream opened (the current connection's)."""

    async def create(self, url: URL, **kwargs: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        inner = self._tls if url.scheme == "amqps" else self._tcp
        reader, writer = await inner.create(url, **kwargs)
        coalescing = self.writer = CoalescingWriter(writer)
        coalescing.install()
        return reader, writer


def widen_write_queue(connection: aiormq.abc.AbstractConnection, frames: int = WRITE_QUEUE_FRAMES) -> None:
    """Let ``connection``'s writer queue hold ``frames`` frames (see the module docstring).

    aiormq sizes it from a class attribute when the connection is made and offers no other way; asyncio's
    ``Queue`` reads its bound on every ``put``, so raising it on a live connection takes effect at once.
    """
    queue = cast(aiormq.Connection, connection).write_queue
    queue._maxsize = max(queue.maxsize, frames)  # type: ignore[attr-defined]
