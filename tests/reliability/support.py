"""Helpers of the reliability suite: what worker processes report, and one-line figures for the output."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from relaybus.agents.heartbeat import HEARTBEAT_ROUTING_KEY, PING_ROUTING_KEY
from relaybus.bus.base import OutgoingMessage
from relaybus.messages import ExecutionResult
from tests.agents.processes import Fleet


async def runs_reported(fleet: Fleet, *, settle_s: float = 1.5) -> int:
    """Tasks the fleet's workers ran in all (``processed`` of each worker's latest heartbeat, summed).

    Asks every worker for a fresh heartbeat first. A worker killed with SIGKILL counts with what it reported
    last, so this is a lower bound when workers were killed.
    """
    await fleet.bus.publish(OutgoingMessage(body=b"{}", routing_key=PING_ROUTING_KEY, mandatory=False))
    await asyncio.sleep(settle_s)
    ours = {w.worker_id for w in fleet.workers}  # the broker is shared: other runs' workers beat too
    latest: dict[str, int] = {}
    for event in fleet.events:
        if event.routing_key == HEARTBEAT_ROUTING_KEY and isinstance(event.payload, dict):
            worker = str(event.payload.get("worker"))
            if worker in ours:
                latest[worker] = int(event.payload.get("processed", 0))
    return sum(latest.values())


def status_counts(results: Iterable[ExecutionResult]) -> dict[str, int]:
    return dict(Counter(r.status.value for r in results))


def failure_kinds(results: Iterable[ExecutionResult], most: int = 3) -> list[tuple[str, int]]:
    """The commonest error types and first words of their messages among unsuccessful results."""
    kinds = Counter(
        f"{r.status.value}:{r.error.type}: {r.error.message[:120]}" if r.error else r.status.value
        for r in results
        if not r.ok
    )
    return kinds.most_common(most)


def outcome(results: Mapping[Any, ExecutionResult], finished: Counter[str], tasks: int) -> dict[str, object]:
    """The figures every reliability run reports: tasks, succeeded, lost, seen twice."""
    return {
        "tasks": tasks,
        "succeeded": status_counts(results.values()).get("success", 0),
        "lost": tasks - len(results),
        "seen_twice": sum(1 for n in finished.values() if n > 1),
    }


def figures(title: str, **values: object) -> str:
    """``title: a=1, b=2``: printed (run pytest with -s to see it) and used as assertion messages."""
    line = f"{title}: " + ", ".join(f"{k}={v}" for k, v in values.items())
    print(f"\n[reliability] {line}")
    return line
