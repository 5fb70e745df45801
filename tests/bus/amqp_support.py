"""Helpers for the AmqpBus integration tests (real RabbitMQ, shared with other test runs at the same time)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from relaybus.bus.amqp import AmqpBus
from relaybus.bus.base import DEAD_LETTER_QUEUE, Delivery, HeaderValue


def unique(prefix: str) -> str:
    """A queue name no other test run uses."""
    return f"relaybus.test.{prefix}.{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class DeadLetter:
    message_id: str | None
    body: bytes
    routing_key: str
    exchange: str
    headers: Mapping[str, HeaderValue]


async def take_dead_letters(
    bus: AmqpBus, ids: Collection[str], *, timeout: float = 20.0
) -> dict[str, DeadLetter]:
    """Remove the dead letters whose message id is in ``ids`` from ``relaybus.dead`` and return them.

    ``relaybus.dead`` is shared: messages of other test runs are held unsettled while we look and go back to
    the queue (untouched) when we stop consuming. Returns what arrived within ``timeout``.
    """
    wanted = set(ids)
    found: dict[str, DeadLetter] = {}
    done = asyncio.Event()

    async def handler(delivery: Delivery) -> None:
        mid = delivery.message_id
        if mid is None or mid not in wanted:
            return  # not ours: stays unsettled, returned to the queue by cancel()
        found[mid] = DeadLetter(mid, delivery.body, delivery.routing_key, delivery.exchange, delivery.headers)
        await delivery.ack()
        if len(found) == len(wanted):
            done.set()

    sub = await bus.consume(DEAD_LETTER_QUEUE, handler, prefetch=2000)
    try:
        await asyncio.wait_for(done.wait(), timeout)
    except TimeoutError:
        pass
    finally:
        await sub.cancel()
    return found


async def rabbitmqctl(*args: str, timeout: float = 60.0) -> str:
    """Run ``rabbitmqctl -q ARGS`` (no shell) and return its stdout; raise on a non-zero exit."""
    proc = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} exited {proc.returncode}: {err.decode()[-500:]}")
    return out.decode()


async def queue_info(name: str) -> dict[str, Any]:
    """What RabbitMQ says about queue ``name``: type, durable, exclusive and arguments (as a dict)."""
    out = await rabbitmqctl(
        "list_queues", "name", "type", "durable", "exclusive", "arguments", "--formatter", "json"
    )
    for row in json.loads(out):
        if row["name"] == name:
            row["arguments"] = {key: value for key, _type, value in row["arguments"]}
            return dict(row)
    raise AssertionError(f"queue {name!r} not listed by rabbitmqctl")


async def exchange_types() -> dict[str, tuple[str, bool]]:
    out = await rabbitmqctl("list_exchanges", "name", "type", "durable", "--formatter", "json")
    return {row["name"]: (row["type"], row["durable"]) for row in json.loads(out)}


async def bindings_of(queue: str) -> set[tuple[str, str]]:
    """(exchange, routing key) pairs bound to ``queue`` (the default exchange's implicit one left out)."""
    out = await rabbitmqctl(
        "list_bindings", "source_name", "destination_name", "routing_key", "--formatter", "json"
    )
    return {
        (row["source_name"], row["routing_key"])
        for row in json.loads(out)
        if row["destination_name"] == queue and row["source_name"] != ""
    }


async def heal_dead_letter_supervisor() -> str:
    """Restart RabbitMQ 3.10's ``rabbit_fifo_dlx_sup`` if it has given up; return what was done.

    RabbitMQ 3.10.8 bug: when an at-least-once quorum queue is deleted while its dead-letter worker is still
    starting (typically right after ``start_app``), the worker crashes twice, the supervisor reaches its
    restart intensity and stops for good. From then on every at-least-once quorum queue that elects a leader
    fails (``INTERNAL_ERROR``) until the broker restarts. Tests that restart the broker call this so that the
    shared broker is left working.
    """
    return (
        await rabbitmqctl(
            "eval",
            "case whereis(rabbit_fifo_dlx_sup) of "
            "undefined -> supervisor:restart_child(rabbit_sup, rabbit_fifo_dlx_sup); "
            "Pid -> {running, Pid} end.",
        )
    ).strip()


async def _answers(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
    except (OSError, TimeoutError):
        return False
    writer.close()
    await writer.wait_closed()
    return True


class Broker:
    """Stops and starts the shared RabbitMQ application (never the Erlang node)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    async def stop(self) -> None:
        await rabbitmqctl("stop_app")

    async def start(self) -> None:
        await rabbitmqctl("start_app")
        deadline = time.monotonic() + 60
        while not await _answers(self.host, self.port):
            assert time.monotonic() < deadline, (
                f"RabbitMQ at {self.host}:{self.port} did not come back in 60 s"
            )
            await asyncio.sleep(0.5)
        await heal_dead_letter_supervisor()

    async def restart(self) -> None:
        await self.stop()
        await asyncio.sleep(1.0)  # stay down long enough for every client to notice
        await self.start()


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[Broker]:
    """The broker of ``amqp_url``; teardown always starts it again and waits until it answers."""
    parts = urlsplit(amqp_url)
    b = Broker(parts.hostname or "127.0.0.1", parts.port or 5672)
    try:
        yield b
    finally:
        await b.start()
        # queues deleted by other test runs just after the restart can still stop it (see the helper)
        await asyncio.sleep(2.0)
        await heal_dead_letter_supervisor()
