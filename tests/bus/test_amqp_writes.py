"""The AMQP connection's writes: one socket write per loop turn, in order, nothing left behind at the end."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from relaybus.bus.amqp import AmqpBus
from relaybus.bus.amqp_writes import WRITE_QUEUE_FRAMES, CoalescingWriter
from relaybus.bus.base import OutgoingMessage
from tests.eventually import eventually


class Peer:
    """A TCP server on 127.0.0.1 that keeps what it receives, and a client stream to it."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.eof = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            self.received += chunk
        self.eof.set()
        writer.close()


@pytest.fixture
async def stream() -> AsyncIterator[tuple[Peer, asyncio.StreamWriter, CoalescingWriter]]:
    peer = Peer()
    server = await asyncio.start_server(peer.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    coalescing = CoalescingWriter(writer)
    coalescing.install()
    try:
        yield peer, writer, coalescing
    finally:
        writer.transport.abort()
        server.close()
        await server.wait_closed()


async def test_the_writes_of_one_loop_turn_reach_the_socket_as_one_write_in_their_order(
    stream: tuple[Peer, asyncio.StreamWriter, CoalescingWriter],
) -> None:
    peer, writer, coalescing = stream
    for part in (b"one ", b"two ", bytearray(b"three ")):
        writer.write(part)
    assert coalescing.flushes == 0  # nothing written before the turn ends
    await asyncio.sleep(0)
    assert (coalescing.writes, coalescing.flushes) == (3, 1)
    writer.write(b"four")
    await asyncio.sleep(0)
    assert coalescing.flushes == 2
    await eventually(lambda: bytes(peer.received) == b"one two three four")


async def test_drain_writes_what_was_gathered_before_it_waits(
    stream: tuple[Peer, asyncio.StreamWriter, CoalescingWriter],
) -> None:
    peer, writer, coalescing = stream
    writer.write(b"close frame")
    await writer.drain()  # aiormq drains after a frame it must know is written (Connection.Close)
    assert coalescing.flushes == 1
    await eventually(lambda: bytes(peer.received) == b"close frame")


async def test_write_eof_and_close_write_what_was_gathered_first(
    stream: tuple[Peer, asyncio.StreamWriter, CoalescingWriter],
) -> None:
    peer, writer, coalescing = stream
    writer.write(b"last words")
    writer.write_eof()  # as aiormq closes its writer: write_eof, then close
    writer.close()
    await asyncio.wait_for(peer.eof.wait(), 10)
    assert bytes(peer.received) == b"last words"
    await asyncio.sleep(0)  # the turn's own flush finds nothing left
    assert coalescing.flushes == 1


async def test_a_closing_transport_drops_what_was_gathered_without_an_error(
    stream: tuple[Peer, asyncio.StreamWriter, CoalescingWriter],
) -> None:
    _, writer, coalescing = stream
    writer.write(b"too late")
    writer.transport.abort()
    await asyncio.sleep(0)
    assert (coalescing.writes, coalescing.flushes) == (1, 0)


@pytest.mark.integration
async def test_concurrent_publishes_share_socket_writes_and_all_arrive(amqp_url: str) -> None:
    queue = f"relaybus-test-writes-{uuid.uuid4().hex[:8]}"
    async with AmqpBus(amqp_url) as bus:
        await bus.declare_queue(queue, durable=False)
        try:
            conn = bus._conn
            assert conn is not None
            assert conn.transport is not None
            assert conn.transport.connection.write_queue.maxsize == WRITE_QUEUE_FRAMES  # type: ignore[attr-defined]
            writer = conn.writes.writer
            assert writer is not None
            writes, flushes = writer.writes, writer.flushes
            bodies = [str(i).encode() for i in range(300)]
            await asyncio.gather(
                *(bus.publish(OutgoingMessage(body=b, routing_key=queue, exchange="")) for b in bodies)
            )
            assert await bus.queue_backlog(queue) == 300
            made, sent = writer.writes - writes, writer.flushes - flushes
            assert made >= 300
            assert sent * 5 <= made, f"{made} frames in {sent} socket writes"
        finally:
            await bus.delete_queue(queue)
