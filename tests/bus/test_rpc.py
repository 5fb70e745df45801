"""ReplyRouter on MemoryBus: one reply queue, many requests in flight, first result wins, nothing hangs."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from uuid import uuid4

import pytest

from relaybus.bus.base import DEAD_LETTER_QUEUE, DEFAULT_EXCHANGE, ERROR_HEADER, Delivery, OutgoingMessage
from relaybus.bus.codec import decode, encode_result
from relaybus.bus.memory import MemoryBus
from relaybus.bus.rpc import ReplyRouter
from relaybus.exceptions import BusError, ConfigError, NoRouteError, UsageError
from relaybus.messages import SCHEMA_VERSION, AgentTask, ExecutionResult, ExecutionStatus

Answer = Callable[[AgentTask], Awaitable[ExecutionResult | None]]


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    async with MemoryBus() as memory_bus:
        yield memory_bus


async def serve(bus: MemoryBus, answer: Answer, *, queue: str = "agents", prefetch: int = 1000) -> None:
    """A stand-in worker: answers every task on ``task.#`` with what ``answer`` returns (None: no reply)."""
    await bus.declare_queue(queue, bindings=["task.#"])

    async def handle(delivery: Delivery) -> None:
        task = decode(delivery.body, delivery.headers, AgentTask)
        result = await answer(task)
        if result is not None and delivery.reply_to:
            await bus.publish(encode_result(result, reply_to=delivery.reply_to))
        await delivery.ack()

    await bus.consume(queue, handle, prefetch=prefetch)


async def echo_upper(task: AgentTask) -> ExecutionResult:
    return ExecutionResult.success(task.id, task.prompt.upper())


async def test_many_concurrent_requests_answered_out_of_order(bus: MemoryBus) -> None:
    rng = random.Random(7)
    order: list[str] = []

    async def jittery(task: AgentTask) -> ExecutionResult:
        await asyncio.sleep(rng.random() * 0.05)
        order.append(task.prompt)
        return await echo_upper(task)

    await serve(bus, jittery)
    async with ReplyRouter(bus) as router:
        tasks = [AgentTask(topic="t.x", prompt=f"p{i}") for i in range(1000)]
        results = await asyncio.gather(*(router.request(t, timeout=30) for t in tasks))
        assert [r.output for r in results] == [f"P{i}" for i in range(1000)]
        assert all(r.task_id == t.id for r, t in zip(results, tasks, strict=True))
        assert order != sorted(order, key=lambda p: int(p[1:]))  # they really finished out of order
        assert router.in_flight == 0
        assert bus.stats(router.queue).consumers == 1  # one reply queue for all of them


async def test_timeout_gives_a_timeout_result_and_drops_the_late_one(bus: MemoryBus) -> None:
    release = asyncio.Event()

    async def late(task: AgentTask) -> ExecutionResult:
        await release.wait()
        return await echo_upper(task)

    await serve(bus, late)
    seen: list[ExecutionResult] = []
    async with ReplyRouter(bus, on_result=seen.append) as router:
        task = AgentTask(topic="t.slow", prompt="x")
        result = await router.request(task, timeout=0.05)
        assert result.status is ExecutionStatus.TIMEOUT
        assert result.task_id == task.id
        assert result.error is not None
        assert result.error.type == "ReplyTimeout"
        assert "topic 't.slow'" in result.error.message
        assert result.error.retryable
        assert router.in_flight == 0
        release.set()
        await bus.join()
        assert seen == []  # the late result was acked and dropped, not kept for nobody
        assert router.expect(task.id).done() is False  # a fresh expect waits for a new result
        assert bus.stats(router.queue).ready == 0
        assert bus.stats(DEAD_LETTER_QUEUE).ready == 0


async def test_task_timeout_s_is_the_default_timeout(bus: MemoryBus) -> None:
    async def never(task: AgentTask) -> None:
        return None

    await serve(bus, never)
    async with ReplyRouter(bus) as router:
        result = await router.request(AgentTask(topic="t.x", timeout_s=0.05))
        assert result.status is ExecutionStatus.TIMEOUT


async def test_duplicate_results_first_wins(bus: MemoryBus) -> None:
    seen: list[ExecutionResult] = []
    async with ReplyRouter(bus, on_result=seen.append) as router:
        task_id = uuid4()
        future = router.expect(task_id)
        first = ExecutionResult.success(task_id, "first")
        second = ExecutionResult.success(task_id, "second")
        await bus.publish(encode_result(first, reply_to=router.queue))
        await bus.publish(encode_result(second, reply_to=router.queue))
        await bus.join()
        assert (await future).output == "first"
        assert [r.output for r in seen] == ["first"]
        assert bus.stats(router.queue).ready == 0
        assert bus.stats(router.queue).unsettled == 0
        assert bus.stats(DEAD_LETTER_QUEUE).ready == 0


async def test_resolve_ends_the_wait_and_the_late_result_is_a_duplicate(bus: MemoryBus) -> None:
    async with ReplyRouter(bus) as router:
        task_id = uuid4()
        future = router.expect(task_id)
        mine = ExecutionResult.failed(task_id, ExecutionStatus.CANCELLED, "Cancelled", "cancelled here")
        assert router.resolve(task_id, mine) is True
        assert (await future) is mine
        assert router.resolve(task_id, mine) is False, "already resolved: nothing changes"
        await bus.publish(encode_result(ExecutionResult.success(task_id, "late"), reply_to=router.queue))
        await bus.join()
        assert router.duplicates_dropped == 1
        assert future.result() is mine
        assert router.resolve(uuid4(), mine) is False, "nobody waits for an unknown task"


async def test_early_result_is_kept_for_a_later_expect(bus: MemoryBus) -> None:
    async with ReplyRouter(bus) as router:
        task_id = uuid4()
        await bus.publish(encode_result(ExecutionResult.success(task_id, 42), reply_to=router.queue))
        await bus.join()
        future = router.expect(str(task_id))
        assert future.done()
        assert future.result().output == 42
        # claimed once: a repeat of the same result is now a duplicate
        await bus.publish(encode_result(ExecutionResult.success(task_id, 43), reply_to=router.queue))
        await bus.join()
        assert router.expect(task_id).done() is False


async def test_unclaimed_results_are_bounded(bus: MemoryBus) -> None:
    async with ReplyRouter(bus, max_unclaimed=3) as router:
        ids = [uuid4() for _ in range(5)]
        for task_id in ids:
            await bus.publish(encode_result(ExecutionResult.success(task_id), reply_to=router.queue))
        await bus.join()
        assert [router.expect(i).done() for i in ids] == [False, False, True, True, True]


async def test_named_router_collects_results_after_a_restart(bus: MemoryBus) -> None:
    tasks = [AgentTask(topic="t.x", prompt=f"p{i}") for i in range(3)]
    async with ReplyRouter(bus, name="orchestrator-1") as router:
        assert router.queue == "relaybus.reply.orchestrator-1"
        assert router.durable
        queue = router.queue
    # The orchestrator is down; a worker finishes its tasks meanwhile.
    for task in tasks:
        await bus.publish(encode_result(await echo_upper(task), reply_to=queue))
    assert bus.stats(queue).ready == 3
    restarted = ReplyRouter(bus, name="orchestrator-1")
    futures = [restarted.expect(t.id) for t in tasks[:2]]  # registered before start
    await restarted.start()
    await bus.join()
    assert [(await f).output for f in futures] == ["P0", "P1"]
    assert restarted.expect(tasks[2].id).result().output == "P2"  # arrived before anyone expected it
    await restarted.close()
    assert queue in bus.queue_names()  # durable: kept


async def test_private_router_queue_is_removed_on_close(bus: MemoryBus) -> None:
    router = ReplyRouter(bus)
    assert router.queue.startswith("relaybus.reply.")
    assert not router.durable
    assert router.queue != ReplyRouter(bus).queue
    await router.start()
    await router.start()  # idempotent
    assert router.queue in bus.queue_names()
    await router.close()
    await router.close()
    assert router.queue not in bus.queue_names()


async def test_invalid_and_mismatched_results_are_dead_lettered(bus: MemoryBus) -> None:
    async with ReplyRouter(bus) as router:
        task_id = uuid4()
        future = router.expect(task_id)
        await bus.publish(
            OutgoingMessage(
                body=b"not json",
                routing_key=router.queue,
                exchange=DEFAULT_EXCHANGE,
                headers={"relaybus-schema": SCHEMA_VERSION},
            )
        )
        other = encode_result(ExecutionResult.success(task_id, "x"), reply_to=router.queue)
        await bus.publish(
            OutgoingMessage(
                body=other.body,
                routing_key=router.queue,
                exchange=DEFAULT_EXCHANGE,
                correlation_id=str(uuid4()),
                headers=other.headers,
            )
        )
        await bus.join()
        assert not future.done()
        reasons: list[str] = []

        async def read(delivery: Delivery) -> None:
            reasons.append(str(delivery.headers[ERROR_HEADER]))
            await delivery.ack()

        await bus.consume(DEAD_LETTER_QUEUE, read)
        await bus.join()
        assert len(reasons) == 2
        assert "not valid JSON" in reasons[0]
        assert "does not match the result's task_id" in reasons[1]


async def test_no_route_propagates_and_leaves_nothing_pending(bus: MemoryBus) -> None:
    async with ReplyRouter(bus) as router:
        with pytest.raises(NoRouteError, match=r"task\.nobody\.listens"):
            await router.request(AgentTask(topic="nobody.listens"), timeout=1)
        assert router.in_flight == 0


async def test_request_needs_start_and_expect_does_not(bus: MemoryBus) -> None:
    router = ReplyRouter(bus)
    router.expect(uuid4())
    with pytest.raises(UsageError, match="not started"):
        await router.request(AgentTask(topic="t.x"))
    with pytest.raises(UsageError, match="not started"):
        await router.expect_all([uuid4()])


def test_a_bad_name_or_task_id_is_a_config_error(bus: MemoryBus) -> None:
    router = ReplyRouter(bus)
    with pytest.raises(ConfigError, match="not a UUID"):
        router.expect("nope")
    with pytest.raises(ConfigError, match="not a UUID"):
        router.discard("nope")
    with pytest.raises(ConfigError, match="invalid"):
        ReplyRouter(bus, name="bad name")


async def test_expect_all_on_a_named_router_first_collects_the_results_waiting_in_its_queue(
    bus: MemoryBus,
) -> None:
    tasks = [AgentTask(topic="t.x", prompt=f"p{i}") for i in range(4)]
    name = f"resume-{uuid4().hex[:8]}"
    async with ReplyRouter(bus, name=name) as router:
        queue = router.queue
    for task in tasks[:3]:  # answered while the process was down
        await bus.publish(encode_result(await echo_upper(task), reply_to=queue))
    seen: list[ExecutionResult] = []
    # prefetch=1: the waiting results come in one loop iteration after another, so only a barrier that
    # really waits for them sees them all
    async with ReplyRouter(bus, name=name, on_result=seen.append, prefetch=1) as restarted:
        futures = await restarted.expect_all([t.id for t in tasks])
        assert list(futures) == [t.id for t in tasks]
        assert [f.done() for f in futures.values()] == [True, True, True, False]
        assert [f.result().output for f in list(futures.values())[:3]] == ["P0", "P1", "P2"]
        assert [r.task_id for r in seen] == [t.id for t in tasks[:3]]  # the marker is not a result
        assert restarted.in_flight == 1
        assert restarted.duplicates_dropped == 0
    await bus.delete_queue(queue)


async def test_expect_all_on_an_anonymous_router_only_registers(bus: MemoryBus) -> None:
    published: list[OutgoingMessage] = []
    async with ReplyRouter(bus) as router:
        real_publish = bus.publish

        async def spy(message: OutgoingMessage) -> None:
            published.append(message)
            await real_publish(message)

        bus.publish = spy  # type: ignore[method-assign]
        ids = [uuid4(), uuid4()]
        futures = await router.expect_all(ids)
        assert list(futures) == ids
        assert router.in_flight == 2
        assert published == []  # nothing can be waiting in a queue this process just made


@pytest.mark.parametrize("failure", ["publish refused", "marker lost"])
async def test_expect_all_returns_anyway_when_the_barrier_fails(bus: MemoryBus, failure: str) -> None:
    async def refuse(message: OutgoingMessage) -> None:
        raise BusError("channel closed")

    async def lose(message: OutgoingMessage) -> None:
        return None

    async with ReplyRouter(bus, name=f"barrier-{uuid4().hex[:8]}") as router:
        bus.publish = refuse if failure == "publish refused" else lose  # type: ignore[method-assign]
        ids = [uuid4(), uuid4()]
        futures = await router.expect_all(ids, timeout=0.05)
        assert list(futures) == ids
        assert not any(f.done() for f in futures.values())
        assert router.in_flight == 2  # the marker is not left waiting
        queue = router.queue
    await bus.delete_queue(queue)


async def test_close_resolves_waiting_requests_as_cancelled(bus: MemoryBus) -> None:
    async def never(task: AgentTask) -> None:
        return None

    await serve(bus, never)
    router = ReplyRouter(bus)
    await router.start()
    waiting = asyncio.ensure_future(router.request(AgentTask(topic="t.x")))
    await bus.join()
    await router.close()
    result = await asyncio.wait_for(waiting, 1)
    assert result.status is ExecutionStatus.CANCELLED


async def test_cancelled_request_is_discarded(bus: MemoryBus) -> None:
    async def never(task: AgentTask) -> None:
        return None

    await serve(bus, never)
    async with ReplyRouter(bus) as router:
        waiting = asyncio.ensure_future(router.request(AgentTask(topic="t.x")))
        await bus.join()
        assert router.in_flight == 1
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert router.in_flight == 0


async def test_on_result_may_be_async_and_its_errors_do_not_block_acks(bus: MemoryBus) -> None:
    calls: list[str] = []

    async def hook(result: ExecutionResult) -> None:
        calls.append(str(result.output))
        raise RuntimeError("hook broke")

    async with ReplyRouter(bus, on_result=hook) as router:
        task_id = uuid4()
        future = router.expect(task_id)
        await bus.publish(encode_result(ExecutionResult.success(task_id, "ok"), reply_to=router.queue))
        await bus.join()
        assert (await future).output == "ok"
        assert calls == ["ok"]
        assert bus.stats(router.queue).unsettled == 0
        assert bus.stats(router.queue).ready == 0
