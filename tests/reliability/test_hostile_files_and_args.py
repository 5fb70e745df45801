"""Hostile plan files and command lines: one clear error and exit code 2 (or 1), never a traceback.

Hypothesis generates plan texts (arbitrary text, YAML and JSON of the wrong shape, wrong types, cycles, bad
keys) for :func:`relaybus.orchestrator.parse_plan`, and argument lists for ``relaybus submit | worker | dlq |
run | agents`` (run in this process through ``relaybus.cli.main`` against a broker address where nothing
listens, so that even well-formed arguments end quickly with "cannot connect"). A few generated plan files go
through the real ``relaybus run`` process too.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from relaybus.cli import main
from relaybus.exceptions import PlanError
from relaybus.orchestrator import parse_plan
from relaybus.orchestrator.plan import Plan
from tests.agents.processes import REPO_ROOT

FAST = settings(
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
NOBODY = "amqp://guest:guest@127.0.0.1:1/"  # nothing listens on port 1: "cannot connect" at once

_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)
_task_fields = st.fixed_dictionaries(
    {},
    optional={
        "key": _values | st.text(max_size=20),
        "topic": _values | st.sampled_from(["a.b", "", "a..b", "#", "x" * 300]),
        "prompt": _values,
        "input": _values,
        "depends_on": _values | st.lists(st.sampled_from(["t0", "t1", "t2", "nope"]), max_size=3),
        "timeout_s": _values | st.sampled_from([0, -1, 1e30, "10"]),
        "priority": _values | st.sampled_from([-1, 10, 99]),
        "agent": _values,
        "unknown": _values,
    },
)
_plans = st.one_of(
    st.text(max_size=300),
    _values,
    st.fixed_dictionaries(
        {"name": _values | st.just("plan"), "tasks": _values | st.lists(_task_fields, max_size=4)},
        optional={"defaults": _values, "prices": _values, "extra": _values},
    ),
    st.fixed_dictionaries(  # well-formed tasks that depend on each other in a cycle
        {"name": st.just("cycle"), "tasks": st.just([])}
    ).map(
        lambda d: {
            **d,
            "tasks": [
                {"key": "t0", "topic": "a.b", "depends_on": ["t1"]},
                {"key": "t1", "topic": "a.b", "depends_on": ["t0"]},
            ],
        }
    ),
)


def _text(plan: object, fmt: str) -> str:
    if isinstance(plan, str):
        return plan
    return json.dumps(plan) if fmt == "json" else yaml.safe_dump(plan)


@settings(FAST, max_examples=400)
@given(plan=_plans, fmt=st.sampled_from(["yaml", "json"]))
def test_a_hostile_plan_text_is_a_plan_error_naming_the_file(plan: object, fmt: str) -> None:
    text = _text(plan, fmt)
    try:
        parsed = parse_plan(text, source="hostile.plan", fmt=fmt)
    except PlanError as exc:
        message = str(exc)
        assert message.startswith("hostile.plan"), message
        assert "Traceback" not in message
        assert 0 < len(message) < 2000
    else:  # generated input may be a valid plan by chance: then it must be a real one
        assert isinstance(parsed, Plan)
        assert parsed.tasks


_hostile_words = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        ["", "-", "--", "-1", "0", "nan", "inf", "1e999", "{", "[1]", '{"a": }', "x" * 500, "\x00", "é"]
    ),
)
_flags = {
    "submit": ["--topic", "--prompt", "--agent", "--mode", "--input", "--timeout", "--wait", "--bogus"],
    "worker": ["--concurrency", "--grace", "--heartbeat", "--max-delegation-depth", "--bogus"],
    "dlq list": ["--limit", "--idle", "--json", "--bogus"],
    "dlq replay": ["--id", "--all", "--body", "--limit", "--idle", "--bogus"],
    "dlq purge": ["--yes", "--limit", "--bogus"],
    "run": ["--name", "--run-id", "--timeout", "--max-in-flight", "--no-progress", "--bogus"],
    "agents": ["--json", "--bogus"],
}
_agent_specs = st.sampled_from(
    [
        "nosuchmodule:Agent",
        "tests.agents.sample_agents:NotAnAgent",
        "relaybus:NoSuchThing",
        ":",
        "a:b:c",
        "",
        "relaybus.messages:AgentTask",
        "tests.agents.sample_agents:Echo",
    ]
)


@st.composite
def _command_lines(draw: st.DrawFn) -> list[str]:
    command = draw(st.sampled_from(sorted(_flags)))
    argv = command.split()
    if command == "worker":
        argv += draw(st.lists(_agent_specs, min_size=0, max_size=2))
    if command == "run":
        argv.append(draw(st.sampled_from(["missing-plan.yaml", "", "/", "README.md"]) | st.text(max_size=10)))
    for _ in range(draw(st.integers(0, 4))):
        argv.append(draw(st.sampled_from(_flags[command])))
        if draw(st.booleans()):
            argv.append(draw(_hostile_words))
    if draw(st.booleans()):
        argv += ["--amqp-url", draw(st.sampled_from([NOBODY, "http://x", "amqp://", "amqp://u:p@:0/", "%%"]))]
    return [*argv, "--amqp-url", NOBODY] if "--amqp-url" not in argv else argv


@settings(FAST, max_examples=250)
@given(argv=_command_lines())
def test_hostile_command_lines_end_with_one_clear_error(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAYBUS_AMQP_URL", NOBODY)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(["--log-level", "ERROR", *argv])
        except SystemExit as exc:  # argparse refusing a flag or a value
            code = exc.code if isinstance(exc.code, int) else 2
    errors = err.getvalue()
    assert code in (1, 2), (argv, code, errors[-500:])
    assert "Traceback" not in errors + out.getvalue(), (argv, errors[-2000:])
    error_lines = [line for line in errors.splitlines() if "error:" in line]
    assert len(error_lines) == 1, (argv, errors[-2000:])  # one line that says what is wrong


@settings(FAST, max_examples=4)
@given(plan=_plans.filter(lambda p: not isinstance(p, str)))
def test_relaybus_run_refuses_a_hostile_plan_file_with_exit_code_2(
    plan: object, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = Path(tmp_path_factory.mktemp("plans")) / "hostile.yaml"
    path.write_text(_text(plan, "yaml"))
    done = subprocess.run(
        [sys.executable, "-m", "relaybus", "run", str(path), "--amqp-url", NOBODY],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode in (1, 2), done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.startswith("relaybus: error: "), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
