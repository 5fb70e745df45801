"""The records of a state store: claims, completions, journal entries, run history, prune reports.

All are frozen pydantic models (``model_dump_json`` gives what ``--json`` prints; :class:`TaskUpdate` is given
to the store rather than returned) except :class:`Journal`, a list of :class:`JournalEntry` that also says
which steps were skipped, and :class:`PlannedTask`, a plain named tuple so that ``(task_id, target,
depends_on)`` tuples are accepted as they are.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, NamedTuple, Self
from uuid import UUID

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, model_validator
from pydantic_core import PydanticCustomError

from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus, Usage

__all__ = [
    "Claim",
    "ClaimOutcome",
    "Completion",
    "Journal",
    "JournalEntry",
    "PlannedTask",
    "PruneReport",
    "RunDetail",
    "RunSummary",
    "RunTask",
    "TaskEvent",
    "TaskEventKind",
    "TaskState",
    "TaskUpdate",
    "TraceId",
    "check_trace_id",
    "is_trace_id",
]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# -- claims ----------------------------------------------------------------------------------------------
class ClaimOutcome(enum.StrEnum):
    """What :meth:`StateStore.claim` decided."""

    ACQUIRED = "acquired"
    """The caller holds the lease: run the task, renew while it runs, then ``complete`` (or ``release``)."""
    HELD = "held"
    """Another live lease (possibly of the same worker name): wait and claim again, do not run."""
    DONE = "done"
    """A result is stored: answer with ``Claim.result``, do not run."""
    MISMATCH = "mismatch"
    """The id is known with a different body digest: refuse the task, do not run."""


class Claim(_Record):
    """The answer to a claim; which fields are set depends on ``outcome`` (see each field)."""

    task_id: UUID
    outcome: ClaimOutcome
    holder: str | None = None
    """ACQUIRED: the caller; HELD: the worker whose lease is live."""
    attempt: int = 0
    """ACQUIRED: this run's attempt, 1 for the first and one more for each takeover; HELD: the holder's."""
    expires_at: datetime | None = None
    """ACQUIRED / HELD: when the lease ends unless renewed (the store's clock)."""
    result: ExecutionResult | None = None
    """DONE: the stored result."""

    @property
    def acquired(self) -> bool:
        return self.outcome is ClaimOutcome.ACQUIRED


class Completion(_Record):
    """The answer to :meth:`StateStore.complete`: the first stored result wins.

    ``stored`` is False when a result was already stored for the task (by a worker that finished first, e.g.
    after this one's lease was taken over); ``result`` is then that earlier result, the one to reply with.
    """

    stored: bool
    result: ExecutionResult


# -- journal ---------------------------------------------------------------------------------------------
class JournalEntry(_Record):
    """One finished step of a task's agent loop (a model answer, a tool result), as recorded."""

    task_id: UUID
    step: int
    kind: str
    data: JsonValue
    recorded_at: datetime


class Journal(list[JournalEntry]):
    """A task's journal in step order. ``skipped`` lists the steps whose stored data was corrupt: they were
    left out (and removed from the store, so that the re-run step can be recorded again)."""

    def __init__(self, entries: Iterable[JournalEntry] = (), skipped: Iterable[int] = ()) -> None:
        super().__init__(entries)
        self.skipped: tuple[int, ...] = tuple(skipped)

    @property
    def steps(self) -> list[int]:
        return [entry.step for entry in self]


# -- run history -----------------------------------------------------------------------------------------
_HEX = frozenset("0123456789abcdef")


def is_trace_id(value: str) -> bool:
    """Whether ``value`` is a W3C trace id: 32 lowercase hex digits, not all zeros."""
    return len(value) == 32 and _HEX.issuperset(value) and value != "0" * 32


def check_trace_id(value: str) -> str:
    """``value`` if it is a W3C trace id; else the pydantic error that says what one is (a validator)."""
    if not is_trace_id(value):
        raise PydanticCustomError(
            "trace_id",
            "a trace id is 32 lowercase hex digits, not all zeros (a W3C traceparent's), not {value}",
            {"value": repr(value[:40])},
        )
    return value


TraceId = Annotated[str, AfterValidator(check_trace_id)]
"""A W3C trace id as a ``traceparent`` header carries it: 32 lowercase hex digits, not all zeros."""


class PlannedTask(NamedTuple):
    """A task of a plan run, as :meth:`StateStore.record_run` takes it; ``target`` is its topic or agent."""

    task_id: UUID
    target: str
    depends_on: tuple[UUID, ...] = ()
    key: str | None = None

    @classmethod
    def of(cls, task: AgentTask, key: str | None = None) -> PlannedTask:
        """The planned task for ``task``: its agent's name when it addresses one, else its topic."""
        return cls(task.id, task.agent or task.topic, tuple(task.depends_on), key)


class TaskEventKind(enum.StrEnum):
    """A point on a task's timeline."""

    PUBLISHED = "published"
    STARTED = "started"
    FINISHED = "finished"


class TaskState(enum.StrEnum):
    """Where a task of a run is: not yet published, published, running, or how it ended."""

    PENDING = "pending"
    PUBLISHED = "published"
    RUNNING = "running"
    SUCCESS = ExecutionStatus.SUCCESS.value
    FAILURE = ExecutionStatus.FAILURE.value
    TIMEOUT = ExecutionStatus.TIMEOUT.value
    CANCELLED = ExecutionStatus.CANCELLED.value
    REJECTED = ExecutionStatus.REJECTED.value

    @property
    def is_finished(self) -> bool:
        return self.value in _FINISHED


_FINISHED = frozenset(status.value for status in ExecutionStatus)


class TaskUpdate(_Record):
    """One event to record on a task's timeline, for :meth:`StateStore.task_events`; ``at`` is now by default.

    ``finished`` takes the task's result (None: the stored one) and optionally its cost. ``trace_id`` (any
    event, typically ``published``) is the trace the task's message was sent in; the latest given is kept.
    """

    task_id: UUID
    kind: TaskEventKind
    at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    worker: str | None = None
    attempt: Annotated[int, Field(ge=1)] | None = None
    result: ExecutionResult | None = None
    cost: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    trace_id: TraceId | None = None

    @model_validator(mode="after")
    def _result_of_this_task(self) -> Self:
        if self.result is not None and self.result.task_id != self.task_id:
            raise ValueError(
                f"the event of task {self.task_id} was given the result of task {self.result.task_id}"
            )
        return self


class TaskEvent(_Record):
    """One event of a task's timeline, as recorded by :meth:`StateStore.task_event`."""

    kind: TaskEventKind
    at: datetime
    worker: str | None = None
    attempt: int | None = None


class RunTask(_Record):
    """A task of a recorded run: status, worker, attempts, timings, usage, cost, trace id and result."""

    task_id: UUID
    key: str | None
    target: str
    depends_on: tuple[UUID, ...]
    status: TaskState
    worker: str | None = None
    attempts: int = 0
    published_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    usage: Usage = Usage()
    cost: float | None = None
    trace_id: TraceId | None = None
    """The trace id of the ``traceparent`` the task was (last) published with; None when none was recorded
    (e.g. a run recorded before relaybus kept trace ids)."""
    result: ExecutionResult | None = None
    """The stored result (None once pruned, or when the finished event gave none)."""
    events: tuple[TaskEvent, ...] = ()
    """The timeline, oldest first."""

    @property
    def duration_s(self) -> float | None:
        """Started to finished (first start, so retries count), or None until both are known."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class RunSummary(_Record):
    """One recorded plan run, for ``relaybus runs list``. ``finished_at`` is set once every task finished."""

    run_id: str
    name: str
    started_at: datetime
    finished_at: datetime | None
    task_count: int
    statuses: dict[TaskState, int]
    """How many tasks are in each state (states with no task left out)."""
    usage: Usage = Usage()
    cost: float | None = None
    """The sum of the costs given with finished events; None when none was given."""

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return max(0.0, (self.finished_at - self.started_at).total_seconds())

    @property
    def tokens(self) -> int:
        return self.usage.total_tokens

    @property
    def is_finished(self) -> bool:
        return self.finished_at is not None


class RunDetail(RunSummary):
    """A recorded run with its tasks in plan order, for ``relaybus runs show RUN``."""

    tasks: tuple[RunTask, ...]


class PruneReport(_Record):
    """What :meth:`StateStore.prune` removed: rows last touched before ``cutoff``."""

    cutoff: datetime
    results: int = 0
    claims: int = 0
    journal_entries: int = 0
    runs: int = 0

    @property
    def total(self) -> int:
        return self.results + self.claims + self.journal_entries + self.runs
