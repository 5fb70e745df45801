"""A task refused on receipt is answered at once (REJECTED ``InvalidTask`` with the reason) when its id and
reply queue can be read, besides being dead-lettered; a caller's own correlation_id is echoed."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Mapping
from uuid import uuid4

import pytest

from relaybus.agents import AgentWorker
from relaybus.bus.base import (
    DEAD_LETTER_QUEUE,
    ERROR_HEADER,
    SCHEMA_HEADER,
    Delivery,
    HeaderValue,
    OutgoingMessage,
)
from relaybus.bus.codec import decode, encode_task
from relaybus.bus.memory import MemoryBus
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus
from tests.eventually import eventually

from . import sample_agents as sa

REPLY_QUEUE = "relaybus.reply.refusals"


class Replies:
    """A reply queue that keeps each result with the correlation_id it came with."""

    def __init__(self) -> None:
        self.items: list[tuple[str | None, ExecutionResult]] = []

    async def on(self, delivery: Delivery) -> None:
        self.items.append((delivery.correlation_id, decode(delivery.body, delivery.headers, ExecutionResult)))
        await delivery.ack()


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    async with MemoryBus() as memory_bus:
        yield memory_bus


@pytest.fixture
async def replies(bus: MemoryBus) -> AsyncIterator[Replies]:
    kept = Replies()
    await bus.declare_queue(REPLY_QUEUE, durable=False)
    await bus.consume(REPLY_QUEUE, kept.on)
    async with AgentWorker(bus, [sa.Echo()], heartbeat_interval_s=60):
        yield kept


async def dead_letters(bus: MemoryBus) -> list[str]:
    reasons: list[str] = []

    async def read(delivery: Delivery) -> None:
        reasons.append(str(delivery.headers[ERROR_HEADER]))
        await delivery.ack()

    subscription = await bus.consume(DEAD_LETTER_QUEUE, read)
    await bus.join()
    await subscription.cancel()
    return reasons


def raw(
    body: dict[str, object] | bytes,
    *,
    headers: Mapping[str, HeaderValue] | None = None,
    reply_to: str | None = REPLY_QUEUE,
    **props: str | None,
) -> OutgoingMessage:
    return OutgoingMessage(
        body=body if isinstance(body, bytes) else json.dumps(body).encode(),
        routing_key=f"task.{sa.topic('echo')}",
        reply_to=reply_to,
        headers={SCHEMA_HEADER: 1} if headers is None else headers,
        **props,  # type: ignore[arg-type]
    )


TASK_ID = str(uuid4())


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (raw({"id": TASK_ID, "topic": sa.topic("echo")}, headers={}), "missing header 'relaybus-schema'"),
        (
            raw({"id": TASK_ID, "topic": sa.topic("echo"), "promt": "x"}),
            "promt: Extra inputs are not permitted",
        ),
        (raw({"topic": sa.topic("echo")}, message_id=TASK_ID), "id: field required"),
        (raw({"id": TASK_ID, "topic": "a b"}), "topic must be dot-separated words"),
        (
            raw({"id": TASK_ID, "topic": sa.topic("echo")}, message_id=str(uuid4())),
            "does not match the task's id",
        ),
        (
            raw({"id": TASK_ID, "topic": sa.topic("echo"), "created_at": "2026-01-01T00:00:00"}),
            "created_at: Input should have timezone info",
        ),
        (raw(b"not json", correlation_id=TASK_ID), "body is not valid JSON"),
        (
            raw({"id": TASK_ID, "topic": sa.topic("echo")}, content_type="application/json; charset=latin-1"),
            "charset 'latin-1' is not supported",
        ),
    ],
)
async def test_a_refused_task_is_answered_rejected_at_once_and_dead_lettered(
    bus: MemoryBus, replies: Replies, message: OutgoingMessage, reason: str
) -> None:
    await bus.publish(message)
    await eventually(lambda: len(replies.items) == 1)
    _, result = replies.items[0]
    assert str(result.task_id) == TASK_ID
    assert result.status is ExecutionStatus.REJECTED
    assert result.error is not None
    assert result.error.type == "InvalidTask"
    assert reason in result.error.message
    assert result.agent == sa.name("echo")
    [letter] = await dead_letters(bus)
    assert reason in letter


async def test_a_refused_task_without_a_readable_id_or_reply_queue_is_only_dead_lettered(
    bus: MemoryBus, replies: Replies
) -> None:
    await bus.publish(raw({"topic": sa.topic("echo")}))  # no id anywhere
    await bus.publish(raw({"id": TASK_ID, "topic": sa.topic("echo"), "x": 1}, reply_to=None))
    await bus.publish(
        raw({"id": TASK_ID, "topic": sa.topic("echo"), "x": 1}, reply_to="relaybus.agent.other")
    )
    await bus.join()
    await asyncio.sleep(0)
    assert replies.items == []
    assert len(await dead_letters(bus)) == 3


async def test_json_content_type_with_a_utf8_charset_is_accepted(bus: MemoryBus, replies: Replies) -> None:
    task = AgentTask(topic=sa.topic("echo"), prompt="ok")
    for content_type in ("application/json; charset=utf-8", 'Application/JSON;charset="UTF-8"'):
        message = encode_task(task.model_copy(update={"id": uuid4()}), reply_to=REPLY_QUEUE)
        await bus.publish(dataclasses.replace(message, content_type=content_type))
    await eventually(lambda: len(replies.items) == 2)
    assert [r.status for _, r in replies.items] == [ExecutionStatus.SUCCESS] * 2


async def test_the_callers_own_correlation_id_is_echoed_else_the_task_id(
    bus: MemoryBus, replies: Replies
) -> None:
    mine, plain = AgentTask(topic=sa.topic("echo")), AgentTask(topic=sa.topic("echo"))
    own = encode_task(mine, reply_to=REPLY_QUEUE)
    await bus.publish(dataclasses.replace(own, correlation_id="caller-42"))
    await bus.publish(dataclasses.replace(encode_task(plain, reply_to=REPLY_QUEUE), correlation_id=None))
    await bus.publish(raw({"id": TASK_ID, "topic": sa.topic("echo"), "x": 1}, correlation_id="caller-43"))
    await eventually(lambda: len(replies.items) == 3)
    by_task = {str(result.task_id): (cid, result.status) for cid, result in replies.items}
    assert by_task[str(mine.id)] == ("caller-42", ExecutionStatus.SUCCESS)
    assert by_task[str(plain.id)] == (str(plain.id), ExecutionStatus.SUCCESS)
    assert by_task[TASK_ID] == ("caller-43", ExecutionStatus.REJECTED)
