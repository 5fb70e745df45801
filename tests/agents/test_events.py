"""EventSender: a task's events numbered in order, model text coalesced, sizes capped, never blocking."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from relaybus.agents.events import EventSender
from relaybus.bus.base import EVENT_HEADER
from relaybus.bus.codec import decode_task_event
from relaybus.bus.memory import MemoryBus
from relaybus.log import get_logger
from relaybus.messages import MAX_EVENT_TEXT, TaskEvent
from tests.eventually import eventually

QUEUE = "relaybus.reply.events-test"


class Collected:
    def __init__(self) -> None:
        self.events: list[TaskEvent] = []
        self.kinds: list[object] = []

    async def __call__(self, delivery) -> None:  # type: ignore[no-untyped-def]
        self.kinds.append(delivery.headers[EVENT_HEADER])
        self.events.append(decode_task_event(delivery.body, delivery.headers))
        await delivery.ack()


@pytest.fixture
async def bus_and_events():  # type: ignore[no-untyped-def]
    async with MemoryBus() as bus:
        await bus.declare_queue(QUEUE)
        collected = Collected()
        await bus.consume(QUEUE, collected)
        yield bus, collected


def sender(bus: MemoryBus, **options: object) -> EventSender:
    return EventSender(
        bus, task_id=uuid.uuid4(), reply_to=QUEUE, agent="writer", log=get_logger("test"), **options
    )  # type: ignore[arg-type]


async def test_events_arrive_numbered_in_the_order_they_were_made(bus_and_events) -> None:  # type: ignore[no-untyped-def]
    bus, got = bus_and_events
    events = sender(bus)
    events.emit("progress", "reading")
    events.delta("Hello")
    events.emit("tool_call", "grep", {"arguments": "{}"})
    events.delta(" world")
    await events.finish()
    await bus.join()
    assert [(e.seq, e.kind, e.text) for e in got.events] == [
        (1, "progress", "reading"),
        (2, "delta", "Hello"),
        (3, "tool_call", "grep"),
        (4, "delta", " world"),
    ]
    assert got.kinds == ["progress", "delta", "tool_call", "delta"]  # the relaybus-event header
    assert got.events[2].data == {"arguments": "{}"}
    assert got.events[0].agent == "writer"
    assert events.sent == 4
    assert events.dropped == 0


async def test_model_text_is_coalesced_first_piece_at_once(bus_and_events) -> None:  # type: ignore[no-untyped-def]
    bus, got = bus_and_events
    events = sender(bus, interval_s=10.0)
    events.delta("first")
    await eventually(lambda: len(got.events) == 1, what="the first delta, sent without waiting")
    for i in range(200):
        events.delta(f" t{i}")
    await asyncio.sleep(0.01)
    assert len(got.events) == 1  # the rest waits for the interval (or the end)
    await events.finish()
    await bus.join()
    assert len(got.events) == 2
    assert "".join(e.text for e in got.events) == "first" + "".join(f" t{i}" for i in range(200))


async def test_gathered_text_goes_out_when_it_reaches_max_chars(bus_and_events) -> None:  # type: ignore[no-untyped-def]
    bus, got = bus_and_events
    events = sender(bus, interval_s=10.0, max_chars=10)
    events.delta("a")
    for _ in range(10):
        events.delta("bc")
    await eventually(lambda: len(got.events) == 3, what="a delta sent each time 10 characters gathered")
    assert got.events[1].text == got.events[2].text == "bcbcbcbcbc"
    await events.finish()


async def test_sizes_are_capped(bus_and_events) -> None:  # type: ignore[no-untyped-def]
    bus, got = bus_and_events
    events = sender(bus, max_data_bytes=100)
    events.emit("progress", "x" * (MAX_EVENT_TEXT + 50), {"blob": "y" * 500})
    events.emit("progress", "small", {"ok": 1})
    await events.finish()
    await bus.join()
    assert len(got.events[0].text) == MAX_EVENT_TEXT
    assert "left out" in str(got.events[0].data)
    assert got.events[1].data == {"ok": 1}


async def test_a_full_queue_drops_events_as_a_gap_in_seq(bus_and_events) -> None:  # type: ignore[no-untyped-def]
    bus, got = bus_and_events
    events = sender(bus, max_queued=2)
    for i in range(5):  # all made before the publisher runs once
        events.emit("progress", f"line {i}")
    await events.finish()
    await bus.join()
    assert [e.seq for e in got.events] == [1, 2]
    assert events.dropped == 3
    events.emit("progress", "after the end")  # ignored once finished
    assert events.seq == 5


async def test_forwarded_events_are_renumbered_and_tagged(bus_and_events) -> None:  # type: ignore[no-untyped-def]
    bus, got = bus_and_events
    events = sender(bus)
    sub, deeper = uuid.uuid4(), uuid.uuid4()
    events.emit("progress", "mine")
    events.forward(TaskEvent(task_id=sub, seq=7, kind="delta", text="sub text", agent="helper"), sub)
    events.forward(TaskEvent(task_id=sub, seq=8, kind="progress", text="deep", sub_task_id=deeper), sub)
    await events.finish()
    await bus.join()
    assert [(e.seq, e.sub_task_id, e.text) for e in got.events] == [
        (1, None, "mine"),
        (2, sub, "sub text"),
        (3, deeper, "deep"),
    ]
    assert got.events[1].agent == "helper"


async def test_finish_does_not_wait_long_for_a_stuck_broker() -> None:
    class Stuck(MemoryBus):
        async def publish(self, message):  # type: ignore[no-untyped-def]
            await asyncio.Event().wait()

    async with Stuck() as bus:
        events = sender(bus, finish_timeout_s=0.05)
        events.emit("progress", "never confirmed")
        await asyncio.wait_for(events.finish(), 5)
        assert events.sent == 0
