"""``spans``: the OpenTelemetry SDK set up for one test, its finished spans in memory.

OpenTelemetry lets a process set its tracer provider once; the tests share one provider and exporter, set as
the global provider only for the test that asks for ``spans`` (relaybus sees no SDK in every other test).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_EXPORTER = InMemorySpanExporter()
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", _PROVIDER)
    yield _EXPORTER
    _EXPORTER.clear()


@pytest.fixture
def tracer(spans: InMemorySpanExporter) -> trace.Tracer:
    """The test's own tracer (a caller's application code), on the same provider."""
    return _PROVIDER.get_tracer("tests")
