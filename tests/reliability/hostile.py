"""Hypothesis strategies for hostile messages: what a broken or malicious publisher may put on an agent queue.

Every message drawn here must be refused by a worker: its body is not a valid task, or its schema header is
wrong, or it is a valid task that does not carry its own id (the AMQP message id is always a tracking id the
test chooses, never the task's). :func:`expected_reason` says what the ``relaybus-error`` header must start
with, computed by the reference decoder (:func:`relaybus.bus.codec.decode`).
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from relaybus.bus.base import SCHEMA_HEADER
from relaybus.bus.codec import DEFAULT_MAX_BODY_BYTES, decode
from relaybus.exceptions import InvalidMessage
from relaybus.messages import AgentTask

HUGE = DEFAULT_MAX_BODY_BYTES + 1024


@dataclass(frozen=True)
class HostileMessage:
    kind: str
    body: bytes
    headers: dict[str, Any]  # raw AMQP field values: bytes, tables and arrays too
    content_type: str | None


def _task(**override: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": "3f2b8c1e-9d4a-4b7e-8f6a-1c2d3e4f5a6b",
        "topic": "hostile.t",
        "prompt": "p",
    }
    fields.update(override)
    return fields


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_field_names = st.sampled_from(
    [
        "id",
        "topic",
        "prompt",
        "input",
        "agent",
        "mode",
        "depends_on",
        "timeout_s",
        "priority",
        "metadata",
        "created_at",
        "extra",
        "",
    ]
)


_KINDS = (
    "truncated",
    "wrong_types",
    "deep",
    "pickle",
    "invalid_utf8",
    "missing_id",
    "random_bytes",
    "not_an_object",
    "extra_fields",
)


@st.composite
def _bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    # "huge" is rarer: each one is over 1 MiB on the wire.
    kind = draw(st.sampled_from([*_KINDS, *_KINDS, "huge"]))
    if kind == "truncated":
        whole = json.dumps(_task(prompt=draw(st.text(max_size=50)))).encode()
        return kind, whole[: draw(st.integers(0, len(whole) - 1))]
    if kind == "wrong_types":
        name = draw(
            st.sampled_from(["id", "topic", "prompt", "input", "timeout_s", "priority", "depends_on"])
        )
        value = draw(_json_values.filter(lambda v: not isinstance(v, str) or name in ("id", "input")))
        return kind, json.dumps(_task(**{name: value})).encode()
    if kind == "huge":
        return kind, b'{"topic": "t", "prompt": "' + b"x" * draw(st.sampled_from([HUGE, 2 * HUGE])) + b'"}'
    if kind == "deep":
        depth = draw(st.integers(200, 20_000))
        opener, closer = draw(st.sampled_from([('{"a":', "}"), ("[", "]")]))
        return kind, ('{"topic": "t", "input": ' + opener * depth + "1" + closer * depth + "}").encode()
    if kind == "pickle":
        value = draw(_json_values)
        return kind, pickle.dumps(value, protocol=draw(st.integers(0, pickle.HIGHEST_PROTOCOL)))
    if kind == "invalid_utf8":
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]))
        return kind, b'{"topic": "t", "prompt": "' + bad + b'"}'
    if kind == "missing_id":
        fields = _task(prompt=draw(st.text(max_size=30)))
        del fields["id"]
        return kind, json.dumps(fields).encode()
    if kind == "random_bytes":
        return kind, draw(st.binary(max_size=200))
    if kind == "not_an_object":
        return kind, json.dumps(draw(_json_values.filter(lambda v: not isinstance(v, dict)))).encode()
    extra = draw(st.dictionaries(_field_names, _json_values, min_size=1, max_size=3))
    return kind, json.dumps({**_task(), **{f"x-{k}": v for k, v in extra.items()}}).encode()


_header_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    # Single-precision, finite: RabbitMQ 3.10 itself fails (INTERNAL_ERROR, closing the publisher's
    # connection) on a NaN or infinite float header sent to a quorum queue; such a message never arrives.
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=40),
    st.binary(max_size=40).map(bytearray),  # a byte array ("x") field
    st.lists(st.integers(0, 10) | st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(min_size=1, max_size=5), st.integers(0, 10) | st.text(max_size=5), max_size=3),
)
_schema = st.one_of(
    st.just(1),  # mostly right, so that the body is what gets refused
    st.just(1),
    st.just(1),
    st.just("1"),
    st.just(None),
    st.integers(2, 99),
    st.text(max_size=5),
    st.binary(max_size=4).map(bytearray),
)


@st.composite
def hostile_messages(draw: st.DrawFn) -> HostileMessage:
    kind, body = draw(_bodies())
    headers: dict[str, Any] = draw(
        st.dictionaries(
            # Not the broker's own x-delivery-count or x-death: RabbitMQ 3.10 fails (INTERNAL_ERROR) when a
            # publisher sends them with other types than it writes itself.
            st.sampled_from(
                [
                    "relaybus-deadline",
                    "relaybus-delegation",
                    "traceparent",
                    "relaybus-error",
                    "relaybus-original-queue",
                ]
            )
            | st.text("abcyz-_.", min_size=1, max_size=20),
            _header_values,
            max_size=4,
        )
    )
    schema = draw(_schema)
    if schema is None:
        headers.pop(SCHEMA_HEADER, None)
    else:
        headers[SCHEMA_HEADER] = schema
    content_type = draw(
        st.sampled_from(["application/json", None, "application/python-pickle", "text/plain"])
    )
    return HostileMessage(kind, body, headers, content_type)


def generate(count: int) -> list[HostileMessage]:
    """``count`` hostile messages, the same ones on every run (derandomized)."""
    drawn: list[HostileMessage] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(hostile_messages())
    def collect(message: HostileMessage) -> None:
        drawn.append(message)

    collect()
    return drawn


def _plain(value: Any) -> Any:
    return bytes(value).decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else value


def expected_reason(message: HostileMessage) -> str:
    """The start of the reason a worker must give for refusing ``message``."""
    headers = {k: _plain(v) for k, v in message.headers.items() if k == SCHEMA_HEADER}
    try:
        decode(message.body, headers, AgentTask, content_type=message.content_type)
    except InvalidMessage as exc:
        return exc.reason
    if b'"id"' not in message.body:
        return "invalid AgentTask: id: field required"
    return "message_id "  # a valid task under another id than its message's
