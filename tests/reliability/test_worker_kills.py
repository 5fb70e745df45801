"""One of three worker processes is SIGKILLed every 1.5 s (and a new one started) during a 2,000-task run.

Promise shown: a worker that dies at any point loses nothing. A task is acked only after its result is
confirmed, so the broker returns whatever the killed process held, another worker runs it, and the
orchestrator keeps one result per task id.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from relaybus.messages import AgentTask, ExecutionStatus
from relaybus.orchestrator import ProjectOrchestrator
from tests.agents.processes import Fleet, WorkerProcess

from .support import figures, status_counts

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TASKS = 2000
WORKERS = 3
KILL_EVERY_S = 1.5
WORKER_ARGS = ("--concurrency", "16")


async def test_sigkilling_workers_during_a_2000_task_run_loses_nothing(fleet: Fleet) -> None:
    live: list[WorkerProcess] = [
        await fleet.start("Echo", args=WORKER_ARGS, log_level="WARNING") for _ in range(WORKERS)
    ]
    tasks = [
        AgentTask(topic=fleet.topic("echo"), prompt=f"task-{i}", input={"sleep_s": 0.2}, timeout_s=180)
        for i in range(TASKS)
    ]
    done = asyncio.Event()
    kills = 0

    async def killer() -> None:
        nonlocal kills
        victim = 0
        while not done.is_set():
            try:
                await asyncio.wait_for(done.wait(), KILL_EVERY_S)
                return
            except TimeoutError:
                pass
            dead = live.pop(victim % len(live))
            dead.signal(signal.SIGKILL)
            await dead.wait()
            kills += 1
            live.append(await fleet.start("Echo", args=WORKER_ARGS, log_level="WARNING"))
            victim += 1

    started = time.monotonic()
    chaos = asyncio.create_task(killer())
    try:
        async with ProjectOrchestrator(fleet.bus, default_timeout_s=180) as orchestrator:
            results = await asyncio.wait_for(orchestrator.execute_tasks(tasks), 180)
            duplicates = orchestrator.duplicates_dropped
    finally:
        done.set()
        await chaos
    elapsed = time.monotonic() - started

    statuses = status_counts(results)
    line = figures(
        "2000 tasks, a worker SIGKILLed every 1.5 s",
        tasks=TASKS,
        kills=kills,
        succeeded=statuses.get("success", 0),
        lost=TASKS - statuses.get("success", 0),
        duplicate_results_dropped=duplicates,
        workers_that_answered=len({r.worker for r in results}),
        wall_s=round(elapsed, 1),
    )
    assert statuses == {ExecutionStatus.SUCCESS.value: TASKS}, line
    assert [r.output for r in results] == [{"echo": t.prompt} for t in tasks]
    assert [r.task_id for r in results] == [t.id for t in tasks]
    assert kills >= 3, line  # the run lasted long enough to kill workers while they held tasks
