"""Run history: what an orchestrator with a state store records of each plan run.

:class:`RunRecorder` records a plan run under its run id (:meth:`~relaybus.state.StateStore.record_run`:
every task ``pending``, with its key, target and dependencies), then each task's ``published`` (with the
trace id its message carries) and ``finished`` events (status, worker, attempts, timings, usage, cost,
result) as the plan runs. The events are written in batches by one background writer
(:meth:`~relaybus.state.StateStore.task_events`), so a slow store never slows the plan;
:meth:`RunRecorder.close` writes what is left. A store that fails is retried with backoff a few times, then
the batch is given up with a warning (``run_history_lost``): the plan's results never depend on its history.

- **Resuming.** A run id recorded before (the same named run started again after a crash) keeps its
  history: :meth:`RunRecorder.begin` returns the stored results of its tasks that a worker finished, and
  the orchestrator uses them instead of publishing those tasks again (so a plan whose reply queue was lost
  with its broker still finishes from the store). Tasks interrupted by the caller (a cancel, Ctrl-C:
  CANCELLED ``Cancelled`` without a worker) are not recorded as finished, so they run on resume.
- ``relaybus runs list | show RUN`` and the console read what is recorded here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from uuid import UUID

from relaybus.exceptions import RelaybusError, StoreUnavailable
from relaybus.log import FilteringBoundLogger
from relaybus.messages import ExecutionResult, ExecutionStatus
from relaybus.state import PlannedTask, RunDetail, StateStore, TaskEventKind, TaskUpdate

from .plan import Plan
from .pricing import ModelPrice, model_of, price_of
from .scheduler import PlanProgress, ProgressCallback

__all__ = ["RunRecorder", "both", "reusable"]

_RETRIES = 3
_REUSED = frozenset({ExecutionStatus.SUCCESS, ExecutionStatus.FAILURE, ExecutionStatus.REJECTED})


class RunRecorder:
    """Records one plan run in ``store`` under ``run_id``; see the module docstring."""

    def __init__(
        self,
        store: StateStore,
        run_id: str,
        plan: Plan,
        *,
        log: FilteringBoundLogger,
        prices: Mapping[str, ModelPrice] | None = None,
        default_model: str | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.plan = plan
        self._log = log.bind(run_id=run_id)
        self._prices = {**(prices or {}), **plan.prices}
        self._default_model = default_model
        self._pending: list[TaskUpdate] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self.lost = 0
        """Events given up because the store kept failing."""

    async def begin(self) -> dict[UUID, ExecutionResult]:
        """Record the run (or find it recorded) and start the writer; the stored results of its tasks that
        a worker finished in an earlier attempt of this run (empty for a new run)."""
        tasks = [PlannedTask.of(task, self.plan.keys.get(task.id)) for task in self.plan.tasks]
        new = await self.store.record_run(self.run_id, self.plan.name, tasks, started_at=datetime.now(UTC))
        self._writer = asyncio.get_running_loop().create_task(
            self._write(), name=f"relaybus-run-{self.run_id}"
        )
        if new:
            return {}
        detail = await self.store.run(self.run_id)
        return {} if detail is None else reusable(detail)

    def on_progress(self, event: PlanProgress) -> None:
        """A :data:`~relaybus.orchestrator.scheduler.ProgressCallback`: queue the event for the writer."""
        if event.kind == "published":
            self._queue(
                TaskUpdate(task_id=event.task.id, kind=TaskEventKind.PUBLISHED, trace_id=event.trace_id)
            )
            return
        result = event.result
        if result is None or (result.worker is None and result.error and result.error.type == "Cancelled"):
            return  # interrupted by the caller: left unfinished, so that a resumed run runs it
        price = price_of(self._prices, model_of(event.task, result.output, self._default_model))
        self._queue(
            TaskUpdate(
                task_id=event.task.id,
                kind=TaskEventKind.FINISHED,
                worker=result.worker,
                attempt=max(1, result.attempts) if result.worker else None,
                result=result,
                cost=None if price is None else price.cost(result.usage),
            )
        )

    async def close(self) -> None:
        """Write the events still queued, then stop the writer."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        self._closing = True
        self._wake.set()
        await writer

    def _queue(self, update: TaskUpdate) -> None:
        self._pending.append(update)
        self._wake.set()

    async def _write(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            for attempt in range(_RETRIES):
                try:
                    await self.store.task_events(self.run_id, batch)
                    break
                except StoreUnavailable as exc:
                    if attempt == _RETRIES - 1:
                        self.lost += len(batch)
                        self._log.warning("run_history_lost", events=len(batch), error=str(exc)[:300])
                    else:
                        await asyncio.sleep(0.2 * 2**attempt)
                except RelaybusError as exc:  # not transient: a bug, or a run recorded differently
                    self.lost += len(batch)
                    self._log.warning("run_history_lost", events=len(batch), error=str(exc)[:300])
                    break


def reusable(detail: RunDetail) -> dict[UUID, ExecutionResult]:
    """The stored results of ``detail``'s tasks a worker finished (not timed out or cancelled)."""
    return {
        task.task_id: task.result
        for task in detail.tasks
        if task.result is not None and task.result.worker is not None and task.result.status in _REUSED
    }


def both(first: ProgressCallback, then: ProgressCallback | None) -> ProgressCallback:
    """A progress callback calling ``first``, then ``then`` (if any)."""
    if then is None:
        return first

    def call(event: PlanProgress) -> None:
        first(event)
        then(event)

    return call
