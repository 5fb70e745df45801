"""``relaybus run plan.yaml``: one line for a bad plan (exit 2), a results table, exit 1 if a task failed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.orchestrator.broker_plans import REPO_ROOT, SummerFleet, layered_plan, summer_fleet, wait_until

from .support import one_error_line, run_cli

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


def test_tasks_nobody_handles_end_in_a_table_and_exit_1(tmp_path: Path) -> None:
    plan = (
        "name: lonely\ntasks:\n"
        "  - {key: first, topic: no.one}\n"
        "  - {key: second, topic: no.one, depends_on: [first]}\n"
    )
    proc = run_cli("run", str(write(tmp_path, plan)), "--amqp-url", "memory://", "--no-progress")
    assert proc.returncode == 1, proc.stderr
    rows = {line.split("│")[1].strip(): line for line in proc.stdout.splitlines() if line.count("│") > 5}
    assert "rejected" in rows["first"]
    assert "cancelled" in rows["second"]
    assert "dependency 'first' ended REJECTED" in rows["second"]
    assert "2 tasks: 1 cancelled, 1 rejected" in proc.stdout


async def run_plan_process(fleet: SummerFleet, plan: Path, *args: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["RELAYBUS_AMQP_URL"] = fleet.amqp_url
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "relaybus", "run", str(plan), *args),
        cwd=REPO_ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def table_rows(stdout: str) -> dict[str, str]:
    return {line.split("│")[1].strip(): line for line in stdout.splitlines() if line.count("│") > 5}


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
    rows = table_rows(stdout)
    assert {k for k in rows if k.startswith("t")} == {f"t{layer}-{i}" for layer in range(2) for i in range(3)}
    assert all("success" in rows[k] for k in rows if k.startswith("t"))
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
    rows = table_rows(out.decode())
    assert "failure" in rows["t0-0"]
    assert "told to fail" in rows["t0-0"]
    assert "cancelled" in rows["t1-0"]


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
    rows = table_rows(out.decode())
    assert len([k for k in rows if k.startswith("t")]) == len(sums)
    assert len(summer_fleet.runs) == len(sums)  # nothing lost ...
    assert set(summer_fleet.runs.values()) == {1}  # ... and nothing run twice
