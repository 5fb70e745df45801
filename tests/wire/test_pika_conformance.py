"""Conformance with a foreign AMQP library: a pika client against a relaybus worker, and a pika worker
against a relaybus orchestrator, on a vhost of their own (real RabbitMQ). The pika side (``pika_side``)
imports nothing from relaybus; it follows docs/wire.md."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import jsonschema
import pika
import pytest

from relaybus.agents import AgentWorker
from relaybus.bus.amqp import AmqpBus
from relaybus.messages import AgentTask, ExecutionStatus
from relaybus.orchestrator import ProjectOrchestrator
from tests.agents import sample_agents as sa

from . import pika_side

pytestmark = pytest.mark.integration
ECHO = f"task.{sa.topic('echo')}"


@pytest.fixture
async def worker(amqp_vhost_url: str) -> AsyncIterator[str]:
    """A relaybus worker hosting the Echo agent; yields the URL for the pika client."""
    async with AmqpBus(amqp_vhost_url) as bus, AgentWorker(bus, [sa.Echo()], heartbeat_interval_s=60):
        yield amqp_vhost_url


@pytest.fixture
async def narrator(amqp_vhost_url: str) -> AsyncIterator[str]:
    async with AmqpBus(amqp_vhost_url) as bus, AgentWorker(bus, [sa.Narrator()], heartbeat_interval_s=60):
        yield amqp_vhost_url


@pytest.mark.parametrize("own_events_queue", [True, False])
async def test_a_pika_client_streams_a_task_to_its_events_queue_or_else_to_its_reply_queue(
    narrator: str, own_events_queue: bool
) -> None:
    task_id, body = pika_side.task_body(sa.topic("narrate"), prompt="p")
    got = await asyncio.to_thread(
        pika_side.stream,
        narrator,
        body,
        routing_key=f"task.{sa.topic('narrate')}",
        own_events_queue=own_events_queue,
    )
    assert got.result is not None
    assert got.result["status"] == "success"
    assert [(e["seq"], e["kind"], e["text"]) for _, _, e in got.events] == [
        (1, "progress", "one"),
        (2, "progress", "two"),
    ]
    queues = {queue for queue, _, _ in got.events}
    assert len(queues) == 1
    (queue,) = queues
    assert queue.startswith("relaybus.events." if own_events_queue else "relaybus.reply.pika-")
    for _, headers, event in got.events:
        assert headers["relaybus-event"] == "progress"
        assert event["task_id"] == task_id


def dead_letter_count(url: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        declared = connection.channel().queue_declare("relaybus.dead", passive=True)
        return int(declared.method.message_count)
    finally:
        connection.close()


async def test_a_pika_client_gets_the_result_of_a_relaybus_worker_with_its_correlation_id(
    worker: str,
) -> None:
    task_id, body = pika_side.task_body(sa.topic("echo"), prompt="from pika")
    reply = await asyncio.to_thread(
        pika_side.call, worker, body, routing_key=ECHO, message_id=task_id, correlation_id="pika-req-1"
    )
    assert reply is not None
    assert reply.body["task_id"] == task_id
    assert reply.body["status"] == "success"
    assert reply.body["output"] == {"echo": "from pika"}
    assert reply.properties.correlation_id == "pika-req-1"
    assert reply.properties.content_type == "application/json"
    headers = dict(reply.properties.headers)
    assert headers.pop("relaybus-schema") == 1
    assert set(headers) <= {"traceparent", "tracestate"}  # the trace the task went out in, if any
    assert reply.properties.delivery_mode == 2


async def test_direct_reply_to_from_pika_gets_its_result_and_leaves_no_dead_letter(worker: str) -> None:
    before = await asyncio.to_thread(dead_letter_count, worker)
    for n in range(3):
        task_id, body = pika_side.task_body(sa.topic("echo"), prompt=f"direct {n}")
        reply = await asyncio.to_thread(
            pika_side.call, worker, body, routing_key=ECHO, message_id=task_id, direct=True
        )
        assert reply is not None
        assert (reply.body["task_id"], reply.body["output"]) == (task_id, {"echo": f"direct {n}"})
        assert reply.properties.correlation_id == task_id  # none was sent: the task id
    await asyncio.sleep(0.5)  # a spurious "reply queue is gone" letter would be written by now
    assert await asyncio.to_thread(dead_letter_count, worker) == before


@pytest.mark.parametrize(
    ("fields", "headers", "content_type", "reason"),
    [
        ({}, {}, "application/json", "missing header 'relaybus-schema'"),
        ({"promt": "typo"}, None, "application/json", "promt: Extra inputs are not permitted"),
        ({"created_at": "2026-12-01T10:00:00"}, None, "application/json", "timezone"),
        ({}, None, "text/plain", "is not application/json"),
    ],
)
async def test_a_refused_task_from_pika_is_answered_rejected_at_once(
    worker: str, fields: dict[str, str], headers: dict[str, int] | None, content_type: str, reason: str
) -> None:
    task_id, body = pika_side.task_body(sa.topic("echo"), **fields)
    reply = await asyncio.to_thread(
        pika_side.call,
        worker,
        body,
        routing_key=ECHO,
        headers=headers,
        content_type=content_type,
        message_id=task_id,
        correlation_id="pika-req-2",
    )
    assert reply is not None, "no answer: the sender would have waited for its whole timeout"
    assert reply.body["task_id"] == task_id
    assert reply.body["status"] == "rejected"
    assert reply.body["error"]["type"] == "InvalidTask"
    assert reason in reply.body["error"]["message"]
    assert reply.properties.correlation_id == "pika-req-2"
    assert reply.seconds < 10  # answered, not timed out (the client waits up to 20 s)


async def test_a_task_without_an_id_in_its_body_is_answered_under_its_message_id(worker: str) -> None:
    message_id = str(uuid.uuid4())
    body = json.dumps({"topic": sa.topic("echo")}).encode()
    reply = await asyncio.to_thread(pika_side.call, worker, body, routing_key=ECHO, message_id=message_id)
    assert reply is not None
    assert (reply.body["task_id"], reply.body["status"]) == (message_id, "rejected")
    assert "id: field required" in reply.body["error"]["message"]


async def test_charset_utf8_from_pika_is_accepted(worker: str) -> None:
    task_id, body = pika_side.task_body(sa.topic("echo"), prompt="é")
    reply = await asyncio.to_thread(
        pika_side.call,
        worker,
        body,
        routing_key=ECHO,
        message_id=task_id,
        content_type="application/json; charset=utf-8",
    )
    assert reply is not None
    assert reply.body["output"] == {"echo": "é"}


@pytest.fixture
def pika_worker(amqp_vhost_url: str) -> Iterator[pika_side.PikaWorker]:
    agent = pika_side.PikaWorker(amqp_vhost_url, name="pika-agent", topic_pattern="shout.#")
    with pika_side.running(agent):
        yield agent


async def test_a_pika_worker_answers_a_relaybus_orchestrator_and_gets_its_cancels(
    amqp_vhost_url: str, pika_worker: pika_side.PikaWorker
) -> None:
    async with AmqpBus(amqp_vhost_url) as bus, ProjectOrchestrator(bus) as orchestrator:
        by_topic = AgentTask(topic="shout.it", prompt="hello")
        by_name = AgentTask(topic="any.thing", agent="pika-agent", prompt="named")
        results = await orchestrator.execute_tasks([by_topic, by_name])
        assert [(r.status, r.output, r.agent) for r in results] == [
            (ExecutionStatus.SUCCESS, {"upper": "HELLO"}, "pika-agent"),
            (ExecutionStatus.SUCCESS, {"upper": "NAMED"}, "pika-agent"),
        ]
        assert results[0].duration_s == 0
        seen = pika_worker.seen[0]
        assert seen["task"]["id"] == str(by_topic.id)
        assert seen["headers"]["relaybus-schema"] == 1
        assert seen["reply_to"].startswith("relaybus.reply.")
        await orchestrator.cancel(by_topic.id, "no longer needed")
        for _ in range(100):
            if pika_worker.cancels:
                break
            await asyncio.sleep(0.05)
        assert pika_worker.cancels == [{"task_id": str(by_topic.id), "reason": "no longer needed"}]


@pytest.fixture
def tap(request: pytest.FixtureRequest, amqp_vhost_url: str) -> Iterator[pika_side.EventTap]:
    bindings, ping = request.param
    listener = pika_side.EventTap(amqp_vhost_url, bindings, ping=ping)
    with pika_side.running(listener):
        yield listener


async def wait_for(predicate: Callable[[], bool]) -> None:
    for _ in range(200):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not within 10 s")


@pytest.mark.parametrize("tap", [((f"event.{sa.topic('started')}",), False)], indirect=True)
async def test_pika_receives_the_events_a_relaybus_agent_publishes(
    worker: str, tap: pika_side.EventTap
) -> None:
    task_id, body = pika_side.task_body(sa.topic("echo"), prompt="e", input={"announce": True})
    reply = await asyncio.to_thread(pika_side.call, worker, body, routing_key=ECHO, message_id=task_id)
    assert reply is not None
    assert reply.body["status"] == "success"
    await wait_for(lambda: bool(tap.got))
    routing_key, headers, event = tap.got[0]
    assert routing_key == f"event.{sa.topic('started')}"
    assert headers["relaybus-schema"] == 1
    assert event["task_id"] == task_id


@pytest.mark.parametrize("tap", [(("event.relaybus.worker.*",), True)], indirect=True)
async def test_a_ping_from_pika_gets_heartbeats_valid_against_the_published_schema(
    worker: str, tap: pika_side.EventTap
) -> None:
    await wait_for(lambda: any(key.endswith(".heartbeat") for key, _, _ in tap.got))
    schemas = json.loads((Path(__file__).resolve().parents[2] / "docs" / "schemas.json").read_text())
    heartbeat = next(body for key, _, body in tap.got if key.endswith(".heartbeat"))
    jsonschema.validate(heartbeat, {**schemas, "$ref": "#/$defs/WorkerHeartbeat"})
    assert sa.name("echo") in heartbeat["agents"]
