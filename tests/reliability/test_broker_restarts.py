"""The broker application restarted twice while a 5,000-task plan runs on real worker processes.

Promise shown: at-least-once delivery with duplicates dropped by task id, so the orchestrator sees every task
finish exactly once and loses none, whatever the broker does in between. Stops the shared RabbitMQ
application twice (about 1 s each); the ``broker`` fixture always starts it again and heals it.

With a state store (PostgreSQL) the workers also run each task once: the copies a restart redelivers are
answered from the stored result (or wait on the claim) instead of running again. That variant runs on a
private RabbitMQ node of its own (``private_node``), so it may stop its broker whatever else shares the
machine's.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from relaybus.messages import AgentTask, ExecutionStatus
from relaybus.orchestrator import PlanProgress, ProjectOrchestrator
from tests.agents.processes import Fleet, running_fleet
from tests.bus.amqp_support import Broker
from tests.rabbitmq_nodes import PrivateNode

from .support import failure_kinds, figures, heard_from_all, runs_reported, status_counts

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.broker_restart]

TASKS = 5000
RESTART_AT = (1000, 3000)  # results seen when each restart begins


async def test_two_broker_restarts_during_a_5000_task_plan_lose_nothing(fleet: Fleet, broker: Broker) -> None:
    runs = await run_5000_with_two_restarts(fleet, broker.restart, "5000 tasks, broker restarted twice")
    assert runs >= TASKS


@pytest.mark.postgres
async def test_with_a_store_two_broker_restarts_during_a_5000_task_plan_rerun_no_task(
    private_node: PrivateNode, postgres_database_url: str, tmp_path: Path
) -> None:
    async def restart() -> None:
        await asyncio.to_thread(private_node.ctl, "stop_app")
        await asyncio.sleep(1.0)  # stay down long enough for every client to notice
        await asyncio.to_thread(private_node.ctl, "start_app")
        await asyncio.to_thread(private_node.wait_ready)

    async with running_fleet(private_node.url, tmp_path) as fleet:
        runs = await run_5000_with_two_restarts(
            fleet,
            restart,
            "5000 tasks, broker restarted twice, PostgreSQL store",
            worker_args=("--state-url", postgres_database_url),
        )
    assert runs == TASKS  # each task ran once in all: no re-run


async def run_5000_with_two_restarts(
    fleet: Fleet, restart: Callable[[], Awaitable[None]], title: str, *, worker_args: tuple[str, ...] = ()
) -> int:
    """Run the plan on three ``Echo`` workers, restarting the broker (``restart``) when 1,000 and 3,000
    results came in (the second once every worker is back from the first); assert nothing was lost or seen
    twice and every worker cut off twice, print the figures; the runs the workers reported."""
    for _ in range(3):
        await fleet.start("Echo", args=("--concurrency", "32", *worker_args), log_level="WARNING")
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
            await restart()
            took.append(round(time.monotonic() - began, 1))
            # Results already queued for the caller keep coming in while workers wait to reconnect: the next
            # restart must find every worker back, or it would not interrupt them at all.
            await heard_from_all(fleet, timeout_s=90)
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
    losses = [w.log().count("amqp_connection_lost") for w in fleet.workers]
    line = figures(
        title,
        tasks=TASKS,
        succeeded=statuses.get("success", 0),
        lost=TASKS - len(result.results),
        seen_twice=sum(1 for n in finished.values() if n > 1),
        duplicate_results_dropped=duplicates,
        worker_runs=runs,
        reruns=runs - TASKS,
        restart_s=outages,
        wall_s=round(elapsed, 1),
        worker_connection_losses=losses,
        failures=failure_kinds(result.results.values()),
    )
    assert len(result.results) == TASKS, line
    assert statuses == {ExecutionStatus.SUCCESS.value: TASKS}, line
    assert [result.results[t.id].output for t in tasks] == [{"echo": t.prompt} for t in tasks]
    assert set(finished) == {str(t.id) for t in tasks}, line
    assert max(finished.values()) == 1, line  # each task finished once as the orchestrator saw it
    assert len(outages) == 2
    assert min(losses) >= 2, line  # each restart found every worker connected, and cut it off
    assert all(w.proc.returncode is None for w in fleet.workers), "a worker died during the restarts"
    return runs
