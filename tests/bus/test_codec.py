"""Received bodies are checked before a handler sees them; refusals carry a reason for the DLQ."""

from __future__ import annotations

import json
import pickle

import pytest

from relaybus.bus.base import EXCHANGE, SCHEMA_HEADER
from relaybus.bus.codec import decode, encode_result, encode_task
from relaybus.exceptions import InvalidMessage
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus

GOOD_HEADERS = {SCHEMA_HEADER: 1}


def test_encoded_task_carries_ids_headers_and_routing() -> None:
    task = AgentTask(topic="code.review", prompt="p", priority=4)
    msg = encode_task(task, reply_to="relaybus.reply.x")
    assert msg.exchange == EXCHANGE
    assert msg.routing_key == "task.code.review"
    assert msg.message_id == str(task.id) == msg.correlation_id
    assert msg.reply_to == "relaybus.reply.x"
    assert msg.headers[SCHEMA_HEADER] == 1
    assert msg.priority == 4
    assert decode(msg.body, msg.headers, AgentTask) == task


def test_encoded_result_goes_to_reply_queue_by_default_exchange() -> None:
    task = AgentTask(topic="a")
    msg = encode_result(ExecutionResult.success(task.id, {"x": 1}), reply_to="q1")
    assert (msg.exchange, msg.routing_key, msg.correlation_id) == ("", "q1", str(task.id))
    assert decode(msg.body, msg.headers, ExecutionResult).output == {"x": 1}


@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        (pickle.dumps({"topic": "a"}), GOOD_HEADERS, "pickle"),
        (pickle.dumps(["a"], protocol=0), GOOD_HEADERS, "pickle"),
        (b"\xff\xfe{}", GOOD_HEADERS, "not UTF-8"),
        (b'{"topic": "a"', GOOD_HEADERS, "not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, GOOD_HEADERS, "not valid JSON"),
        (b'{"topic": 5}', GOOD_HEADERS, "invalid AgentTask: topic"),
        (b"[1, 2]", GOOD_HEADERS, "invalid AgentTask"),
        (b'{"prompt": "x"}', GOOD_HEADERS, "topic: Field required"),
        (b'{"topic": "a"}', {}, "missing header 'relaybus-schema'"),
        (b'{"topic": "a"}', {SCHEMA_HEADER: 2}, "unknown schema version"),
        (b'{"topic": "a"}', {SCHEMA_HEADER: "x" * 500}, "unknown schema version"),
        (json.dumps({"topic": "a", "prompt": "x" * 2_000_000}).encode(), GOOD_HEADERS, "too large"),
    ],
)
def test_hostile_bodies_are_refused_with_a_reason(
    body: bytes, headers: dict[str, object], reason: str
) -> None:
    with pytest.raises(InvalidMessage) as info:
        decode(body, headers, AgentTask)  # type: ignore[arg-type]
    assert reason in info.value.reason
    assert len(info.value.reason) <= 500


def test_wrong_content_type_is_refused() -> None:
    with pytest.raises(InvalidMessage, match="content_type"):
        decode(b'{"topic": "a"}', GOOD_HEADERS, AgentTask, content_type="application/x-python-pickle")


def test_size_limit_is_configurable() -> None:
    body = AgentTask(topic="a", prompt="x" * 100).model_dump_json().encode()
    with pytest.raises(InvalidMessage, match="too large"):
        decode(body, GOOD_HEADERS, AgentTask, max_bytes=50)
    assert decode(body, GOOD_HEADERS, AgentTask, max_bytes=len(body)).prompt == "x" * 100


def test_result_statuses_decode() -> None:
    task = AgentTask(topic="a")
    for status in ExecutionStatus:
        result = (
            ExecutionResult.success(task.id)
            if status is ExecutionStatus.SUCCESS
            else ExecutionResult.failed(task.id, status, "E", "m")
        )
        msg = encode_result(result, reply_to="q")
        assert decode(msg.body, msg.headers, ExecutionResult).status is status
