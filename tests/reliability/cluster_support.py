"""Helpers of the cluster tests: worker processes and a caller on a private RabbitMQ cluster."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from relaybus.messages import AgentTask
from relaybus.orchestrator import PlanProgress, PlanResult, ProjectOrchestrator
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


@dataclass
class Progress:
    """What a plan's ``on_progress`` saw: results per task, when each came, and a trigger after ``at``."""

    at: int
    finished: Counter[str] = field(default_factory=Counter)
    times: list[float] = field(default_factory=list)
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    fault_at: list[float] = field(default_factory=list)
    """When the fault was injected (``mark_fault``)."""

    def __call__(self, step: PlanProgress) -> None:
        if step.kind == "finished":
            self.finished[str(step.task.id)] += 1
            self.times.append(time.monotonic())
            if step.done >= self.at:
                self.reached.set()

    def mark_fault(self) -> None:
        self.fault_at.append(time.monotonic())


async def run_with_fault(
    fleet: Fleet, tasks: list[AgentTask], progress: Progress, fault: Callable[[], Awaitable[None]]
) -> tuple[PlanResult, int, float]:
    """Run ``tasks`` as one plan from the fleet's bus while ``fault()`` runs beside it; return the result,
    the duplicate results the caller dropped, and the plan's wall time."""
    started = time.monotonic()
    faulting = asyncio.create_task(fault())
    async with ProjectOrchestrator(fleet.bus, default_timeout_s=300) as orchestrator:
        result = await asyncio.wait_for(orchestrator.run_plan(tasks, on_progress=progress), 300)
        duplicates = orchestrator.duplicates_dropped
    elapsed = time.monotonic() - started
    await asyncio.wait_for(faulting, 150)
    return result, duplicates, elapsed


def echo_tasks(fleet: Fleet, count: int, sleep_s: float) -> list[AgentTask]:
    """``count`` tasks for the sample Echo agent, each sleeping ``sleep_s``."""
    return [
        AgentTask(topic=fleet.topic("echo"), prompt=f"task-{i}", input={"sleep_s": sleep_s}, timeout_s=300)
        for i in range(count)
    ]


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
