"""Ctrl-C and timeouts leave no junk: an interrupted ``submit --wait`` or anonymous ``run`` cancels its
unfinished tasks and says so with their ids (exit 130); a named run says how to resume; a task whose caller
gave up before a worker took it is dropped unrun; and none of it leaves letters in ``relaybus.dead``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
import yaml

from relaybus.dlq import list_dead_letters
from tests.agents import processes
from tests.agents.processes import Fleet, WorkerProcess

from .support import REPO_ROOT, Outcome, run_cli_async

fleet = processes.fleet

pytestmark = pytest.mark.integration


async def start_cli(fleet: Fleet, *args: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["RELAYBUS_AMQP_URL"] = fleet.amqp_url
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "relaybus", *args),
        cwd=REPO_ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def interrupt(proc: asyncio.subprocess.Process) -> Outcome:
    proc.send_signal(signal.SIGINT)
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return Outcome(proc.returncode, out.decode(), err.decode())


async def started_ids(fleet: Fleet, count: int) -> list[str]:
    events = await fleet.wait_for(
        lambda e: e.routing_key == f"event.{fleet.topic('started')}", what="tasks to start", count=count
    )
    return [e.payload["task_id"] for e in events]


async def logged(worker: WorkerProcess, event: str, task_ids: list[str]) -> None:
    """Wait until ``worker``'s JSON log has an ``event`` line for each of ``task_ids``."""
    async with asyncio.timeout(30):
        while True:
            lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
            seen = {line.get("task_id") for line in lines if line.get("event") == event}
            if set(task_ids) <= seen:
                return
            await asyncio.sleep(0.1)


async def cancelled_on_worker(fleet: Fleet, task_ids: list[str]) -> None:
    await logged(fleet.workers[0], "task_cancel_requested", task_ids)


async def our_dead_letters(fleet: Fleet, task_ids: set[str]) -> list[str]:
    """The letters in the shared relaybus.dead that belong to this test (by id, or by its agents' names)."""
    letters = await list_dead_letters(fleet.bus, limit=10_000, idle_s=0.5)
    return [
        f"{letter.message_id}: {letter.reason}"
        for letter in letters
        if letter.message_id in task_ids or fleet.suffix in letter.routing_key
    ]


async def submit_sleeper(fleet: Fleet) -> asyncio.subprocess.Process:
    """``relaybus submit --wait`` of a task that announces its start, then sleeps for a minute."""
    sleeper = ("--input", '{"sleep_s": 60, "announce": true}')
    return await start_cli(fleet, "submit", "--topic", fleet.topic("echo"), *sleeper, "--wait")


def sleeper_plan(tmp_path: Path, fleet: Fleet, count: int) -> Path:
    tasks = [
        {"key": f"s{i}", "topic": fleet.topic("echo"), "input": {"sleep_s": 60, "announce": True}}
        for i in range(count)
    ]
    path = tmp_path / "sleepers.yaml"
    path.write_text(yaml.safe_dump({"name": "sleepers", "tasks": tasks}))
    return path


async def test_ctrl_c_on_submit_wait_cancels_the_task_and_exits_130(fleet: Fleet) -> None:
    await fleet.start("Echo")
    proc = await submit_sleeper(fleet)
    [task_id] = await started_ids(fleet, 1)
    outcome = await interrupt(proc)
    assert outcome.code == 130, outcome.stderr
    assert f"interrupted: cancelled task {task_id}" in outcome.stderr
    assert "Traceback" not in outcome.stderr
    result = json.loads(outcome.stdout)  # JSON on stdout in this outcome too
    assert (result["task_id"], result["status"]) == (task_id, "cancelled")
    await cancelled_on_worker(fleet, [task_id])  # the worker stopped spending on it


async def test_ctrl_c_on_run_cancels_the_unfinished_tasks_with_their_ids(
    fleet: Fleet, tmp_path: Path
) -> None:
    await fleet.start("Echo")
    proc = await start_cli(fleet, "run", str(sleeper_plan(tmp_path, fleet, 2)), "--no-progress")
    task_ids = await started_ids(fleet, 2)
    outcome = await interrupt(proc)
    assert outcome.code == 130, outcome.stderr
    line = next(line for line in outcome.stderr.splitlines() if "interrupted" in line)
    assert "cancelled 2 unfinished tasks" in line
    assert all(task_id in line for task_id in task_ids)
    await cancelled_on_worker(fleet, task_ids)


async def test_ctrl_c_on_a_named_run_says_how_to_resume(fleet: Fleet, tmp_path: Path) -> None:
    await fleet.start("Echo")
    name = f"sleepers{fleet.suffix}"
    plan = sleeper_plan(tmp_path, fleet, 1)
    proc = await start_cli(fleet, "run", str(plan), "--name", name, "--no-progress")
    [task_id] = await started_ids(fleet, 1)
    try:
        outcome = await interrupt(proc)
    finally:
        await fleet.bus.delete_queue(f"relaybus.reply.{name}")
    assert outcome.code == 130, outcome.stderr
    line = next(line for line in outcome.stderr.splitlines() if "interrupted" in line)
    assert f"1 unfinished task left running: {task_id}" in line
    assert f"`relaybus run {plan} --name {name}` again" in line
    assert "relaybus cancel" in line


async def test_a_walk_through_of_interrupts_and_timeouts_leaves_no_dead_letters(fleet: Fleet) -> None:
    ids: set[str] = set()
    worker = await fleet.start("Echo")
    # 1. interrupted while its task runs
    proc = await submit_sleeper(fleet)
    ids.update(await started_ids(fleet, 1))
    assert (await interrupt(proc)).code == 130
    await cancelled_on_worker(fleet, sorted(ids))
    # 2. a --timeout that passes while the task waits in the queue for a worker that is not running
    worker.signal(signal.SIGTERM)
    assert await worker.wait() == 0
    late = await run_cli_async(
        *("submit", "--topic", fleet.topic("echo"), "--wait", "--timeout", "1", "--amqp-url", fleet.amqp_url)
    )
    assert late.code == 1
    timed_out = json.loads(late.stdout)
    assert timed_out["status"] == "timeout"
    ids.add(timed_out["task_id"])
    # 3. the worker comes back and finds that task: dropped, neither run nor answered
    again = await fleet.start("Echo")
    await logged(again, "task_expired", [timed_out["task_id"]])
    assert await our_dead_letters(fleet, ids) == []
