"""The node leading an agent's quorum queue is SIGKILLed while 2,000 tasks run on a 3-node private cluster.

Promise shown: workers connected to different nodes, and the caller, move to the surviving nodes; every task
gets exactly one result at the caller and none is lost; the killed node, restarted, rejoins the cluster and
the queue is back to its three members. A private cluster (tests/rabbitmq_nodes.py): the shared broker is
not touched.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relaybus.bus.base import agent_queue_name
from relaybus.messages import ExecutionStatus
from tests.agents.processes import Fleet
from tests.eventually import eventually
from tests.rabbitmq_nodes import PrivateCluster

from .cluster_support import (
    Progress,
    after_kill,
    cluster_fleet,
    echo_tasks,
    full_membership,
    longest_gap,
    rotated,
    run_with_fault,
)
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
    tasks = echo_tasks(fleet, TASKS, 0.02)
    progress = Progress(at=KILL_AT)

    async def kill_the_leader() -> None:
        await progress.reached.wait()
        await asyncio.to_thread(victim.kill)
        progress.mark_fault()

    result, duplicates, elapsed = await run_with_fault(fleet, tasks, progress, kill_the_leader)
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
        **outcome(result.results, progress.finished, TASKS),
        duplicate_results_dropped=duplicates,
        killed=victim.name,
        first_result_after_kill_s=after_kill(progress.times, progress.fault_at),
        longest_gap_after_kill_s=longest_gap(progress.times, progress.fault_at),
        wall_s=round(elapsed, 1),
        worker_connection_losses=[w.log().count("amqp_connection_lost") for w in fleet.workers],
        publish_nacks_retried=sum(w.log().count("publish_nacked") for w in fleet.workers),
        failures=failure_kinds(result.results.values()),
    )
    assert len(result.results) == TASKS, line
    assert statuses == {ExecutionStatus.SUCCESS.value: TASKS}, line
    assert [result.results[t.id].output for t in tasks] == [{"echo": t.prompt} for t in tasks]
    assert set(progress.finished) == {str(t.id) for t in tasks}, line
    assert max(progress.finished.values()) == 1, line
    assert progress.fault_at, "the leader's node was never killed"
    assert all(w.proc.returncode is None for w in fleet.workers), "a worker died when the node was lost"
    assert cluster.running_nodes() == sorted(n.name for n in cluster.nodes)
