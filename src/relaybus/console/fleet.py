"""The Fleet view's data: live workers from their heartbeats, and per agent its queue's depth and consumers.

Workers come from :class:`~relaybus.gateway.AgentDirectory` (a worker is live until it says ``stopped`` or
misses three heartbeats). Its broker node (``broker``) and its ``provider/model`` (``llm``) are shown where
the heartbeat carries them (older workers and in-process buses leave them out). Queue figures come from a
:class:`~relaybus.console.queues.QueueWatch`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from relaybus.bus.base import agent_queue_name
from relaybus.messages import WorkerHeartbeat

from .queues import QueueStats

__all__ = ["AgentRow", "Fleet", "WorkerRow", "fleet_of"]


@dataclass(frozen=True, slots=True)
class WorkerRow:
    worker: str
    host: str
    pid: int
    node: str | None
    agents: tuple[str, ...]
    in_flight: int
    capacity: int
    processed: int
    status: str
    age_s: float
    llm: str | None


@dataclass(frozen=True, slots=True)
class AgentRow:
    agent: str
    workers: int
    in_flight: int
    capacity: int
    queue: str
    stats: QueueStats | None


@dataclass(frozen=True, slots=True)
class Fleet:
    workers: tuple[WorkerRow, ...]
    agents: tuple[AgentRow, ...]

    @property
    def in_flight(self) -> int:
        return sum(w.in_flight for w in self.workers)

    @property
    def capacity(self) -> int:
        return sum(w.capacity for w in self.workers)


def fleet_of(
    beats: list[WorkerHeartbeat],
    stats: Callable[[str], QueueStats | None],
    now: datetime | None = None,
) -> Fleet:
    """The fleet these heartbeats describe, with each hosted agent's queue figures from ``stats``."""
    now = now or datetime.now(UTC)
    workers = tuple(
        WorkerRow(
            worker=beat.worker,
            host=beat.host,
            pid=beat.pid,
            node=beat.broker,
            agents=beat.agents,
            in_flight=beat.in_flight,
            capacity=beat.capacity,
            processed=beat.processed,
            status=beat.status,
            age_s=max(0.0, (now - beat.timestamp).total_seconds()),
            llm=beat.llm,
        )
        for beat in sorted(beats, key=lambda b: b.worker)
    )
    hosts: dict[str, list[WorkerRow]] = {}
    for row in workers:
        for agent in row.agents:
            hosts.setdefault(agent, []).append(row)
    names = sorted(hosts)
    agents = tuple(
        AgentRow(
            agent=name,
            workers=len(hosts[name]),
            in_flight=sum(w.in_flight for w in hosts[name]),
            capacity=sum(w.capacity for w in hosts[name]),
            queue=agent_queue_name(name),
            stats=stats(agent_queue_name(name)),
        )
        for name in names
    )
    return Fleet(workers=workers, agents=agents)
