"""The node leading an agent's quorum queue is SIGKILLed while 2,000 tasks run on a 3-node private cluster.

Promise shown: workers connected to different nodes, and the caller, move to the surviving nodes; every task
gets exactly one result at the caller and none is lost; the killed node, restarted, rejoins the cluster and
the queue is back to its three members. A private cluster (tests/rabbitmq_nodes.py): the shared broker is
not touched.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relaybus.bus.base import agent_queue_name
from relaybus.messages import AgentTask, ExecutionStatus
from relaybus.orchestrator import PlanProgress, ProjectOrchestrator
from tests.agents.processes import Fleet
from tests.eventually import eventually
from tests.rabbitmq_nodes import PrivateCluster

from .cluster_support import after_kill, cluster_fleet, full_membership, longest_gap, rotated
from .support import failure_kinds, figures, outcome, status_counts

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

TASKS = 2000
KILL_AT = 600  # results seen when the leader's node is killed

__all__ = ["cluster_fleet"]


@pytest.fixture
async def nodes_fleet(cluster: PrivateCluster, tmp_path: Path) -> AsyncIterator[Fleet]:
    """Worker processes and a caller on the private cluster, the caller starting from the second node."""
    async with cluster_fleet(cluster, tmp_path, start=1) as fleet:
        yield fleet


async def test_killing_the_queue_leaders_node_during_2000_tasks_loses_none_and_answers_each_once(
    cluster: PrivateCluster, nodes_fleet: Fleet
) -> None:
    fleet = nodes_fleet
    for start in range(3):  # one worker per node
        await fleet.start(
            "Echo", args=("--concurrency", "32"), log_level="WARNING", amqp_url=rotated(cluster, start)
        )
    queue = agent_queue_name(fleet.name("echo"))
    info = cluster.queue(queue)
    assert len(info["online"]) == 3, info
    victim = cluster.node_named(info["leader"])
    tasks = [
        AgentTask(topic=fleet.topic("echo"), prompt=f"task-{i}", input={"sleep_s": 0.02}, timeout_s=300)
        for i in range(TASKS)
    ]
    finished: Counter[str] = Counter()
    kill_now = asyncio.Event()
    killed_at: list[float] = []
    finish_times: list[float] = []

    def on_progress(step: PlanProgress) -> None:
        if step.kind == "finished":
            finished[str(step.task.id)] += 1
            finish_times.append(time.monotonic())
            if step.done >= KILL_AT:
                kill_now.set()

    async def kill_the_leader() -> None:
        await kill_now.wait()
        await asyncio.to_thread(victim.kill)
        killed_at.append(time.monotonic())

    started = time.monotonic()
    killer = asyncio.create_task(kill_the_leader())
    async with ProjectOrchestrator(fleet.bus, default_timeout_s=300) as orchestrator:
        result = await asyncio.wait_for(orchestrator.run_plan(tasks, on_progress=on_progress), 300)
        duplicates = orchestrator.duplicates_dropped
    await asyncio.wait_for(killer, 10)
    elapsed = time.monotonic() - started
    await asyncio.to_thread(victim.start)
    await eventually(
        lambda: full_membership(cluster, queue),
        timeout=120,
        max_interval=1.0,
        what="the queue's 3 members back",
    )

    statuses = status_counts(result.results.values())
    line = figures(
        "2000 tasks, queue leader's node SIGKILLed",
        **outcome(result.results, finished, TASKS),
        duplicate_results_dropped=duplicates,
        killed=victim.name,
        first_result_after_kill_s=after_kill(finish_times, killed_at),
        longest_gap_after_kill_s=longest_gap(finish_times, killed_at),
        wall_s=round(elapsed, 1),
        worker_connection_losses=[w.log().count("amqp_connection_lost") for w in fleet.workers],
        publish_nacks_retried=sum(w.log().count("publish_nacked") for w in fleet.workers),
        failures=failure_kinds(result.results.values()),
    )
    assert len(result.results) == TASKS, line
    assert statuses == {ExecutionStatus.SUCCESS.value: TASKS}, line
    assert [result.results[t.id].output for t in tasks] == [{"echo": t.prompt} for t in tasks]
    assert set(finished) == {str(t.id) for t in tasks}, line
    assert max(finished.values()) == 1, line
    assert killed_at, "the leader's node was never killed"
    assert all(w.proc.returncode is None for w in fleet.workers), "a worker died when the node was lost"
    assert cluster.running_nodes() == sorted(n.name for n in cluster.nodes)
