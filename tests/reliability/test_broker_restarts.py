"""The broker application restarted twice while a 5,000-task plan runs on real worker processes.

Promise shown: at-least-once delivery with duplicates dropped by task id, so the orchestrator sees every task
finish exactly once and loses none, whatever the broker does in between. Stops the shared RabbitMQ
application twice (about 1 s each); the ``broker`` fixture always starts it again and heals it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from relaybus.messages import AgentTask, ExecutionStatus
from relaybus.orchestrator import PlanProgress, ProjectOrchestrator
from tests.agents.processes import Fleet
from tests.bus.amqp_support import Broker

from .support import failure_kinds, figures, runs_reported, status_counts

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.broker_restart]

TASKS = 5000
RESTART_AT = (1000, 3000)  # results seen when each restart begins


async def test_two_broker_restarts_during_a_5000_task_plan_lose_nothing(fleet: Fleet, broker: Broker) -> None:
    for _ in range(3):
        await fleet.start("Echo", args=("--concurrency", "32"), log_level="WARNING")
    tasks = [
        AgentTask(topic=fleet.topic("echo"), prompt=f"task-{i}", input={"sleep_s": 0.05}, timeout_s=240)
        for i in range(TASKS)
    ]
    finished: Counter[str] = Counter()
    restarts_due = list(RESTART_AT)
    restart_now = asyncio.Event()

    def on_progress(step: PlanProgress) -> None:
        if step.kind == "finished":
            finished[str(step.task.id)] += 1
            if restarts_due and step.done >= restarts_due[0]:
                restarts_due.pop(0)
                restart_now.set()

    async def restart_twice() -> list[float]:
        took = []
        for _ in RESTART_AT:
            await restart_now.wait()
            restart_now.clear()
            began = time.monotonic()
            await broker.restart()
            took.append(round(time.monotonic() - began, 1))
        return took

    started = time.monotonic()
    restarter = asyncio.create_task(restart_twice())
    async with ProjectOrchestrator(fleet.bus, default_timeout_s=240) as orchestrator:
        result = await asyncio.wait_for(orchestrator.run_plan(tasks, on_progress=on_progress), 240)
        duplicates = orchestrator.duplicates_dropped  # repeated results the orchestrator ignored
    outages = await asyncio.wait_for(restarter, 120)
    elapsed = time.monotonic() - started
    runs = await runs_reported(fleet)

    statuses = status_counts(result.results.values())
    line = figures(
        "5000 tasks, broker restarted twice",
        tasks=TASKS,
        succeeded=statuses.get("success", 0),
        lost=TASKS - len(result.results),
        seen_twice=sum(1 for n in finished.values() if n > 1),
        duplicate_results_dropped=duplicates,
        worker_runs=runs,
        reruns=runs - TASKS,
        restart_s=outages,
        wall_s=round(elapsed, 1),
        worker_connection_losses=[w.log().count("amqp_connection_lost") for w in fleet.workers],
        failures=failure_kinds(result.results.values()),
    )
    assert len(result.results) == TASKS, line
    assert statuses == {ExecutionStatus.SUCCESS.value: TASKS}, line
    assert [result.results[t.id].output for t in tasks] == [{"echo": t.prompt} for t in tasks]
    assert set(finished) == {str(t.id) for t in tasks}, line
    assert max(finished.values()) == 1, line  # each task finished once as the orchestrator saw it
    assert len(outages) == 2
    assert all(w.proc.returncode is None for w in fleet.workers), "a worker died during the restarts"
