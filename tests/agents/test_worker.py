"""AgentWorker on MemoryBus: results, failures, duplicates, deadlines, cancellation, draining, heartbeats."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from relaybus.agents import Agent, AgentContext, AgentWorker, WorkerHeartbeat
from relaybus.bus.base import (
    DEAD_LETTER_QUEUE,
    DEADLINE_HEADER,
    ERROR_HEADER,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_QUEUE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    SCHEMA_HEADER,
    Delivery,
    OutgoingMessage,
    agent_queue_name,
)
from relaybus.bus.codec import decode, decode_heartbeat, encode_task
from relaybus.bus.memory import MemoryBus, QueueStats
from relaybus.exceptions import ConfigError, UsageError
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus
from relaybus.testing.agents import AgentTestHarness, FakeExecutor
from tests.eventually import eventually

from . import sample_agents as sa


class Probe(Agent):
    """Records what it runs; sleeps ``input["sleep_s"]`` and notes whether that sleep was cancelled."""

    name = "probe"
    topics = ("probe.*",)

    def __init__(self) -> None:
        self.calls: list[AgentTask] = []
        self.cancelled: list[AgentTask] = []
        self.started = asyncio.Event()
        self.active = 0
        self.max_active = 0

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        self.calls.append(task)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.started.set()
        try:
            delay = task.input.get("sleep_s", 0)
            assert isinstance(delay, int | float)
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.cancelled.append(task)
            raise
        finally:
            self.active -= 1
        return {"prompt": task.prompt}


def probe_task(prompt: str = "hi", sleep_s: float = 0, **fields: Any) -> AgentTask:
    return AgentTask(topic="probe.run", prompt=prompt, input={"sleep_s": sleep_s}, **fields)


class Results:
    """A plain reply queue (a name a worker accepts) that keeps every result it gets, duplicates included."""

    def __init__(self, bus: MemoryBus, queue: str = "relaybus.reply.test-replies") -> None:
        self.bus = bus
        self.queue = queue
        self.items: list[ExecutionResult] = []
        self.arrived = asyncio.Condition()

    async def start(self) -> None:
        await self.bus.declare_queue(self.queue, durable=False)
        await self.bus.consume(self.queue, self._on)

    async def _on(self, delivery: Delivery) -> None:
        self.items.append(decode(delivery.body, delivery.headers, ExecutionResult))
        await delivery.ack()
        async with self.arrived:
            self.arrived.notify_all()

    async def wait_for(self, count: int) -> list[ExecutionResult]:
        async with asyncio.timeout(10), self.arrived:
            await self.arrived.wait_for(lambda: len(self.items) >= count)
        return self.items


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    async with MemoryBus() as memory_bus:
        yield memory_bus


@pytest.fixture
async def results(bus: MemoryBus) -> Results:
    replies = Results(bus)
    await replies.start()
    return replies


# -- what handle returns -------------------------------------------------------------------------------------


async def test_json_return_value_becomes_a_success_result_naming_agent_and_worker() -> None:
    async with AgentTestHarness([sa.Echo()]) as h:
        task = AgentTask(topic=sa.topic("echo"), prompt="hello")
        result = await h.run(task)
    assert result.status is ExecutionStatus.SUCCESS
    assert result.task_id == task.id
    assert result.output == {"echo": "hello"}
    assert result.agent == sa.name("echo")
    assert result.worker == f"{os.uname().nodename}:{os.getpid()}"
    assert result.started_at is not None
    assert result.finished_at is not None
    assert result.finished_at >= result.started_at


async def test_exception_becomes_failure_with_type_and_message_and_worker_goes_on() -> None:
    async with AgentTestHarness([sa.Failing(), sa.Echo()]) as h:
        failed = await h.run(AgentTask(topic=sa.topic("fail"), prompt="x"))
        after = await h.run(AgentTask(topic=sa.topic("echo"), prompt="still here"))
    assert failed.status is ExecutionStatus.FAILURE
    assert failed.error is not None
    assert failed.error.type == "ValueError"
    assert failed.error.message == "cannot handle 'x'"
    assert after.ok
    assert after.output == {"echo": "still here"}


async def test_an_event_topic_that_is_not_dot_separated_words_fails_the_task_as_a_config_error() -> None:
    class Announcer(Agent):
        name = "announcer"
        topics = ("announce",)

        async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
            await ctx.publish_event("review..done", {})
            return "published"

    async with AgentTestHarness([Announcer()]) as h:
        result = await h.run(AgentTask(topic="announce"))
    assert result.status is ExecutionStatus.FAILURE
    assert result.error is not None
    assert result.error.type == "ConfigError"
    assert "must be dot-separated words" in result.error.message
    assert h.events("review.#") == []


async def test_non_json_return_value_is_a_failure_that_says_what_to_return() -> None:
    async with AgentTestHarness([sa.NotJson()]) as h:
        result = await h.run(AgentTask(topic=sa.topic("not-json")))
    assert result.status is ExecutionStatus.FAILURE
    assert result.error is not None
    assert result.error.type == "TypeError"
    assert "returned a set" in result.error.message
    assert "ExecutionResult" in result.error.message


async def test_default_handle_runs_the_task_on_the_executor_with_agent_name_and_system_prompt() -> None:
    executor = FakeExecutor()
    async with AgentTestHarness([sa.Writer()], executor=executor) as h:
        task = AgentTask(topic=sa.topic("write.essay"), prompt="on queues")
        result = await h.run(task)
    assert result.ok
    assert result.output == {
        "agent": sa.name("writer"),
        "prompt": "on queues",
        "system_prompt": "You write short, clear prose.",
    }
    assert [t.id for t in executor.calls] == [task.id]


async def test_returned_result_of_another_task_answers_this_task() -> None:
    class Forwarder(Agent):
        name = "forwarder"
        topics = ("fwd",)

        async def handle(self, task: AgentTask, ctx: AgentContext) -> ExecutionResult:
            return await ctx.delegate(AgentTask(topic=sa.topic("echo"), prompt="inner"))

    async with AgentTestHarness([Forwarder(), sa.Echo()]) as h:
        task = AgentTask(topic="fwd")
        result = await h.run(task)
    assert result.task_id == task.id
    assert result.agent == "forwarder"
    assert result.output == {"echo": "inner"}


async def test_pydantic_model_return_value_is_dumped_as_json() -> None:
    class Modeler(Agent):
        name = "modeler"
        topics = ("model",)

        async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
            return WorkerHeartbeat(
                worker="w", host="h", pid=1, agents=("a",), in_flight=0, capacity=1, interval_s=1
            )

    async with AgentTestHarness([Modeler()]) as h:
        result = await h.run(AgentTask(topic="model"))
    assert result.ok
    assert isinstance(result.output, dict)
    assert result.output["worker"] == "w"


# -- what the worker receives --------------------------------------------------------------------------------


async def test_invalid_delivery_is_dead_lettered_and_the_worker_goes_on(
    bus: MemoryBus, results: Results
) -> None:
    probe = Probe()
    async with AgentWorker(bus, [probe], executor=FakeExecutor()):
        await bus.declare_queue("dead-watch", bindings=())
        await bus.publish(
            OutgoingMessage(body=b"{not json", routing_key="task.probe.run", headers={SCHEMA_HEADER: 1})
        )
        await bus.publish(encode_task(probe_task("ok"), reply_to=results.queue))
        got = await results.wait_for(1)
    assert got[0].ok
    assert [t.prompt for t in probe.calls] == ["ok"]
    assert bus.stats(DEAD_LETTER_QUEUE).ready == 1
    dead: list[Delivery] = []

    async def keep(delivery: Delivery) -> None:
        dead.append(delivery)
        await delivery.ack()

    await bus.consume(DEAD_LETTER_QUEUE, keep)
    await bus.join(DEAD_LETTER_QUEUE)
    assert "not valid JSON" in str(dead[0].headers[ERROR_HEADER])


async def test_task_without_reply_to_runs_and_is_acked(bus: MemoryBus) -> None:
    probe = Probe()
    async with AgentWorker(bus, [probe], executor=FakeExecutor()):
        await bus.publish(encode_task(probe_task("fire and forget"), reply_to=None))
        await bus.join(agent_queue_name("probe"))
        assert [t.prompt for t in probe.calls] == ["fire and forget"]
        assert bus.stats(agent_queue_name("probe")) == QueueStats(ready=0, unsettled=0, consumers=1)


async def dead_letters(bus: MemoryBus) -> list[Delivery]:
    """Take everything in ``relaybus.dead`` (the bus is private to the test)."""
    dead: list[Delivery] = []

    async def keep(delivery: Delivery) -> None:
        dead.append(delivery)
        await delivery.ack()

    subscription = await bus.consume(DEAD_LETTER_QUEUE, keep)
    await bus.join(DEAD_LETTER_QUEUE)
    await subscription.cancel()
    return dead


async def test_result_for_a_vanished_reply_queue_is_dead_lettered_not_dropped(bus: MemoryBus) -> None:
    probe = Probe()
    task = probe_task("nobody waits")
    async with AgentWorker(bus, [probe], executor=FakeExecutor()):
        await bus.publish(encode_task(task, reply_to="relaybus.reply.gone"))
        await bus.join(agent_queue_name("probe"))
        assert len(probe.calls) == 1
        assert bus.stats(agent_queue_name("probe")) == QueueStats(ready=0, unsettled=0, consumers=1)
    [dead] = await dead_letters(bus)
    result = decode(dead.body, dead.headers, ExecutionResult)  # the result itself, still valid
    assert result.task_id == task.id
    assert result.ok
    assert dead.correlation_id == str(task.id)
    assert str(dead.headers[ERROR_HEADER]).startswith("reply queue relaybus.reply.gone is gone")
    assert dead.headers[ORIGINAL_QUEUE_HEADER] == "relaybus.reply.gone"
    assert dead.headers[ORIGINAL_ROUTING_KEY_HEADER] == "relaybus.reply.gone"
    assert dead.headers[ORIGINAL_EXCHANGE_HEADER] == ""


async def test_a_dead_lettered_result_replayed_to_a_new_reply_queue_reaches_its_caller(
    bus: MemoryBus,
) -> None:
    from relaybus.bus.rpc import ReplyRouter
    from relaybus.dlq import replay_dead_letters

    probe = Probe()
    task = probe_task("late")
    async with AgentWorker(bus, [probe], executor=FakeExecutor()):
        await bus.publish(encode_task(task, reply_to="relaybus.reply.late-caller"))
        await bus.join(agent_queue_name("probe"))
    async with ReplyRouter(bus, name="late-caller") as router:
        waiting = router.expect(task.id)
        report = await replay_dead_letters(bus)
        assert len(report.replayed) == 1, report
        async with asyncio.timeout(10):
            assert (await waiting).output == {"prompt": "late"}


@pytest.mark.parametrize(
    ("body", "message_id", "reason"),
    [
        (b'{"topic": "probe.run", "prompt": "no id"}', None, "id: field required"),
        (
            b'{"id": "6f1c3f43-4b5e-4a59-9a34-6a3a4b1a2c3d", "topic": "probe.run"}',
            "another-id",
            "does not match the task's id",
        ),
    ],
)
async def test_a_task_without_its_own_id_is_dead_lettered_not_run(
    bus: MemoryBus, body: bytes, message_id: str | None, reason: str
) -> None:
    probe = Probe()
    async with AgentWorker(bus, [probe], executor=FakeExecutor()):
        await bus.publish(
            OutgoingMessage(
                body=body, routing_key="task.probe.run", message_id=message_id, headers={SCHEMA_HEADER: 1}
            )
        )
        await bus.join(agent_queue_name("probe"))
    assert probe.calls == []
    [dead] = await dead_letters(bus)
    assert reason in str(dead.headers[ERROR_HEADER])


async def test_duplicate_delivery_is_answered_from_the_cache_not_run_again(
    bus: MemoryBus, results: Results
) -> None:
    probe = Probe()
    task = probe_task("once")
    async with AgentWorker(bus, [probe], executor=FakeExecutor()):
        await bus.publish(encode_task(task, reply_to=results.queue))
        await results.wait_for(1)
        await bus.publish(encode_task(task, reply_to=results.queue))
        got = await results.wait_for(2)
    assert len(probe.calls) == 1
    assert [r.task_id for r in got] == [task.id, task.id]
    assert got[0] == got[1]


async def test_the_result_cache_is_bounded_in_bytes(bus: MemoryBus, results: Results) -> None:
    probe = Probe()
    first, second = probe_task("first " * 50), probe_task("second " * 50)
    async with AgentWorker(bus, [probe], executor=FakeExecutor(), result_cache_bytes=600):
        for task in (first, second, first):  # one result fits the budget: the first was evicted
            await bus.publish(encode_task(task, reply_to=results.queue))
            await results.wait_for(len(probe.calls))
    assert [t.id for t in probe.calls] == [first.id, second.id, first.id]


async def test_a_result_too_large_to_send_becomes_a_failure_saying_so() -> None:
    class Hoarder(Agent):
        name = "hoarder"
        topics = ("hoard",)

        async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
            return "x" * 5000

    async with AgentTestHarness([Hoarder()], max_body_bytes=4096) as h:
        result = await h.run(AgentTask(topic="hoard"))
    assert result.status is ExecutionStatus.FAILURE
    assert result.error is not None
    assert result.error.type == "ResultTooLarge"
    assert "over the limit of 4096" in result.error.message


async def test_duplicate_of_a_running_task_waits_for_that_run(bus: MemoryBus, results: Results) -> None:
    probe = Probe()
    task = probe_task("slow once", sleep_s=0.2)
    async with AgentWorker(bus, [probe], executor=FakeExecutor()):
        await bus.publish(encode_task(task, reply_to=results.queue))
        await probe.started.wait()
        await bus.publish(encode_task(task, reply_to=results.queue))
        got = await results.wait_for(2)
    assert len(probe.calls) == 1
    assert all(r.ok and r.task_id == task.id for r in got)


async def test_concurrency_limits_how_many_tasks_run_at_once() -> None:
    probe = Probe()
    async with AgentTestHarness([probe], concurrency=2) as h:
        got = await h.run_many([probe_task(str(i), sleep_s=0.05) for i in range(8)])
    assert all(r.ok for r in got)
    assert probe.max_active == 2


# -- delegation ----------------------------------------------------------------------------------------------


async def test_delegation_chain_a_b_c_returns_the_right_output() -> None:
    async with AgentTestHarness([sa.ChainA(), sa.ChainB(), sa.ChainC()]) as h:
        result = await h.run(AgentTask(topic=sa.topic("chain.a"), prompt="x"))
    assert result.ok, result.error
    assert result.output == {"text": "x>a>b>c<b<a", "chain": [sa.name("chain-a"), sa.name("chain-b")]}


async def test_delegation_in_one_worker_with_concurrency_one_does_not_deadlock() -> None:
    async with AgentTestHarness([sa.ChainA(), sa.ChainB(), sa.ChainC()], concurrency=1) as h:
        result = await h.run(AgentTask(topic=sa.topic("chain.a"), prompt="x"), timeout=10)
    assert result.ok, result.error


async def test_delegation_loop_through_topics_is_refused_with_a_clear_failure() -> None:
    async with AgentTestHarness([sa.LoopA(), sa.LoopB()]) as h:
        result = await h.run(AgentTask(topic=sa.topic("loop.a")), timeout=10)
    assert result.status is ExecutionStatus.FAILURE
    assert result.error is not None
    assert result.error.type == "DelegationError"
    assert f"delegation loop: {sa.name('loop-a')} -> {sa.name('loop-b')} -> {sa.name('loop-a')}" in (
        result.error.message
    )


async def test_delegating_to_itself_by_name_is_refused_before_sending() -> None:
    async with AgentTestHarness([sa.SelfCaller()]) as h:
        result = await h.run(AgentTask(topic=sa.topic("self")), timeout=10)
    assert result.status is ExecutionStatus.FAILURE
    assert result.error is not None
    assert result.error.type == "DelegationError"
    assert "loop" in result.error.message


async def test_delegation_deeper_than_the_limit_is_refused() -> None:
    async with AgentTestHarness([sa.ChainA(), sa.ChainB(), sa.ChainC()], max_delegation_depth=1) as h:
        result = await h.run(AgentTask(topic=sa.topic("chain.a"), prompt="x"), timeout=10)
    assert result.status is ExecutionStatus.FAILURE
    assert result.error is not None
    assert result.error.type == "DelegationError"
    assert "over the limit of 1" in result.error.message


async def test_delegate_many_runs_concurrently_and_keeps_order() -> None:
    async with AgentTestHarness([sa.Fanout(), sa.Echo()]) as h:
        result = await h.run(AgentTask(topic=sa.topic("fanout"), prompt="p", input={"n": 5}))
    assert result.output == ["p-0", "p-1", "p-2", "p-3", "p-4"]


async def test_delegate_to_a_topic_nobody_serves_fails_with_no_route() -> None:
    class Lost(Agent):
        name = "lost"
        topics = ("lost",)

        async def handle(self, task: AgentTask, ctx: AgentContext) -> ExecutionResult:
            return await ctx.delegate(AgentTask(topic="nobody.home"))

    async with AgentTestHarness([Lost()]) as h:
        result = await h.run(AgentTask(topic="lost"))
    assert result.status is ExecutionStatus.FAILURE
    assert result.error is not None
    assert result.error.type == "NoRouteError"
    assert "task.nobody.home" in result.error.message


async def test_delegate_many_with_one_unroutable_task_cancels_the_others_and_raises() -> None:
    class Mixed(Agent):
        name = "mixed"
        topics = ("mixed",)

        async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
            return await ctx.delegate_many([probe_task("slow", sleep_s=30), AgentTask(topic="nobody.home")])

    probe = Probe()
    async with AgentTestHarness([Mixed(), probe]) as h:
        result = await h.run(AgentTask(topic="mixed"), timeout=10)
        # the slow sibling is cancelled where it runs, not left to finish
        await eventually(lambda: probe.cancelled or not probe.calls, what="the sibling cancelled")
    assert result.status is ExecutionStatus.FAILURE
    assert result.error is not None
    assert result.error.type == "NoRouteError"
    assert len(probe.cancelled) == len(probe.calls)


# -- deadlines and cancellation ------------------------------------------------------------------------------


async def test_deadline_header_ends_the_task_with_timeout_and_cancels_its_work() -> None:
    probe = Probe()
    async with AgentTestHarness([probe]) as h:
        task = probe_task("slow", sleep_s=30)
        result = await h.run(task, headers={DEADLINE_HEADER: f"{time.time() + 0.3:.3f}"})
    assert result.status is ExecutionStatus.TIMEOUT
    assert result.error is not None
    assert result.error.type == "DeadlineExceeded"
    assert [t.id for t in probe.cancelled] == [task.id]


class Stubborn(Agent):
    """Swallows its cancellation, cleans up (awaiting), and returns normally: a badly behaved handle."""

    name = "stubborn"
    topics = ("stubborn.#",)

    def __init__(self) -> None:
        self.cleaned_up = 0

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        if task.prompt == "quick":
            return "quick done"
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await asyncio.sleep(0.01)  # async clean-up after the cancellation
            self.cleaned_up += 1
        return "finished anyway"


async def test_a_handle_that_swallows_its_cancellation_still_times_out_and_the_worker_goes_on() -> None:
    agent = Stubborn()
    async with AgentTestHarness([agent], concurrency=1) as h:
        slow = await h.run(
            AgentTask(topic="stubborn.slow"), headers={DEADLINE_HEADER: f"{time.time() + 0.3:.3f}"}
        )
        quick = await h.run(AgentTask(topic="stubborn.quick", prompt="quick"), timeout=10)
    assert slow.status is ExecutionStatus.TIMEOUT
    assert agent.cleaned_up == 1
    assert quick.ok
    assert quick.output == "quick done"


async def test_deadline_cancels_the_executor_call_of_the_default_handle() -> None:
    executor = FakeExecutor(delay_s=30)
    async with AgentTestHarness([sa.Writer()], executor=executor) as h:
        result = await h.run(
            AgentTask(topic=sa.topic("write.x")), headers={DEADLINE_HEADER: f"{time.time() + 0.2:.3f}"}
        )
        assert result.status is ExecutionStatus.TIMEOUT
        assert len(executor.calls) == 1
        assert executor.cancel(executor.calls[0].id) is False  # no longer running


async def test_task_past_its_deadline_on_arrival_is_not_run() -> None:
    probe = Probe()
    async with AgentTestHarness([probe]) as h:
        # The worker sends no result for it (its caller gave up at the deadline): the wait ends by its own
        # timeout, kept short, rather than the harness's default of 30 s.
        result = await h.run(probe_task(), headers={DEADLINE_HEADER: f"{time.time() - 5:.3f}"}, timeout=2)
    assert result.status is ExecutionStatus.TIMEOUT
    assert probe.calls == []


async def test_timeout_s_bounds_the_task_when_no_deadline_header_came() -> None:
    probe = Probe()
    async with AgentTestHarness([probe]) as h:
        result = await h.run(probe_task(sleep_s=30, timeout_s=0.2), timeout=10)
    assert result.status is ExecutionStatus.TIMEOUT
    assert len(probe.cancelled) == 1


async def test_garbage_deadline_header_is_rejected_with_the_reason() -> None:
    probe = Probe()
    async with AgentTestHarness([probe]) as h:
        result = await h.run(probe_task(), headers={DEADLINE_HEADER: "tomorrow"})
    assert result.status is ExecutionStatus.REJECTED
    assert result.error is not None
    assert DEADLINE_HEADER in result.error.message
    assert probe.calls == []


async def test_cancel_request_stops_a_running_task_with_cancelled() -> None:
    probe = Probe()
    async with AgentTestHarness([probe]) as h:
        task = probe_task("long", sleep_s=30)
        pending = asyncio.create_task(h.run(task))
        await probe.started.wait()
        await h.cancel(task.id, reason="user pressed stop")
        result = await pending
    assert result.status is ExecutionStatus.CANCELLED
    assert result.error is not None
    assert result.error.message == "user pressed stop"
    assert [t.id for t in probe.cancelled] == [task.id]


async def test_task_cancelled_before_it_arrives_is_answered_cancelled_without_running() -> None:
    probe = Probe()
    async with AgentTestHarness([probe]) as h:
        task = probe_task("never")
        await h.cancel(task.id)
        await h.bus.join()  # the cancel request reached the worker's control queue
        result = await h.run(task)
    assert result.status is ExecutionStatus.CANCELLED
    assert probe.calls == []


async def test_a_cancelled_task_published_again_later_runs_and_is_not_answered_from_the_cancel() -> None:
    # A plan resumed after Ctrl-C, or an agent loop resumed sending its delegated call again: the same id,
    # built anew after the cancel, is new work.
    probe = Probe()
    async with AgentTestHarness([probe]) as h:
        task = probe_task("long", sleep_s=0.5)
        pending = asyncio.create_task(h.run(task))
        await probe.started.wait()
        await h.cancel(task.id, reason="user pressed stop")
        assert (await pending).status is ExecutionStatus.CANCELLED
        result = await h.run(task.model_copy(update={"created_at": datetime.now(UTC)}))  # the same body
    assert result.status is ExecutionStatus.SUCCESS, result.error
    assert [t.id for t in probe.calls] == [task.id, task.id]


async def test_cancelling_a_delegating_task_cancels_its_sub_task_on_the_other_agent() -> None:
    class Boss(Agent):
        name = "boss"
        topics = ("boss",)

        async def handle(self, task: AgentTask, ctx: AgentContext) -> ExecutionResult:
            return await ctx.delegate(probe_task("sub", sleep_s=30))

    probe = Probe()
    async with AgentTestHarness([Boss(), probe]) as h:
        task = AgentTask(topic="boss")
        pending = asyncio.create_task(h.run(task))
        await probe.started.wait()
        await h.cancel(task.id)
        result = await pending
        await eventually(lambda: probe.cancelled, what="the running handle cancelled")
    assert result.status is ExecutionStatus.CANCELLED
    assert probe.cancelled[0].prompt == "sub"


# -- stopping ------------------------------------------------------------------------------------------------


async def test_exit_drains_in_flight_tasks_within_the_grace_period(bus: MemoryBus, results: Results) -> None:
    probe = Probe()
    worker = AgentWorker(bus, [probe], executor=FakeExecutor(), grace_s=10)
    async with worker:
        for i in range(3):
            await bus.publish(encode_task(probe_task(str(i), sleep_s=0.2), reply_to=results.queue))
        await probe.started.wait()
    assert len(results.items) == 3
    assert all(r.ok for r in results.items)
    assert bus.stats(agent_queue_name("probe")).ready == 0


async def test_tasks_still_running_after_the_grace_period_go_back_to_the_queue(
    bus: MemoryBus, results: Results
) -> None:
    probe = Probe()
    worker = AgentWorker(bus, [probe], executor=FakeExecutor(), concurrency=2)
    async with worker:
        for i in range(5):  # 2 run, 3 wait for a slot
            await bus.publish(encode_task(probe_task(str(i), sleep_s=30), reply_to=results.queue))
        await probe.started.wait()
        await asyncio.sleep(0.01)
        worker.grace_s = 0.1
    assert results.items == []
    assert len(probe.cancelled) == 2
    assert bus.stats(agent_queue_name("probe")).ready == 5
    # A new worker picks them up again: nothing was lost.
    probe2 = Probe()
    async with AgentWorker(bus, [probe2], executor=FakeExecutor(), concurrency=5, grace_s=0):
        await probe2.started.wait()
        assert sorted(t.prompt for t in probe2.calls) == ["0", "1", "2", "3", "4"]


async def test_on_start_and_on_stop_hooks_run_once_around_the_tasks(bus: MemoryBus) -> None:
    seen: list[str] = []

    class Hooked(Agent):
        name = "hooked"
        topics = ("hooked",)

        async def on_start(self) -> None:
            seen.append("start")

        async def on_stop(self) -> None:
            seen.append("stop")

        async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
            seen.append("task")
            return None

    async with AgentTestHarness([Hooked()], bus=bus) as h:
        await h.run(AgentTask(topic="hooked"))
    assert seen == ["start", "task", "stop"]


async def test_is_running_while_consuming_only_and_a_second_start_is_a_usage_error(bus: MemoryBus) -> None:
    worker = AgentWorker(bus, [Probe()], executor=FakeExecutor())
    assert not worker.is_running
    async with worker:
        assert worker.is_running
        with pytest.raises(UsageError, match="started already"):
            await worker.start()
        assert worker.is_running  # the refused start left the running worker alone
    assert not worker.is_running


async def test_failing_on_start_aborts_the_start_and_undoes_it(bus: MemoryBus) -> None:
    stopped: list[str] = []

    class Good(Agent):
        name = "good"

        async def on_stop(self) -> None:
            stopped.append(self.name)

    class Broken(Agent):
        name = "broken"

        async def on_start(self) -> None:
            raise RuntimeError("database unreachable")

    worker = AgentWorker(bus, [Good(), Broken()], executor=FakeExecutor())
    with pytest.raises(RuntimeError, match="database unreachable"):
        await worker.start()
    assert stopped == ["good"]
    assert not [q for q in bus.queue_names() if q.startswith("relaybus.worker.")]


# -- liveness ------------------------------------------------------------------------------------------------


async def test_heartbeats_announce_agents_and_load_and_one_stopped_event_at_exit(bus: MemoryBus) -> None:
    stopped: list[WorkerHeartbeat] = []
    await bus.declare_queue("watch-stopped", bindings=("event.relaybus.worker.stopped",), durable=False)

    async def keep(delivery: Delivery) -> None:
        stopped.append(decode_heartbeat(delivery.body, delivery.headers))
        await delivery.ack()

    await bus.consume("watch-stopped", keep)
    async with AgentTestHarness(
        [sa.Echo(), sa.Failing()], bus=bus, concurrency=7, heartbeat_interval_s=0.05
    ) as h:
        await h.run(AgentTask(topic=sa.topic("echo")))
        await eventually(
            lambda: [
                b
                for e in h.events("relaybus.worker.heartbeat")
                if (b := WorkerHeartbeat.model_validate(e.payload)).processed == 1
            ][2:],
            what="three heartbeats after the task",
        )
        beats = [WorkerHeartbeat.model_validate(e.payload) for e in h.events("relaybus.worker.heartbeat")]
        assert stopped == []  # not while it runs
    assert len(beats) >= 3
    last = beats[-1]
    assert last.worker == h.worker.worker_id
    assert last.pid == os.getpid()
    assert last.agents == (sa.name("echo"), sa.name("failing"))
    assert last.capacity == 7
    assert last.processed == 1
    assert last.status == "running"
    await bus.join("watch-stopped")
    assert [(b.worker, b.status, b.processed, b.in_flight) for b in stopped] == [
        (h.worker.worker_id, "stopped", 1, 0)
    ]


async def test_stopped_event_is_published_when_the_worker_exits(bus: MemoryBus) -> None:
    got: list[dict[str, Any]] = []
    await bus.declare_queue("watch", bindings=("event.relaybus.worker.stopped",), durable=False)

    async def keep(delivery: Delivery) -> None:
        got.append(json.loads(delivery.body))
        await delivery.ack()

    await bus.consume("watch", keep)
    async with AgentWorker(bus, [Probe()], executor=FakeExecutor()):
        pass
    await bus.join("watch")
    assert len(got) == 1
    assert got[0]["status"] == "stopped"
    assert got[0]["in_flight"] == 0


async def test_a_ping_makes_every_worker_beat_at_once(bus: MemoryBus) -> None:
    beats: list[dict[str, Any]] = []
    await bus.declare_queue("watch", bindings=("event.relaybus.worker.heartbeat",), durable=False)

    async def keep(delivery: Delivery) -> None:
        beats.append(json.loads(delivery.body))
        await delivery.ack()

    await bus.consume("watch", keep)
    async with AgentWorker(bus, [Probe()], executor=FakeExecutor(), heartbeat_interval_s=3600):
        await eventually(lambda: beats, what="the heartbeat sent at start")
        before = len(beats)
        await bus.publish(
            OutgoingMessage(body=b"{}", routing_key="event.relaybus.worker.ping", mandatory=False)
        )
        await eventually(lambda: len(beats) > before, what="the heartbeat answering the ping")
    assert before == 1  # the one sent at start


# -- configuration -------------------------------------------------------------------------------------------


def test_agent_class_with_a_bad_topic_pattern_fails_at_definition() -> None:
    with pytest.raises(ConfigError, match="topics"):

        class Bad(Agent):
            name = "bad"
            topics = ("code..review",)


def test_topics_given_as_a_string_gets_a_hint() -> None:
    with pytest.raises(ConfigError, match=r"topics = \('code.review',\)"):

        class Bad(Agent):
            name = "bad"
            topics = "code.review"  # type: ignore[assignment]


def test_agent_class_with_a_bad_name_fails_at_definition() -> None:
    with pytest.raises(ConfigError, match="name"):

        class Bad(Agent):
            name = "has space"


async def test_worker_refuses_agents_without_a_name_duplicates_and_non_agents(bus: MemoryBus) -> None:
    class Nameless(Agent):
        pass

    with pytest.raises(ConfigError, match="no name"):
        AgentWorker(bus, [Nameless()])
    with pytest.raises(ConfigError, match="unique"):
        AgentWorker(bus, [Probe(), Probe()])
    with pytest.raises(ConfigError, match="not a relaybus Agent"):
        AgentWorker(bus, [object()])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="at least one"):
        AgentWorker(bus, [])
