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


async def runs_reported(fleet: Fleet, *, timeout_s: float = 60.0) -> int:
    """Tasks the fleet's workers ran in all (``processed`` of each worker's heartbeat, summed).

    Waits for a heartbeat sent after the call from every worker still running (:func:`heard_from_all`): one
    from before could be stale and undercount (under load a fresh one can take more than a second). A worker
    that is no longer running counts with what it reported last, so this is a lower bound when workers were
    killed.
    """
    await asyncio.sleep(0.5)  # a worker acks (and counts) its last task just after the caller has its result
    await heard_from_all(fleet, timeout_s=timeout_s)
    # the highest count of each worker: the fresh heartbeat's for those running, the last one for the others
    return sum(_processed(fleet.events, {w.worker_id for w in fleet.workers}).values())


async def heard_from_all(fleet: Fleet, *, timeout_s: float = 60.0) -> dict[str, int]:
    """Ping the fleet's workers (again every 2 s) until each one still running has sent a heartbeat since the
    call, so each is connected now (e.g. back after a broker restart); their ``processed`` counts. Fails after
    ``timeout_s`` naming the workers not heard from."""
    ours = {w.worker_id for w in fleet.workers}  # the broker is shared: other runs' workers beat too
    running = {w.worker_id for w in fleet.workers if w.proc.returncode is None}
    since = len(fleet.events)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    fresh: dict[str, int] = {}
    while True:
        await fleet.bus.publish(OutgoingMessage(body=b"{}", routing_key=PING_ROUTING_KEY, mandatory=False))
        pinged = loop.time()
        while loop.time() < min(pinged + 2.0, deadline):
            fresh = _processed(fleet.events[since:], ours)
            if running <= set(fresh):
                return fresh
            await asyncio.sleep(0.05)
        if loop.time() >= deadline:
            missing = sorted(running - set(fresh))
            raise AssertionError(f"no heartbeat in {timeout_s:.0f} s from running workers {missing}")


def _processed(events: Iterable[Any], workers: set[str]) -> dict[str, int]:
    """Each of ``workers``' highest ``processed`` count among the heartbeats in ``events`` (it only grows, so
    the highest is the latest, whatever order the heartbeats arrived in)."""
    latest: dict[str, int] = {}
    for event in events:
        if event.routing_key == HEARTBEAT_ROUTING_KEY and isinstance(event.payload, dict):
            worker = str(event.payload.get("worker"))
            if worker in workers:
                latest[worker] = max(latest.get(worker, 0), int(event.payload.get("processed", 0)))
    return latest


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
