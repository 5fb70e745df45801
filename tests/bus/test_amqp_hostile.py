"""200 hostile bodies on a real agent queue: each is dead-lettered with its reason, the consumer goes on.

The bodies are published raw (the bus does not look inside bodies) to a ``relaybus.agent.<name>`` queue; the
consumer checks each one with ``decode_delivery(delivery, AgentTask)`` as agents do. Every refused body must
reach ``relaybus.dead`` with a ``relaybus-error`` header that names its problem, and a good task sent after
all of them must still be handled.
"""

from __future__ import annotations

import asyncio
import json
import pickle
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from relaybus.bus.amqp import AmqpBus
from relaybus.bus.base import (
    ERROR_HEADER,
    ORIGINAL_QUEUE_HEADER,
    SCHEMA_HEADER,
    Delivery,
    HeaderValue,
    OutgoingMessage,
    agent_queue_name,
    agent_routing_key,
)
from relaybus.bus.codec import DEFAULT_MAX_BODY_BYTES, decode_delivery, encode_task
from relaybus.messages import AgentTask

from .amqp_support import take_dead_letters, unique

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COUNT = 200
GOOD = {SCHEMA_HEADER: 1}


@dataclass(frozen=True)
class Hostile:
    kind: str
    body: bytes
    headers: dict[str, HeaderValue]
    expect: str  # what the relaybus-error header must say
    content_type: str | None = "application/json"


def _task_json(i: int, **override: object) -> bytes:
    fields: dict[str, object] = {"topic": f"hostile.t{i}", "prompt": f"p{i}"}
    fields.update(override)
    return json.dumps(fields).encode()


KINDS: list[Callable[[int], Hostile]] = [
    lambda i: Hostile("not json", f"hello {i} <xml/>".encode(), GOOD, "not valid JSON"),
    lambda i: Hostile("empty", b"", GOOD, "not valid JSON"),
    lambda i: Hostile("truncated json", _task_json(i)[:-3], GOOD, "not valid JSON"),
    lambda i: Hostile("json array", json.dumps([i, "x"]).encode(), GOOD, "invalid AgentTask"),
    lambda i: Hostile(
        "missing field", json.dumps({"prompt": f"p{i}"}).encode(), GOOD, "topic: Field required"
    ),
    lambda i: Hostile("unknown field", _task_json(i, evil=i), GOOD, "Extra inputs are not permitted"),
    lambda i: Hostile(
        "wrong types", _task_json(i, topic=i, prompt=["x"]), GOOD, "Input should be a valid string"
    ),
    lambda i: Hostile("bad value", _task_json(i, priority=10 + i), GOOD, "invalid AgentTask: priority"),
    lambda i: Hostile("no schema header", _task_json(i), {}, "missing header 'relaybus-schema'"),
    lambda i: Hostile("unknown schema", _task_json(i), {SCHEMA_HEADER: 90 + i % 9}, "unknown schema version"),
    lambda i: Hostile("schema junk", _task_json(i), {SCHEMA_HEADER: "1; rm -rf /"}, "unknown schema version"),
    lambda i: Hostile("pickle", pickle.dumps({"topic": f"t{i}"}, protocol=i % 6), GOOD, "pickle"),
    lambda i: Hostile(
        "invalid utf-8", b'{"topic": "a", "prompt": "\xff\xfe' + bytes([i % 50]) + b'"}', GOOD, "UTF-8"
    ),
    lambda i: Hostile("deep nesting", b"[" * (5000 + i) + b"]" * (5000 + i), GOOD, "recursion limit"),
    lambda i: Hostile(
        "deep object",
        b'{"topic": "a", "input": ' + b'{"a": ' * 3000 + b"1" + b"}" * 3001,
        GOOD,
        "recursion limit",
    ),
    lambda i: Hostile(
        "wrong content type", _task_json(i), GOOD, "is not application/json", content_type="text/x-pickle"
    ),
    lambda i: Hostile(
        "over 1 MiB",
        _task_json(i, prompt="x" * (DEFAULT_MAX_BODY_BYTES + i)),
        GOOD,
        f"the limit is {DEFAULT_MAX_BODY_BYTES}",
    ),
]


def hostile_bodies() -> list[Hostile]:
    bodies = []
    for i in range(COUNT):
        kind = KINDS[i % len(KINDS)]
        # few large ones: enough to prove the point without pushing 200 MiB through a shared broker
        if kind is KINDS[-1] and i >= 5 * len(KINDS):
            kind = KINDS[0]
        bodies.append(kind(i))
    return bodies


@pytest.fixture
async def agent(amqp_url: str) -> AsyncIterator[tuple[AmqpBus, str]]:
    name = unique("hostile").replace(".", "-")
    # a sender that may push big bodies: the hostile ones are meant to be refused by the receiver
    async with AmqpBus(amqp_url, max_body_bytes=4 * DEFAULT_MAX_BODY_BYTES) as bus:
        await bus.declare_queue(agent_queue_name(name), bindings=[agent_routing_key(name)])
        try:
            yield bus, name
        finally:
            await bus.delete_queue(agent_queue_name(name))


async def test_every_hostile_body_is_dead_lettered_with_its_reason_and_a_good_task_still_runs(
    agent: tuple[AmqpBus, str],
) -> None:
    bus, name = agent
    queue = agent_queue_name(name)
    hostile = hostile_bodies()
    assert len(hostile) == COUNT
    assert len({h.kind for h in hostile}) == len(KINDS)
    ids = [f"{queue}.h{i}" for i in range(COUNT)]
    good_task = AgentTask(topic="hostile.good", prompt="still alive", agent=name)
    handled: list[AgentTask] = []
    good_seen = asyncio.Event()

    async def handler(delivery: Delivery) -> None:
        task = await decode_delivery(delivery, AgentTask)
        if task is None:
            return  # refused: decode_delivery dead-lettered it with the reason
        handled.append(task)
        await delivery.ack()
        if task.id == good_task.id:
            good_seen.set()

    subscription = await bus.consume(queue, handler, prefetch=16)
    try:
        for mid, h in zip(ids, hostile, strict=True):
            await bus.publish(
                OutgoingMessage(
                    body=h.body,
                    routing_key=agent_routing_key(name),
                    message_id=mid,
                    headers=h.headers,
                    content_type=h.content_type,
                )
            )
        await bus.publish(encode_task(good_task, reply_to=None))
        await asyncio.wait_for(good_seen.wait(), 60)
    finally:
        await subscription.cancel()

    assert [t.id for t in handled] == [good_task.id]  # nothing hostile reached the handler as a task
    dead = await take_dead_letters(bus, ids, timeout=60)
    missing = [f"{mid} ({h.kind})" for mid, h in zip(ids, hostile, strict=True) if mid not in dead]
    assert not missing, f"{len(missing)} hostile bodies not dead-lettered: {missing[:10]}"
    for mid, h in zip(ids, hostile, strict=True):
        letter = dead[mid]
        reason = str(letter.headers[ERROR_HEADER])
        assert h.expect in reason, f"{h.kind}: relaybus-error {reason!r} does not say {h.expect!r}"
        assert len(reason) <= 1000
        assert letter.headers[ORIGINAL_QUEUE_HEADER] == queue
        assert letter.body == h.body  # the evidence is kept byte for byte
    assert await bus.purge_queue(queue) == 0  # every hostile message was settled, none is stuck or requeued
