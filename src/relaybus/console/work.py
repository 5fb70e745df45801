"""The Work chart's data: what the console observes of finished tasks in the state store, per minute.

:class:`WorkWindow` keeps one :class:`Observation` per finished task (deduplicated by task id) for the last
hour and folds them into per-minute buckets: tasks per second by status, p50/p99 duration, tokens per
minute. :class:`WorkSampler` feeds it every ``sample_s`` seconds from the runs the store holds: it reads the
``sample_runs`` newest runs and, for each one that changed since the last look and is unfinished or started
within the hour, its tasks. Tasks run outside a recorded plan run are not in the store: of those, the chart
shows only how many the fleet answered per second, which :class:`HeartbeatCounter` reads from the growth of
each worker's ``processed`` count in its heartbeats.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from uuid import UUID

from relaybus.messages import ExecutionStatus, WorkerHeartbeat
from relaybus.state import RunSummary, StateStore

from .periodic import Periodic

__all__ = [
    "STATUSES",
    "HeartbeatCounter",
    "Observation",
    "WorkSampler",
    "WorkSeries",
    "WorkWindow",
    "quantile",
]

WINDOW_S = 3600.0
BUCKET_S = 60.0
STATUSES = tuple(status.value for status in ExecutionStatus)


@dataclass(frozen=True, slots=True)
class Observation:
    """One finished task: when (epoch seconds), how it ended, how long it ran, the tokens it used."""

    finished_at: float
    status: str
    duration_s: float | None
    tokens: int


@dataclass(frozen=True)
class WorkSeries:
    """Per-minute figures for the last hour, oldest minute first (``minutes`` buckets)."""

    minutes: int
    rates: dict[str, list[float]]
    """Status -> tasks per second in each minute."""
    p50_s: list[float | None]
    p99_s: list[float | None]
    tokens_per_min: list[float]
    totals: dict[str, int] = field(default_factory=dict)
    """Status -> tasks finished in the hour."""
    processed_per_s: list[float] = field(default_factory=list)
    """Tasks per second the whole fleet answered, from the workers' heartbeats (plan runs or not)."""


def quantile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


class WorkWindow:
    """Observations of the last hour, one per task id; see the module docstring."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._seen: dict[UUID, Observation] = {}
        self._processed: dict[int, int] = {}  # minute (epoch // 60) -> tasks the workers said they answered

    def count_processed(self, tasks: int) -> None:
        """``tasks`` more answered by the fleet now (from heartbeats: every task, in a plan run or not)."""
        minute = int(self._clock() // BUCKET_S)
        self._processed[minute] = self._processed.get(minute, 0) + tasks

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, task_id: UUID, observation: Observation) -> None:
        if observation.finished_at >= self._clock() - WINDOW_S:
            self._seen.setdefault(task_id, observation)

    def series(self) -> WorkSeries:
        now = self._clock()
        start = now - WINDOW_S
        for task_id in [t for t, o in self._seen.items() if o.finished_at < start]:
            del self._seen[task_id]
        minutes = int(WINDOW_S // BUCKET_S)
        last = int(now // BUCKET_S)
        for minute in [m for m in self._processed if m <= last - minutes]:
            del self._processed[minute]
        processed = [self._processed.get(last - minutes + 1 + i, 0) / BUCKET_S for i in range(minutes)]
        counts = {status: [0] * minutes for status in STATUSES}
        durations: list[list[float]] = [[] for _ in range(minutes)]
        tokens = [0.0] * minutes
        for obs in self._seen.values():
            index = min(minutes - 1, max(0, int((obs.finished_at - start) // BUCKET_S)))
            counts.setdefault(obs.status, [0] * minutes)[index] += 1
            if obs.duration_s is not None:
                durations[index].append(obs.duration_s)
            tokens[index] += obs.tokens
        return WorkSeries(
            minutes=minutes,
            rates={status: [n / BUCKET_S for n in row] for status, row in counts.items()},
            p50_s=[quantile(d, 0.5) for d in durations],
            p99_s=[quantile(d, 0.99) for d in durations],
            tokens_per_min=tokens,
            totals={status: sum(row) for status, row in counts.items()},
            processed_per_s=processed,
        )


class HeartbeatCounter:
    """Counts in a :class:`WorkWindow` the tasks the workers answered between two looks at their latest
    heartbeats (``beats()``): the growth of each worker's ``processed``; a restarted worker starts over."""

    def __init__(self, window: WorkWindow, beats: Callable[[], Iterable[WorkerHeartbeat]]) -> None:
        self.window = window
        self._beats = beats
        self._processed: dict[str, int] = {}

    async def sample(self) -> None:
        seen: dict[str, int] = {}
        grown = 0
        for beat in self._beats():
            seen[beat.worker] = beat.processed
            before = self._processed.get(beat.worker)
            if before is not None and beat.processed >= before:
                grown += beat.processed - before
        self._processed = seen
        if grown:
            self.window.count_processed(grown)


class WorkSampler:
    """Feeds a :class:`WorkWindow` from ``store``; :meth:`sample` once, or :meth:`start` a loop."""

    def __init__(
        self,
        store: StateStore,
        window: WorkWindow,
        *,
        sample_s: float = 5.0,
        sample_runs: int = 200,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.window = window
        self._sample_runs = sample_runs
        self._clock = clock
        self._looked: dict[str, tuple[object, ...]] = {}  # run id -> what it looked like last time
        self._loop = Periodic("work", self.sample, sample_s)

    @staticmethod
    def _signature(run: RunSummary) -> tuple[object, ...]:
        return (tuple(sorted(run.statuses.items())), run.finished_at)

    async def sample(self) -> None:
        """Look at the newest runs once; read the tasks of those that changed."""
        horizon = self._clock() - WINDOW_S
        runs = await self._store.runs(self._sample_runs)
        looked: dict[str, tuple[object, ...]] = {}
        for run in runs:
            signature = looked[run.run_id] = self._signature(run)
            recent = run.finished_at is None or run.finished_at.timestamp() >= horizon
            if not recent or self._looked.get(run.run_id) == signature:
                continue
            detail = await self._store.run(run.run_id)
            for task in detail.tasks if detail is not None else ():
                if task.status.is_finished and task.finished_at is not None:
                    self.window.add(
                        task.task_id,
                        Observation(
                            finished_at=task.finished_at.timestamp(),
                            status=task.status.value,
                            duration_s=task.duration_s,
                            tokens=task.usage.total_tokens,
                        ),
                    )
        self._looked = looked

    def start(self) -> None:
        self._loop.start()

    async def close(self) -> None:
        await self._loop.close()
