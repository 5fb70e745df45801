"""Workers sharing a state store: a task id runs ``handle`` once, copies are answered from the stored result,
an expired lease lets the task run again, and the result is stored before it is published."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from relaybus.agents import Agent, AgentContext, AgentWorker
from relaybus.agents import claims as claims_module
from relaybus.agents import worker as worker_module
from relaybus.bus.codec import encode_task
from relaybus.bus.memory import MemoryBus
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus
from relaybus.state import StateStore, StoreUnavailable, store_from_url, task_digest
from tests.eventually import eventually

from .test_worker import Results


class Counting(Agent):
    """Counts the runs of each task id (shared by every instance given the same ``runs``)."""

    name = "counting"
    topics = ("count.*",)

    def __init__(self, runs: dict[str, int]) -> None:
        self.runs = runs

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        self.runs[task.prompt] = self.runs.get(task.prompt, 0) + 1
        delay = task.input.get("sleep_s", 0)
        assert isinstance(delay, int | float)
        await asyncio.sleep(delay)
        return {"prompt": task.prompt, "worker": ctx.worker}


def count_task(prompt: str, sleep_s: float = 0) -> AgentTask:
    return AgentTask(topic="count.run", prompt=prompt, input={"sleep_s": sleep_s})


@pytest.fixture
async def store(state_url: str) -> AsyncIterator[StateStore]:
    async with store_from_url(state_url) as opened:
        yield opened


def worker(bus: MemoryBus, runs: dict[str, int], state_url: str, name: str, **options: Any) -> AgentWorker:
    return AgentWorker(bus, [Counting(runs)], state=store_from_url(state_url), worker_id=name, **options)


async def test_the_same_task_delivered_to_two_workers_runs_once_and_both_copies_get_its_result(
    bus: MemoryBus, results: Results, state_url: str
) -> None:
    runs: dict[str, int] = {}
    tasks = [count_task(f"t{i}", sleep_s=0.05) for i in range(20)]
    async with worker(bus, runs, state_url, "w1"), worker(bus, runs, state_url, "w2"):
        for task in tasks:  # two copies of each at once: one per worker (competing consumers)
            await bus.publish(encode_task(task, reply_to=results.queue))
            await bus.publish(encode_task(task, reply_to=results.queue))
        got = await results.wait_for(40)
    assert runs == {task.prompt: 1 for task in tasks}
    by_task: dict[str, list[ExecutionResult]] = {}
    for result in got:
        by_task.setdefault(str(result.task_id), []).append(result)
    assert all(len(copies) == 2 and copies[0] == copies[1] for copies in by_task.values())
    assert all(result.ok for result in got)


async def test_a_copy_of_a_finished_task_is_answered_from_the_store_by_a_worker_that_never_saw_it(
    bus: MemoryBus, results: Results, state_url: str
) -> None:
    runs: dict[str, int] = {}
    task = count_task("once")
    async with worker(bus, runs, state_url, "w1"):
        await bus.publish(encode_task(task, reply_to=results.queue))
        first = (await results.wait_for(1))[0]
    async with worker(bus, runs, state_url, "w2") as other:  # a new process: its result cache is empty
        await bus.publish(encode_task(task, reply_to=results.queue))
        second = (await results.wait_for(2))[1]
        assert other.claims is not None
        assert other.claims.answered_from_store == 1
    assert runs == {"once": 1}
    assert second == first
    assert second.worker == "w1"


async def test_the_result_is_stored_before_it_is_published(
    bus: MemoryBus, state_url: str, store: StateStore
) -> None:
    stored_on_arrival: list[ExecutionResult | None] = []
    queue = "relaybus.reply.check-store"
    await bus.declare_queue(queue, durable=False)

    async def on_result(delivery: Any) -> None:
        task_id = ExecutionResult.model_validate_json(delivery.body).task_id
        stored_on_arrival.append(await store.result(task_id))
        await delivery.ack()

    await bus.consume(queue, on_result)
    task = count_task("stored first")
    async with worker(bus, {}, state_url, "w1"):
        await bus.publish(encode_task(task, reply_to=queue))
        await eventually(lambda: len(stored_on_arrival) == 1)
    assert stored_on_arrival[0] is not None
    assert stored_on_arrival[0].output == {"prompt": "stored first", "worker": "w1"}


async def test_a_copy_waits_while_another_worker_holds_the_lease_and_runs_it_once_the_lease_expires(
    bus: MemoryBus, results: Results, state_url: str, store: StateStore
) -> None:
    task = count_task("orphan")
    # A worker that died mid-run: it claimed the task, then never renewed nor completed.
    dead = await store.claim(task.id, worker="dead:1", lease_s=1.0, digest=task_digest(task))
    assert dead.acquired
    runs: dict[str, int] = {}
    async with worker(bus, runs, state_url, "w1") as alive:
        await bus.publish(encode_task(task, reply_to=results.queue))
        await asyncio.sleep(0.3)
        assert runs == {}  # still held by the dead worker: waiting, not running
        result = (await results.wait_for(1))[0]
        assert alive.claims is not None
        assert alive.claims.taken_over == 1
    assert runs == {"orphan": 1}
    assert result.worker == "w1"
    stored = await store.result(task.id)
    assert stored == result


async def test_a_copy_waiting_on_a_running_task_gets_that_runs_result_without_running(
    bus: MemoryBus, results: Results, state_url: str
) -> None:
    runs: dict[str, int] = {}
    task = count_task("slow", sleep_s=0.6)
    async with worker(bus, runs, state_url, "w1", lease_s=0.3):  # renewed every 0.1 s while it runs
        await bus.publish(encode_task(task, reply_to=results.queue))
        await eventually(lambda: runs.get("slow") == 1)
        async with worker(bus, runs, state_url, "w2") as second:
            second_queue_copy = encode_task(task, reply_to=results.queue)
            await bus.publish(second_queue_copy)
            got = await results.wait_for(2)
            assert second.claims is not None
    assert runs == {"slow": 1}  # the lease outlived its 0.3 s because it was renewed
    assert got[0] == got[1]


async def test_another_body_under_a_stored_id_is_rejected_without_running(
    bus: MemoryBus, results: Results, state_url: str
) -> None:
    runs: dict[str, int] = {}
    task = count_task("original")
    async with worker(bus, runs, state_url, "w1"):
        await bus.publish(encode_task(task, reply_to=results.queue))
        await results.wait_for(1)
    forged = task.model_copy(update={"prompt": "forged"})
    async with worker(bus, runs, state_url, "w2"):
        await bus.publish(encode_task(forged, reply_to=results.queue))
        rejected = (await results.wait_for(2))[1]
    assert runs == {"original": 1}
    assert rejected.status is ExecutionStatus.REJECTED
    assert rejected.error is not None
    assert rejected.error.type == "TaskIdReused"


async def test_each_delivery_digests_its_task_once_for_the_claim_and_the_result_cache(
    bus: MemoryBus, results: Results, state_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    digested: list[str] = []

    def counted(task: AgentTask) -> str:
        digested.append(task.prompt)
        return task_digest(task)

    def not_with_a_store(task: AgentTask) -> str:
        raise AssertionError("a worker with a store digests with task_digest only")

    monkeypatch.setattr(worker_module, "task_digest", counted)
    monkeypatch.setattr(claims_module, "task_digest", counted)
    monkeypatch.setattr(worker_module, "content_digest", not_with_a_store)
    runs: dict[str, int] = {}
    task = count_task("once")
    forged = task.model_copy(update={"prompt": "forged"})
    async with worker(bus, runs, state_url, "w1"):
        await bus.publish(encode_task(task, reply_to=results.queue))
        first = (await results.wait_for(1))[0]
        await bus.publish(encode_task(task, reply_to=results.queue))  # answered from the result cache
        await bus.publish(encode_task(forged, reply_to=results.queue))  # refused by it: another body
        got = await results.wait_for(3)
    assert runs == {"once": 1}
    assert got[1] == first
    assert got[2].error is not None
    assert got[2].error.type == "TaskIdReused"
    assert digested == ["once", "once", "forged"]


async def test_a_worker_stopping_returns_a_copy_waiting_on_a_claim_to_its_queue(
    bus: MemoryBus, state_url: str, store: StateStore
) -> None:
    task = count_task("held elsewhere")
    await store.claim(task.id, worker="other:1", lease_s=60, digest=task_digest(task))
    runs: dict[str, int] = {}
    w = worker(bus, runs, state_url, "w1")
    async with w:
        await bus.publish(encode_task(task, reply_to="relaybus.reply.nobody"))
        await eventually(lambda: w.claims is not None and bus.stats(w.queues[0]).unsettled == 1)
    assert runs == {}
    assert bus.stats(w.queues[0]).ready == 1  # back in its queue, not lost


async def test_without_a_store_a_worker_has_no_claims(bus: MemoryBus) -> None:
    plain = AgentWorker(bus, [Counting({})])
    assert plain.claims is None
    assert plain.state is None


class FlakyStore:
    """A store whose first ``down`` claims and completes fail as if the database were unreachable."""

    def __init__(self, inner: StateStore, down: int) -> None:
        self._inner = inner
        self.down = {"claim": down, "complete": down}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def _maybe_down(self, what: str) -> None:
        if self.down[what] > 0:
            self.down[what] -= 1
            raise StoreUnavailable(f"the state store at {self._inner.url} does not answer (test)")

    async def claim(self, *args: Any, **kwargs: Any) -> Any:
        await self._maybe_down("claim")
        return await self._inner.claim(*args, **kwargs)

    async def complete(self, *args: Any, **kwargs: Any) -> Any:
        await self._maybe_down("complete")
        return await self._inner.complete(*args, **kwargs)


async def test_a_store_down_mid_run_makes_the_task_wait_and_retry_not_run_unclaimed(
    bus: MemoryBus, results: Results, store: StateStore
) -> None:
    runs: dict[str, int] = {}
    flaky = FlakyStore(store, down=2)
    task = count_task("patient")
    async with AgentWorker(bus, [Counting(runs)], state=flaky, worker_id="w1"):  # type: ignore[arg-type]
        await bus.publish(encode_task(task, reply_to=results.queue))
        result = (await results.wait_for(1))[0]
    assert flaky.down == {"claim": 0, "complete": 0}  # both retried until the store answered
    assert runs == {"patient": 1}
    assert result.ok
    assert await store.result(task.id) == result  # stored once the store was back
