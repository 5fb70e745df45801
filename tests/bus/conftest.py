"""The contract fixtures: one ``bus`` fixture, run once on MemoryBus and once on AmqpBus (real RabbitMQ).

``harness`` gives each test unique queue names (deleted afterwards) and a way to read the dead letters a test
caused. On RabbitMQ ``relaybus.dead`` is shared with other test runs, so the harness binds a private "tap"
queue to the fanout exchange ``relaybus.dlx`` and reads copies from it; its own dead letters are then removed
from ``relaybus.dead`` on a best-effort basis. A module that defines its own ``bus`` fixture overrides this.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Collection

import aio_pika
import pytest

from relaybus.bus.base import DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE, Bus, Delivery
from relaybus.bus.memory import MemoryBus
from tests.eventually import let_the_loop_run


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("amqp", id="amqp", marks=pytest.mark.integration),
    ]
)
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """A connected bus of each kind."""
    if request.param == "memory":
        async with MemoryBus() as memory_bus:
            yield memory_bus
        return
    amqp_url: str = request.getfixturevalue("amqp_url")
    from relaybus.bus.amqp import AmqpBus

    async with AmqpBus(amqp_url, reconnect_timeout=10) as amqp_bus:
        yield amqp_bus


class Harness:
    """Per-test helpers around ``bus``; see the module docstring."""

    def __init__(self, bus: Bus, dead_source: str) -> None:
        self.bus = bus
        self.run = uuid.uuid4().hex[:12]  # a word no other test run uses
        self.dead_source = dead_source
        self.queues: list[str] = []
        self.dead_ids: set[str] = set()

    @property
    def is_memory(self) -> bool:
        return isinstance(self.bus, MemoryBus)

    def name(self, label: str) -> str:
        """A unique queue name, deleted at the end of the test."""
        name = f"relaybus.test.contract.{label}.{self.run}.{uuid.uuid4().hex[:6]}"
        self.queues.append(name)
        return name

    async def settle_time(self) -> None:
        """Long enough for a message that *would* be delivered to arrive (negative checks)."""
        if isinstance(self.bus, MemoryBus):
            # Not MemoryBus.join(): it waits for deliveries a test deliberately leaves unsettled.
            await let_the_loop_run()
        else:
            await asyncio.sleep(0.5)  # a broker round trip; nothing to poll for a message that never comes

    async def take_dead_letters(self, ids: Collection[str], *, timeout: float = 20.0) -> dict[str, Delivery]:
        """The dead letters whose message ids are in ``ids``, as delivered from the dead-letter queue."""
        wanted = set(ids)
        self.dead_ids |= wanted
        found: dict[str, Delivery] = {}
        done = asyncio.Event()

        async def handler(delivery: Delivery) -> None:
            if delivery.message_id in wanted:
                found[delivery.message_id] = delivery
            await delivery.ack()  # the tap holds copies only; on MemoryBus the bus is private
            if len(found) == len(wanted):
                done.set()

        subscription = await self.bus.consume(self.dead_source, handler, prefetch=100)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout)
        finally:
            await subscription.cancel()
        return found


async def _forget_dead_letters(bus: Bus, ids: set[str]) -> None:
    """Remove ``ids`` from the shared ``relaybus.dead``; others' messages go back untouched."""
    left = set(ids)
    done = asyncio.Event()

    async def handler(delivery: Delivery) -> None:
        if delivery.message_id in left:
            left.discard(delivery.message_id)
            await delivery.ack()
            if not left:
                done.set()
        # not ours: left unsettled, returned to the queue by cancel()

    subscription = await bus.consume(DEAD_LETTER_QUEUE, handler, prefetch=5000)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 3)
    finally:
        await subscription.cancel()


@pytest.fixture
async def harness(bus: Bus, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if isinstance(bus, MemoryBus):
        helper = Harness(bus, DEAD_LETTER_QUEUE)
        yield helper
        return
    amqp_url: str = request.getfixturevalue("amqp_url")
    tap_name = f"relaybus.test.contract.dead-tap.{uuid.uuid4().hex[:12]}"
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        # x-expires: should the teardown never run, RabbitMQ deletes the tap after 10 idle minutes.
        tap = await channel.declare_queue(tap_name, durable=False, arguments={"x-expires": 600_000})
        await tap.bind(DEAD_LETTER_EXCHANGE)
        helper = Harness(bus, tap_name)
        try:
            yield helper
        finally:
            for name in helper.queues:
                with contextlib.suppress(Exception):
                    await bus.delete_queue(name)
            # Best effort: a broker restarted by another test run must not fail this test's teardown; the tap
            # then expires by itself (x-expires) and stray dead letters carry unique ids.
            with contextlib.suppress(Exception):
                if helper.dead_ids:
                    await _forget_dead_letters(bus, helper.dead_ids)
                await tap.delete(if_unused=False, if_empty=False)
    finally:
        with contextlib.suppress(Exception):
            await connection.close()
