"""relaybus.log: quiet as a library, JSON or console lines with the bound fields once configured.

Each case runs in a child process: logging set-up is process-wide, and these tests must see it from scratch.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# A worker on a MemoryBus runs a success, a failure and a timeout: DEBUG, WARNING and INFO events all happen.
RUN_TASKS = """
import asyncio
from relaybus.messages import AgentTask
from relaybus.testing.agents import AgentTestHarness
from tests.agents import sample_agents as sa

async def main():
    async with AgentTestHarness([sa.Echo(), sa.Failing()], worker_id="host:42") as h:
        await h.run(AgentTask(topic=sa.topic("echo"), prompt="hi"))
        await h.run(AgentTask(topic=sa.topic("echo"), prompt="again"))
        await h.run(AgentTask(topic=sa.topic("fail"), prompt="x"))
        await h.run(AgentTask(topic=sa.topic("echo"), input={"sleep_s": 5}, timeout_s=0.05))

asyncio.run(main())
"""


def run(setup: str) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(setup) + RUN_TASKS
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_a_library_user_who_configured_nothing_sees_no_output_at_all() -> None:
    proc = run("")
    assert proc.stdout == ""
    assert proc.stderr == ""


def test_an_application_that_configures_stdlib_logging_gets_relaybus_records_with_readable_messages() -> None:
    proc = run("""
        import logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s|%(message)s")
    """)
    lines = proc.stdout.splitlines()
    assert proc.stderr == ""
    failed = [line for line in lines if "|task_failed " in line]
    assert len(failed) == 1
    assert failed[0].startswith("relaybus.worker|task_failed ")
    assert "agent=failing" in failed[0]
    assert "worker=host:42" in failed[0]
    assert not any("task_started" in line for line in lines)  # DEBUG stays below the application's INFO


def json_lines(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines()]


def test_after_configure_logging_json_every_line_on_stderr_is_json_with_the_bound_fields() -> None:
    proc = run("from relaybus.log import configure_logging\nconfigure_logging(level='INFO', json=True)\n")
    assert proc.stdout == ""
    events = json_lines(proc.stderr)
    assert {"worker_started", "task_failed", "task_done", "worker_stopped"} <= {e["event"] for e in events}
    failed = next(e for e in events if e["event"] == "task_failed")
    assert failed["agent"] == sa_name("failing")
    assert failed["worker"] == "host:42"
    assert isinstance(failed["task_id"], str)
    assert failed["level"] == "warning"
    assert "timestamp" in failed
    done = {e["status"]: e for e in events if e["event"] == "task_done"}
    assert set(done) == {"success", "failure", "timeout"}  # one success of two: the other is sampled out
    assert done["failure"]["agent"] == sa_name("failing")
    assert isinstance(done["failure"]["duration_ms"], float)
    assert not any(e["level"] == "debug" for e in events)


def test_each_tasks_lines_carry_its_trace_id_and_span_id_and_lines_outside_a_task_none() -> None:
    proc = run("from relaybus.log import configure_logging\nconfigure_logging(level='INFO', json=True)\n")
    events = json_lines(proc.stderr)
    by_task: dict[object, set[object]] = {}
    for event in events:
        if "task_id" in event:
            assert re.fullmatch(r"[0-9a-f]{32}", str(event["trace_id"])), event
            assert re.fullmatch(r"[0-9a-f]{16}", str(event["span_id"])), event
            by_task.setdefault(event["task_id"], set()).add(event["trace_id"])
    assert all(len(traces) == 1 for traces in by_task.values())  # a task's lines: one trace
    assert len({next(iter(t)) for t in by_task.values()}) == len(
        by_task
    )  # each task outside a trace: its own
    started = next(e for e in events if e["event"] == "worker_started")
    assert "trace_id" not in started


def test_at_debug_every_task_done_is_written_and_successes_after_the_first_are_debug() -> None:
    proc = run("from relaybus.log import configure_logging\nconfigure_logging(level='DEBUG', json=True)\n")
    done = [e for e in json_lines(proc.stderr) if e["event"] == "task_done"]
    assert [(e["status"], e["level"]) for e in done] == [
        ("success", "info"),
        ("success", "debug"),
        ("failure", "info"),
        ("timeout", "info"),
    ]


def test_console_format_writes_to_stderr_with_the_event_and_fields() -> None:
    proc = run("from relaybus.log import configure_logging\nconfigure_logging(level='INFO', json=False)\n")
    assert proc.stdout == ""
    failed = [line for line in proc.stderr.splitlines() if "task_failed" in line]
    assert len(failed) == 1
    assert "host:42" in failed[0]


def test_other_libraries_warnings_are_rendered_as_json_too_and_their_debug_dropped() -> None:
    proc = run("""
        import logging
        from relaybus.log import configure_logging
        configure_logging(level="DEBUG", json=True)
        logging.getLogger("aiormq").warning("connection %s lost", "x")
        logging.getLogger("aiormq").debug("noise")
    """)
    events = json_lines(proc.stderr)
    foreign = [e for e in events if e.get("logger") == "aiormq"]
    assert foreign == [
        {
            "event": "connection x lost",
            "logger": "aiormq",
            "level": "warning",
            "timestamp": foreign[0]["timestamp"],
        }
    ]


def sa_name(base: str) -> str:
    from tests.agents import sample_agents as sa

    return sa.name(base)
