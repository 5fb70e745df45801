"""The codec at its edges: what each encoded field is, where each refusal starts, and how reasons are worded.

test_codec.py has the main cases; these pin the boundaries that mutation testing found unguarded.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from relaybus.bus.base import (
    DEAD_LETTER_QUEUE,
    DEFAULT_EXCHANGE,
    ERROR_HEADER,
    EXCHANGE,
    SCHEMA_HEADER,
    Delivery,
    OutgoingMessage,
)
from relaybus.bus.codec import DEFAULT_MAX_BODY_BYTES, decode, decode_delivery, encode_result, encode_task
from relaybus.bus.memory import MemoryBus
from relaybus.exceptions import InvalidMessage
from relaybus.messages import SCHEMA_VERSION, AgentTask, ExecutionResult

GOOD = {SCHEMA_HEADER: SCHEMA_VERSION}


def refusal(body: bytes, headers: dict[str, object] | None = None, **options: object) -> str:
    with pytest.raises(InvalidMessage) as info:
        decode(body, GOOD if headers is None else headers, AgentTask, **options)  # type: ignore[arg-type]
    return info.value.reason


# -- encoding ------------------------------------------------------------------------------------------------


def test_an_encoded_task_is_mandatory_unless_told_and_keeps_extra_headers_beside_the_schema() -> None:
    task = AgentTask(topic="code.review", prompt="p")
    plain = encode_task(task, reply_to=None)
    assert plain.mandatory is True
    assert plain.reply_to is None
    assert plain.headers == {SCHEMA_HEADER: SCHEMA_VERSION}
    assert (plain.priority, plain.exchange) == (0, EXCHANGE)
    extra = encode_task(task, reply_to="r", headers={"trace": "t-1"}, mandatory=False)
    assert extra.mandatory is False
    assert extra.headers == {SCHEMA_HEADER: SCHEMA_VERSION, "trace": "t-1"}
    assert json.loads(extra.body) == json.loads(task.model_dump_json())


def test_a_task_for_one_agent_is_routed_to_that_agent() -> None:
    task = AgentTask(topic="code.review", agent="reviewer-1")
    assert encode_task(task, reply_to=None).routing_key == "agent.reviewer-1"


def test_an_encoded_result_is_mandatory_with_its_own_message_id_and_the_schema_header() -> None:
    task = AgentTask(topic="a")
    message = encode_result(ExecutionResult.success(task.id, 1), reply_to="relaybus.reply.x")
    assert message.mandatory is True
    assert message.exchange == DEFAULT_EXCHANGE
    assert message.message_id == f"result-{task.id}"
    assert message.correlation_id == str(task.id)
    assert message.headers == {SCHEMA_HEADER: SCHEMA_VERSION}
    assert message.reply_to is None


# -- where each refusal starts -------------------------------------------------------------------------------


def test_the_size_limit_is_inclusive_and_defaults_to_one_mebibyte() -> None:
    assert DEFAULT_MAX_BODY_BYTES == 1024 * 1024
    body = AgentTask(topic="a").model_dump_json().encode()
    padded = body[:-1] + b" " * (DEFAULT_MAX_BODY_BYTES - len(body)) + b"}"  # JSON allows the spaces
    assert len(padded) == DEFAULT_MAX_BODY_BYTES
    assert decode(padded, GOOD, AgentTask).topic == "a"
    assert refusal(padded + b" ") == (
        f"body too large: {DEFAULT_MAX_BODY_BYTES + 1} bytes, the limit is {DEFAULT_MAX_BODY_BYTES}"
    )
    assert refusal(body, max_bytes=len(body) - 1).startswith(f"body too large: {len(body)} bytes")


@pytest.mark.parametrize("start", [b"(", b"]", b"}", b"c"])
def test_old_pickle_protocols_are_told_by_their_first_byte_and_the_final_stop(start: bytes) -> None:
    assert refusal(start + b"anything.") == "body looks like pickle data; relaybus never unpickles, send JSON"


@pytest.mark.parametrize(
    "body",
    [
        b'"a sentence."',  # JSON that ends with a full stop but does not start like pickle
        b"(no stop at the end",
        b"[1, 2].",  # '[' is not a pickle opcode that starts a protocol 0-1 stream
    ],
)
def test_only_both_marks_together_make_a_body_look_like_pickle(body: bytes) -> None:
    assert "pickle" not in refusal(body)


def test_json_content_type_may_be_absent_empty_or_exact() -> None:
    body = AgentTask(topic="a").model_dump_json().encode()
    for content_type in (None, "", "application/json"):
        assert decode(body, GOOD, AgentTask, content_type=content_type).topic == "a"
    assert decode(body, GOOD, AgentTask).topic == "a"  # the default is application/json
    assert refusal(body, content_type="text/plain") == "content_type 'text/plain' is not application/json"


@pytest.mark.parametrize("version", [SCHEMA_VERSION, str(SCHEMA_VERSION), f" {SCHEMA_VERSION} ", b"1"])
def test_the_schema_version_may_come_as_int_text_or_bytes(version: object) -> None:
    body = AgentTask(topic="a").model_dump_json().encode()
    assert decode(body, {SCHEMA_HEADER: version}, AgentTask).topic == "a"  # type: ignore[dict-item]


def test_a_schema_header_of_undecodable_bytes_is_refused_not_raised() -> None:
    assert refusal(b"{}", {SCHEMA_HEADER: b"\xff1"}).startswith("unknown schema version '\ufffd1'")


def test_a_missing_or_unknown_schema_version_is_refused_with_the_fix() -> None:
    assert refusal(b"{}", {}) == f"missing header {SCHEMA_HEADER!r}; set it to {SCHEMA_VERSION}"
    assert refusal(b"{}", {SCHEMA_HEADER: b"7"}) == (
        f"unknown schema version '7' in {SCHEMA_HEADER!r}; this relaybus speaks {SCHEMA_VERSION}"
    )
    shown = refusal(b"{}", {SCHEMA_HEADER: "9" * 100})
    assert f"'{'9' * 20}'" in shown  # the header is quoted, cut to 20 characters
    assert "9" * 21 not in shown


# -- how reasons are worded ----------------------------------------------------------------------------------


def test_a_bad_byte_is_reported_with_its_offset() -> None:
    assert refusal(b'{"topic": "\xff"}') == "body is not UTF-8: invalid byte at offset 11"


def test_broken_json_is_reported_as_such_with_the_parser_message() -> None:
    reason = refusal(b'{"topic": ')
    assert reason.startswith("body is not valid JSON: body: ")  # the location of a whole-body error is "body"
    assert "EOF" in reason


def fields_named(reason: str, tail: str = "") -> list[str]:
    """The field of each "field: message" part of a validation reason."""
    assert reason.startswith("invalid AgentTask: ")
    assert reason.endswith(tail)
    parts = reason.removeprefix("invalid AgentTask: ").removesuffix(tail).split("; ")
    return [part.split(": ", 1)[0] for part in parts]


def test_a_validation_reason_names_three_fields_and_counts_the_others() -> None:
    body = json.dumps({"topic": 1, "prompt": 2, "priority": "high", "agent": 3, "mode": 4}).encode()
    # in the model's field order
    assert fields_named(refusal(body), " (+2 more)") == ["topic", "prompt", "agent"]


def test_one_error_beyond_three_is_counted_too() -> None:
    body = json.dumps({"topic": 1, "prompt": 2, "agent": 3, "mode": 4}).encode()
    assert fields_named(refusal(body), " (+1 more)") == ["topic", "prompt", "agent"]


def test_a_validation_reason_of_three_errors_or_fewer_has_no_tail() -> None:
    reason = refusal(json.dumps({"topic": 1, "prompt": 2, "priority": "high"}).encode())
    assert "more)" not in reason
    assert fields_named(reason) == ["topic", "prompt", "priority"]


def test_a_nested_field_is_named_by_its_dotted_path() -> None:
    reason = refusal(json.dumps({"topic": "a", "metadata": {"k": 1}}).encode())
    assert reason.startswith("invalid AgentTask: metadata.k: ")


def test_a_long_reason_is_cut_to_500_characters_ending_in_an_ellipsis() -> None:
    fields = {f"unknown_{i}_" + "x" * 300: 1 for i in range(3)}
    reason = refusal(json.dumps({"topic": "a", **fields}).encode())
    assert len(reason) == 500
    assert reason.endswith("...")
    assert reason.startswith("invalid AgentTask: unknown_0_xxx")


def test_a_reason_of_exactly_500_characters_is_kept_whole() -> None:
    prefix = "invalid AgentTask: "
    tail = ": Extra inputs are not permitted"
    name = "k" * (500 - len(prefix) - len(tail))
    reason = refusal(json.dumps({"topic": "a", name: 1}).encode())
    assert reason == prefix + name + tail
    assert len(reason) == 500


# -- decode_delivery -----------------------------------------------------------------------------------------


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    async with MemoryBus() as memory_bus:
        yield memory_bus


async def deliver(bus: MemoryBus, message: OutgoingMessage, **options: int) -> AgentTask | None:
    """Publish ``message`` to a queue and run decode_delivery on what arrives; the value it returned."""
    await bus.declare_queue("in")
    got: list[AgentTask | None] = []

    async def handler(delivery: Delivery) -> None:
        task = await decode_delivery(delivery, AgentTask, **options)
        if task is not None:
            await delivery.ack()
        got.append(task)

    await bus.consume("in", handler)
    await bus.publish(message)
    await bus.join()
    [value] = got
    return value


async def test_decode_delivery_returns_the_model_and_leaves_the_delivery_to_the_caller(
    bus: MemoryBus,
) -> None:
    task = AgentTask(topic="a", prompt="hi")
    message = encode_task(task, reply_to=None)
    sent = OutgoingMessage(
        body=message.body, routing_key="in", exchange=DEFAULT_EXCHANGE, headers=message.headers
    )
    assert await deliver(bus, sent) == task
    assert bus.stats(DEAD_LETTER_QUEUE).ready == 0


async def test_decode_delivery_dead_letters_a_refused_body_with_the_reason(bus: MemoryBus) -> None:
    sent = OutgoingMessage(
        body=b'{"topic": "a"}', routing_key="in", exchange=DEFAULT_EXCHANGE, message_id="m-1"
    )  # no schema header
    assert await deliver(bus, sent) is None
    await _assert_dead_lettered(bus, "m-1", f"missing header {SCHEMA_HEADER!r}")


async def test_decode_delivery_applies_its_size_limit(bus: MemoryBus) -> None:
    body = AgentTask(topic="a").model_dump_json().encode()
    sent = OutgoingMessage(
        body=body, routing_key="in", exchange=DEFAULT_EXCHANGE, headers=GOOD, message_id="m-2"
    )
    assert await deliver(bus, sent, max_bytes=10) is None
    await _assert_dead_lettered(bus, "m-2", "body too large")


async def test_decode_delivery_checks_the_content_type(bus: MemoryBus) -> None:
    body = AgentTask(topic="a").model_dump_json().encode()
    sent = OutgoingMessage(
        body=body,
        routing_key="in",
        exchange=DEFAULT_EXCHANGE,
        headers=GOOD,
        message_id="m-3",
        content_type="text/x",
    )
    assert await deliver(bus, sent) is None
    await _assert_dead_lettered(bus, "m-3", "content_type 'text/x'")


async def _assert_dead_lettered(bus: MemoryBus, message_id: str, reason: str) -> None:
    dead: list[Delivery] = []

    async def take(delivery: Delivery) -> None:
        dead.append(delivery)
        await delivery.ack()

    await bus.consume(DEAD_LETTER_QUEUE, take)
    await bus.join()
    [letter] = dead
    assert letter.message_id == message_id
    assert str(letter.headers[ERROR_HEADER]).startswith(reason)
