"""Broker chores of the benchmark driver: declare and delete its queues, wait until a consumer is attached."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import aio_pika
import aiormq
from aio_pika.exceptions import ChannelClosed

from bench.common import amqp_url


async def consumer_count(name: str) -> int:
    """Consumers attached to queue ``name`` (0 if it does not exist yet)."""
    connection = await aio_pika.connect(amqp_url())
    try:
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(name, passive=True)
        except ChannelClosed:
            return 0
        result = queue.declaration_result
        return int(result.consumer_count or 0)
    finally:
        await connection.close()


async def wait_for_consumer(name: str, timeout: float = 30.0, *, count: int = 1) -> None:
    """Wait until queue ``name`` has ``count`` consumers (a worker that printed nothing is ready once it
    consumes)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            if await consumer_count(name) >= count:
                return
        except (ConnectionError, aiormq.exceptions.AMQPError):  # the shared broker is restarting: wait
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"fewer than {count} consumers on queue {name!r} within {timeout:g}s")
        await asyncio.sleep(0.1)


async def delete_queues(names: Iterable[str], *, patience: float = 30.0) -> None:
    """Delete the benchmark's queues (those that exist); the broker is shared, leave nothing behind.

    If the broker is restarting (someone else's test), try again for up to ``patience`` seconds.
    """
    pending = list(dict.fromkeys(names))
    deadline = asyncio.get_running_loop().time() + patience
    while pending:
        try:
            connection = await aio_pika.connect(amqp_url())
            try:
                while pending:
                    channel = await connection.channel()
                    with contextlib.suppress(ChannelClosed):
                        await channel.queue_delete(pending[0])
                    pending.pop(0)
                    with contextlib.suppress(Exception):
                        await channel.close()
            finally:
                await connection.close()
        except (ConnectionError, aiormq.exceptions.AMQPError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(1.0)


async def server_version(patience: float = 60.0) -> str:
    """The broker's product and version, as it announces them on connect.

    Waits up to ``patience`` seconds for a broker that is (re)starting; then raises ``SystemExit`` saying
    which broker it needs.
    """
    deadline = asyncio.get_running_loop().time() + patience
    while True:
        try:
            connection = await aio_pika.connect(amqp_url())
            break
        except (ConnectionError, aiormq.exceptions.AMQPError) as exc:
            if asyncio.get_running_loop().time() > deadline:
                where = amqp_url().split("@")[-1]
                raise SystemExit(
                    f"no RabbitMQ answers at {where} ({type(exc).__name__}); start one "
                    "(rabbitmq-server -detached) or set RELAYBUS_BENCH_AMQP_URL"
                ) from None
            await asyncio.sleep(1.0)
    try:
        props = connection.transport.connection.server_properties if connection.transport else {}
        product = props.get("product", "RabbitMQ")
        version = props.get("version", "?")
        as_text = [v.decode() if isinstance(v, bytes) else str(v) for v in (product, version)]
        return " ".join(as_text)
    finally:
        await connection.close()
