"""``StateStore``: what every state store promises (claims, results, journal, run history, retention).

Every method is atomic across processes: two workers, on one host or many, that race for the same task id
see one ``ACQUIRED``. Task ids are the tasks' UUIDs; run ids are the orchestrator's strings. Times are
timezone-aware datetimes; a lease's times are the store's clock (the database server's for PostgreSQL).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Protocol, Self, runtime_checkable
from uuid import UUID

from pydantic import JsonValue

from relaybus.messages import AgentTask, ExecutionResult

from .records import (
    Claim,
    Completion,
    Journal,
    PlannedTask,
    PruneReport,
    RunDetail,
    RunSummary,
    TaskEventKind,
    TaskUpdate,
)

__all__ = ["DEFAULT_RETENTION", "StateStore", "task_digest"]

DEFAULT_RETENTION = timedelta(days=7)
"""How long results, claims, journals and run history are kept unless a store is given another retention."""


def task_digest(task: AgentTask) -> str:
    """The digest a worker claims ``task`` with: SHA-256 of the task's content, ``created_at`` left out.

    The same task republished (a resumed plan builds it anew) has the same digest; another body under the
    same id has another one, and its claim is answered ``MISMATCH``.
    """
    content = task.model_dump(mode="json", exclude={"created_at"})
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@runtime_checkable
class StateStore(Protocol):
    """A store of claims, results, journals and run history; open it (``async with``) before use.

    Using a store that is not open raises :class:`~relaybus.exceptions.UsageError`. A store that cannot be
    reached raises :class:`~relaybus.state.StoreUnavailable` (at ``open`` and mid-run alike).
    """

    url: str
    """Where the store is, its password masked: for messages and logs."""
    retention: timedelta

    @property
    def is_open(self) -> bool: ...

    async def open(self) -> None:
        """Connect, create or migrate the schema, and prune what is older than ``retention``."""

    async def close(self) -> None:
        """Close the connections; idempotent."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    # -- claims and results ------------------------------------------------------------------------------
    async def claim(self, task_id: UUID, *, worker: str, lease_s: float, digest: str) -> Claim:
        """Claim ``task_id`` for ``worker`` for ``lease_s`` seconds; see :class:`ClaimOutcome` for the four
        answers. An expired (or released) lease is taken over: ACQUIRED with the attempt number plus one."""

    async def renew(self, task_id: UUID, worker: str, lease_s: float) -> bool:
        """Extend ``worker``'s lease to ``lease_s`` seconds from now; False when it no longer holds it
        (taken over, released, or the task's result is stored)."""

    async def release(self, task_id: UUID, worker: str) -> bool:
        """Give the lease up without a result (e.g. at shutdown), so the next claim takes over at once;
        False when ``worker`` did not hold it."""

    async def complete(self, task_id: UUID, worker: str, result: ExecutionResult) -> Completion:
        """Store ``result`` and end the claim, atomically. The first stored result wins: a later one (from a
        worker whose lease was taken over) is not stored, and the answer carries the stored one."""

    async def result(self, task_id: UUID) -> ExecutionResult | None:
        """The stored result of ``task_id``, or None."""

    # -- journal -----------------------------------------------------------------------------------------
    async def journal_append(self, task_id: UUID, step: int, kind: str, data: JsonValue) -> bool:
        """Record finished step ``step`` (>= 0) of ``task_id``'s loop; False (nothing written) when that
        step is already recorded."""

    async def journal(self, task_id: UUID) -> Journal:
        """The recorded steps of ``task_id`` in step order; corrupt entries are skipped (``Journal.skipped``),
        logged as warnings and removed, so that the caller re-runs and re-records those steps."""

    # -- run history -------------------------------------------------------------------------------------
    async def record_run(
        self,
        run_id: str,
        name: str,
        tasks: Iterable[PlannedTask | AgentTask | tuple[UUID, str, Sequence[UUID]]],
        *,
        started_at: datetime | None = None,
    ) -> bool:
        """Record a plan run and its tasks (all ``pending``); True when new, False when ``run_id`` was
        already recorded (a resumed run: tasks not yet recorded are added, the others kept)."""

    async def task_event(
        self,
        run_id: str,
        task_id: UUID,
        kind: TaskEventKind | str,
        at: datetime | None = None,
        *,
        worker: str | None = None,
        attempt: int | None = None,
        result: ExecutionResult | None = None,
        cost: float | None = None,
        trace_id: str | None = None,
    ) -> None:
        """Add an event to a recorded task's timeline and update its status, worker, attempts, timings,
        usage, cost and trace id. ``finished`` takes the task's result (else the stored one); it is stored
        unless a result is stored already. A task's status never goes back (a late ``started`` after
        ``finished`` is recorded on the timeline only). ``trace_id`` (32 lowercase hex digits, not all
        zeros; ConfigError otherwise) is the trace the task's message was sent in; the latest given is
        kept."""

    async def task_events(self, run_id: str, updates: Iterable[TaskUpdate]) -> None:
        """:meth:`task_event` for each of ``updates`` in order, in one transaction: all or none are recorded.
        Far cheaper per event, e.g. for the ``published`` events of a whole wave of tasks."""

    async def runs(self, limit: int = 50, *, name: str | None = None, offset: int = 0) -> list[RunSummary]:
        """The ``limit`` most recently started runs (of plan ``name`` if given), newest first, after skipping
        the ``offset`` newest (pages of runs)."""

    async def run(self, run_id: str) -> RunDetail | None:
        """One run with its tasks in plan order, or None."""

    # -- retention ---------------------------------------------------------------------------------------
    async def prune(self, older_than: timedelta | None = None) -> PruneReport:
        """Remove results, claims, journals and runs last touched longer ago than ``older_than`` (default:
        the store's ``retention``). Live leases are never removed."""
