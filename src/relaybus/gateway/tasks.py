"""``TaskRegistry``: the tasks the gateway put on the bus, their phase, and their results kept for a while.

What a caller may rely on:

- :meth:`TaskRegistry.submit` returns at once; the task is published and awaited by the gateway's one
  :class:`~relaybus.ProjectOrchestrator` in an asyncio task of its own, so any number of HTTP requests wait on
  one event loop. A task id submitted again while the first is known returns the first record and publishes
  nothing (the id is the idempotency key, as on the bus).
- A record goes ``submitted`` (accepted) -> ``working`` (handed to the bus: queued for, or running on, a
  worker; the gateway cannot tell which until workers stream task events) -> ``finished`` (it has its
  :class:`~relaybus.ExecutionResult`). Every transition is kept in order, so a stream shows each one.
- A finished record is kept for ``result_ttl_s`` seconds and among the newest ``max_results`` finished ones,
  then forgotten (``get`` returns None). At most ``max_in_flight`` tasks are unfinished at once; one more
  raises :class:`TooManyTasks`.
- :meth:`TaskRegistry.cancel` ends a task as ``CANCELLED`` and asks the worker running it to stop
  (:meth:`~relaybus.ProjectOrchestrator.cancel`); a task not yet handed to the bus is never published.
- :meth:`TaskRegistry.stop_waiting` (the gateway is shutting down) wakes every waiter and stream at once.
- With ``stream=True`` (the default) every task is sent streaming and its
  :class:`~relaybus.TaskEvent` s are kept on its record (at most ``max_events``; more are dropped, a gap in
  ``seq``); :meth:`TaskRegistry.progress` yields them between the WORKING and FINISHED transitions.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from relaybus.exceptions import ConfigError, RelaybusError
from relaybus.log import get_logger
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus, TaskEvent
from relaybus.orchestrator import ProjectOrchestrator

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_RESULTS",
    "DEFAULT_RESULT_TTL_S",
    "TaskPhase",
    "TaskRecord",
    "TaskRegistry",
    "TooManyTasks",
    "Transition",
]

DEFAULT_RESULT_TTL_S = 3600.0
DEFAULT_MAX_RESULTS = 10_000
DEFAULT_MAX_IN_FLIGHT = 10_000
DEFAULT_MAX_EVENTS = 2_000
_CANCEL_SETTLE_S = 5.0  # how long cancel() waits for the orchestrator's CANCELLED result to land


class TooManyTasks(RelaybusError):
    """The gateway already has ``max_in_flight`` unfinished tasks; try again later (HTTP 503)."""


class TaskPhase(enum.StrEnum):
    """Where a task submitted through the gateway is."""

    SUBMITTED = "submitted"
    WORKING = "working"
    FINISHED = "finished"


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of phase, with when it happened (UTC)."""

    phase: TaskPhase
    at: datetime


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False)
class TaskRecord:
    """One task: what was submitted, its transitions, and its result once finished.

    ``context`` is the submitter's own data kept beside the task (the A2A layer keeps the context id and the
    user's message there); the registry never reads it.
    """

    task: AgentTask
    context: dict[str, Any] = field(default_factory=dict)
    transitions: list[Transition] = field(default_factory=lambda: [Transition(TaskPhase.SUBMITTED, _now())])
    result: ExecutionResult | None = None
    cancel_reason: str | None = None
    events: list[TaskEvent] = field(default_factory=list)
    max_events: int = DEFAULT_MAX_EVENTS
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def id(self) -> UUID:
        return self.task.id

    @property
    def phase(self) -> TaskPhase:
        return self.transitions[-1].phase

    @property
    def is_finished(self) -> bool:
        return self.result is not None

    @property
    def updated_at(self) -> datetime:
        return self.transitions[-1].at

    def add_event(self, event: TaskEvent) -> None:
        """Keep a task event of this task (the ``result`` event is not kept: it is ``result``)."""
        if event.kind != "result" and len(self.events) < self.max_events and not self.is_finished:
            self.events.append(event)
            self._wake()

    def _move(self, phase: TaskPhase) -> None:
        self.transitions.append(Transition(phase, _now()))
        self._wake()

    def _wake(self) -> None:
        # A fresh event per change: whoever waited on the old one sees the change, later waiters wait anew.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


class TaskRegistry:
    """The gateway's tasks; see the module docstring. ``orchestrator`` must be started by the owner."""

    def __init__(
        self,
        orchestrator: ProjectOrchestrator,
        *,
        result_ttl_s: float = DEFAULT_RESULT_TTL_S,
        max_results: int = DEFAULT_MAX_RESULTS,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        clock: Callable[[], float] = time.monotonic,
        stream: bool = True,
    ) -> None:
        if not result_ttl_s > 0:
            raise ConfigError(f"result_ttl_s must be > 0 seconds, got {result_ttl_s!r}")
        if max_results < 1 or max_in_flight < 1:
            raise ConfigError(
                f"max_results and max_in_flight must be at least 1, got {max_results!r} and {max_in_flight!r}"
            )
        self._orchestrator = orchestrator
        self._ttl_s = result_ttl_s
        self._max_results = max_results
        self._max_in_flight = max_in_flight
        self._clock = clock
        self._stream = stream
        self._active: dict[UUID, TaskRecord] = {}
        self._finished: OrderedDict[UUID, tuple[float, TaskRecord]] = OrderedDict()  # oldest first
        self._runners: set[asyncio.Task[None]] = set()
        self._waking = False
        self._log = get_logger("relaybus.gateway.tasks")

    @property
    def in_flight(self) -> int:
        """Tasks submitted and not finished yet."""
        return len(self._active)

    @property
    def retained(self) -> int:
        """Finished tasks whose result is still kept."""
        self._prune()
        return len(self._finished)

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop_waiting` was called: waits and streams end early."""
        return self._waking

    def get(self, task_id: UUID) -> TaskRecord | None:
        """The record of ``task_id`` while it runs or its result is kept, else None."""
        record = self._active.get(task_id)
        if record is not None:
            return record
        self._prune()
        kept = self._finished.get(task_id)
        return kept[1] if kept is not None else None

    def records(self) -> list[TaskRecord]:
        """Every record known now, unfinished ones first."""
        self._prune()
        return [*self._active.values(), *(record for _, record in self._finished.values())]

    def submit(self, task: AgentTask, *, context: dict[str, Any] | None = None) -> tuple[TaskRecord, bool]:
        """Start ``task``; returns its record and whether it is new (False: that id was known already)."""
        known = self.get(task.id)
        if known is not None:
            return known, False
        if len(self._active) >= self._max_in_flight:
            raise TooManyTasks(
                f"the gateway already waits for {len(self._active)} tasks (--max-in-flight); retry later"
            )
        record = TaskRecord(task, context=dict(context or {}))
        self._active[task.id] = record
        runner = asyncio.create_task(self._run(record), name=f"relaybus-gateway-task-{task.id}")
        self._runners.add(runner)
        runner.add_done_callback(self._runners.discard)
        return record, True

    async def _run(self, record: TaskRecord) -> None:
        if record.is_finished:  # cancelled before this task got to run: never published
            return
        # No await between this check-and-move and execute_task registering the wait (the orchestrator is
        # started), so a cancel() either finds the task SUBMITTED or finds the orchestrator waiting for it.
        record._move(TaskPhase.WORKING)
        try:
            on_event = record.add_event if self._stream else None
            result = await self._orchestrator.execute_task(record.task, on_event=on_event)
        except RelaybusError as exc:  # the orchestrator was closed under us: the gateway is stopping
            result = ExecutionResult.failed(
                record.id, ExecutionStatus.FAILURE, type(exc).__name__, str(exc), retryable=True
            )
        self._finish(record, result)

    def _finish(self, record: TaskRecord, result: ExecutionResult) -> None:
        if record.is_finished:
            return
        record.result = result
        self._active.pop(record.id, None)
        self._finished[record.id] = (self._clock(), record)
        record._move(TaskPhase.FINISHED)
        self._prune()

    def _prune(self) -> None:
        horizon = self._clock() - self._ttl_s
        finished = self._finished
        while finished and (len(finished) > self._max_results or next(iter(finished.values()))[0] < horizon):
            finished.popitem(last=False)

    async def cancel(self, task_id: UUID, reason: str = "cancelled through the gateway") -> TaskRecord | None:
        """Cancel ``task_id``; returns its record (finished now, as CANCELLED unless it had finished before)
        or None when it is not known. Cancelling a finished task changes nothing."""
        record = self.get(task_id)
        if record is None or record.is_finished:
            return record
        record.cancel_reason = reason
        if record.phase is TaskPhase.SUBMITTED:
            self._finish(
                record, ExecutionResult.failed(task_id, ExecutionStatus.CANCELLED, "Cancelled", reason)
            )
            return record
        await self._orchestrator.cancel(task_id, reason)
        await self.wait_finished(record, _CANCEL_SETTLE_S)
        return record

    async def wait_finished(self, record: TaskRecord, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for ``record`` to finish; False when it did not (or the gateway stops)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not record.is_finished and not self._waking:
            changed = record._changed
            try:
                async with asyncio.timeout_at(deadline):
                    await changed.wait()
            except TimeoutError:
                break
        return record.is_finished

    async def transitions(
        self, record: TaskRecord, start: int = 0, *, idle_s: float | None = None
    ) -> AsyncIterator[Transition | None]:
        """Each transition of ``record`` from index ``start`` on, in order, as it happens, and None after
        every ``idle_s`` seconds without one (for keep-alives); ends after FINISHED, or early when the
        gateway stops."""
        async for update in self.progress(record, start, len(record.events), idle_s=idle_s):
            if not isinstance(update, TaskEvent):
                yield update

    async def progress(
        self, record: TaskRecord, start: int = 0, events_from: int = 0, *, idle_s: float | None = None
    ) -> AsyncIterator[Transition | TaskEvent | None]:
        """Like :meth:`transitions`, with the task's events (from index ``events_from`` of ``record.events``)
        after WORKING and before FINISHED, each as it comes."""
        sent = events_from
        index = start
        while True:
            while (
                index < len(record.transitions) and record.transitions[index].phase is not TaskPhase.FINISHED
            ):
                index += 1
                yield record.transitions[index - 1]
            while sent < len(record.events):
                sent += 1
                yield record.events[sent - 1]
            if index < len(record.transitions):  # FINISHED: no event comes after it
                yield record.transitions[index]
                return
            if record.is_finished or self._waking:
                return
            changed = record._changed
            try:
                async with asyncio.timeout(idle_s):
                    await changed.wait()
            except TimeoutError:
                yield None

    def stop_waiting(self) -> None:
        """Wake every waiter and stream now (the gateway is shutting down); the tasks go on."""
        self._waking = True
        for record in list(self._active.values()):
            record._wake()

    async def close(self) -> None:
        """Stop waiting and end the runners. The tasks themselves go on on their workers; a result that
        comes back after this is no longer collected (the owner closes the orchestrator next)."""
        self.stop_waiting()
        runners = list(self._runners)
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
