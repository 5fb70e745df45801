"""``relaybus run plan.yaml``: one line for a bad plan (exit 2), a results table, exit 1 if a task failed."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from pathlib import Path

import pytest

from tests.orchestrator.broker_plans import SummerFleet, layered_plan, summer_fleet, wait_until

from .support import assert_fits, one_error_line, run_cli, start_cli_async, table_rows

__all__ = ["summer_fleet"]  # the fixture, for the RabbitMQ tests below

UNREACHABLE = "amqp://guest:guest@127.0.0.1:1/"


def write(tmp_path: Path, text: str, name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "name: p\ntasks:\n  - {key: a, topic: x.y, timeout_s: -2}\n",
            "task 'a' (tasks[0], line 3): timeout_s",
        ),
        ("name: p\ntasks:\n  - {key: a, topic: x.y, depends_on: [b]}\n", "depends_on names 'b'"),
        ("name: p\ntasks: [\n", "not valid YAML"),
    ],
)
def test_a_bad_plan_is_one_line_and_exit_2_before_connecting(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    proc = run_cli("run", str(path), "--amqp-url", UNREACHABLE)
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert str(path) in line
    assert expected in line


def test_a_missing_plan_file_is_one_line(tmp_path: Path) -> None:
    proc = run_cli("run", str(tmp_path / "nope.yaml"), "--amqp-url", UNREACHABLE)
    assert proc.returncode == 2
    assert "no such plan file" in one_error_line(proc)


def test_an_unreachable_broker_is_one_line_and_exit_1(tmp_path: Path) -> None:
    path = write(tmp_path, "name: p\ntasks:\n  - {key: a, topic: x.y}\n")
    proc = run_cli("run", str(path), "--amqp-url", UNREACHABLE)
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "127.0.0.1:1" in line
    assert "guest:guest" not in line


LONELY = (
    "name: lonely\ntasks:\n"
    "  - {key: first, topic: no.one}\n"
    "  - {key: second, topic: no.one, depends_on: [first]}\n"
)


def test_tasks_nobody_handles_end_in_a_table_and_exit_1(tmp_path: Path) -> None:
    proc = run_cli("run", str(write(tmp_path, LONELY)), "--amqp-url", "memory://", "--no-progress")
    assert proc.returncode == 1, proc.stderr
    rows = table_rows(proc.stdout, "plan lonely")
    assert rows["first"]["status"] == "rejected"
    assert rows["second"]["status"] == "cancelled"
    assert "dependency 'first' ended REJECTED" in rows["second"]["output / error"]
    assert "2 tasks: 1 cancelled, 1 rejected" in proc.stdout
    assert re.search(r"^trace_id: [0-9a-f]{32}$", proc.stdout, re.M), proc.stdout
    assert "speed-up" not in proc.stdout.replace("no speed-up figure", "")  # not every task succeeded


@pytest.mark.parametrize("width", [80, 120])
def test_at_80_and_120_columns_status_agent_and_time_are_whole_and_errors_wrap(
    tmp_path: Path, width: int
) -> None:
    plan = write(tmp_path, LONELY)
    proc = run_cli("run", str(plan), "--amqp-url", "memory://", "--no-progress", env={"COLUMNS": str(width)})
    assert_fits(proc.stdout, width)
    rows = table_rows(proc.stdout, "plan lonely")
    assert [row["status"] for row in rows.values()] == ["rejected", "cancelled"]
    assert all(row["agent"] == "-" and row["time"] == "0.00s" for row in rows.values())
    # the error runs over several lines rather than being cut at the first
    assert "no queue is bound for routing key 'task.no.one'" in rows["first"]["output / error"]


def test_json_prints_the_whole_result_with_errors_in_full(tmp_path: Path) -> None:
    plan = write(tmp_path, LONELY)
    proc = run_cli("run", str(plan), "--amqp-url", "memory://", "--json", env={"COLUMNS": "80"})
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["plan"] == "lonely"
    assert report["ok"] is False
    assert report["statuses"] == {"cancelled": 1, "rejected": 1}
    assert report["speedup"] is None
    first, second = report["tasks"]
    assert (first["key"], first["status"], second["status"]) == ("first", "rejected", "cancelled")
    assert first["result"]["error"]["type"] == "NoRouteError"
    message = first["result"]["error"]["message"]
    assert len(message) > 80
    assert message.endswith("check the topic / agent name for typos")
    assert second["result"]["error"]["message"].startswith(
        f"dependency 'first' ended REJECTED: {message[:40]}"
    )


def test_a_plan_of_one_task_says_1_task_and_gives_no_speed_up(tmp_path: Path) -> None:
    plan = write(tmp_path, "name: single\ntasks:\n  - {key: only, topic: no.one}\n")
    proc = run_cli("run", str(plan), "--amqp-url", "memory://", "--no-progress")
    assert "1 task: 1 rejected" in proc.stdout
    assert "speed-up" not in proc.stdout


def test_the_progress_bar_ends_complete(tmp_path: Path) -> None:
    plan = write(tmp_path, LONELY)
    proc = run_cli("run", str(plan), "--amqp-url", "memory://")
    last = proc.stderr.strip().splitlines()[-1]  # off a terminal rich prints the bar's final state only
    assert "2/2" in last
    assert "running 0" in last


async def run_plan_process(fleet: SummerFleet, plan: Path, *args: str) -> asyncio.subprocess.Process:
    return await start_cli_async("run", str(plan), *args, env={"RELAYBUS_AMQP_URL": fleet.amqp_url})


@pytest.mark.integration
async def test_a_plan_runs_on_rabbitmq_and_prints_every_task(
    summer_fleet: SummerFleet, tmp_path: Path
) -> None:
    text, _ = layered_plan("cli", summer_fleet.suffix, layers=2, width=3, sleep_s=0.2)
    path = write(tmp_path, text)
    async with summer_fleet.processes(1) as workers:
        await workers.wait_ready(summer_fleet.bus)
        proc = await run_plan_process(summer_fleet, path)
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    stdout = out.decode()
    assert proc.returncode == 0, err.decode()
    rows = table_rows(stdout, "plan cli")
    assert set(rows) == {f"t{layer}-{i}" for layer in range(2) for i in range(3)}
    assert all(row["status"] == "success" for row in rows.values())
    assert "6 tasks: 6 success" in stdout
    assert "speed-up" in stdout


@pytest.mark.integration
async def test_a_failed_task_makes_the_exit_code_1(summer_fleet: SummerFleet, tmp_path: Path) -> None:
    text, _ = layered_plan(
        "cli-fail", summer_fleet.suffix, layers=2, width=2, sleep_s=0, fail=frozenset({"t0-0"})
    )
    async with summer_fleet.processes(1) as workers:
        await workers.wait_ready(summer_fleet.bus)
        proc = await run_plan_process(summer_fleet, write(tmp_path, text), "--no-progress")
        async with asyncio.timeout(60):
            out, _ = await proc.communicate()
    assert proc.returncode == 1
    rows = table_rows(out.decode(), "plan cli-fail")
    assert rows["t0-0"]["status"] == "failure"
    assert "told to fail" in rows["t0-0"]["output / error"]
    assert rows["t1-0"]["status"] == "cancelled"
    # t1-0 never ran: it is listed under the agent that ran the other tasks of its topic
    assert rows["t1-0"]["agent"] == rows["t0-1"]["agent"] != "-"


@pytest.mark.integration
async def test_a_named_run_killed_mid_plan_resumes_when_run_again(
    summer_fleet: SummerFleet, tmp_path: Path
) -> None:
    slow = {f"t1-{i}": 1.5 for i in range(3)}
    text, sums = layered_plan("cli-resume", summer_fleet.suffix, layers=3, width=3, sleep_s=0.05, slow=slow)
    path = write(tmp_path, text)
    name = f"cli-resume{summer_fleet.suffix}"
    try:
        async with summer_fleet.processes(2) as workers:
            await workers.wait_ready(summer_fleet.bus)
            first = await run_plan_process(summer_fleet, path, "--name", name, "--no-progress")
            # layer 0 is done and layer 1 has started: kill the orchestrator process outright
            await wait_until(lambda: len(summer_fleet.runs) >= 6, what="layer 1 started")
            first.send_signal(signal.SIGKILL)
            await first.wait()
            await asyncio.sleep(
                2.0
            )  # layer 1 finishes meanwhile; its results wait in the durable reply queue
            second = await run_plan_process(summer_fleet, path, "--name", name, "--no-progress")
            async with asyncio.timeout(60):
                out, err = await second.communicate()
    finally:
        await summer_fleet.bus.delete_queue(f"relaybus.reply.{name}")
    assert second.returncode == 0, err.decode()
    stdout = out.decode()
    rows = table_rows(stdout, "plan cli-resume")
    assert len(rows) == len(sums)
    # its wall time is this run's alone: a speed-up figure would count the earlier run's work as saved
    assert "from an earlier run (so no speed-up figure)" in stdout
    assert "x over running them" not in stdout
    assert len(summer_fleet.runs) == len(sums)  # nothing lost ...
    assert set(summer_fleet.runs.values()) == {1}  # ... and nothing run twice
