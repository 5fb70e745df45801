"""The Bus contract: every test here runs on MemoryBus and on AmqpBus against a real RabbitMQ 3.10, and both
must behave the same. These tests are the spec of what relaybus may rely on from any bus."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from uuid import uuid4

import pytest
from structlog.testing import capture_logs

from relaybus.bus.base import (
    DEAD_LETTER_EXCHANGE,
    DEFAULT_EXCHANGE,
    ERROR_HEADER,
    EXCHANGE,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_QUEUE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    Bus,
    Delivery,
    OutgoingMessage,
)
from relaybus.bus.codec import decode, encode_result
from relaybus.bus.core import DEATH_REASONS, MAX_REASON_CHARS, NO_REASON
from relaybus.bus.rpc import ReplyRouter
from relaybus.exceptions import BusError, ConfigError, NoRouteError
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus
from relaybus.secrets import mask_secrets
from tests.eventually import eventually

from .conftest import Harness
from .test_topic import RABBITMQ_TOPIC_CASES

WAIT = 20.0  # generous: the broker is shared and the machine is small


class Recorder:
    """A handler that records what it gets and settles it the way a test says."""

    def __init__(self, settle: Callable[[Delivery], Awaitable[None]] | None = None) -> None:
        self.settle = settle
        self.got: list[Delivery] = []

    async def __call__(self, delivery: Delivery) -> None:
        self.got.append(delivery)
        if self.settle is not None:
            await self.settle(delivery)

    @property
    def bodies(self) -> list[bytes]:
        return [d.body for d in self.got]


async def ack(delivery: Delivery) -> None:
    await delivery.ack()


async def requeue(delivery: Delivery) -> None:
    await delivery.nack(requeue=True)


async def hold(delivery: Delivery) -> None:
    """Leave the delivery unsettled."""


def to_topic(key: str, body: bytes = b"{}", **fields: object) -> OutgoingMessage:
    return OutgoingMessage(body=body, routing_key=key, exchange=EXCHANGE, **fields)  # type: ignore[arg-type]


def to_queue(queue: str, body: bytes = b"{}", **fields: object) -> OutgoingMessage:
    return OutgoingMessage(body=body, routing_key=queue, exchange=DEFAULT_EXCHANGE, **fields)  # type: ignore[arg-type]


def scoped(run: str, text: str) -> str:
    """Prefix a pattern or key with a word unique to the test run, keeping RabbitMQ's word semantics
    ("" is zero words, so it becomes just the prefix) and keeping other test runs' traffic apart."""
    return f"{run}.{text}" if text else run


# -- routing ---------------------------------------------------------------------------------------------


async def test_topic_matching_table_through_real_bindings(bus: Bus, harness: Harness) -> None:
    assert len(RABBITMQ_TOPIC_CASES) >= 20
    queue = harness.name("topics")
    runs = [f"c{i}x{harness.run}" for i in range(len(RABBITMQ_TOPIC_CASES))]
    end = f"end{harness.run}"
    bindings = [scoped(run, pattern) for run, (pattern, _, _) in zip(runs, RABBITMQ_TOPIC_CASES, strict=True)]
    await bus.declare_queue(queue, bindings=[*bindings, end], durable=False)
    for index, (run, (_, key, _)) in enumerate(zip(runs, RABBITMQ_TOPIC_CASES, strict=True)):
        await bus.publish(to_topic(scoped(run, key), message_id=str(index), mandatory=False))
    await bus.publish(to_topic(end, message_id="end"))  # one publisher, one queue: arrives last
    inbox = Recorder(ack)
    await bus.consume(queue, inbox)
    await eventually(lambda: any(d.message_id == "end" for d in inbox.got))
    delivered = {int(d.message_id or "") for d in inbox.got if d.message_id != "end"}
    expected = {i for i, (_, _, match) in enumerate(RABBITMQ_TOPIC_CASES) if match}
    mismatched = [RABBITMQ_TOPIC_CASES[i] for i in sorted(delivered ^ expected)]
    assert mismatched == []
    assert len(inbox.got) == len(delivered) + 1  # each message at most once per queue


async def test_fan_out_to_every_bound_queue_once(bus: Bus, harness: Harness) -> None:
    run = harness.run
    reviewers = harness.name("fan-reviewers")
    auditors = harness.name("fan-auditors")
    writers = harness.name("fan-writers")
    # auditors match twice, but a queue gets one copy of a message however many of its bindings match
    await bus.declare_queue(reviewers, bindings=[f"task.{run}.code.review"])
    await bus.declare_queue(auditors, bindings=[f"task.{run}.#", f"task.{run}.code.*"])
    await bus.declare_queue(writers, bindings=[f"task.{run}.code.write"])
    inboxes = {q: Recorder(ack) for q in (reviewers, auditors, writers)}
    for name, inbox in inboxes.items():
        await bus.consume(name, inbox)
    await bus.publish(to_topic(f"task.{run}.code.review", b"r", message_id="m1"))
    await eventually(lambda: len(inboxes[reviewers].got) == 1 and len(inboxes[auditors].got) == 1)
    await harness.settle_time()
    assert inboxes[reviewers].bodies == [b"r"]
    assert inboxes[auditors].bodies == [b"r"]
    assert inboxes[writers].bodies == []
    delivery = inboxes[reviewers].got[0]
    assert (delivery.exchange, delivery.routing_key, delivery.message_id) == (
        EXCHANGE,
        f"task.{run}.code.review",
        "m1",
    )


async def test_competing_consumers_share_one_queue(bus: Bus, harness: Harness) -> None:
    queue = harness.name("competing")
    await bus.declare_queue(queue, bindings=[f"task.{harness.run}.work"])

    async def slow_ack(delivery: Delivery) -> None:
        await asyncio.sleep(0.02)  # keeps each consumer busy so the others get their turn
        await delivery.ack()

    consumers = [Recorder(slow_ack) for _ in range(3)]
    for consumer in consumers:
        await bus.consume(queue, consumer, prefetch=1)
    bodies = [str(i).encode() for i in range(30)]
    for body in bodies:
        await bus.publish(to_topic(f"task.{harness.run}.work", body))
    await eventually(lambda: sum(len(c.got) for c in consumers) >= len(bodies))
    await harness.settle_time()
    everything = [b for c in consumers for b in c.bodies]
    assert sorted(everything) == sorted(bodies)  # each message exactly once
    assert all(len(c.got) >= 3 for c in consumers), [len(c.got) for c in consumers]


async def test_default_exchange_routes_by_queue_name(bus: Bus, harness: Harness) -> None:
    queue = harness.name("direct")
    await bus.declare_queue(queue, durable=False)
    inbox = Recorder(ack)
    await bus.consume(queue, inbox)
    await bus.publish(to_queue(queue, b"hi", correlation_id="c1", reply_to="somewhere", headers={"k": 1}))
    await eventually(lambda: len(inbox.got) == 1)
    delivery = inbox.got[0]
    assert (delivery.body, delivery.correlation_id, delivery.reply_to) == (b"hi", "c1", "somewhere")
    assert (delivery.exchange, delivery.routing_key, delivery.headers["k"]) == ("", queue, 1)
    assert (delivery.redelivered, delivery.delivery_count) == (False, 0)


async def test_no_route_is_an_error_at_publish(bus: Bus, harness: Harness) -> None:
    with pytest.raises(NoRouteError) as err:
        await bus.publish(to_topic(f"task.{harness.run}.nobody"))
    assert err.value.routing_key == f"task.{harness.run}.nobody"
    assert err.value.exchange == EXCHANGE
    with pytest.raises(NoRouteError):
        await bus.publish(to_queue(f"relaybus.test.contract.missing.{harness.run}"))
    await bus.publish(to_topic(f"task.{harness.run}.nobody", mandatory=False))  # dropped silently, as AMQP


# -- redelivery and dead letters ---------------------------------------------------------------------------


async def test_nack_with_requeue_redelivers(bus: Bus, harness: Harness) -> None:
    queue = harness.name("requeue")
    await bus.declare_queue(queue, bindings=[f"task.{harness.run}.x"])

    async def first_time_no(delivery: Delivery) -> None:
        if delivery.delivery_count == 0:
            await delivery.nack(requeue=True)
        else:
            await delivery.ack()

    inbox = Recorder(first_time_no)
    await bus.consume(queue, inbox)
    await bus.publish(to_topic(f"task.{harness.run}.x", b"again", message_id="m"))
    await eventually(lambda: len(inbox.got) == 2)
    await harness.settle_time()
    assert [(d.body, d.delivery_count, d.redelivered) for d in inbox.got] == [
        (b"again", 0, False),
        (b"again", 1, True),
    ]


async def test_handler_exception_redelivers_and_the_consumer_goes_on(bus: Bus, harness: Harness) -> None:
    queue = harness.name("raises")
    await bus.declare_queue(queue, bindings=[f"task.{harness.run}.x"])
    seen: list[tuple[bytes, int]] = []

    async def fragile(delivery: Delivery) -> None:
        seen.append((delivery.body, delivery.delivery_count))
        if delivery.body == b"poison" and delivery.delivery_count == 0:
            raise RuntimeError("handler bug")
        await delivery.ack()

    await bus.consume(queue, fragile, prefetch=1)
    await bus.publish(to_topic(f"task.{harness.run}.x", b"poison"))
    await bus.publish(to_topic(f"task.{harness.run}.x", b"fine"))
    await eventually(lambda: len(seen) == 3)
    await harness.settle_time()
    assert sorted(seen) == [(b"fine", 0), (b"poison", 0), (b"poison", 1)]


@pytest.mark.parametrize("failure", ["nack", "exception"])
async def test_delivery_limit_dead_letters_with_the_reason(bus: Bus, harness: Harness, failure: str) -> None:
    queue = harness.name("limit")
    key = f"task.{harness.run}.limited"
    await bus.declare_queue(queue, bindings=[key], delivery_limit=2)

    async def always_fails(delivery: Delivery) -> None:
        if failure == "exception":
            raise RuntimeError("always fails")
        await delivery.nack(requeue=True)

    inbox = Recorder(always_fails)
    await bus.consume(queue, inbox)
    message_id = f"limit-{uuid4()}"
    await bus.publish(to_topic(key, b"doomed", message_id=message_id, headers={"keep": "me"}))
    dead = (await harness.take_dead_letters([message_id]))[message_id]
    await harness.settle_time()
    # delivery_limit=2: the first delivery plus two redeliveries, then the broker dead-letters it
    assert [(d.delivery_count, d.redelivered) for d in inbox.got] == [(0, False), (1, True), (2, True)]
    assert dead.body == b"doomed"
    assert (dead.exchange, dead.routing_key) == (DEAD_LETTER_EXCHANGE, key)
    assert dead.headers["keep"] == "me"
    assert dead.headers["x-first-death-reason"] == "delivery_limit"
    assert dead.headers["x-first-death-queue"] == queue
    assert "delivery limit" in str(dead.headers[ERROR_HEADER])
    assert dead.headers[ORIGINAL_QUEUE_HEADER] == queue
    assert dead.headers[ORIGINAL_ROUTING_KEY_HEADER] == key
    assert dead.headers[ORIGINAL_EXCHANGE_HEADER] == EXCHANGE


async def test_delivery_limit_zero_means_one_delivery(bus: Bus, harness: Harness) -> None:
    queue = harness.name("limit0")
    await bus.declare_queue(queue, bindings=[f"task.{harness.run}.x"], delivery_limit=0)
    inbox = Recorder(requeue)
    await bus.consume(queue, inbox)
    message_id = f"limit0-{uuid4()}"
    await bus.publish(to_topic(f"task.{harness.run}.x", message_id=message_id))
    found = await harness.take_dead_letters([message_id])
    await harness.settle_time()
    assert list(found) == [message_id]
    assert len(inbox.got) == 1


async def test_dead_letter_with_a_reason(bus: Bus, harness: Harness) -> None:
    queue = harness.name("reason")
    key = f"task.{harness.run}.bad"
    await bus.declare_queue(queue, bindings=[key])

    async def refuse(delivery: Delivery) -> None:
        await delivery.dead_letter("body is not valid JSON: expected value at line 1")

    inbox = Recorder(refuse)
    await bus.consume(queue, inbox)
    message_id = f"reason-{uuid4()}"
    await bus.publish(to_topic(key, b"{not json", message_id=message_id, headers={"relaybus-schema": 1}))
    dead = (await harness.take_dead_letters([message_id]))[message_id]
    await harness.settle_time()
    assert len(inbox.got) == 1  # settled for good: not redelivered
    assert dead.body == b"{not json"
    assert dead.headers[ERROR_HEADER] == "body is not valid JSON: expected value at line 1"
    assert dead.headers[ORIGINAL_QUEUE_HEADER] == queue
    assert dead.headers[ORIGINAL_ROUTING_KEY_HEADER] == key
    assert dead.headers[ORIGINAL_EXCHANGE_HEADER] == EXCHANGE
    assert dead.headers["relaybus-schema"] == 1
    assert (dead.exchange, dead.routing_key) == (DEAD_LETTER_EXCHANGE, key)


async def test_nack_without_requeue_dead_letters_as_rejected(bus: Bus, harness: Harness) -> None:
    queue = harness.name("reject")
    await bus.declare_queue(queue, bindings=[f"task.{harness.run}.x"])

    async def reject(delivery: Delivery) -> None:
        await delivery.nack(requeue=False)

    inbox = Recorder(reject)
    await bus.consume(queue, inbox)
    message_id = f"reject-{uuid4()}"
    await bus.publish(to_topic(f"task.{harness.run}.x", message_id=message_id))
    dead = (await harness.take_dead_letters([message_id]))[message_id]
    await harness.settle_time()
    assert len(inbox.got) == 1
    assert dead.headers["x-first-death-reason"] == "rejected"
    assert "rejected" in str(dead.headers[ERROR_HEADER])
    assert dead.headers[ORIGINAL_QUEUE_HEADER] == queue


# -- consumers -------------------------------------------------------------------------------------------


async def test_prefetch_limits_unsettled_deliveries(bus: Bus, harness: Harness) -> None:
    queue = harness.name("prefetch")
    await bus.declare_queue(queue, durable=False)
    for i in range(5):
        await bus.publish(to_queue(queue, str(i).encode()))
    holder = Recorder(hold)
    subscription = await bus.consume(queue, holder, prefetch=2)
    await eventually(lambda: len(holder.got) == 2)
    await harness.settle_time()
    assert holder.bodies == [b"0", b"1"]
    await holder.got[0].ack()  # a free slot: exactly one more comes
    await eventually(lambda: len(holder.got) == 3)
    await harness.settle_time()
    assert holder.bodies == [b"0", b"1", b"2"]
    await subscription.cancel()


async def test_cancel_requeues_unsettled_deliveries(bus: Bus, harness: Harness) -> None:
    queue = harness.name("cancel")
    await bus.declare_queue(queue, bindings=[f"task.{harness.run}.x"])
    for body in (b"a", b"b", b"c"):
        await bus.publish(to_topic(f"task.{harness.run}.x", body))
    holder = Recorder(hold)
    subscription = await bus.consume(queue, holder, prefetch=10)
    await eventually(lambda: len(holder.got) == 3)
    await holder.got[1].ack()  # settled: stays settled
    await subscription.cancel()
    taker = Recorder(ack)
    await bus.consume(queue, taker)
    await eventually(lambda: len(taker.got) == 2)
    await harness.settle_time()
    assert sorted((d.body, d.delivery_count, d.redelivered) for d in taker.got) == [
        (b"a", 1, True),
        (b"c", 1, True),
    ]


async def test_cancel_waits_for_running_handlers(bus: Bus, harness: Harness) -> None:
    queue = harness.name("drain")
    await bus.declare_queue(queue, durable=False)
    finished: list[bytes] = []
    started = asyncio.Event()

    async def slow(delivery: Delivery) -> None:
        started.set()
        await asyncio.sleep(0.2)
        await delivery.ack()
        finished.append(delivery.body)

    subscription = await bus.consume(queue, slow)
    await bus.publish(to_queue(queue, b"in-flight"))
    await asyncio.wait_for(started.wait(), WAIT)
    await subscription.cancel()
    assert finished == [b"in-flight"]
    assert await bus.purge_queue(queue) == 0  # it was acked, not returned


async def test_purge_removes_ready_messages(bus: Bus, harness: Harness) -> None:
    queue = harness.name("purge")
    await bus.declare_queue(queue)
    for _ in range(4):
        await bus.publish(to_queue(queue))
    assert await bus.purge_queue(queue) == 4
    assert await bus.purge_queue(queue) == 0


# -- request / reply -----------------------------------------------------------------------------------------


async def serve_uppercase(bus: Bus, harness: Harness, topic_pattern: str) -> None:
    queue = harness.name("agents")
    await bus.declare_queue(queue, bindings=[f"task.{topic_pattern}"])

    async def handle(delivery: Delivery) -> None:
        task = decode(delivery.body, delivery.headers, AgentTask)
        await asyncio.sleep(0.001 * (hash(task.prompt) % 20))  # finish out of order
        result = ExecutionResult.success(task.id, task.prompt.upper(), agent="upper")
        if delivery.reply_to:
            await bus.publish(encode_result(result, reply_to=delivery.reply_to))
        await delivery.ack()

    await bus.consume(queue, handle, prefetch=64)


async def test_request_reply_through_reply_router(bus: Bus, harness: Harness) -> None:
    await serve_uppercase(bus, harness, f"{harness.run}.#")
    async with ReplyRouter(bus) as router:
        tasks = [AgentTask(topic=f"{harness.run}.upper", prompt=f"p{i}") for i in range(200)]
        results = await asyncio.gather(*(router.request(t, timeout=WAIT) for t in tasks))
        assert [r.output for r in results] == [f"P{i}" for i in range(200)]
        assert {r.status for r in results} == {ExecutionStatus.SUCCESS}
        assert router.in_flight == 0
        with pytest.raises(NoRouteError):
            await router.request(AgentTask(topic=f"{harness.run}-nobody.listens"), timeout=WAIT)
        silent = harness.name("silent")
        await bus.declare_queue(silent, bindings=[f"task.{harness.run}-silent.#"])
        timed_out = await router.request(AgentTask(topic=f"{harness.run}-silent.x"), timeout=0.2)
        assert timed_out.status is ExecutionStatus.TIMEOUT


async def test_named_reply_queue_keeps_results_while_the_caller_is_down(bus: Bus, harness: Harness) -> None:
    name = f"contract-{harness.run}"
    queue = f"relaybus.reply.{name}"
    harness.queues.append(queue)
    tasks = [AgentTask(topic=f"{harness.run}.x", prompt=str(i)) for i in range(5)]
    async with ReplyRouter(bus, name=name) as router:
        assert router.queue == queue
    for task in tasks:  # finished while the orchestrator was down
        await bus.publish(encode_result(ExecutionResult.success(task.id, task.prompt), reply_to=queue))
    async with ReplyRouter(bus, name=name) as restarted:
        futures = [restarted.expect(t.id) for t in tasks]
        async with asyncio.timeout(WAIT):
            results = [await f for f in futures]
    assert [r.output for r in results] == ["0", "1", "2", "3", "4"]
    with contextlib.suppress(Exception):
        await bus.delete_queue(queue)


async def _routable(bus: Bus, queue: str) -> bool:
    """Whether ``queue`` exists: a mandatory publish to it by name is refused with NoRouteError otherwise."""
    try:
        await bus.publish(OutgoingMessage(body=b"probe", routing_key=queue, exchange=DEFAULT_EXCHANGE))
    except NoRouteError:
        return False
    return True


async def test_a_queue_with_expires_lives_while_consumed_and_goes_after_its_last_consumer(
    bus: Bus, harness: Harness
) -> None:
    queue = harness.name("expires")
    expires_s = 1.0
    await bus.declare_queue(queue, expires_s=expires_s)
    got = Recorder(ack)
    subscription = await bus.consume(queue, got)
    await asyncio.sleep(expires_s * 2.5)  # longer than expires_s: a consumer keeps it alive
    assert await _routable(bus, queue)
    await eventually(lambda: got.bodies == [b"probe"])
    await subscription.cancel()

    async def gone() -> bool:
        return not await _routable(bus, queue)

    # RabbitMQ checks expiry every few seconds; each probe is a publish, so probe at most twice a second
    await eventually(gone, timeout=WAIT, max_interval=0.5)
    with pytest.raises(ConfigError, match="expires_s"):
        await bus.declare_queue(harness.name("bad-expiry"), expires_s=0)


async def test_redeclaring_with_another_expiry_is_refused(bus: Bus, harness: Harness) -> None:
    queue = harness.name("expiry-mismatch")
    await bus.declare_queue(queue, expires_s=600)
    await bus.declare_queue(queue, expires_s=600)  # the same: fine
    with pytest.raises(BusError):
        await bus.declare_queue(queue, expires_s=300)


async def test_an_anonymous_reply_queue_is_durable_with_an_expiry(bus: Bus, harness: Harness) -> None:
    """What keeps results across a broker restart: the private reply queue is durable, and expires."""
    router = ReplyRouter(bus, expires_s=120)
    harness.queues.append(router.queue)
    async with router:
        assert not router.durable  # not resumable by name: the queue name is random
        with pytest.raises(BusError):  # it exists as a durable queue with a 120 s expiry
            await bus.declare_queue(router.queue, durable=False)
        await bus.declare_queue(router.queue, expires_s=120)  # equivalent: accepted
    assert not await _routable(bus, router.queue)  # close() deletes it


# -- one rule on both buses: the checks, words and log events of bus/core.py ------------------------------


async def test_is_connected_until_close(bus: Bus) -> None:
    assert bus.is_connected
    await bus.close()
    assert not bus.is_connected


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"bindings": "task.x"}, "not the string 'task.x'"),  # not one binding per character
        ({"bindings": [42]}, "binding pattern must be a string"),
        ({"bindings": ["task." + "x" * 300]}, "longer than 255 bytes"),
        ({"delivery_limit": -1}, "delivery_limit"),
        ({"delivery_limit": 1.5}, "delivery_limit"),
        ({"expires_s": 0}, "expires_s"),
    ],
)
async def test_bad_queue_arguments_are_the_same_config_error(
    bus: Bus, harness: Harness, arguments: dict[str, object], problem: str
) -> None:
    queue = harness.name("bad-arguments")
    with pytest.raises(ConfigError, match=problem):
        await bus.declare_queue(queue, **arguments)  # type: ignore[arg-type]
    assert not await _routable(bus, queue)  # refused before anything was declared


@pytest.mark.parametrize(
    ("name", "problem"), [("", "queue name is empty"), ("amq.mine", "'amq.'"), ("q" * 256, "255 bytes")]
)
async def test_bad_queue_names_are_the_same_config_error(bus: Bus, name: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        await bus.declare_queue(name)


async def test_bad_prefetch_is_a_config_error(bus: Bus, harness: Harness) -> None:
    queue = harness.name("prefetch-check")
    await bus.declare_queue(queue, durable=False)
    for prefetch in (0, 65536, True):
        with pytest.raises(ConfigError, match="prefetch"):
            await bus.consume(queue, ack, prefetch=prefetch)


async def test_a_body_over_the_limit_is_refused_in_the_same_words(bus: Bus, harness: Harness) -> None:
    queue = harness.name("body-cap")
    await bus.declare_queue(queue, durable=False)
    bus.max_body_bytes = 10  # type: ignore[attr-defined]  # an attribute of both buses, not of the protocol
    await bus.publish(to_queue(queue, b"x" * 10))
    with pytest.raises(BusError) as err:
        await bus.publish(to_queue(queue, b"x" * 11))
    assert str(err.value) == (
        f"message body is 11 bytes, over the limit of 10 bytes (routing key {queue!r}): send large data by "
        "reference (a URL or a path) or raise max_body_bytes"
    )
    assert await bus.purge_queue(queue) == 1


async def dead_letter_reasons(bus: Bus, harness: Harness, reasons: list[str]) -> list[str]:
    """Dead-letter one message per reason; the ``relaybus-error`` headers they arrive with, in order."""
    queue = harness.name("reasons")
    await bus.declare_queue(queue, durable=False)
    ids = [f"reason-{i}-{uuid4()}" for i in range(len(reasons))]
    by_id = dict(zip(ids, reasons, strict=True))

    async def refuse(delivery: Delivery) -> None:
        await delivery.dead_letter(by_id[delivery.message_id or ""])

    await bus.consume(queue, refuse)
    for message_id in ids:
        await bus.publish(to_queue(queue, message_id=message_id))
    dead = await harness.take_dead_letters(ids)
    assert sorted(dead) == sorted(ids)
    return [str(dead[message_id].headers[ERROR_HEADER]) for message_id in ids]


async def test_a_dead_letter_reason_is_masked_filled_and_capped_the_same_way(
    bus: Bus, harness: Harness
) -> None:
    leaky = "LLM call to https://user:hunter2-Zq@llm.example/v1 failed with key sk-abcdefgh12345678XYZ"
    long_reason = "why " * 400
    masked, empty, blank, capped, exact = await dead_letter_reasons(
        bus, harness, [leaky, "", "   ", long_reason, "r" * MAX_REASON_CHARS]
    )
    assert masked == mask_secrets(leaky)
    assert "hunter2-Zq" not in masked
    assert "sk-abcdefgh" not in masked
    assert (empty, blank) == (NO_REASON, NO_REASON)
    assert capped == long_reason[: MAX_REASON_CHARS - 3] + "..."
    assert exact == "r" * MAX_REASON_CHARS  # at the limit: kept whole


@pytest.mark.parametrize("reason", ["rejected", "delivery_limit"])
async def test_a_broker_dead_letter_reason_is_worded_from_one_table(
    bus: Bus, harness: Harness, reason: str
) -> None:
    queue = harness.name(f"death-{reason}")
    key = f"task.{harness.run}.death.{reason}"
    await bus.declare_queue(queue, bindings=[key], delivery_limit=0)

    async def refuse(delivery: Delivery) -> None:
        await delivery.nack(requeue=reason == "delivery_limit")

    await bus.consume(queue, refuse)
    message_id = f"death-{uuid4()}"
    await bus.publish(to_topic(key, message_id=message_id))
    dead = (await harness.take_dead_letters([message_id]))[message_id]
    assert (
        dead.headers[ERROR_HEADER] == f"{DEATH_REASONS[reason]} (x-death reason {reason!r}, queue {queue!r})"
    )
    assert dead.headers[ORIGINAL_QUEUE_HEADER] == queue
    assert dead.headers[ORIGINAL_ROUTING_KEY_HEADER] == key
    assert dead.headers[ORIGINAL_EXCHANGE_HEADER] == EXCHANGE


async def test_handler_failures_and_unsettled_returns_log_the_same_events(bus: Bus, harness: Harness) -> None:
    queue = harness.name("log-events")
    await bus.declare_queue(queue)  # durable: RabbitMQ counts deliveries on quorum queues only

    async def fail_once_then_hold(delivery: Delivery) -> None:
        if delivery.delivery_count == 0:
            raise RuntimeError("bad input; key sk-abcdefgh12345678XYZ")
        # the redelivery: returned without settling

    inbox = Recorder(fail_once_then_hold)
    with capture_logs() as logs:
        subscription = await bus.consume(queue, inbox)
        await bus.publish(to_queue(queue, message_id="logged"))
        await eventually(lambda: any(e["event"] == "handler_returned_unsettled" for e in logs))
        await subscription.cancel()
    [failed] = [e for e in logs if e["event"] == "handler_failed"]
    assert (failed["queue"], failed["message_id"], failed["delivery_count"]) == (queue, "logged", 0)
    assert failed["error"] == "bad input; key ***"
    assert failed["error_type"] == "RuntimeError"
    [unsettled] = [e for e in logs if e["event"] == "handler_returned_unsettled"]
    assert (unsettled["queue"], unsettled["message_id"]) == (queue, "logged")
    assert [d.delivery_count for d in inbox.got] == [0, 1]  # the failure was returned with requeue
