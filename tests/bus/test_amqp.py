"""AmqpBus against a real RabbitMQ: topology, confirms, routing errors, dead-lettering, consumers.

Facts about RabbitMQ 3.10.8 quorum queues that these tests pin down (and that MemoryBus and the contract
suite in test_contract.py must match):

- ``x-delivery-limit: N`` gives N + 1 deliveries (the first and N redeliveries); then the broker
  dead-letters the message instead of delivering it again. N = 0 means exactly one delivery.
- The first delivery has no ``x-delivery-count`` header (delivery_count 0); redeliveries carry 1 .. N.
- The broker's dead-lettered copy keeps the routing key and the original headers, arrives from exchange
  ``relaybus.dlx``, and gains ``x-death`` (reason ``delivery_limit``) plus ``x-first-death-reason`` /
  ``-queue`` / ``-exchange``. It carries no ``relaybus-error``: AmqpDelivery.headers derives
  ``relaybus-error`` and ``relaybus-original-*`` from ``x-death`` for readers of ``relaybus.dead``.
- ``nack(requeue=False)`` is dead-lettered by the broker the same way with reason ``rejected``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest
import structlog

from relaybus.bus.amqp import AmqpBus, AmqpDelivery
from relaybus.bus.base import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    ERROR_HEADER,
    EXCHANGE,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_QUEUE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    Bus,
    Delivery,
    OutgoingMessage,
)
from relaybus.bus.codec import DEFAULT_MAX_BODY_BYTES
from relaybus.exceptions import BusError, ConnectionFailed, NoRouteError

from .amqp_support import bindings_of, exchange_types, queue_info, take_dead_letters, unique

pytestmark = pytest.mark.integration


@pytest.fixture
async def bus(amqp_url: str) -> AsyncIterator[AmqpBus]:
    async with AmqpBus(amqp_url, reconnect_timeout=10) as b:
        yield b


@pytest.fixture
async def queue(bus: AmqpBus) -> AsyncIterator[str]:
    """A fresh durable queue bound to ``task.<its name>.#``; deleted afterwards."""
    name = unique("q")
    await bus.declare_queue(name, bindings=[f"task.{name}.#"], delivery_limit=2)
    yield name
    await bus.delete_queue(name)


def msg(queue: str, body: bytes = b"{}", **kw: object) -> OutgoingMessage:
    return OutgoingMessage(body=body, routing_key=f"task.{queue}.x", **kw)  # type: ignore[arg-type]


async def collect(
    bus: AmqpBus, queue: str, n: int, *, settle: str = "ack", timeout: float = 15
) -> list[Delivery]:
    got: list[Delivery] = []
    done = asyncio.Event()

    async def handler(d: Delivery) -> None:
        got.append(d)
        if settle == "ack":
            await d.ack()
        elif settle == "requeue":
            await d.nack(requeue=True)
        elif settle == "reject":
            await d.nack(requeue=False)
        if len(got) >= n:
            done.set()

    sub = await bus.consume(queue, handler, prefetch=8)
    try:
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        await sub.cancel()
    return got


# -- topology -------------------------------------------------------------------------------------------


async def test_bus_is_a_bus_and_connect_declares_the_shared_topology(bus: AmqpBus, amqp_url: str) -> None:
    assert isinstance(bus, Bus)
    exchanges = await exchange_types()
    assert exchanges[EXCHANGE] == ("topic", True)
    assert exchanges[DEAD_LETTER_EXCHANGE] == ("fanout", True)
    dead = await queue_info(DEAD_LETTER_QUEUE)
    assert (dead["type"], dead["durable"]) == ("quorum", True)
    assert (DEAD_LETTER_EXCHANGE, "") in await bindings_of(DEAD_LETTER_QUEUE)
    await bus.connect()  # idempotent
    async with AmqpBus(amqp_url):  # a second process declaring the same topology is fine
        pass


async def test_durable_queue_is_a_quorum_queue_with_delivery_limit_and_at_least_once_dlx(
    bus: AmqpBus,
) -> None:
    name = unique("durable")
    await bus.declare_queue(name, bindings=["task.a.*", "agent.x"], delivery_limit=7)
    try:
        await bus.declare_queue(name, bindings=["task.a.*", "task.b.#"], delivery_limit=7)  # idempotent, adds
        info = await queue_info(name)
        assert (info["type"], info["durable"]) == ("quorum", True)
        assert info["arguments"] == {
            "x-queue-type": "quorum",
            "x-delivery-limit": 7,
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
        assert await bindings_of(name) == {
            (EXCHANGE, "task.a.*"),
            (EXCHANGE, "agent.x"),
            (EXCHANGE, "task.b.#"),
        }
        with pytest.raises(BusError, match="other arguments") as err:
            await bus.declare_queue(name, delivery_limit=3)
        assert "x-delivery-limit" in str(err.value)
        await bus.declare_queue(name, delivery_limit=7)  # the bus is still usable after the refusal
    finally:
        await bus.delete_queue(name)


async def test_non_durable_queue_is_private_and_disappears_with_its_connection(amqp_url: str) -> None:
    name = unique("private")
    async with AmqpBus(amqp_url) as owner, AmqpBus(amqp_url) as other:
        await owner.declare_queue(name, bindings=[f"task.{name}"], durable=False)
        info = await queue_info(name)
        assert (info["type"], info["durable"], info["exclusive"]) == ("classic", False, True)
        with pytest.raises(BusError, match=name):
            await other.consume(name, lambda d: d.ack())
        await owner.publish(OutgoingMessage(body=b"1", routing_key=f"task.{name}"))
        assert [d.body for d in await collect(owner, name, 1)] == [b"1"]
        # cancelling its only consumer does not delete it (not auto-delete): it still takes messages
        await owner.publish(OutgoingMessage(body=b"2", routing_key=f"task.{name}"))
        assert [d.body for d in await collect(owner, name, 1)] == [b"2"]
    async with AmqpBus(amqp_url) as later:
        with pytest.raises(NoRouteError):
            await later.publish(OutgoingMessage(body=b"3", routing_key=f"task.{name}"))


# -- publish --------------------------------------------------------------------------------------------


async def test_publish_delivers_persistent_messages_with_their_properties(bus: AmqpBus, queue: str) -> None:
    await bus.publish(
        msg(
            queue,
            b'{"a": 1}',
            message_id="m-1",
            correlation_id="c-1",
            reply_to="r-1",
            headers={"relaybus-schema": 1, "k": "v", "f": 1.5, "b": True},
            priority=3,
        )
    )
    [d] = await collect(bus, queue, 1)
    assert (d.body, d.message_id, d.correlation_id, d.reply_to) == (b'{"a": 1}', "m-1", "c-1", "r-1")
    assert (d.routing_key, d.exchange, d.content_type) == (f"task.{queue}.x", EXCHANGE, "application/json")
    headers = dict(d.headers)
    assert headers.pop("traceparent")  # every message carries its trace (relaybus.telemetry.tracing)
    assert headers == {"relaybus-schema": 1, "k": "v", "f": 1.5, "b": True}
    assert (d.priority, d.redelivered, d.delivery_count) == (3, False, 0)
    assert isinstance(d, AmqpDelivery)
    assert d._message.properties.delivery_mode == 2


async def test_unroutable_mandatory_message_raises_no_route_error_at_once(bus: AmqpBus) -> None:
    key = f"task.{unique('nobody')}"
    with pytest.raises(NoRouteError, match="no queue is bound") as err:
        await asyncio.wait_for(bus.publish(OutgoingMessage(body=b"x", routing_key=key)), 5)
    assert err.value.routing_key == key
    assert err.value.exchange == EXCHANGE
    await bus.publish(OutgoingMessage(body=b"x", routing_key=key, mandatory=False))  # dropped, as in AMQP


async def test_publish_to_a_missing_exchange_is_a_clear_bus_error(bus: AmqpBus, queue: str) -> None:
    with pytest.raises(BusError, match="does not exist"):
        await bus.publish(OutgoingMessage(body=b"x", routing_key="k", exchange=unique("nox")))
    await bus.publish(msg(queue))  # the publishing channel recovered
    assert len(await collect(bus, queue, 1)) == 1


async def test_body_over_the_size_limit_is_refused_before_sending(amqp_url: str) -> None:
    assert AmqpBus(amqp_url).max_body_bytes == DEFAULT_MAX_BODY_BYTES == 1024 * 1024
    async with AmqpBus(amqp_url, max_body_bytes=1000) as small:
        name = unique("size")
        await small.declare_queue(name, bindings=[f"task.{name}.#"])
        try:
            await small.publish(msg(name, b"x" * 1000))
            with pytest.raises(BusError, match=r"1001 bytes, over the limit of 1000 bytes"):
                await small.publish(msg(name, b"x" * 1001))
            assert await small.purge_queue(name) == 1  # only the one within the limit went out
        finally:
            await small.delete_queue(name)


# -- consume ----------------------------------------------------------------------------------------------


async def test_handler_exception_requeues_and_the_consumer_goes_on(bus: AmqpBus, queue: str) -> None:
    seen: list[tuple[str | None, int]] = []
    acked: set[str] = set()
    done = asyncio.Event()

    async def handler(d: Delivery) -> None:
        seen.append((d.message_id, d.delivery_count))
        if d.delivery_count == 0:
            raise RuntimeError("boom on first delivery")
        await d.ack()
        acked.add(d.message_id or "")
        if len(acked) == 3:
            done.set()

    sub = await bus.consume(queue, handler)
    for i in range(3):
        await bus.publish(msg(queue, message_id=f"m{i}"))
    await asyncio.wait_for(done.wait(), 15)
    await sub.cancel()
    assert acked == {"m0", "m1", "m2"}
    assert sorted(seen) == sorted([(f"m{i}", c) for i in range(3) for c in (0, 1)])


async def test_settling_twice_or_after_the_channel_closed_is_refused(bus: AmqpBus, queue: str) -> None:
    await bus.publish(msg(queue, message_id="a"))
    [d] = await collect(bus, queue, 1)
    with pytest.raises(BusError, match="already settled"):
        await d.ack()
    await bus.publish(msg(queue, message_id="b"))
    [left] = await collect(bus, queue, 1, settle="none")  # cancelled with the delivery unsettled
    with pytest.raises(BusError, match="returned it to the queue"):
        await left.ack()
    [again] = await collect(bus, queue, 1)
    assert (again.message_id, again.delivery_count) == ("b", 1)


async def test_prefetch_bounds_concurrent_handlers(bus: AmqpBus, queue: str) -> None:
    running = 0
    peak = 0
    handled = 0
    done = asyncio.Event()

    async def handler(d: Delivery) -> None:
        nonlocal running, peak, handled
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        await d.ack()
        handled += 1
        if handled == 12:
            done.set()

    for _ in range(12):
        await bus.publish(msg(queue))
    sub = await bus.consume(queue, handler, prefetch=3)
    await asyncio.wait_for(done.wait(), 15)
    await sub.cancel()
    assert peak == 3


async def test_consume_from_a_missing_queue_names_it(bus: AmqpBus) -> None:
    name = unique("missing")
    with pytest.raises(BusError, match=rf"{name}.*does not exist"):
        await bus.consume(name, lambda d: d.ack())


async def test_purge_and_delete(bus: AmqpBus) -> None:
    name = unique("purge")
    await bus.declare_queue(name, bindings=[f"task.{name}.#"])
    for _ in range(4):
        await bus.publish(msg(name))
    assert await bus.purge_queue(name) == 4
    assert await bus.purge_queue(name) == 0
    sub = await bus.consume(name, lambda d: d.ack())
    await bus.delete_queue(name)  # cancels our consumer first
    assert sub._cancelled
    with pytest.raises(NoRouteError):
        await bus.publish(msg(name))
    await bus.delete_queue(name)  # deleting a missing queue is fine


async def test_close_is_a_lost_connection_unsettled_deliveries_return(
    amqp_url: str, bus: AmqpBus, queue: str
) -> None:
    started = asyncio.Event()

    async def stuck(d: Delivery) -> None:
        started.set()
        await asyncio.sleep(3600)

    first = AmqpBus(amqp_url)
    await first.connect()
    await first.consume(queue, stuck)
    await bus.publish(msg(queue, message_id="survivor"))
    await asyncio.wait_for(started.wait(), 10)
    await asyncio.wait_for(first.close(), 10)
    [again] = await collect(bus, queue, 1)
    assert (again.message_id, again.redelivered, again.delivery_count) == ("survivor", True, 1)
    with pytest.raises(BusError, match="is closed"):
        await first.publish(msg(queue))


# -- dead letters ---------------------------------------------------------------------------------------


async def test_dead_letter_moves_a_copy_with_the_reason_then_acks(bus: AmqpBus, queue: str) -> None:
    mid = unique("dl")
    await bus.publish(msg(queue, b"payload", message_id=mid, headers={"keep": "me"}))
    got: list[Delivery] = []
    done = asyncio.Event()

    async def handler(d: Delivery) -> None:
        got.append(d)
        await d.dead_letter("bad payload: amqp://u:hunter22@h/ is not allowed")
        done.set()

    sub = await bus.consume(queue, handler)
    await asyncio.wait_for(done.wait(), 10)
    await sub.cancel()
    dead = (await take_dead_letters(bus, [mid]))[mid]
    assert dead.body == b"payload"
    assert dead.headers[ERROR_HEADER] == "bad payload: amqp://u:***@h/ is not allowed"
    assert dead.headers[ORIGINAL_QUEUE_HEADER] == queue
    assert dead.headers[ORIGINAL_ROUTING_KEY_HEADER] == f"task.{queue}.x"
    assert dead.headers[ORIGINAL_EXCHANGE_HEADER] == EXCHANGE
    assert dead.headers["keep"] == "me"
    assert (dead.exchange, dead.routing_key) == (DEAD_LETTER_EXCHANGE, f"task.{queue}.x")
    assert len(got) == 1
    assert await bus.purge_queue(queue) == 0


async def test_delivery_limit_gives_n_plus_one_deliveries_then_the_broker_dead_letters(
    bus: AmqpBus, queue: str
) -> None:
    mid = unique("limit")  # the queue fixture has delivery_limit=2
    await bus.publish(msg(queue, message_id=mid, headers={"keep": "me"}))
    got = await collect(bus, queue, 3, settle="requeue")
    await asyncio.sleep(0.5)  # a 4th delivery would come now if the broker allowed it
    assert [(d.delivery_count, d.redelivered) for d in got] == [(0, False), (1, True), (2, True)]
    assert "x-delivery-count" not in got[0].headers
    assert got[2].headers["x-delivery-count"] == 2
    dead = (await take_dead_letters(bus, [mid]))[mid]
    assert dead.headers["x-first-death-reason"] == "delivery_limit"
    assert dead.headers["x-first-death-queue"] == queue
    assert "delivery limit exceeded" in str(dead.headers[ERROR_HEADER])
    assert dead.headers[ORIGINAL_QUEUE_HEADER] == queue
    assert dead.headers[ORIGINAL_ROUTING_KEY_HEADER] == f"task.{queue}.x"
    assert dead.headers[ORIGINAL_EXCHANGE_HEADER] == EXCHANGE
    assert dead.headers["keep"] == "me"
    assert await bus.purge_queue(queue) == 0


async def test_nack_without_requeue_is_dead_lettered_by_the_broker_as_rejected(
    bus: AmqpBus, queue: str
) -> None:
    mid = unique("rej")
    await bus.publish(msg(queue, message_id=mid))
    [d] = await collect(bus, queue, 1, settle="reject")
    with pytest.raises(BusError, match="already settled"):
        await d.ack()
    dead = (await take_dead_letters(bus, [mid]))[mid]
    assert dead.headers["x-first-death-reason"] == "rejected"
    assert "rejected" in str(dead.headers[ERROR_HEADER])
    assert dead.headers[ORIGINAL_QUEUE_HEADER] == queue


# -- secrets ----------------------------------------------------------------------------------------------


async def test_password_never_shows_in_repr_errors_or_logs(amqp_url: str) -> None:
    secret = "s3cr3t-pw-9"
    unreachable = AmqpBus(f"amqp://guest:{secret}@127.0.0.1:1/", connect_timeout=3)
    assert secret not in repr(unreachable) + str(unreachable) + unreachable.url
    assert unreachable.url == "amqp://guest:***@127.0.0.1:1/"
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(ConnectionFailed) as refused:
            await unreachable.connect()
        parts = urlsplit(amqp_url)
        netloc = f"{parts.username or 'guest'}:{secret}@{parts.hostname}:{parts.port or 5672}"
        wrong = AmqpBus(urlunsplit(parts._replace(netloc=netloc)), connect_timeout=5)
        with pytest.raises(ConnectionFailed) as denied:
            await wrong.connect()
    text = str(refused.value)
    assert "\n" not in text
    assert "amqp://guest:***@127.0.0.1:1/" in text
    assert "rabbitmq-server -detached" in text
    assert "user name and password" in str(denied.value)
    everything = text + str(denied.value) + repr(refused.value) + repr(denied.value) + repr(logs)
    assert secret not in everything


async def test_close_returns_although_a_handler_swallows_its_cancellation(
    amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relaybus.bus import amqp_connection

    monkeypatch.setattr(amqp_connection, "CLOSE_STEP_S", 0.5)
    started, release = asyncio.Event(), asyncio.Event()
    swallowed = 0

    async def stubborn(delivery: Delivery) -> None:
        nonlocal swallowed
        started.set()
        while not release.is_set():
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                swallowed += 1  # a badly behaved handler: it goes on

    bus = AmqpBus(amqp_url)
    await bus.connect()
    name = unique("stubborn")
    try:
        await bus.declare_queue(name, bindings=[f"task.{name}.#"], durable=False)
        await bus.consume(name, stubborn)
        await bus.publish(msg(name))
        await asyncio.wait_for(started.wait(), 10)
        await asyncio.wait_for(bus.close(), 20)  # returns after 0.5 s: the handler is left behind
        assert swallowed >= 1
        assert not release.is_set()  # the handler never finished: close did not wait for it
    finally:
        release.set()
        await bus.close()
