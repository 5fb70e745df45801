"""W3C trace context (``traceparent`` / ``tracestate``) in relaybus message headers.

The headers are written and read with OpenTelemetry's global propagator (W3C trace context and baggage by
default; ``OTEL_PROPAGATORS`` may change it), so a caller instrumented with OpenTelemetry continues its trace
through the bus. Without a configured SDK no span records anything, but the trace context still travels: a
message published outside any trace starts one of its own (random ids, see :func:`new_trace_context`), and a
worker handles a message inside the trace the message carries, so every message that follows from it
(results, delegated tasks, cancels, events) carries the same trace id.

Used by :mod:`relaybus.telemetry.tracing` on every publish; :func:`trace_headers` is there for any code
that builds messages itself (e.g. an encoder in :mod:`relaybus.bus.codec`).

Cost: while the global propagator is the default W3C one (``traceparent``, ``tracestate``, ``baggage``)
and no baggage is set, the headers are written and parsed here directly, as the W3C format says, which is
several times cheaper than going through the propagator API (see ``bench/telemetry.py``); any other
propagator, or baggage, goes through OpenTelemetry's ``inject`` / ``extract``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import baggage, trace
from opentelemetry.context import Context, get_current
from opentelemetry.propagate import extract, get_global_textmap, inject
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

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
_W3C_FIELDS = frozenset({TRACEPARENT_HEADER, TRACESTATE_HEADER, "baggage"})
# Ids must be unique, not secret: the SDK's own id generator uses ``random`` too.
_random = random.Random()
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_BAGGAGE_KEY = getattr(baggage, "_BAGGAGE_KEY", None)
_w3c_checked: list[Any] = [None, False]  # the last global propagator seen, and whether it is W3C-only


def _w3c() -> bool:
    """True while the global propagator writes only the W3C headers (the default)."""
    propagator = get_global_textmap()
    if _w3c_checked[0] is not propagator:
        _w3c_checked[0] = propagator
        _w3c_checked[1] = set(propagator.fields) <= _W3C_FIELDS
    return bool(_w3c_checked[1])


def _has_baggage(context: Context | None) -> bool:
    if _BAGGAGE_KEY is None:
        return bool(baggage.get_all(context))
    return bool((context if context is not None else get_current()).get(_BAGGAGE_KEY))


def _new_ids() -> tuple[int, int]:
    return _random.getrandbits(128) or 1, _random.getrandbits(64) or 1


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
    trace_id, span_id = _new_ids()
    span_context = SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return trace.set_span_in_context(NonRecordingSpan(span_context), parent or Context())


def context_from_headers(headers: Mapping[str, Any], parent: Context | None = None) -> Context:
    """The trace context carried by a message's headers (``parent``, unchanged, when there is none or it is
    malformed)."""
    parent = parent if parent is not None else Context()
    if not _w3c() or "baggage" in headers:
        return extract(headers, context=parent, getter=_GETTER)
    values = _GETTER.get(headers, TRACEPARENT_HEADER)
    found = _TRACEPARENT.fullmatch(values[0]) if values else None
    if found is None:
        return parent
    version, trace_id, span_id, flags, rest = found.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return parent
    state = _GETTER.get(headers, TRACESTATE_HEADER)
    span_context = SpanContext(
        int(trace_id, 16),
        int(span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(int(flags, 16)),
        trace_state=TraceState.from_header(state) if state else None,
    )
    if not span_context.is_valid:
        return parent
    return trace.set_span_in_context(NonRecordingSpan(span_context), parent)


def has_trace(context: Context | None = None) -> bool:
    """True when ``context`` (default: the current one) is inside a trace (a valid span context)."""
    return trace.get_current_span(context).get_span_context().is_valid


def trace_headers(context: Context | None = None) -> dict[str, str]:
    """The ``traceparent`` (and ``tracestate``) of ``context``, default the current one; a new trace's when
    it is inside none, so that a message always carries one."""
    if _w3c() and not _has_baggage(context):
        span_context = trace.get_current_span(context).get_span_context()
        if not span_context.is_valid:
            trace_id, span_id = _new_ids()
            return {TRACEPARENT_HEADER: f"00-{trace_id:032x}-{span_id:016x}-01"}
        headers = {
            TRACEPARENT_HEADER: f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
            f"{span_context.trace_flags:02x}"
        }
        if span_context.trace_state:
            headers[TRACESTATE_HEADER] = span_context.trace_state.to_header()
        return headers
    if not has_trace(context):
        context = new_trace_context(context)
    carrier: dict[str, str] = {}
    inject(carrier, context=context)
    return carrier


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
