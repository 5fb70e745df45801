"""Every wire message is encoded in one place; received bodies are checked before a handler sees them, and
refusals carry a reason for the DLQ."""

from __future__ import annotations

import json
import pickle

import pytest

from relaybus.bus.base import CANCEL_ROUTING_KEY, EXCHANGE, SCHEMA_HEADER
from relaybus.bus.codec import (
    CONTROL_MAX_BODY_BYTES,
    HEARTBEAT_ROUTING_KEY,
    PING_ROUTING_KEY,
    STOPPED_ROUTING_KEY,
    decode,
    decode_cancel,
    decode_event,
    decode_heartbeat,
    encode_cancel,
    encode_event,
    encode_heartbeat,
    encode_ping,
    encode_result,
    encode_task,
)
from relaybus.exceptions import ConfigError, InvalidMessage
from relaybus.messages import (
    SCHEMA_VERSION,
    AgentTask,
    CancelRequest,
    ExecutionResult,
    ExecutionStatus,
    WorkerHeartbeat,
)

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


# -- every other wire message: one encoder and (where it carries data) one decoder each ----------------------


def test_an_event_round_trips_its_payload_with_the_schema_header() -> None:
    msg = encode_event("review.done", {"score": 3, "notes": ["ok"]}, correlation_id="c-1")
    assert (msg.exchange, msg.routing_key, msg.correlation_id) == (EXCHANGE, "event.review.done", "c-1")
    assert msg.headers == {SCHEMA_HEADER: SCHEMA_VERSION}
    assert msg.mandatory is False  # fire-and-forget: nobody listening is not an error
    assert decode_event(msg.body, msg.headers) == {"score": 3, "notes": ["ok"]}


def test_an_event_payload_may_be_a_pydantic_model() -> None:
    task = AgentTask(topic="a")
    msg = encode_event("task.seen", ExecutionResult.success(task.id, "x"))
    assert ExecutionResult.model_validate(decode_event(msg.body, msg.headers)).task_id == task.id


def test_an_event_with_a_bad_topic_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="dot-separated words"):
        encode_event("review..done", {})


def test_an_event_without_the_schema_header_or_json_is_refused() -> None:
    with pytest.raises(InvalidMessage, match="missing header"):
        decode_event(b"{}", {})
    with pytest.raises(InvalidMessage, match="not valid JSON"):
        decode_event(b"{nope", GOOD_HEADERS)
    with pytest.raises(InvalidMessage, match="pickle"):
        decode_event(pickle.dumps({"a": 1}), GOOD_HEADERS)


def test_a_cancel_request_round_trips_on_the_cancel_key() -> None:
    task = AgentTask(topic="a")
    msg = encode_cancel(task.id, "the user pressed stop")
    assert (msg.exchange, msg.routing_key, msg.mandatory) == (EXCHANGE, CANCEL_ROUTING_KEY, False)
    assert msg.headers == {SCHEMA_HEADER: SCHEMA_VERSION}
    assert decode_cancel(msg.body, msg.headers) == CancelRequest(
        task_id=task.id, reason="the user pressed stop"
    )


def test_a_cancel_reason_is_cut_to_what_the_model_allows() -> None:
    msg = encode_cancel(AgentTask(topic="a").id, "x" * 5000)
    assert decode_cancel(msg.body, msg.headers).reason == "x" * 1000


def test_a_cancel_request_that_is_not_one_or_too_big_is_refused() -> None:
    with pytest.raises(InvalidMessage, match="invalid CancelRequest: task_id"):
        decode_cancel(b'{"task_id": "not-a-uuid"}', GOOD_HEADERS)
    huge = json.dumps({"task_id": str(AgentTask(topic="a").id), "reason": "x" * 70_000}).encode()
    with pytest.raises(
        InvalidMessage, match=f"too large: {len(huge)} bytes, the limit is {CONTROL_MAX_BODY_BYTES}"
    ):
        decode_cancel(huge, GOOD_HEADERS)


def _beat(status: str) -> WorkerHeartbeat:
    return WorkerHeartbeat.model_validate(
        {
            "worker": "h:1",
            "host": "h",
            "pid": 1,
            "agents": ["a"],
            "in_flight": 2,
            "capacity": 4,
            "status": status,
            "interval_s": 5.0,
        }
    )


@pytest.mark.parametrize(
    ("status", "routing_key"),
    [
        ("running", HEARTBEAT_ROUTING_KEY),
        ("draining", HEARTBEAT_ROUTING_KEY),
        ("stopped", STOPPED_ROUTING_KEY),
    ],
)
def test_a_heartbeat_round_trips_on_the_key_of_its_status(status: str, routing_key: str) -> None:
    beat = _beat(status)
    msg = encode_heartbeat(beat)
    assert msg.routing_key == routing_key
    assert (msg.mandatory, msg.persistent) == (False, False)  # nobody may listen; a lost beat is replaced
    assert msg.message_id == f"heartbeat-h:1-{beat.timestamp.timestamp():.3f}"
    assert decode_heartbeat(msg.body, msg.headers) == beat


def test_a_heartbeat_of_another_schema_or_with_unknown_fields_is_refused() -> None:
    msg = encode_heartbeat(_beat("running"))
    with pytest.raises(InvalidMessage, match="unknown schema version"):
        decode_heartbeat(msg.body, {SCHEMA_HEADER: 2})
    extra = json.dumps({**json.loads(msg.body), "color": "red"}).encode()
    with pytest.raises(InvalidMessage, match="invalid WorkerHeartbeat: color"):
        decode_heartbeat(extra, msg.headers)


def test_a_ping_asks_every_worker_on_the_ping_key() -> None:
    msg = encode_ping()
    assert (msg.routing_key, msg.mandatory, msg.persistent) == (PING_ROUTING_KEY, False, False)
    assert msg.headers == {SCHEMA_HEADER: SCHEMA_VERSION}
    assert decode_event(msg.body, msg.headers) == {}  # no data: a worker acts on the routing key alone
