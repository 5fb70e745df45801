"""The compatibility rule: one major, strict within a reader's own minor, a newer minor's fields ignored; JSON
content types with a UTF-8 charset. Plus a rolling upgrade across a minor, both ways, on a real worker."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import pytest

from relaybus.agents import AgentWorker
from relaybus.bus.base import SCHEMA_HEADER, Delivery, OutgoingMessage
from relaybus.bus.codec import decode, encode_task
from relaybus.bus.compat import check_content_type, schema_header_value, schema_version
from relaybus.bus.memory import MemoryBus
from relaybus.bus.rpc import ReplyRouter
from relaybus.exceptions import InvalidMessage
from relaybus.messages import SCHEMA_MINOR, SCHEMA_VERSION, AgentTask, ExecutionResult, ExecutionStatus
from tests.agents import sample_agents as sa
from tests.bus.foreign import reply_raw

NEWER = f"{SCHEMA_VERSION}.{SCHEMA_MINOR + 1}"


def test_this_relaybus_sends_the_bare_major_so_every_earlier_reader_accepts_it() -> None:
    assert SCHEMA_MINOR == 0
    assert schema_header_value() == SCHEMA_VERSION == 1
    assert schema_header_value(1, 3) == "1.3"
    assert encode_task(AgentTask(topic="a"), reply_to=None).headers[SCHEMA_HEADER] == 1


@pytest.mark.parametrize(
    ("value", "version"), [(1, (1, 0)), ("1", (1, 0)), (" 1.4 ", (1, 4)), (b"1.2", (1, 2))]
)
def test_versions_of_this_major_are_read(value: Any, version: tuple[int, int]) -> None:
    assert schema_version({SCHEMA_HEADER: value}) == version


@pytest.mark.parametrize("value", [2, "2.0", "0.9", "1.x", "", True, "1.2.3"])
def test_another_major_or_a_malformed_version_is_refused(value: Any) -> None:
    with pytest.raises(InvalidMessage, match="unknown schema version"):
        schema_version({SCHEMA_HEADER: value})


@pytest.mark.parametrize(
    "content_type",
    [None, "", "application/json", "application/json; charset=utf-8", 'APPLICATION/JSON;Charset="utf8"'],
)
def test_json_with_or_without_a_utf8_charset_is_accepted(content_type: str | None) -> None:
    check_content_type(content_type)


@pytest.mark.parametrize(
    ("content_type", "reason"),
    [
        ("text/plain", "is not application/json"),
        ("application/json; charset=iso-8859-1", "charset 'iso-8859-1' is not supported"),
        ("application/jsonx", "is not application/json"),
    ],
)
def test_other_content_types_and_charsets_are_refused(content_type: str, reason: str) -> None:
    with pytest.raises(InvalidMessage, match=reason):
        check_content_type(content_type)


def body(**fields: Any) -> bytes:
    return json.dumps({"id": str(uuid4()), "topic": "a.b", **fields}).encode()


def test_unknown_fields_are_refused_within_the_readers_own_minor() -> None:
    for version in (SCHEMA_VERSION, f"{SCHEMA_VERSION}.{SCHEMA_MINOR}"):
        with pytest.raises(InvalidMessage, match="promt: Extra inputs are not permitted"):
            decode(body(promt="typo"), {SCHEMA_HEADER: version}, AgentTask)


def test_a_newer_minors_unknown_fields_are_ignored_at_every_depth_and_the_rest_still_checked() -> None:
    task = decode(body(prompt="p", budget_usd=0.5), {SCHEMA_HEADER: NEWER}, AgentTask)
    assert task.prompt == "p"
    assert not hasattr(task, "budget_usd")
    result_body = json.dumps(
        {
            "task_id": str(uuid4()),
            "status": "failure",
            "cost": 1,
            "error": {"type": "E", "message": "m", "hint": "h"},
        }
    ).encode()
    result = decode(result_body, {SCHEMA_HEADER: NEWER}, ExecutionResult)
    assert result.error is not None
    assert result.error.type == "E"
    with pytest.raises(InvalidMessage, match="topic must be dot-separated"):
        decode(body(topic="a b", budget_usd=1), {SCHEMA_HEADER: NEWER}, AgentTask)


# -- a rolling upgrade across a minor, on a worker and a caller of this version ------------------------------


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    async with MemoryBus() as memory_bus:
        yield memory_bus


async def test_rolling_upgrade_a_newer_callers_task_with_a_new_field_runs_on_this_worker(
    bus: MemoryBus,
) -> None:
    replies: list[tuple[Any, ExecutionResult]] = []

    async def on(delivery: Delivery) -> None:
        replies.append(
            (delivery.headers.get(SCHEMA_HEADER), decode(delivery.body, delivery.headers, ExecutionResult))
        )
        await delivery.ack()

    await bus.declare_queue("relaybus.reply.newer", durable=False)
    await bus.consume("relaybus.reply.newer", on)
    async with AgentWorker(bus, [sa.Echo()], heartbeat_interval_s=60):
        task_id = str(uuid4())
        await bus.publish(
            OutgoingMessage(
                body=json.dumps(
                    {"id": task_id, "topic": sa.topic("echo"), "prompt": "hi", "budget_usd": 2}
                ).encode(),
                routing_key=f"task.{sa.topic('echo')}",
                message_id=task_id,
                reply_to="relaybus.reply.newer",
                headers={SCHEMA_HEADER: NEWER},
            )
        )
        await bus.join()
    [(version, result)] = replies
    assert (str(result.task_id), result.status, result.output) == (
        task_id,
        ExecutionStatus.SUCCESS,
        {"echo": "hi"},
    )
    assert version == SCHEMA_VERSION  # answered in this version's own format, which a newer reader reads


async def test_rolling_upgrade_this_callers_task_gets_a_newer_workers_result_with_a_new_field(
    bus: MemoryBus,
) -> None:
    seen: list[AgentTask] = []
    await bus.declare_queue("newer-worker", bindings=["task.#"])

    async def newer_worker(delivery: Delivery) -> None:
        task = decode(delivery.body, delivery.headers, AgentTask)  # what this caller sent: strict and valid
        seen.append(task)
        body = {"task_id": str(task.id), "status": "success", "output": "done", "cost_usd": 0.01}
        await reply_raw(bus, delivery, body, NEWER)
        await delivery.ack()

    await bus.consume("newer-worker", newer_worker)
    async with ReplyRouter(bus) as router:
        result = await router.request(AgentTask(topic="t.x", prompt="p"), timeout=30)
    assert (result.status, result.output) == (ExecutionStatus.SUCCESS, "done")
    assert seen[0].prompt == "p"
