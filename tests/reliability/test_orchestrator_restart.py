"""The orchestrator process (``relaybus run plan.yaml --name N``) is SIGKILLed mid-plan and started again.

Promise shown: a named orchestrator's durable reply queue keeps the results that finish while it is down;
the restarted command collects them, publishes only what is missing (workers answer a task id they already
ran from their result cache), and the plan finishes with every task, none lost.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import yaml

from relaybus.orchestrator.plan import task_id_for
from tests.agents.processes import REPO_ROOT, Fleet

from .support import figures

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WIDTH = 120  # tasks per layer; layer 1 task i depends on layer 0 task i
KILL_AFTER_RUNS = 100


def _plan(fleet: Fleet, name: str) -> dict[str, object]:
    tasks: list[dict[str, object]] = []
    for layer in range(2):
        for i in range(WIDTH):
            tasks.append(
                {
                    "key": f"l{layer}-{i}",
                    "prompt": f"l{layer}-{i}",
                    "input": {"sleep_s": 0.3, "announce": True},
                    "depends_on": [f"l0-{i}"] if layer else [],
                }
            )
    return {"name": name, "defaults": {"topic": fleet.topic("echo"), "timeout_s": 120}, "tasks": tasks}


async def _run_command(plan: Path, name: str, fleet: Fleet, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "RELAYBUS_AMQP_URL": fleet.amqp_url}  # never the password on a command line
    env.pop("PYTHONPATH", None)
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "relaybus",
            "run",
            str(plan),
            "--name",
            name,
            "--no-progress",
            cwd=REPO_ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )


async def test_a_killed_named_orchestrator_finishes_its_plan_after_a_restart(
    fleet: Fleet, tmp_path: Path
) -> None:
    for _ in range(2):
        await fleet.start("Echo", args=("--concurrency", "16"), log_level="WARNING")
    name = f"reliability-{uuid.uuid4().hex[:8]}"
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(_plan(fleet, name)))
    ids = {str(task_id_for(name, f"l{layer}-{i}", name)) for layer in range(2) for i in range(WIDTH)}
    started_key = f"event.{fleet.topic('started')}"
    log = tmp_path / "run.log"

    def runs() -> Counter[str]:
        return Counter(
            e.payload["task_id"]
            for e in fleet.events
            if e.routing_key == started_key and e.payload["task_id"] in ids
        )

    began = time.monotonic()
    try:
        first = await _run_command(plan, name, fleet, log)
        await fleet.wait_for(
            lambda e: e.routing_key == started_key and e.payload["task_id"] in ids,
            count=KILL_AFTER_RUNS,
            what=f"{KILL_AFTER_RUNS} tasks of the plan running",
            timeout=60,
        )
        first.send_signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
        before_kill = sum(runs().values())
        await asyncio.sleep(1.0)  # tasks in flight finish while no orchestrator listens
        second = await _run_command(plan, name, fleet, log)
        async with asyncio.timeout(120):
            code = await second.wait()
    finally:
        await fleet.bus.delete_queue(f"relaybus.reply.{name}")
    output = log.read_text(errors="replace")
    counted = runs()
    line = figures(
        "named orchestrator SIGKILLed mid-plan",
        tasks=len(ids),
        runs_before_kill=before_kill,
        tasks_run=len(counted),
        ran_twice=sum(1 for n in counted.values() if n > 1),
        exit_code=code,
        wall_s=round(time.monotonic() - began, 1),
    )
    assert code == 0, f"{line}\n{output[-3000:]}"
    assert f"{2 * WIDTH} tasks: {2 * WIDTH} success" in output, output[-3000:]
    assert set(counted) == ids, line  # every task ran; none lost with the killed process
    assert "Traceback" not in output
