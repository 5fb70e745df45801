"""Helpers of the cluster tests: worker processes and a caller on a private RabbitMQ cluster."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from pathlib import Path

from tests.agents.processes import Fleet, running_fleet
from tests.rabbitmq_nodes import PrivateCluster


def rotated(cluster: PrivateCluster, start: int, urls: list[str] | None = None) -> str:
    """The cluster's URLs (or ``urls``) comma-separated, beginning with node ``start``: a bus given this
    connects to that node first and moves to the next ones on loss."""
    urls = urls or cluster.urls
    return ",".join(urls[start:] + urls[:start])


async def full_membership(cluster: PrivateCluster, queue: str) -> bool:
    """Whether every node of the cluster is an online member of ``queue`` (asked off the event loop)."""
    info = await asyncio.to_thread(cluster.queue, queue)
    return sorted(info.get("online", [])) == sorted(node.name for node in cluster.nodes)


def after_kill(times: list[float], killed_at: list[float]) -> float | None:
    """Seconds from the kill to the first result after it."""
    later = [t for t in times if killed_at and t > killed_at[0]]
    return round(later[0] - killed_at[0], 2) if later else None


def longest_gap(times: list[float], killed_at: list[float]) -> float | None:
    """The longest pause between two results (or the kill and the first result) after the kill."""
    if not killed_at:
        return None
    later = [killed_at[0], *(t for t in times if t > killed_at[0])]
    return round(max((b - a for a, b in itertools.pairwise(later)), default=0.0), 2)


def cluster_fleet(
    cluster: PrivateCluster, tmp_path: Path, *, start: int = 0, urls: list[str] | None = None
) -> contextlib.AbstractAsyncContextManager[Fleet]:
    """A :class:`~tests.agents.processes.Fleet` whose own bus (the caller's) is on the cluster, beginning with
    node ``start``."""
    return running_fleet(rotated(cluster, start, urls), tmp_path, reconnect_timeout=120)
