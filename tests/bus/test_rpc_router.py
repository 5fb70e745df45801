"""ReplyRouter's promises one by one, on MemoryBus: queue naming, discard, the bounded memories, acks, close.

test_rpc.py has the request/reply flows; these pin what its module docstring promises and mutation testing
found unguarded. Errors are matched as ``RelaybusError`` where the exact subclass is not the promise.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import pytest

from relaybus.bus.base import DEAD_LETTER_QUEUE, ERROR_HEADER, Delivery
from relaybus.bus.codec import decode, encode_result
from relaybus.bus.memory import MemoryBus
from relaybus.bus.rpc import DEFAULT_REPLY_EXPIRES_S, REPLY_QUEUE_PREFIX, ReplyRouter
from relaybus.exceptions import RelaybusError
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus
from tests.eventually import eventually, let_the_loop_run


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    async with MemoryBus() as memory_bus:
        yield memory_bus


async def answer(bus: MemoryBus, router: ReplyRouter, task_id: UUID, output: object = "ok") -> None:
    """A worker's result for ``task_id`` arrives on the router's queue (and is handled)."""
    await bus.publish(encode_result(ExecutionResult.success(task_id, output), reply_to=router.queue))
    await bus.join(router.queue)


async def dead_letter_reasons(bus: MemoryBus) -> list[str]:
    reasons: list[str] = []

    async def read(delivery: Delivery) -> None:
        reasons.append(str(delivery.headers[ERROR_HEADER]))
        await delivery.ack()

    subscription = await bus.consume(DEAD_LETTER_QUEUE, read)
    await bus.join(DEAD_LETTER_QUEUE)
    await subscription.cancel()
    return reasons


def assert_retryable_failure(
    result: ExecutionResult, task_id: UUID, status: ExecutionStatus, error_type: str, message: str
) -> None:
    assert (result.task_id, result.status) == (task_id, status)
    assert result.error is not None
    assert (result.error.type, result.error.message, result.error.retryable) == (error_type, message, True)


class Worker:
    """Answers every ``task.#`` task after ``release`` is set; records what it received."""

    def __init__(self, bus: MemoryBus) -> None:
        self.bus = bus
        self.received: list[Delivery] = []
        self.release = asyncio.Event()
        self.release.set()

    async def start(self) -> None:
        await self.bus.declare_queue("agents", bindings=["task.#"])
        await self.bus.consume("agents", self._handle, prefetch=100)

    async def _handle(self, delivery: Delivery) -> None:
        self.received.append(delivery)
        task = decode(delivery.body, delivery.headers, AgentTask)
        await self.release.wait()
        if delivery.reply_to:
            result = ExecutionResult.success(task.id, task.prompt.upper())
            await self.bus.publish(encode_result(result, reply_to=delivery.reply_to))
        await delivery.ack()


# -- the queue -----------------------------------------------------------------------------------------------


async def test_an_anonymous_router_has_a_random_queue_that_expires(bus: MemoryBus) -> None:
    router = ReplyRouter(bus)
    assert re.fullmatch(re.escape(REPLY_QUEUE_PREFIX) + "[0-9a-f]{32}", router.queue)
    assert REPLY_QUEUE_PREFIX == "relaybus.reply."
    assert DEFAULT_REPLY_EXPIRES_S == 300.0
    assert router.started is False
    async with router:
        assert router.started is True
        assert bus.stats(router.queue).consumers == 1
        await bus.declare_queue(router.queue, expires_s=DEFAULT_REPLY_EXPIRES_S)  # the same: accepted
        with pytest.raises(RelaybusError):
            await bus.declare_queue(router.queue, expires_s=None)  # declared with an expiry, so not this
    assert router.started is False


async def test_an_anonymous_router_takes_its_expiry_from_expires_s(bus: MemoryBus) -> None:
    async with ReplyRouter(bus, expires_s=42) as router:
        await bus.declare_queue(router.queue, expires_s=42)
        with pytest.raises(RelaybusError):
            await bus.declare_queue(router.queue, expires_s=DEFAULT_REPLY_EXPIRES_S)


async def test_a_named_router_queue_never_expires_and_is_kept_on_close(bus: MemoryBus) -> None:
    async with ReplyRouter(bus, name="orch.main_1-a", expires_s=5) as router:
        assert router.queue == "relaybus.reply.orch.main_1-a"
        assert router.durable is True
        await bus.declare_queue(router.queue)  # no expiry, whatever expires_s says
        with pytest.raises(RelaybusError):
            await bus.declare_queue(router.queue, expires_s=5)
    assert router.queue in bus.queue_names()


@pytest.mark.parametrize("name", ["", "bad name", "x" * 101, "slash/y"])
def test_a_bad_name_is_refused_naming_the_rule(name: str) -> None:
    with pytest.raises(RelaybusError, match=r"reply router name .* is invalid: use 1-100 letters"):
        ReplyRouter(MemoryBus(), name=name)


@pytest.mark.parametrize("expires_s", [0, -1.0])
def test_a_bad_expiry_is_refused(expires_s: float) -> None:
    with pytest.raises(RelaybusError, match="expires_s"):
        ReplyRouter(MemoryBus(), expires_s=expires_s)


async def test_start_twice_consumes_once(bus: MemoryBus) -> None:
    async with ReplyRouter(bus) as router:
        await router.start()
        assert bus.stats(router.queue).consumers == 1


# -- expect, discard, resolve --------------------------------------------------------------------------------


async def test_expect_while_pending_returns_the_same_future_and_counts_once(bus: MemoryBus) -> None:
    async with ReplyRouter(bus) as router:
        task_id = uuid4()
        future = router.expect(task_id)
        assert router.expect(str(task_id)) is future
        assert router.in_flight == 1
        router.expect(uuid4())
        assert router.in_flight == 2
        await answer(bus, router, task_id)
        assert router.in_flight == 1
        assert future.result().output == "ok"


async def test_a_discarded_wait_is_cancelled_and_its_late_result_dropped(bus: MemoryBus) -> None:
    seen: list[ExecutionResult] = []
    async with ReplyRouter(bus, on_result=seen.append) as router:
        task_id = uuid4()
        future = router.expect(task_id)
        router.discard(str(task_id))
        assert future.cancelled()
        assert router.in_flight == 0
        await answer(bus, router, task_id, "late")
        assert router.duplicates_dropped == 1
        assert seen == []
        assert router.expect(task_id).done() is False  # dropped, not kept for a later expect
        assert bus.stats(router.queue).ready == bus.stats(router.queue).unsettled == 0


async def test_discard_drops_a_result_that_came_before_anyone_expected_it(bus: MemoryBus) -> None:
    async with ReplyRouter(bus) as router:
        task_id = uuid4()
        await answer(bus, router, task_id, "early")
        router.discard(task_id)
        assert router.expect(task_id).done() is False


async def test_discarding_an_unknown_id_is_harmless_and_drops_its_result_later(bus: MemoryBus) -> None:
    async with ReplyRouter(bus) as router:
        task_id = uuid4()
        router.discard(task_id)
        await answer(bus, router, task_id)
        assert router.duplicates_dropped == 1


async def test_resolve_of_a_pending_id_wins_over_the_result_that_arrives(bus: MemoryBus) -> None:
    seen: list[ExecutionResult] = []
    async with ReplyRouter(bus, on_result=seen.append) as router:
        task_id = uuid4()
        future = router.expect(task_id)
        mine = ExecutionResult.failed(task_id, ExecutionStatus.CANCELLED, "Cancelled", "here")
        assert router.resolve(str(task_id), mine) is True
        assert router.in_flight == 0
        await answer(bus, router, task_id, "late")
        assert future.result() is mine
        assert seen == []
        assert router.resolve(task_id, mine) is False


def test_a_task_id_must_be_a_uuid() -> None:
    router = ReplyRouter(MemoryBus())
    for bad in ("nope", 123, None):
        with pytest.raises(RelaybusError, match="is not a UUID"):
            router.discard(bad)  # type: ignore[arg-type]


# -- what arrives --------------------------------------------------------------------------------------------


async def test_every_duplicate_is_counted_and_acked(bus: MemoryBus) -> None:
    async with ReplyRouter(bus) as router:
        task_id = uuid4()
        future = router.expect(task_id)
        for output in ("first", "second", "third"):
            await answer(bus, router, task_id, output)
        assert future.result().output == "first"
        assert router.duplicates_dropped == 2
        assert bus.stats(router.queue).unsettled == 0


async def test_a_repeat_of_an_unclaimed_result_is_a_duplicate_and_the_first_is_kept(bus: MemoryBus) -> None:
    async with ReplyRouter(bus) as router:
        task_id = uuid4()
        await answer(bus, router, task_id, "first")
        await answer(bus, router, task_id, "second")
        assert router.duplicates_dropped == 1
        assert router.expect(task_id).result().output == "first"


async def test_the_memory_of_finished_ids_is_bounded(bus: MemoryBus) -> None:
    async with ReplyRouter(bus, max_finished=2) as router:
        ids = [uuid4() for _ in range(3)]
        for task_id in ids:
            router.expect(task_id)
            await answer(bus, router, task_id, "once")
        # the oldest id is forgotten: a repeat of its result is kept as an early result, not dropped;
        # the two latest are still remembered
        for task_id in ids:
            await answer(bus, router, task_id, "again")
        assert router.duplicates_dropped == 2
        assert router.expect(ids[0]).result().output == "again"
        assert router.expect(ids[1]).done() is False


async def test_the_oldest_unclaimed_result_is_dropped_first(bus: MemoryBus) -> None:
    async with ReplyRouter(bus, max_unclaimed=2) as router:
        ids = [uuid4() for _ in range(3)]
        for task_id in ids:
            await answer(bus, router, task_id)
        assert [router.expect(i).done() for i in ids] == [False, True, True]


async def answer_correlated(
    bus: MemoryBus, router: ReplyRouter, task_id: UUID, correlation: str | None
) -> None:
    """Like :func:`answer`, with the message's correlation id set to ``correlation``."""
    encoded = encode_result(ExecutionResult.success(task_id, "x"), reply_to=router.queue)
    await bus.publish(dataclasses.replace(encoded, correlation_id=correlation))
    await bus.join(router.queue)


async def test_a_result_without_a_correlation_id_is_matched_by_its_task_id(bus: MemoryBus) -> None:
    async with ReplyRouter(bus) as router:
        task_id = uuid4()
        future = router.expect(task_id)
        await answer_correlated(bus, router, task_id, None)
        assert future.result().output == "x"


async def test_a_mismatched_correlation_id_is_dead_lettered_naming_both(bus: MemoryBus) -> None:
    async with ReplyRouter(bus) as router:
        task_id = uuid4()
        future = router.expect(task_id)
        await answer_correlated(bus, router, task_id, "w" * 100)
        assert not future.done()
    assert await dead_letter_reasons(bus) == [
        f"correlation_id {'w' * 64!r} does not match the result's task_id {task_id}"
    ]


async def test_a_result_over_max_body_bytes_is_dead_lettered_and_ends_its_task_invalid(
    bus: MemoryBus,
) -> None:
    small = ExecutionResult.success(uuid4(), "small")
    limit = len(encode_result(small, reply_to="q").body)
    async with ReplyRouter(bus, max_body_bytes=limit) as router:
        task_id = uuid4()
        future = router.expect(task_id)
        await answer(bus, router, task_id, "x" * 500)
        refused = future.result()  # at once, from the correlation id: not a timeout later
        assert (refused.status, refused.error and refused.error.type) == (
            ExecutionStatus.FAILURE,
            "InvalidResult",
        )
        assert refused.error is not None
        assert "body too large" in refused.error.message
        await answer(bus, router, small.task_id, "small")  # exactly at the limit: accepted
        assert router.expect(small.task_id).result().output == "small"
    [reason] = await dead_letter_reasons(bus)
    assert reason.startswith("body too large")


async def test_a_result_is_acked_only_after_on_result_has_run(bus: MemoryBus) -> None:
    running = asyncio.Event()
    release = asyncio.Event()

    async def slow_hook(result: ExecutionResult) -> None:
        running.set()
        await release.wait()

    async with ReplyRouter(bus, on_result=slow_hook, prefetch=1) as router:
        first, second = uuid4(), uuid4()
        future = router.expect(first)
        for task_id in (first, second):
            await bus.publish(encode_result(ExecutionResult.success(task_id), reply_to=router.queue))
        await asyncio.wait_for(running.wait(), 10)
        assert future.done()  # resolved before the hook runs...
        stats = bus.stats(router.queue)
        assert (stats.unsettled, stats.ready) == (1, 1)  # ...acked after it; prefetch=1 holds the second
        release.set()
        await bus.join(router.queue)
        assert bus.stats(router.queue).unsettled == 0


# -- request -------------------------------------------------------------------------------------------------


async def test_a_request_carries_the_reply_queue_the_task_id_and_extra_headers(bus: MemoryBus) -> None:
    worker = Worker(bus)
    await worker.start()
    async with ReplyRouter(bus) as router:
        task = AgentTask(topic="t.x", prompt="hi")
        result = await router.request(task, timeout=10, headers={"trace": "abc"})
    assert result.output == "HI"
    [delivery] = worker.received
    assert (delivery.reply_to, delivery.correlation_id, delivery.message_id) == (
        router.queue,
        str(task.id),
        str(task.id),
    )
    assert delivery.headers["trace"] == "abc"


async def test_without_any_timeout_a_request_waits_for_its_result(bus: MemoryBus) -> None:
    worker = Worker(bus)
    worker.release.clear()
    await worker.start()
    async with ReplyRouter(bus) as router:
        waiting = asyncio.create_task(router.request(AgentTask(topic="t.x", prompt="slow")))
        await eventually(lambda: worker.received)
        await let_the_loop_run()
        assert not waiting.done()
        worker.release.set()
        assert (await asyncio.wait_for(waiting, 10)).output == "SLOW"


async def test_an_explicit_timeout_overrides_the_tasks_own(bus: MemoryBus) -> None:
    worker = Worker(bus)
    worker.release.clear()
    await worker.start()
    async with ReplyRouter(bus) as router:
        result = await router.request(AgentTask(topic="t.x", timeout_s=60), timeout=0.05)
        assert result.status is ExecutionStatus.TIMEOUT
        worker.release.set()
        await bus.join()  # the late result reaches the router (and is dropped) before its queue goes
        assert router.duplicates_dropped == 1


async def test_a_timeout_result_names_the_task_the_limit_and_the_agent(bus: MemoryBus) -> None:
    await bus.declare_queue("silent", bindings=["agent.reviewer"])
    async with ReplyRouter(bus) as router:
        task = AgentTask(topic="t.x", agent="reviewer")
        result = await router.request(task, timeout=0.05)
        assert_retryable_failure(
            result,
            task.id,
            ExecutionStatus.TIMEOUT,
            "ReplyTimeout",
            f"no result for task {task.id} within 0.05s; a worker for agent 'reviewer' may be slow, "
            "overloaded or down: raise the timeout (the task's timeout_s) or start more workers",
        )
        assert router.in_flight == 0


async def test_request_before_start_is_refused(bus: MemoryBus) -> None:
    router = ReplyRouter(bus)
    with pytest.raises(RelaybusError, match="not started"):
        await router.request(AgentTask(topic="t.x"))
    assert router.in_flight == 0


# -- close ---------------------------------------------------------------------------------------------------


async def test_close_resolves_every_wait_as_cancelled_and_leaves_nothing_in_flight(bus: MemoryBus) -> None:
    router = ReplyRouter(bus)
    await router.start()
    answered, waiting = uuid4(), uuid4()
    done = router.expect(answered)
    await answer(bus, router, answered)
    pending = router.expect(waiting)
    await router.close()
    assert router.in_flight == 0
    assert done.result().output == "ok"  # untouched
    assert_retryable_failure(
        pending.result(),
        waiting,
        ExecutionStatus.CANCELLED,
        "ReplyRouterClosed",
        f"the reply router on {router.queue!r} was closed before a result arrived",
    )


async def test_close_of_a_router_never_started_still_resolves_its_waits(bus: MemoryBus) -> None:
    router = ReplyRouter(bus)
    pending = router.expect(uuid4())
    await router.close()
    assert pending.result().status is ExecutionStatus.CANCELLED


async def test_close_after_the_bus_went_away_does_not_raise(bus: MemoryBus) -> None:
    router = ReplyRouter(bus)
    await router.start()
    pending = router.expect(uuid4())
    await bus.close()
    await router.close()
    assert pending.result().status is ExecutionStatus.CANCELLED
