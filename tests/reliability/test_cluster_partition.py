"""A worker on another "host" (a Linux network namespace) is cut off from its RabbitMQ node mid-run.

Two worker processes, each in a namespace of its own (tests/netns.py: ``ip netns``, a veth pair to the
host), connect to different nodes of the private 3-node cluster. One namespace is partitioned from its node
(every packet dropped, both ways) while tasks run, then healed. Promise shown: that worker notices (AMQP
heartbeats), fails over to another node; the node returns its unacked tasks to the queue, they are run
again, and the caller gets exactly one result per task, none lost.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from relaybus.messages import ExecutionStatus
from tests.agents.processes import Fleet
from tests.eventually import eventually
from tests.netns import Namespace, netns_available
from tests.rabbitmq_nodes import PrivateCluster

from .cluster_support import Progress, after_kill, cluster_fleet, echo_tasks, rotated, run_with_fault
from .support import failure_kinds, figures, outcome

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

TASKS = 400
CUT_AT = 100  # results seen when the partition begins
HEARTBEAT_S = 2  # AMQP heartbeat the namespaced workers ask for: a partition is noticed within ~2-3 of these


@pytest.fixture
def namespaces() -> Iterator[tuple[Namespace, Namespace]]:
    why = netns_available()
    if why:
        pytest.fail(f"network namespaces are needed here (root, iproute2): {why}", pytrace=False)
    with Namespace("a") as a, Namespace("b") as b:
        yield a, b


@pytest.fixture
async def far_fleet(cluster: PrivateCluster, tmp_path: Path) -> AsyncIterator[Fleet]:
    async with cluster_fleet(cluster, tmp_path, start=2) as fleet:
        yield fleet


def _far_urls(cluster: PrivateCluster) -> list[str]:
    """Each node by its own address (what a namespace reaches), with a short AMQP heartbeat."""
    if any(len(node.listen) < 2 for node in cluster.nodes):
        pytest.fail("the private cluster has no per-node addresses (tests/netns.py)", pytrace=False)
    return [f"{node.url_at(node.listen[1])}?heartbeat={HEARTBEAT_S}" for node in cluster.nodes]


def _brokers(fleet: Fleet, worker_id: str) -> list[str]:
    """The broker nodes a worker's heartbeats named, in order, repeats folded."""
    seen: list[str] = []
    for event in fleet.events:
        payload = event.payload
        mine = isinstance(payload, dict) and payload.get("worker") == worker_id and payload.get("broker")
        if mine and (not seen or seen[-1] != payload["broker"]):
            seen.append(str(payload["broker"]))
    return seen


async def test_a_worker_partitioned_from_its_node_fails_over_and_its_unacked_tasks_are_answered_once(
    cluster: PrivateCluster, namespaces: tuple[Namespace, Namespace], far_fleet: Fleet
) -> None:
    fleet, (cut_ns, other_ns) = far_fleet, namespaces
    far = _far_urls(cluster)
    cut = await fleet.start(
        "Echo", args=("--concurrency", "8"), amqp_url=rotated(cluster, 0, far), inside=cut_ns.command
    )
    await fleet.start(
        "Echo", args=("--concurrency", "8"), amqp_url=rotated(cluster, 1, far), inside=other_ns.command
    )
    first_node = f"{cluster.nodes[0].listen[1]}:"  # host:port of the node the cut worker starts on
    assert _brokers(fleet, cut.worker_id)[-1].startswith(first_node)
    tasks = echo_tasks(fleet, TASKS, 0.2)
    progress = Progress(at=CUT_AT)

    async def partition_then_heal() -> None:
        await progress.reached.wait()
        cut_ns.partition(cluster.nodes[0].listen[1])
        progress.mark_fault()
        await eventually(
            lambda: len(_brokers(fleet, cut.worker_id)) >= 2,
            timeout=120,
            what="the cut worker on another node",
        )
        cut_ns.heal()

    result, duplicates, elapsed = await run_with_fault(fleet, tasks, progress, partition_then_heal)
    log = cut.log()
    line = figures(
        "400 tasks, one namespaced worker partitioned from its node",
        **outcome(result.results, progress.finished, TASKS),
        duplicate_results_dropped=duplicates,
        brokers_of_cut_worker=_brokers(fleet, cut.worker_id),
        first_result_after_cut_s=after_kill(progress.times, progress.fault_at),
        unacked_when_cut=log.count("settle_failed_channel_closed"),
        wall_s=round(elapsed, 1),
        failures=failure_kinds(result.results.values()),
    )
    assert len(result.results) == TASKS, line
    assert {r.status for r in result.results.values()} == {ExecutionStatus.SUCCESS}, line
    assert set(progress.finished) == {str(t.id) for t in tasks}, line
    assert max(progress.finished.values()) == 1, line
    moved = _brokers(fleet, cut.worker_id)
    assert moved[0].startswith(first_node), line
    assert not moved[-1].startswith(first_node), line  # it failed over to another node
    assert "amqp_connection_lost" in log, line
    assert log.count("settle_failed_channel_closed") >= 1, (
        line
    )  # it held unacked tasks: the node requeued them
    assert all(w.proc.returncode is None for w in fleet.workers), line
