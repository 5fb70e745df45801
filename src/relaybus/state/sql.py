"""``SqlStore``: the one implementation of :class:`StateStore`, over a :class:`Session` of either database.

Subclasses (:class:`SqliteStore`, :class:`PostgresStore`) say how to connect and how to run a transaction;
every statement and decision is here, so both stores behave alike by construction and the contract suite
checks it. Claims: a first claim is one ``INSERT ... ON CONFLICT DO NOTHING``; only a known id takes the
locking path (``SELECT ... FOR UPDATE`` / ``BEGIN IMMEDIATE``), where the decision is made.

Group commit (:mod:`.batch`): the claims made at once (one loop turn, or while the previous batch runs) are
decided together, up to 256: one multi-row first-claim statement, then one locking transaction for the ids
it found known; completions likewise, in one transaction. Each call still gets its own answer, exactly as
alone; an error of a batch fails only that batch's calls.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from types import TracebackType
from typing import NamedTuple, Self
from uuid import UUID

from pydantic import JsonValue

from relaybus.exceptions import ConfigError, UsageError
from relaybus.log import get_logger
from relaybus.messages import AgentTask, ExecutionResult

from . import history
from .base import DEFAULT_RETENTION
from .batch import Batcher
from .codec import check_lease, dump_json, from_epoch, is_invalid, load_json, load_result, now_epoch, seconds
from .errors import StateError
from .migrations import migrate
from .records import (
    Claim,
    ClaimOutcome,
    Completion,
    Journal,
    JournalEntry,
    PlannedTask,
    PruneReport,
    RunDetail,
    RunSummary,
    TaskEventKind,
    TaskUpdate,
)
from .session import Row, Session

__all__ = ["SqlStore", "never_claimed"]

_log = get_logger("relaybus.state")

_FIRST_CLAIM = """
    INSERT INTO relaybus_claims (task_id, digest, holder, attempt, expires_at, updated_at)
    SELECT CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), 1, {now} + ?, {now}
    WHERE NOT EXISTS (SELECT 1 FROM relaybus_results WHERE task_id = ?)
    ON CONFLICT (task_id) DO NOTHING
    RETURNING expires_at"""
_LOCK_CLAIM = """
    SELECT digest, holder, attempt, expires_at, {now} AS now FROM relaybus_claims
    WHERE task_id = ? {for_update}"""
_TAKE_OVER = """
    UPDATE relaybus_claims SET holder = ?, attempt = attempt + 1, expires_at = {now} + ?, updated_at = {now}
    WHERE task_id = ? RETURNING attempt, expires_at"""
_END_CLAIM = "UPDATE relaybus_claims SET holder = NULL, updated_at = {now} WHERE task_id = ?"
_STORE_RESULT = """
    INSERT INTO relaybus_results (task_id, result, stored_at) VALUES (?, ?, {now})
    ON CONFLICT (task_id) DO NOTHING"""

_PRUNE_CLAIMS = """
    DELETE FROM relaybus_claims WHERE updated_at < ? AND expires_at < ?
    AND NOT EXISTS (SELECT 1 FROM relaybus_results r WHERE r.task_id = relaybus_claims.task_id)"""
# A journal goes whole, once its last step is older than the cutoff: never the first steps of a live loop.
_PRUNE_JOURNAL = """
    DELETE FROM relaybus_journal WHERE task_id IN (
        SELECT task_id FROM relaybus_journal GROUP BY task_id HAVING MAX(recorded_at) < ?)"""


class _ClaimCall(NamedTuple):
    task_id: UUID
    worker: str
    lease: float
    digest: str


def never_claimed(task_id: str) -> UsageError:
    return UsageError(f"complete() of task {task_id}, which was never claimed: claim() it first")


class SqlStore(abc.ABC):
    """A :class:`StateStore` over SQL; see the module docstring. Not for direct use: pick a subclass."""

    url: str

    def __init__(self, *, retention: timedelta = DEFAULT_RETENTION) -> None:
        seconds(retention)
        self.retention = retention
        self._is_open = False
        self._finishing = False  # closing, after the batches already queued
        # Group commit: the claims (and, apart, the completions) of one loop turn share a statement or
        # transaction, and those made while it runs share the next: one commit for many tasks.
        self._claims: Batcher[_ClaimCall, Claim] = Batcher(self._claim_batch)
        self._completions: Batcher[tuple[str, str, str], tuple[bool, bool]] = Batcher(self._complete_batch)

    # -- what a database adds --------------------------------------------------------------------------
    @abc.abstractmethod
    async def _connect(self) -> None:
        """Open the connection(s); :class:`StoreUnavailable` naming the URL and the fix when it cannot."""

    @abc.abstractmethod
    async def _disconnect(self) -> None: ...

    @abc.abstractmethod
    def _session(self, *, transaction: bool) -> AbstractAsyncContextManager[Session]:
        """A connection for a few statements: in one write transaction that excludes any other writer of
        the rows it reads (``transaction=True``), or each statement on its own."""

    @abc.abstractmethod
    async def _first_claims(self, session: Session, rows: list[tuple[str, str, str, float]]) -> list[Row]:
        """:data:`_FIRST_CLAIM` for many rows (task id, digest, worker, lease) in one statement, in their
        order: a row (``task_id``, ``expires_at``) for each claim inserted."""

    @abc.abstractmethod
    async def _store_results(self, rows: list[tuple[str, str, str]]) -> list[Row]:
        """For rows (task id, result JSON, worker) of distinct ids, atomically and in their order: lock each
        claim, store the result unless one is, and end the claim when it was stored. A row (``task_id``,
        ``stored``, ``lease_lost``: the claim was not the row's worker's) for each id that has a claim; a
        store may raise :func:`never_claimed` instead when ``rows`` is one id that has none."""

    @abc.abstractmethod
    def _migration_session(self) -> AbstractAsyncContextManager[Session]:
        """A transaction that also excludes every other process migrating the same store."""

    # -- life cycle ------------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._is_open

    async def open(self) -> None:
        if self._is_open:
            raise UsageError(f"the state store at {self.url} is already open")
        await self._connect()
        try:
            async with self._migration_session() as session:
                found = await migrate(session, self.url)
            self._is_open = True
            _log.debug("state_store_opened", url=self.url, schema_version_found=found)
            report = await self.prune()
            if report.total:
                _log.info("state_store_pruned", url=self.url, **report.model_dump(exclude={"cutoff"}))
        except BaseException:
            self._is_open = False
            await self._disconnect()
            raise

    async def close(self) -> None:
        if self._is_open:
            self._is_open = False  # new calls are refused; those already queued in a batch are answered
            self._finishing = True
            idle = asyncio.gather(self._claims.wait_idle(), self._completions.wait_idle())
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(idle, 10)
            finally:
                self._finishing = False
                await self._disconnect()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, open={self._is_open})"

    def _check_open(self) -> None:
        if not self._is_open:
            raise UsageError(f"the state store at {self.url} is not open: use `async with` or await open()")

    def _use(self, *, transaction: bool = False) -> AbstractAsyncContextManager[Session]:
        if not self._finishing:
            self._check_open()
        return self._session(transaction=transaction)

    # -- claims and results ----------------------------------------------------------------------------
    async def claim(self, task_id: UUID, *, worker: str, lease_s: float, digest: str) -> Claim:
        call = _ClaimCall(task_id, worker, check_lease(lease_s), digest)
        self._check_open()
        return await self._claims.submit(task_id, call)

    async def _claim_batch(self, calls: list[_ClaimCall]) -> list[Claim | Exception]:
        """The claims of one batch: first claims in one statement (its own transaction); ids known to the
        store then in one locking transaction. Sorted by id, so that batches of processes racing for the
        same ids take their row locks in one order (PostgreSQL: no deadlock)."""
        calls_by_id = sorted(calls, key=lambda call: str(call.task_id))
        rows = [(str(c.task_id), c.digest, c.worker, c.lease) for c in calls_by_id]
        async with self._use() as session:
            if len(rows) == 1:  # alone (a quiet worker): the plainer statement
                tid, digest, worker, lease = rows[0]
                row = await session.fetchone(_FIRST_CLAIM, tid, digest, worker, lease, tid)
                inserted = {} if row is None else {tid: row["expires_at"]}
            else:
                inserted = {
                    row["task_id"]: row["expires_at"] for row in await self._first_claims(session, rows)
                }
        answers: dict[UUID, Claim | Exception] = {}
        known: list[_ClaimCall] = []
        again: list[_ClaimCall] = []
        for call in calls_by_id:
            expires_at = inserted.get(str(call.task_id))
            if expires_at is None:
                known.append(call)
                continue
            answers[call.task_id] = Claim(
                task_id=call.task_id,
                outcome=ClaimOutcome.ACQUIRED,
                holder=call.worker,
                attempt=1,
                expires_at=from_epoch(expires_at),
            )
        if known:
            try:
                async with self._use(transaction=True) as session:
                    for call in known:
                        claim = await self._claim_known(session, *call)
                        if claim is None:  # the row vanished or appeared meanwhile: claimed alone below
                            again.append(call)
                        else:
                            answers[call.task_id] = claim
            except Exception as exc:  # fails these calls only: the first claims above are committed
                answers.update((call.task_id, exc) for call in known)
                again = []
        for call in again:
            try:
                answers[call.task_id] = await self._claim_again(call)
            except Exception as exc:
                answers[call.task_id] = exc
        return [answers[call.task_id] for call in calls]

    async def _claim_again(self, call: _ClaimCall) -> Claim:
        for _ in range(3):
            async with self._use(transaction=True) as session:
                claim = await self._claim_known(session, *call)
            if claim is not None:
                return claim
        raise StateError(
            f"the claim of task {call.task_id} kept racing with deletions of it: is prune() looping?"
        )

    async def _claim_known(
        self, session: Session, task_id: UUID, worker: str, lease: float, digest: str
    ) -> Claim | None:
        """The decision for an id that has a claim or a result, in the caller's locking transaction; None
        when the row vanished or appeared meanwhile (claim again)."""
        tid = str(task_id)
        row = await session.fetchone(_LOCK_CLAIM, tid)
        if row is not None and row["digest"] != digest:
            return Claim(task_id=task_id, outcome=ClaimOutcome.MISMATCH, holder=row["holder"])
        stored = await session.fetchone("SELECT result FROM relaybus_results WHERE task_id = ?", tid)
        if stored is not None:
            result = load_result(stored["result"], task_id)
            if result is not None:
                return Claim(task_id=task_id, outcome=ClaimOutcome.DONE, result=result)
            await session.execute("DELETE FROM relaybus_results WHERE task_id = ?", tid)  # corrupt: run again
        if row is None:
            inserted = await session.fetchone(_FIRST_CLAIM, tid, digest, worker, lease, tid)
            if inserted is None:
                return None
            expires_at = from_epoch(inserted["expires_at"])
            return Claim(
                task_id=task_id,
                outcome=ClaimOutcome.ACQUIRED,
                holder=worker,
                attempt=1,
                expires_at=expires_at,
            )
        if row["holder"] is not None and row["expires_at"] > row["now"]:
            return Claim(
                task_id=task_id,
                outcome=ClaimOutcome.HELD,
                holder=row["holder"],
                attempt=row["attempt"],
                expires_at=from_epoch(row["expires_at"]),
            )
        taken = await session.fetchone(_TAKE_OVER, worker, lease, tid)
        assert taken is not None  # the row is locked
        if row["holder"] is not None:
            _log.info("lease_taken_over", task_id=tid, worker=worker, previous=row["holder"])
        return Claim(
            task_id=task_id,
            outcome=ClaimOutcome.ACQUIRED,
            holder=worker,
            attempt=taken["attempt"],
            expires_at=from_epoch(taken["expires_at"]),
        )

    async def renew(self, task_id: UUID, worker: str, lease_s: float) -> bool:
        return await self._changes_one_row(
            "UPDATE relaybus_claims SET expires_at = {now} + ?, updated_at = {now}"
            " WHERE task_id = ? AND holder = ?",
            check_lease(lease_s),
            str(task_id),
            worker,
        )

    async def release(self, task_id: UUID, worker: str) -> bool:
        return await self._changes_one_row(
            "UPDATE relaybus_claims SET holder = NULL, expires_at = {now}, updated_at = {now}"
            " WHERE task_id = ? AND holder = ?",
            str(task_id),
            worker,
        )

    async def _changes_one_row(self, sql: str, *args: object) -> bool:
        """Run one statement on its own; whether it changed a row."""
        async with self._use() as session:
            return await session.execute(sql, *args) == 1

    async def complete(self, task_id: UUID, worker: str, result: ExecutionResult) -> Completion:
        if result.task_id != task_id:
            raise ConfigError(f"complete() of task {task_id} was given the result of task {result.task_id}")
        self._check_open()
        tid = str(task_id)
        text = result.model_dump_json()
        stored, lease_lost = await self._completions.submit(task_id, (tid, text, worker))
        if not stored:
            kept = await self.result(task_id)
            if kept is not None:
                _log.warning("late_result_ignored", task_id=tid, worker=worker, kept_worker=kept.worker)
                return Completion(stored=False, result=kept)
            async with self._use(transaction=True) as session:  # the stored one is corrupt: replaced
                await session.execute("UPDATE relaybus_results SET result = ? WHERE task_id = ?", text, tid)
                await session.execute(_END_CLAIM, tid)
        if lease_lost:
            # Stored all the same: the work was done, and the first result is the one every copy gets.
            _log.warning("result_stored_after_lease_lost", task_id=tid, worker=worker)
        return Completion(stored=True, result=result)

    async def _complete_batch(self, calls: list[tuple[str, str, str]]) -> list[tuple[bool, bool] | Exception]:
        """(stored, lease_lost) per call of one batch, or UsageError for an id never claimed."""
        rows = await self._store_results(sorted(calls))
        claims = {row["task_id"]: row for row in rows}
        answers: list[tuple[bool, bool] | Exception] = []
        for task_id, _, _ in calls:
            claim = claims.get(task_id)
            if claim is None:
                answers.append(never_claimed(task_id))
            else:
                answers.append((claim["stored"], claim["stored"] and claim["lease_lost"]))
        return answers

    async def result(self, task_id: UUID) -> ExecutionResult | None:
        async with self._use() as session:
            row = await session.fetchone(
                "SELECT result FROM relaybus_results WHERE task_id = ?", str(task_id)
            )
        return load_result(row["result"] if row else None, task_id)

    # -- journal ---------------------------------------------------------------------------------------
    async def journal_append(self, task_id: UUID, step: int, kind: str, data: JsonValue) -> bool:
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ConfigError(f"a journal step is an int >= 0 (got {step!r})")
        if not kind or len(kind) > 100:
            raise ConfigError(f"a journal entry's kind is 1-100 characters (got {kind!r})")
        return await self._changes_one_row(
            "INSERT INTO relaybus_journal (task_id, step, kind, data, recorded_at)"
            " VALUES (?, ?, ?, ?, {now}) ON CONFLICT (task_id, step) DO NOTHING",
            str(task_id),
            step,
            kind,
            dump_json(data),
        )

    async def journal(self, task_id: UUID) -> Journal:
        tid = str(task_id)
        async with self._use() as session:
            rows = await session.fetchall(
                "SELECT step, kind, data, recorded_at FROM relaybus_journal WHERE task_id = ? ORDER BY step",
                tid,
            )
            entries: list[JournalEntry] = []
            skipped: list[int] = []
            for row in rows:
                data = load_json(row["data"], task_id=tid, step=row["step"])
                if is_invalid(data):
                    skipped.append(row["step"])
                    # Removed, so that the step run again can be recorded (journal_append keeps a known step).
                    await session.execute(
                        "DELETE FROM relaybus_journal WHERE task_id = ? AND step = ? AND data = ?",
                        tid,
                        row["step"],
                        row["data"],
                    )
                    continue
                entries.append(
                    JournalEntry(
                        task_id=task_id,
                        step=row["step"],
                        kind=row["kind"],
                        data=data,
                        recorded_at=from_epoch(row["recorded_at"]),
                    )
                )
        return Journal(entries, skipped)

    # -- run history (the statements live in history.py) -----------------------------------------------
    async def record_run(
        self,
        run_id: str,
        name: str,
        tasks: Iterable[PlannedTask | AgentTask | tuple[UUID, str, Sequence[UUID]]],
        *,
        started_at: datetime | None = None,
    ) -> bool:
        planned = history.planned(tasks)
        async with self._use(transaction=True) as session:
            return await history.record_run(session, run_id, name, planned, started_at, self.url)

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
        update = history.update_of(
            task_id, kind, at, worker=worker, attempt=attempt, result=result, cost=cost, trace_id=trace_id
        )
        await self.task_events(run_id, [update])

    async def task_events(self, run_id: str, updates: Iterable[TaskUpdate]) -> None:
        batch = list(updates)
        if batch:
            async with self._use(transaction=True) as session:
                for update in batch:
                    await history.task_event(session, run_id, update)

    async def runs(self, limit: int = 50, *, name: str | None = None, offset: int = 0) -> list[RunSummary]:
        if limit < 1:
            raise ConfigError(f"runs(limit=...) must be >= 1 (got {limit})")
        if offset < 0:
            raise ConfigError(f"runs(offset=...) must be >= 0 (got {offset})")
        async with self._use() as session:
            return await history.summaries(session, limit=limit, offset=offset, name=name)

    async def run(self, run_id: str) -> RunDetail | None:
        async with self._use() as session:
            return await history.detail(session, run_id)

    # -- retention -------------------------------------------------------------------------------------
    async def prune(self, older_than: timedelta | None = None) -> PruneReport:
        cutoff = now_epoch() - seconds(self.retention if older_than is None else older_than)
        async with self._use(transaction=True) as session:
            results = await session.execute("DELETE FROM relaybus_results WHERE stored_at < ?", cutoff)
            # A claim outlives its result by no more than this statement: claim() treats a stored result
            # as DONE, so neither may go alone while the other says the task still needs running.
            claims = await session.execute(_PRUNE_CLAIMS, cutoff, cutoff)
            journal_entries = await session.execute(_PRUNE_JOURNAL, cutoff)
            runs = await history.prune_runs(session, cutoff)
        return PruneReport(
            cutoff=from_epoch(cutoff),
            results=results,
            claims=claims,
            journal_entries=journal_entries,
            runs=runs,
        )
