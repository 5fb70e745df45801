"""``relaybus demo``: the sample project end to end, as a user runs it, in memory and on RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys

import pytest

from relaybus.bus.base import agent_queue_name
from relaybus.bus.connect import connect
from relaybus.demo.agents import DEMO_AGENTS
from relaybus.testing import FakeLLMServer
from tests.agents.processes import REPO_ROOT

from .support import assert_fits, run_cli, table_rows

KEYS = ("outline", "install", "quickstart", "agents", "workers", "plans", "review", "summary")
WRITERS = KEYS[1:6]
TOOL_CALLS = (
    "tool calls of summary (doc-editor), turn 1, 3 in parallel: research (agent on project.research) ok, "
    "outline (agent on project.plan) ok, reading_time (Python) ok"
)


def rows(stdout: str) -> dict[str, dict[str, str]]:
    """The results table's rows by task key, as column -> cell."""
    return table_rows(stdout, "plan relaybus-demo")


def speedup_of(stdout: str) -> float:
    match = re.search(r"parallel speed-up: ([0-9.]+)x", stdout)
    assert match, stdout
    return float(match.group(1))


def test_the_demo_runs_in_memory_and_shows_the_table_and_the_speed_up() -> None:
    proc = run_cli("demo", "--latency", "0.4", timeout=120)
    assert proc.returncode == 0, proc.stderr
    table = rows(proc.stdout)
    assert set(table) == set(KEYS)
    assert {row["status"] for row in table.values()} == {"success"}
    assert table["outline"]["agent"] == "doc-planner"
    assert table["review"]["agent"] == "doc-reviewer"
    assert {table[k]["agent"] for k in WRITERS} == {"doc-writer"}
    assert table["summary"]["agent"] == "doc-editor"
    assert table["outline"]["output / error"].startswith('{"outline": "echo: ')  # JSON, not a Python repr
    assert "8 tasks: 8 success" in proc.stdout
    # The editor's scripted model called two agents and a Python tool in one turn, over the bus.
    assert TOOL_CALLS in proc.stdout
    # ideal about 4x: 12 calls of 0.4 s in 4 rounds, plus the editor's 3 turns and 2 calls beside them
    assert speedup_of(proc.stdout) > 2.0
    assert "MemoryBus" in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("width", [80, 120])
def test_the_results_table_fits_the_terminal_and_never_cuts_status_agent_or_time(width: int) -> None:
    proc = run_cli("demo", "--latency", "0", "--no-progress", env={"COLUMNS": str(width)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert_fits(proc.stdout, width)
    table = rows(proc.stdout)
    assert set(table) == set(KEYS)
    for row in table.values():
        assert row["status"] == "success"
        assert row["agent"] in ("doc-planner", "doc-writer", "doc-reviewer", "doc-editor"), row
        assert re.fullmatch(r"\d+\.\d\ds", row["time"]), row
        assert len(row["output / error"]) >= 20, row  # the output keeps room of its own ...
    if width == 80:  # ... and the columns that made way say so
        assert "tokens in/out" not in next(iter(table.values()))
        assert "left out at 80 columns; --json has everything" in proc.stdout


def test_demo_json_is_one_document_with_every_output_whole() -> None:
    proc = run_cli("demo", "--latency", "0", "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # nothing else on stdout: the intro lines went to stderr
    assert "MemoryBus" in proc.stderr
    assert [task["key"] for task in report["tasks"]] == list(KEYS)
    review = next(task for task in report["tasks"] if task["key"] == "review")
    assert review["agent"] == "doc-reviewer"
    assert review["result"]["output"]["sections_read"] == list(WRITERS)
    assert len(review["result"]["output"]["review"]) > 200  # whole, where the table cuts it
    assert report["statuses"] == {"success": 8}
    assert report["speedup"] > 1


async def test_the_demo_uses_the_llm_configured_in_the_environment() -> None:
    async with FakeLLMServer(latency_s=0.2) as server:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env |= {
            "RELAYBUS_LLM_PROVIDER": "openai",
            "OPENAI_BASE_URL": server.openai_base_url,
            "RELAYBUS_LLM_MODEL": "local-model",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "relaybus", "demo", "--no-progress"),
            cwd=REPO_ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(120):
            out, err = await proc.communicate()
    stdout = out.decode()
    assert proc.returncode == 0, stdout + err.decode()
    # 1 planner + 5 x (researcher + writer) + 1 reviewer + the editor's one turn (no tool called)
    assert server.requests == 13
    assert {call.body["model"] for call in server.calls} == {"local-model"}
    assert "fake reply:" in rows(stdout)["review"]["output / error"]
    assert speedup_of(stdout) > 2.0


def test_a_demo_whose_llm_is_unreachable_fails_cleanly_with_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens on port 1: the demo must use that server, fail cleanly and exit 1.
    monkeypatch.setenv("RELAYBUS_LLM_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("RELAYBUS_LLM_MODEL", "local-model")
    proc = run_cli("demo", "--no-progress", timeout=180)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "RELAYBUS_LLM_PROVIDER=openai" in proc.stdout
    table = rows(proc.stdout)
    assert table["outline"]["status"] == "failure"
    assert table["summary"]["status"] == "failure"  # no dependency: it ran, and its model was unreachable too
    assert {table[k]["status"] for k in KEYS[1:-1]} == {"cancelled"}
    # never run, yet listed under the agent that would have run them, not under their topic
    assert {table[k]["agent"] for k in WRITERS} == {"doc-writer"}
    assert table["review"]["agent"] == "doc-reviewer"
    assert "parallel speed-up" not in proc.stdout
    assert "speed-up" not in proc.stdout.replace("no speed-up figure", "")
    assert "Traceback" not in proc.stderr


@pytest.mark.integration
async def test_the_demo_runs_on_rabbitmq_with_one_worker_process_per_agent(amqp_url: str) -> None:
    try:
        proc = run_cli("demo", "--amqp-url", amqp_url, "--latency", "0.3", timeout=180)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        table = rows(proc.stdout)
        assert {row["status"] for row in table.values()} == {"success"}
        workers = {row["worker"] for row in table.values()}
        assert len(workers) == 4  # planner, writer, reviewer and editor answered from processes of their own
        assert TOOL_CALLS in proc.stdout  # the editor's process reached its scripted model over HTTP
        assert speedup_of(proc.stdout) > 1.8
        assert "guest:guest" not in proc.stdout + proc.stderr
    finally:
        bus = await connect(amqp_url)
        try:
            for cls in DEMO_AGENTS:
                await bus.delete_queue(agent_queue_name(cls.name))
        finally:
            await bus.close()
