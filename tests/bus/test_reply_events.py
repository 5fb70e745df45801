"""Task events: encoded with their header and correlation id, sent to the caller's events queue (or, from a
worker that does not know that queue, its reply queue), routed by task id to the one listening, dropped
(counted) for an id nobody listens to, dead-lettered when invalid; results unaffected."""

from __future__ import annotations

import uuid

import pytest

from relaybus import AgentTask, ExecutionResult, TaskEvent
from relaybus.bus.base import (
    DEAD_LETTER_QUEUE,
    EVENT_HEADER,
    EVENTS_TO_HEADER,
    STREAM_HEADER,
    Delivery,
    OutgoingMessage,
)
from relaybus.bus.codec import decode_task_event, encode_result, encode_task_event, stream_destination
from relaybus.bus.memory import MemoryBus
from relaybus.bus.rpc import ReplyRouter
from relaybus.exceptions import BusError, InvalidMessage

EVENTS_QUEUE = "relaybus.events." + "0123456789abcdef" * 2


def test_an_event_travels_to_reply_to_with_the_task_id_and_its_kind_in_a_header() -> None:
    event = TaskEvent(task_id=uuid.uuid4(), seq=3, kind="progress", text="hi", data={"n": 1})
    message = encode_task_event(event, reply_to="relaybus.reply.x")
    assert message.routing_key == "relaybus.reply.x"
    assert message.exchange == ""
    assert message.correlation_id == str(event.task_id)
    assert message.headers[EVENT_HEADER] == "progress"
    assert not message.mandatory
    assert not message.persistent
    assert decode_task_event(message.body, message.headers) == event


def test_an_event_claiming_to_be_the_result_is_refused() -> None:
    task_id = uuid.uuid4()
    fake = TaskEvent(task_id=task_id, seq=1, kind="result", result=ExecutionResult.success(task_id, "x"))
    message = encode_task_event(fake, reply_to="relaybus.reply.x")
    with pytest.raises(InvalidMessage, match="must not carry a result"):
        decode_task_event(message.body, message.headers)


async def test_the_router_passes_events_to_the_listener_of_their_task_only() -> None:
    async with MemoryBus() as bus, ReplyRouter(bus) as router:
        mine, other = uuid.uuid4(), uuid.uuid4()
        got: list[TaskEvent] = []
        router.listen(mine, got.append)
        for task_id in (mine, other, mine):
            event = TaskEvent(task_id=task_id, seq=len(got) + 1, kind="delta", text="t")
            await bus.publish(encode_task_event(event, reply_to=router.queue))
        await bus.join()
        assert [e.task_id for e in got] == [mine, mine]
        assert router.events_dropped == 1
        router.unlisten(mine)
        await bus.publish(
            encode_task_event(TaskEvent(task_id=mine, seq=9, kind="delta"), reply_to=router.queue)
        )
        await bus.join()
        assert len(got) == 2
        assert router.events_dropped == 2
        # results are untouched by all this
        future = router.expect(mine)
        await bus.publish(encode_result(ExecutionResult.success(mine, "done"), reply_to=router.queue))
        assert (await future).output == "done"


async def test_an_invalid_event_is_dead_lettered_with_the_reason() -> None:
    async with MemoryBus() as bus, ReplyRouter(bus) as router:
        task_id = uuid.uuid4()
        router.listen(task_id, lambda event: None)
        good = encode_task_event(TaskEvent(task_id=task_id, seq=1, kind="delta"), reply_to=router.queue)
        wrong_id = OutgoingMessage(
            body=good.body,
            routing_key=router.queue,
            exchange="",
            correlation_id=str(uuid.uuid4()),
            headers=good.headers,
            mandatory=False,
        )
        await bus.publish(wrong_id)
        not_json = OutgoingMessage(body=b"{oops", routing_key=router.queue, exchange="", headers=good.headers)
        await bus.publish(not_json)
        await bus.join()
        dead = bus.stats(DEAD_LETTER_QUEUE)
        assert dead.ready == 2


async def test_request_with_on_event_listens_only_while_it_waits() -> None:
    async with MemoryBus() as bus, ReplyRouter(bus) as router:
        task = AgentTask(topic="t.x")
        await bus.declare_queue("answers", bindings=["task.t.#"])
        got: list[TaskEvent] = []
        sent_to: list[str] = []

        async def answer(delivery: Delivery) -> None:
            assert delivery.reply_to is not None
            destination = stream_destination(delivery.reply_to, delivery.headers)
            assert destination is not None
            sent_to.append(destination)
            event = TaskEvent(task_id=task.id, seq=1, kind="progress")
            await bus.publish(encode_task_event(event, reply_to=destination))
            await bus.publish(
                encode_result(ExecutionResult.success(task.id, "ok"), reply_to=delivery.reply_to)
            )
            await delivery.ack()

        await bus.consume("answers", answer)
        result = await router.request(task, timeout=10, headers={STREAM_HEADER: "1"}, on_event=got.append)
        late = TaskEvent(task_id=task.id, seq=2, kind="progress")
        await bus.publish(encode_task_event(late, reply_to=sent_to[0]))
        await bus.join()
        assert sent_to == [router.events_queue]  # the events queue, named in the task's headers
    assert result.output == "ok"
    assert [e.seq for e in got] == [1]  # the event after the result found nobody listening
    assert router.events_dropped == 1


def test_a_worker_sends_events_to_the_events_queue_named_else_to_the_reply_queue() -> None:
    streamed = {STREAM_HEADER: "1"}
    reply_to = "relaybus.reply.caller"
    assert stream_destination(reply_to, {**streamed, EVENTS_TO_HEADER: EVENTS_QUEUE}) == EVENTS_QUEUE
    assert stream_destination(reply_to, {**streamed, EVENTS_TO_HEADER: EVENTS_QUEUE.encode()}) == EVENTS_QUEUE
    # A caller from before events queues, or another language's client: its reply queue.
    assert stream_destination(reply_to, streamed) == reply_to
    # Not another queue of any name: an agent's task queue, the dead letters, a look-alike.
    for elsewhere in ("relaybus.agent.writer", "relaybus.dead", "relaybus.events.x", EVENTS_QUEUE + "0"):
        assert stream_destination(reply_to, {**streamed, EVENTS_TO_HEADER: elsewhere}) == reply_to
        assert stream_destination(None, {**streamed, EVENTS_TO_HEADER: elsewhere}) is None
    assert stream_destination("relaybus.agent.writer", streamed) is None
    # No events unless asked for.
    assert stream_destination(reply_to, {EVENTS_TO_HEADER: EVENTS_QUEUE}) is None


async def test_the_events_queue_is_declared_once_on_the_first_stream_and_deleted_at_close() -> None:
    async with MemoryBus() as bus:
        router = ReplyRouter(bus)
        await router.start()
        assert router.events_queue is None  # a caller that never streams has no events queue
        headers = await router.stream_headers()
        queue = router.events_queue
        assert queue is not None
        assert queue.startswith("relaybus.events.")
        assert headers == {STREAM_HEADER: "1", EVENTS_TO_HEADER: queue}
        assert await router.stream_headers() == headers
        assert bus.stats(queue).consumers == 1
        await router.close()
        with pytest.raises(BusError):
            bus.stats(queue)


async def test_events_on_the_events_queue_reach_their_listener_and_anything_else_is_dead_lettered() -> None:
    async with MemoryBus() as bus, ReplyRouter(bus) as router:
        queue = (await router.stream_headers())[EVENTS_TO_HEADER]
        assert isinstance(queue, str)
        task_id = uuid.uuid4()
        got: list[TaskEvent] = []
        router.listen(task_id, got.append)
        await bus.publish(encode_task_event(TaskEvent(task_id=task_id, seq=1, kind="delta"), reply_to=queue))
        future = router.expect(task_id)
        await bus.publish(encode_result(ExecutionResult.success(task_id, "x"), reply_to=queue))
        await bus.join()
        assert [e.seq for e in got] == [1]
        assert not future.done()  # a result belongs on the reply queue, not here
        assert bus.stats(DEAD_LETTER_QUEUE).ready == 1


async def test_a_broker_refusing_the_events_queue_leaves_the_events_on_the_reply_queue() -> None:
    class RefusesEventsQueues(MemoryBus):
        async def declare_queue(self, name: str, **options: object) -> None:  # type: ignore[override]
            if name.startswith("relaybus.events."):
                raise BusError("access refused")
            await super().declare_queue(name, **options)  # type: ignore[arg-type]

    async with RefusesEventsQueues() as bus, ReplyRouter(bus) as router:
        headers = await router.stream_headers()
        assert headers == {STREAM_HEADER: "1"}
        assert stream_destination(router.queue, headers) == router.queue
        assert router.events_queue is None
