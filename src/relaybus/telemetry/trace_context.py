"""W3C trace context (``traceparent`` / ``tracestate``) in relaybus message headers.

The headers are written and read with OpenTelemetry's global propagator (W3C trace context and baggage by
default; ``OTEL_PROPAGATORS`` may change it), so a caller instrumented with OpenTelemetry continues its trace
through the bus. Without a configured SDK no span records anything, but the trace context still travels: a
message published outside any trace starts one of its own (random ids, see :func:`new_trace_context`), and a
worker handles a message inside the trace the message carries, so every message that follows from it
(results, delegated tasks, cancels, events) carries the same trace id.

Used by :mod:`relaybus.telemetry.tracing` on every publish; :func:`trace_headers` is there for any code
that builds messages itself (e.g. an encoder in :mod:`relaybus.bus.codec`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagate import extract, inject
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

__all__ = [
    "TRACEPARENT_HEADER",
    "TRACESTATE_HEADER",
    "add_trace_ids",
    "context_from_headers",
    "current_trace_id",
    "format_span_id",
    "format_trace_id",
    "new_trace_context",
    "trace_headers",
]

TRACEPARENT_HEADER = "traceparent"
TRACESTATE_HEADER = "tracestate"
_TRACE_HEADERS = (TRACEPARENT_HEADER, TRACESTATE_HEADER)
_random = random.SystemRandom()


class _HeaderGetter(Getter[Mapping[str, Any]]):
    """Reads AMQP headers, whose string values may arrive as bytes."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None:
            return None
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        return [str(value)]

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return list(carrier)


_GETTER = _HeaderGetter()


def format_trace_id(trace_id: int) -> str:
    return format(trace_id, "032x")


def format_span_id(span_id: int) -> str:
    return format(span_id, "016x")


def new_trace_context(parent: Context | None = None) -> Context:
    """``parent`` (default: an empty context) with a new, sampled trace as its current span: what a message
    published outside any trace is sent in when no SDK makes spans (the W3C ids are random, never zero)."""
    span_context = SpanContext(
        trace_id=_random.getrandbits(128) or 1,
        span_id=_random.getrandbits(64) or 1,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(NonRecordingSpan(span_context), parent or Context())


def context_from_headers(headers: Mapping[str, Any], parent: Context | None = None) -> Context:
    """The trace context carried by a message's headers (``parent``, unchanged, when there is none)."""
    return extract(headers, context=parent or Context(), getter=_GETTER)


def has_trace(context: Context | None = None) -> bool:
    """True when ``context`` (default: the current one) is inside a trace (a valid span context)."""
    return trace.get_current_span(context).get_span_context().is_valid


def trace_headers(context: Context | None = None) -> dict[str, str]:
    """The ``traceparent`` (and ``tracestate``) of ``context``, default the current one; a new trace's when
    it is inside none, so that a message always carries one."""
    if not has_trace(context):
        context = new_trace_context(context)
    carrier: dict[str, str] = {}
    inject(carrier, context=context)
    return carrier


def replace_trace_headers(headers: MutableMapping[str, Any], context: Context) -> None:
    """Put ``context``'s trace headers into ``headers`` in place of any it had."""
    for name in _TRACE_HEADERS:
        headers.pop(name, None)
    headers.update(trace_headers(context))


def current_trace_id(context: Context | None = None) -> str | None:
    """The current (or ``context``'s) trace id as 32 hex digits, None outside any trace."""
    span_context = trace.get_current_span(context).get_span_context()
    return format_trace_id(span_context.trace_id) if span_context.is_valid else None


def add_trace_ids(fields: dict[str, Any]) -> None:
    """Add the current span's ``trace_id`` and ``span_id`` to a log event's ``fields`` (inside a trace)."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        fields.setdefault("trace_id", format_trace_id(span_context.trace_id))
        fields.setdefault("span_id", format_span_id(span_context.span_id))


def trace_id_of(headers: Iterable[tuple[str, Any]] | Mapping[str, Any]) -> str | None:
    """The trace id a message's headers carry, None if they carry none (or a malformed one)."""
    mapping = dict(headers.items() if isinstance(headers, Mapping) else headers)
    return current_trace_id(context_from_headers(mapping))
