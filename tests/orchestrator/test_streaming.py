"""The caller's side of streaming on MemoryBus: ``orchestrator.stream``, ``execute_task(on_event=...)``
and ``run_plan(on_event=...)`` yield a task's events in ``seq`` order and end with the ``result`` event;
copies and stale events are dropped, a lost one shows as a gap; the result stays what the worker sent."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from relaybus import Agent, AgentContext, AgentTask, AgentWorker, ExecutionResult, TaskEvent
from relaybus.bus.base import STREAM_HEADER, Delivery
from relaybus.bus.codec import encode_result, encode_task_event, wants_stream
from relaybus.bus.memory import MemoryBus
from relaybus.messages import AgentTask as Task
from relaybus.orchestrator import Plan, ProjectOrchestrator
from relaybus.testing import FakeExecutor


class Scripted:
    """A worker stand-in that answers each task with the events ``seqs`` (in that order), then its result."""

    def __init__(self, bus: MemoryBus, seqs: list[int]) -> None:
        self.bus = bus
        self.seqs = seqs
        self.streamed: list[bool] = []

    async def start(self) -> None:
        await self.bus.declare_queue("scripted", bindings=["task.scripted.#"])
        await self.bus.consume("scripted", self.handle)

    async def handle(self, delivery: Delivery) -> None:
        task = Task.model_validate_json(delivery.body)
        self.streamed.append(wants_stream(delivery.headers))
        assert delivery.reply_to is not None
        if wants_stream(delivery.headers):
            for seq in self.seqs:
                event = TaskEvent(task_id=task.id, seq=seq, kind="delta", text=f"<{seq}>")
                await self.bus.publish(encode_task_event(event, reply_to=delivery.reply_to))
        result = ExecutionResult.success(task.id, "the result")
        await self.bus.publish(encode_result(result, reply_to=delivery.reply_to))
        await delivery.ack()


class Chatty(Agent):
    name = "chatty"
    topics = ("chat.*",)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        for word in task.prompt.split():
            await ctx.emit("progress", text=word)
        return task.prompt.upper()


async def test_stream_yields_events_in_seq_order_and_drops_copies_and_stale_ones() -> None:
    async with MemoryBus() as bus:
        worker = Scripted(bus, [1, 2, 2, 1, 4, 5])  # 2 and 1 again (copies), 3 lost
        await worker.start()
        async with ProjectOrchestrator(bus) as orchestrator:
            events = [e async for e in orchestrator.stream(AgentTask(topic="scripted.x"))]
    assert [(e.seq, e.kind) for e in events] == [
        (1, "delta"),
        (2, "delta"),
        (4, "delta"),
        (5, "delta"),
        (6, "result"),
    ]  # the lost 3 is a gap, not an error
    assert events[-1].result is not None
    assert events[-1].result.output == "the result"
    assert worker.streamed == [True]


async def test_execute_task_without_on_event_does_not_ask_for_events() -> None:
    async with MemoryBus() as bus:
        worker = Scripted(bus, [1, 2])
        await worker.start()
        async with ProjectOrchestrator(bus) as orchestrator:
            result = await orchestrator.execute_task(AgentTask(topic="scripted.x"))
            got: list[TaskEvent] = []

            async def on_event(event: TaskEvent) -> None:  # awaited, in order
                await asyncio.sleep(0)
                got.append(event)

            streamed = await orchestrator.execute_task(AgentTask(topic="scripted.y"), on_event=on_event)
    assert worker.streamed == [False, True]
    assert result.output == streamed.output == "the result"
    assert [e.kind for e in got] == ["delta", "delta", "result"]
    assert got[-1].result == streamed


async def test_a_real_worker_streams_to_execute_task_and_to_every_task_of_a_plan() -> None:
    async with (
        MemoryBus() as bus,
        AgentWorker(bus, [Chatty()], executor=FakeExecutor()),
        ProjectOrchestrator(bus) as orchestrator,
    ):
        events: list[TaskEvent] = []
        result = await orchestrator.execute_task(
            AgentTask(topic="chat.one", prompt="a b c"), on_event=events.append
        )
        assert result.output == "A B C"
        assert [(e.seq, e.text) for e in events[:-1]] == [(1, "a"), (2, "b"), (3, "c")]

        plan_events: list[TaskEvent] = []
        first = AgentTask(topic="chat.two", prompt="x y")
        second = AgentTask(topic="chat.two", prompt="z", depends_on=(first.id,))
        outcome = await orchestrator.run_plan(Plan.of([first, second]), on_event=plan_events.append)
    assert outcome.ok
    for task, words in ((first, ["x", "y"]), (second, ["z"])):
        mine = [e for e in plan_events if e.task_id == task.id]
        assert [e.text for e in mine[:-1]] == words
        assert mine[-1].kind == "result"
        assert mine[-1].seq == len(words) + 1


async def test_leaving_the_stream_early_stops_waiting_for_the_task() -> None:
    class Slow(Agent):
        name = "slow"
        topics = ("slow.*",)

        async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
            await ctx.emit("progress", text="begun")
            await asyncio.sleep(30)
            return "late"

    async with (
        MemoryBus() as bus,
        AgentWorker(bus, [Slow()], executor=FakeExecutor(), grace_s=0),
        ProjectOrchestrator(bus) as orchestrator,
    ):
        async with contextlib.aclosing(orchestrator.stream(AgentTask(topic="slow.x"))) as events:
            async for event in events:
                assert event.text == "begun"
                assert orchestrator.in_flight == 1
                break
        assert orchestrator.in_flight == 0  # closed: no longer waiting for the result


async def test_the_stream_header_is_what_asks_for_events() -> None:
    assert wants_stream({STREAM_HEADER: "1"})
    assert wants_stream({STREAM_HEADER: b"true"})
    assert not wants_stream({})
    assert not wants_stream({STREAM_HEADER: "0"})
