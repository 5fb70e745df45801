"""bench/telemetry.py runs each mode on a few tasks and leaves tracing as it found it."""

from __future__ import annotations

from opentelemetry import trace

from bench import telemetry
from relaybus.telemetry import tracing


def test_every_mode_runs_and_puts_the_tracing_state_back() -> None:
    publish = tracing.publish
    for mode in telemetry.MODES:
        assert telemetry.run_mode(mode, 20, 5) > 0
        assert tracing.publish is publish
        assert not tracing.tracing_enabled()
    names = {span.name for span in telemetry.EXPORTER.get_finished_spans()}
    assert {"publish relaybus", "process relaybus.agent.bench-noop", "invoke_agent bench-noop"} <= names
    assert trace.get_tracer_provider() is not telemetry._sdk()
