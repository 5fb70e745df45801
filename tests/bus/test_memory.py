"""MemoryBus specifics that the shared contract (test_contract.py) does not cover."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from relaybus.bus.base import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    DEFAULT_EXCHANGE,
    ERROR_HEADER,
    ORIGINAL_QUEUE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    Bus,
    Delivery,
    OutgoingMessage,
)
from relaybus.bus.memory import MemoryBus
from relaybus.exceptions import BusError, ConfigError, NoRouteError
from tests.eventually import eventually, let_the_loop_run


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    async with MemoryBus() as memory_bus:
        yield memory_bus


def direct(queue: str, body: bytes = b"{}", **fields: object) -> OutgoingMessage:
    return OutgoingMessage(body=body, routing_key=queue, exchange=DEFAULT_EXCHANGE, **fields)  # type: ignore[arg-type]


class Inbox:
    """A handler that records deliveries and acks them (or not)."""

    def __init__(self, *, ack: bool = True) -> None:
        self.ack = ack
        self.deliveries: list[Delivery] = []

    async def __call__(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        if self.ack:
            await delivery.ack()

    @property
    def bodies(self) -> list[bytes]:
        return [d.body for d in self.deliveries]


async def test_is_a_bus_and_needs_connect() -> None:
    memory_bus = MemoryBus()
    assert isinstance(memory_bus, Bus)
    assert memory_bus.url == "memory://"
    with pytest.raises(BusError, match="not connected"):
        await memory_bus.declare_queue("q")
    await memory_bus.connect()
    await memory_bus.connect()  # idempotent
    assert DEAD_LETTER_QUEUE in memory_bus.queue_names()
    await memory_bus.close()
    await memory_bus.close()


async def test_each_bus_is_its_own_broker() -> None:
    async with MemoryBus() as first, MemoryBus() as second:
        await first.declare_queue("q")
        await first.publish(direct("q"))
        assert first.stats("q").ready == 1
        with pytest.raises(NoRouteError):
            await second.publish(direct("q"))


async def test_body_is_copied_and_headers_are_read_only(bus: MemoryBus) -> None:
    await bus.declare_queue("q")
    inbox = Inbox()
    await bus.consume("q", inbox)
    buffer = bytearray(b"original")
    headers = {"k": "v"}
    await bus.publish(direct("q", buffer, headers=headers))  # type: ignore[arg-type]
    buffer[:] = b"mutated!"
    headers["k"] = "changed"
    await bus.join()
    delivery = inbox.deliveries[0]
    assert delivery.body == b"original"
    assert isinstance(delivery.body, bytes)
    assert delivery.headers["k"] == "v"
    with pytest.raises(TypeError):
        delivery.headers["k"] = "x"  # type: ignore[index]


async def test_body_size_cap_on_publish() -> None:
    async with MemoryBus(max_body_bytes=10) as small:
        await small.declare_queue("q")
        await small.publish(direct("q", b"x" * 10))
        with pytest.raises(BusError, match=r"11 bytes, over the limit of 10 bytes"):
            await small.publish(direct("q", b"x" * 11))
        assert small.stats("q").ready == 1


async def test_bad_arguments_are_config_errors(bus: MemoryBus) -> None:
    with pytest.raises(ConfigError, match=r"amq\."):
        await bus.declare_queue("amq.mine")
    with pytest.raises(ConfigError, match="empty"):
        await bus.declare_queue("")
    with pytest.raises(ConfigError, match="255 bytes"):
        await bus.declare_queue("q" * 256)
    with pytest.raises(ConfigError, match="sequence of patterns"):
        await bus.declare_queue("q", bindings="task.#")
    with pytest.raises(ConfigError, match="delivery_limit"):
        await bus.declare_queue("q", delivery_limit=-1)
    await bus.declare_queue("q")
    with pytest.raises(ConfigError, match="prefetch"):
        await bus.consume("q", Inbox(), prefetch=0)
    with pytest.raises(BusError, match="does not exist"):
        await bus.consume("missing", Inbox())
    with pytest.raises(BusError, match="header 'bad'"):
        await bus.publish(direct("q", headers={"bad": [1, 2]}))
    with pytest.raises(BusError, match="exchange 'other' does not exist"):
        await bus.publish(OutgoingMessage(body=b"{}", routing_key="x", exchange="other"))


async def test_redeclare_with_other_arguments_is_refused(bus: MemoryBus) -> None:
    await bus.declare_queue("q", durable=True, delivery_limit=3)
    await bus.declare_queue("q", durable=True, delivery_limit=3, bindings=["task.a"])  # same: fine
    with pytest.raises(BusError, match="cannot be re-declared"):
        await bus.declare_queue("q", durable=False)
    with pytest.raises(BusError, match="cannot be re-declared"):
        await bus.declare_queue("q", delivery_limit=4)


async def test_non_mandatory_unroutable_message_is_dropped(bus: MemoryBus) -> None:
    await bus.publish(OutgoingMessage(body=b"{}", routing_key="task.nobody", mandatory=False))
    assert bus.stats(DEAD_LETTER_QUEUE).ready == 0


async def test_prefetch_bounds_concurrent_handlers(bus: MemoryBus) -> None:
    await bus.declare_queue("q")
    running = 0
    peak = 0
    release = asyncio.Event()

    async def held(delivery: Delivery) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1
        await delivery.ack()

    await bus.consume("q", held, prefetch=3)
    for i in range(20):
        await bus.publish(direct("q", str(i).encode()))
    await eventually(lambda: running >= 3)
    await let_the_loop_run()
    assert (running, bus.stats("q").unsettled, bus.stats("q").ready) == (3, 3, 17)  # no 4th while 3 hold
    release.set()
    await bus.join()
    assert peak == 3
    assert bus.stats("q").ready == 0


async def test_returned_messages_come_before_waiting_ones(bus: MemoryBus) -> None:
    await bus.declare_queue("q")
    for body in (b"1", b"2", b"3"):
        await bus.publish(direct("q", body))
    seen: list[bytes] = []

    async def handler(delivery: Delivery) -> None:
        seen.append(delivery.body)
        if delivery.body == b"1" and delivery.delivery_count == 0:
            await delivery.nack(requeue=True)
        else:
            await delivery.ack()

    await bus.consume("q", handler, prefetch=1)
    await bus.join()
    assert seen == [b"1", b"1", b"2", b"3"]


async def test_non_durable_queues_have_no_delivery_limit(bus: MemoryBus) -> None:
    await bus.declare_queue("q", durable=False, delivery_limit=1)
    counts: list[int] = []

    async def handler(delivery: Delivery) -> None:
        counts.append(delivery.delivery_count)
        if delivery.delivery_count < 4:
            await delivery.nack(requeue=True)
        else:
            await delivery.ack()

    await bus.consume("q", handler)
    await bus.publish(direct("q"))
    await bus.join()
    assert counts == [0, 1, 2, 3, 4]
    assert bus.stats(DEAD_LETTER_QUEUE).ready == 0


async def test_settling_twice_is_an_error(bus: MemoryBus) -> None:
    await bus.declare_queue("q")
    errors: list[str] = []

    async def handler(delivery: Delivery) -> None:
        await delivery.ack()
        try:
            await delivery.nack()
        except BusError as exc:
            errors.append(str(exc))

    await bus.consume("q", handler)
    await bus.publish(direct("q", message_id="m1"))
    await bus.join()
    assert len(errors) == 1
    assert "already settled" in errors[0]
    assert bus.stats("q").ready == 0


async def test_handler_exception_is_logged_and_consumer_goes_on(bus: MemoryBus) -> None:
    await bus.declare_queue("q", delivery_limit=10)
    handled: list[tuple[bytes, int]] = []

    async def flaky(delivery: Delivery) -> None:
        if delivery.body == b"bad" and delivery.delivery_count == 0:
            raise RuntimeError("boom")
        handled.append((delivery.body, delivery.delivery_count))
        await delivery.ack()

    await bus.consume("q", flaky)
    with capture_logs() as logs:
        await bus.publish(direct("q", b"bad", message_id="m-bad"))
        await bus.publish(direct("q", b"good"))
        await bus.join()
    assert sorted(handled) == [(b"bad", 1), (b"good", 0)]
    failures = [e for e in logs if e["event"] == "handler_failed"]
    assert len(failures) == 1
    assert failures[0]["message_id"] == "m-bad"
    assert failures[0]["queue"] == "q"


async def test_unsettled_after_handler_returns_stays_until_cancel(bus: MemoryBus) -> None:
    await bus.declare_queue("q")
    forgetful = Inbox(ack=False)
    with capture_logs() as logs:
        subscription = await bus.consume("q", forgetful, prefetch=1)
        await bus.publish(direct("q", b"1"))
        await bus.publish(direct("q", b"2"))
        await let_the_loop_run()
    assert forgetful.bodies == [b"1"]  # its one prefetch slot is taken
    assert bus.stats("q").unsettled == 1
    assert bus.stats("q").ready == 1
    assert any(e["event"] == "handler_returned_unsettled" for e in logs)
    await subscription.cancel()
    assert bus.stats("q").ready == 2
    assert bus.stats("q").consumers == 0
    with pytest.raises(BusError, match="returned to the queue"):
        await forgetful.deliveries[0].ack()
    inbox = Inbox()
    await bus.consume("q", inbox)
    await bus.join()
    assert [(d.body, d.delivery_count, d.redelivered) for d in inbox.deliveries] == [
        (b"1", 1, True),
        (b"2", 0, False),
    ]


async def test_close_returns_unsettled_keeps_durable_and_drops_private_queues() -> None:
    memory_bus = MemoryBus()
    await memory_bus.connect()
    await memory_bus.declare_queue("durable-q")
    await memory_bus.declare_queue("private-q", durable=False)
    started = asyncio.Event()

    async def stuck(delivery: Delivery) -> None:
        started.set()
        await asyncio.Event().wait()

    await memory_bus.consume("durable-q", stuck)
    await memory_bus.publish(direct("durable-q", b"work"))
    await memory_bus.publish(direct("private-q", b"reply"))
    await started.wait()
    memory_bus.close_timeout = 0.05
    await memory_bus.close()
    assert "private-q" not in memory_bus.queue_names()
    await memory_bus.connect()
    inbox = Inbox()
    await memory_bus.consume("durable-q", inbox)
    await memory_bus.join()
    assert [(d.body, d.delivery_count) for d in inbox.deliveries] == [(b"work", 1)]
    await memory_bus.close()


async def test_close_waits_for_running_handlers() -> None:
    memory_bus = MemoryBus()
    await memory_bus.connect()
    await memory_bus.declare_queue("q")
    finished: list[bytes] = []

    async def slow(delivery: Delivery) -> None:
        await asyncio.sleep(0.05)
        await delivery.ack()
        finished.append(delivery.body)

    await memory_bus.consume("q", slow)
    await memory_bus.publish(direct("q", b"a"))
    await asyncio.sleep(0)
    await memory_bus.close()
    assert finished == [b"a"]
    await memory_bus.connect()
    assert memory_bus.stats("q").ready == 0  # it was acked, not returned
    await memory_bus.close()


async def test_delete_queue_stops_its_consumers(bus: MemoryBus) -> None:
    await bus.declare_queue("q", bindings=["task.x"])
    inbox = Inbox(ack=False)
    subscription = await bus.consume("q", inbox)
    await bus.publish(OutgoingMessage(body=b"{}", routing_key="task.x"))
    await bus.join("nothing")  # unknown names are ignored
    await asyncio.sleep(0)
    await bus.delete_queue("q")
    await bus.delete_queue("q")  # missing: fine
    await inbox.deliveries[0].ack()  # its queue is gone: a no-op, not an error
    with pytest.raises(NoRouteError):
        await bus.publish(OutgoingMessage(body=b"{}", routing_key="task.x"))
    await subscription.cancel()


async def test_purge_counts_ready_messages(bus: MemoryBus) -> None:
    await bus.declare_queue("q")
    for _ in range(7):
        await bus.publish(direct("q"))
    assert await bus.purge_queue("q") == 7
    assert bus.stats("q").ready == 0
    with pytest.raises(BusError, match="does not exist"):
        await bus.purge_queue("missing")


async def test_dead_letter_reason_is_capped_and_keeps_origin(bus: MemoryBus) -> None:
    await bus.declare_queue("q", bindings=["task.#"])

    async def reject(delivery: Delivery) -> None:
        await delivery.dead_letter("r" * 5000)

    await bus.consume("q", reject)
    await bus.publish(OutgoingMessage(body=b"{}", routing_key="task.x.y"))
    await bus.join()
    dead = Inbox()
    await bus.consume(DEAD_LETTER_QUEUE, dead)
    await bus.join()
    [message] = dead.deliveries
    assert message.exchange == DEAD_LETTER_EXCHANGE
    assert message.routing_key == "task.x.y"
    assert len(str(message.headers[ERROR_HEADER])) == 1000
    assert message.headers[ORIGINAL_QUEUE_HEADER] == "q"
    assert message.headers[ORIGINAL_ROUTING_KEY_HEADER] == "task.x.y"


async def test_join_waits_for_cascades(bus: MemoryBus) -> None:
    await bus.declare_queue("first")
    await bus.declare_queue("second")
    done: list[bytes] = []

    async def forward(delivery: Delivery) -> None:
        await asyncio.sleep(0.01)
        await bus.publish(direct("second", delivery.body + b"!"))
        await delivery.ack()

    async def finish(delivery: Delivery) -> None:
        await asyncio.sleep(0.01)
        done.append(delivery.body)
        await delivery.ack()

    await bus.consume("first", forward)
    await bus.consume("second", finish)
    for i in range(5):
        await bus.publish(direct("first", str(i).encode()))
    await bus.join()
    assert sorted(done) == [b"0!", b"1!", b"2!", b"3!", b"4!"]


async def test_join_ignores_queues_without_consumers(bus: MemoryBus) -> None:
    await bus.declare_queue("unread")
    await bus.publish(direct("unread"))
    await asyncio.wait_for(bus.join(), 1)
    assert bus.stats("unread").ready == 1
