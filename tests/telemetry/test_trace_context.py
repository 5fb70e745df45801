"""W3C trace context in message headers: written from the current span, read back from AMQP headers."""

from __future__ import annotations

import re

from opentelemetry import context as otel_context
from opentelemetry import trace

from relaybus.telemetry.trace_context import (
    add_trace_ids,
    context_from_headers,
    current_trace_id,
    trace_headers,
    trace_id_of,
)

CARRIED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01")


def test_outside_any_trace_each_call_starts_a_new_sampled_trace() -> None:
    first, second = trace_headers(), trace_headers()
    assert set(first) == {"traceparent"}
    one, two = TRACEPARENT.fullmatch(first["traceparent"]), TRACEPARENT.fullmatch(second["traceparent"])
    assert one is not None
    assert two is not None
    assert one.group(1) != two.group(1)
    assert "0" * 32 not in (one.group(1), two.group(1))


def test_inside_a_carried_trace_the_headers_continue_it_with_its_tracestate() -> None:
    carried = context_from_headers({"traceparent": CARRIED.encode(), "tracestate": b"vendor=1"})
    token = otel_context.attach(carried)
    try:
        assert trace_headers() == {"traceparent": CARRIED, "tracestate": "vendor=1"}
        assert current_trace_id() == "0af7651916cd43dd8448eb211c80319c"
        fields: dict[str, object] = {"event": "x"}
        add_trace_ids(fields)
        assert fields == {
            "event": "x",
            "trace_id": "0af7651916cd43dd8448eb211c80319c",
            "span_id": "b7ad6b7169203331",
        }
    finally:
        otel_context.detach(token)
    assert current_trace_id() is None


def test_headers_without_or_with_a_malformed_traceparent_carry_no_trace() -> None:
    assert trace_id_of({}) is None
    assert trace_id_of({"traceparent": "00-not-a-trace-01"}) is None
    assert trace_id_of({"traceparent": "00-" + "0" * 32 + "-b7ad6b7169203331-01"}) is None
    assert trace_id_of([("traceparent", CARRIED)]) == "0af7651916cd43dd8448eb211c80319c"
    assert not trace.get_current_span(context_from_headers({"other": 1})).get_span_context().is_valid


def test_log_fields_outside_a_trace_get_no_ids() -> None:
    fields: dict[str, object] = {"event": "x"}
    add_trace_ids(fields)
    assert fields == {"event": "x"}
