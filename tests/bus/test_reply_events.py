"""Task events on a reply queue: encoded with their header and correlation id, routed by task id to the one
listening, dropped (counted) for an id nobody listens to, dead-lettered when invalid; results unaffected."""

from __future__ import annotations

import uuid

import pytest

from relaybus import AgentTask, ExecutionResult, TaskEvent
from relaybus.bus.base import DEAD_LETTER_QUEUE, EVENT_HEADER, OutgoingMessage
from relaybus.bus.codec import decode_task_event, encode_result, encode_task_event
from relaybus.bus.memory import MemoryBus
from relaybus.bus.rpc import ReplyRouter
from relaybus.exceptions import InvalidMessage


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
        replies: list[str] = []

        async def answer(delivery) -> None:  # type: ignore[no-untyped-def]
            replies.append(delivery.reply_to)
            event = TaskEvent(task_id=task.id, seq=1, kind="progress")
            await bus.publish(encode_task_event(event, reply_to=delivery.reply_to))
            await bus.publish(
                encode_result(ExecutionResult.success(task.id, "ok"), reply_to=delivery.reply_to)
            )
            await delivery.ack()

        await bus.consume("answers", answer)
        result = await router.request(task, timeout=10, on_event=got.append)
        late = TaskEvent(task_id=task.id, seq=2, kind="progress")
        await bus.publish(encode_task_event(late, reply_to=replies[0]))
        await bus.join()
    assert result.output == "ok"
    assert [e.seq for e in got] == [1]  # the event after the result found nobody listening
    assert router.events_dropped == 1
