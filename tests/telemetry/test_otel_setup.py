"""The CLI's SDK set-up: only what ``OTEL_*`` asks for, a clear error for what it can't make, and the spans
of a command on the console exporter (stderr) or, through the real ``relaybus`` command, over OTLP/HTTP."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.util._once import Once

from relaybus.exceptions import ConfigError
from relaybus.telemetry.otel_setup import configure_tracing, exporters_asked

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, []),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, Console"}, ["otlp", "console"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, []),
    ],
)
def test_tracing_is_set_up_only_when_otel_variables_ask_for_it(
    env: dict[str, str], expected: list[str]
) -> None:
    assert exporters_asked(env) == expected


def test_an_exporter_relaybus_cannot_make_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"OTEL_TRACES_EXPORTER names zipkin.*use otlp, console or none"):
        exporters_asked({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_nothing_asked_sets_nothing_up() -> None:
    assert configure_tracing({}, service="relaybus-test") is None


@pytest.fixture
def fresh_global_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process may set its tracer provider once: let this test set one, and put the old state back."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())


def test_the_console_exporter_writes_the_commands_spans_to_stderr_with_the_service_name(
    fresh_global_provider: None,
) -> None:
    err = io.StringIO()
    shutdown = configure_tracing({"OTEL_TRACES_EXPORTER": "console"}, service="relaybus-submit", stderr=err)
    assert shutdown is not None
    with trace.get_tracer_provider().get_tracer("t").start_as_current_span("submit task.x"):
        pass
    shutdown()
    exported = json.loads(err.getvalue())
    assert exported["name"] == "submit task.x"
    assert exported["resource"]["attributes"]["service.name"] == "relaybus-submit"


def test_otel_service_name_wins_over_the_default(fresh_global_provider: None) -> None:
    err = io.StringIO()
    env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "reviewers"}
    shutdown = configure_tracing(env, service="relaybus-worker", stderr=err)
    assert shutdown is not None
    with trace.get_tracer_provider().get_tracer("t").start_as_current_span("x"):
        pass
    shutdown()
    assert json.loads(err.getvalue())["resource"]["attributes"]["service.name"] == "reviewers"


def relaybus(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relaybus", *args, "--amqp-url", "memory://"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_command_line_exports_its_spans_and_a_wrong_exporter_is_a_usage_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_TRACES_EXPORTER"] = "console"
    plan = tmp_path / "lonely.yaml"
    plan.write_text("name: lonely\ntasks:\n  - {key: first, topic: no.one}\n")
    proc = relaybus("run", str(plan), "--no-progress", env=env)
    assert proc.returncode == 1, proc.stderr  # the task has no agent: REJECTED
    assert '"name": "run lonely"' in proc.stderr
    assert '"name": "publish relaybus"' in proc.stderr
    env["OTEL_TRACES_EXPORTER"] = "zipkin"
    bad = relaybus("agents", env=env)
    assert bad.returncode == 2
    assert "OTEL_TRACES_EXPORTER names zipkin" in bad.stderr
