"""``PlanScheduler``: run one plan, each task as soon as its dependencies succeeded, through a given runner.

The scheduler knows nothing of buses or reply queues. It receives a :data:`RunTask` (publish one task and
await its result) and calls it for every task whose dependencies succeeded, at most ``max_in_flight`` at
once; it ends the dependents of a task that did not succeed as ``CANCELLED`` (``DependencyFailed``) without
running them, reports each publish and each result to ``on_progress``, and aggregates a :class:`PlanResult`.
:meth:`PlanScheduler.cancel_unpublished` is how a cancel reaches a task that was not published yet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from uuid import UUID

from relaybus.exceptions import ConfigError
from relaybus.log import FilteringBoundLogger
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus

from .dag import dependents_of
from .plan import DEPENDENCIES_FIELD, Plan
from .pricing import ModelPrice
from .result import PlanResult, TaskTiming

__all__ = ["PlanProgress", "PlanScheduler", "ProgressCallback", "RunTask"]


@dataclass(frozen=True, slots=True)
class PlanProgress:
    """One step of a running plan, for progress displays.

    ``kind`` is ``"published"`` (the task went to the bus; ``trace_id`` is the trace its message carries, when
    the runner knows it) or ``"finished"`` (it has a result; ``result`` is set). ``done`` counts finished
    tasks out of ``total``.
    """

    kind: str
    task: AgentTask
    key: str
    done: int
    total: int
    result: ExecutionResult | None = None
    trace_id: str | None = None


ProgressCallback = Callable[[PlanProgress], None]

RunTask = Callable[[AgentTask, Callable[[str | None], None]], Awaitable[ExecutionResult]]
"""Publish a task and await its result (without raising for a task that fails); call the second argument
right after the publish with the trace id the message carries (None if unknown), and not at all when the
result was already known and nothing was published."""


class PlanScheduler:
    """The state of one plan run: which tasks wait for which, and what came back. Call :meth:`run` once.

    ``prices`` (the caller's; the plan's own prices override them) and ``default_model`` feed the cost
    columns of the :class:`PlanResult`. Raises :class:`~relaybus.PlanError` for a plan that is not a DAG and
    :class:`~relaybus.ConfigError` for a ``max_in_flight`` below 1.
    """

    def __init__(
        self,
        plan: Plan,
        run_task: RunTask,
        *,
        log: FilteringBoundLogger,
        on_progress: ProgressCallback | None = None,
        max_in_flight: int | None = None,
        prices: Mapping[str, ModelPrice] | None = None,
        default_model: str | None = None,
    ) -> None:
        if max_in_flight is not None and max_in_flight < 1:
            raise ConfigError(f"max_in_flight must be at least 1, got {max_in_flight!r}")
        self.plan = plan
        self.order = plan.ordered()
        """The tasks with every dependency before its dependents."""
        self._run_task = run_task
        self._log = log
        self._on_progress = on_progress
        self._limit = asyncio.Semaphore(max_in_flight) if max_in_flight else None
        self._prices = {**(prices or {}), **plan.prices}
        self._default_model = default_model
        self._by_id = {task.id: task for task in self.order}
        self._dependents = dependents_of(self.order)
        self._missing = {task.id: set(task.depends_on) for task in self.order}
        self.results: dict[UUID, ExecutionResult] = {}
        """Task id -> result, for the tasks that have one so far."""
        self._sent: dict[UUID, AgentTask] = {}  # what was handed to run_task (with the dependencies' outputs)
        self._published: dict[UUID, float] = {}
        self._finished: dict[UUID, float] = {}
        # Results of finished runners; None only wakes the loop up after a cancel recorded a result itself.
        self._done: asyncio.Queue[tuple[UUID, ExecutionResult] | None] = asyncio.Queue()
        self._runners: set[asyncio.Task[None]] = set()
        self._t0 = 0.0

    async def run(self) -> PlanResult:
        """Run every task of the plan and return the aggregate; cancelling it cancels the tasks running."""
        log = self._log.bind(plan=self.plan.name, tasks=len(self.order))
        self._t0 = time.monotonic()
        log.info("plan_started")
        try:
            for task in self.order:
                if not self._missing[task.id]:
                    self._launch(task)
            while len(self.results) < len(self.order):
                item = await self._done.get()
                if item is not None:
                    self._record(*item)
        finally:
            for runner in self._runners:
                runner.cancel()
        outcome = self._outcome(time.monotonic() - self._t0)
        log.info(
            "plan_finished",
            wall_s=round(outcome.wall_s, 3),
            speedup=round(outcome.speedup, 2),
            **{status.value: n for status, n in outcome.statuses.items() if n},
        )
        return outcome

    def cancel_unpublished(self, task_id: UUID, reason: str) -> None:
        """End ``task_id`` as CANCELLED (and its dependents with it) if this run has not published it yet."""
        if task_id not in self._by_id or task_id in self.results or task_id in self._sent:
            return
        self._record(task_id, ExecutionResult.failed(task_id, ExecutionStatus.CANCELLED, "Cancelled", reason))
        self._done.put_nowait(None)

    def _outcome(self, wall_s: float) -> PlanResult:
        tasks = self.plan.tasks
        return PlanResult(
            name=self.plan.name,
            tasks={t.id: self._sent.get(t.id, t) for t in tasks},
            results={t.id: self.results[t.id] for t in tasks},
            timings={t.id: TaskTiming(self._published.get(t.id), self._finished[t.id]) for t in tasks},
            wall_s=wall_s,
            keys=dict(self.plan.keys),
            prices=self._prices,
            default_model=self._default_model,
        )

    def _progress(
        self, kind: str, task: AgentTask, result: ExecutionResult | None = None, trace_id: str | None = None
    ) -> None:
        if self._on_progress is None:
            return
        key = self.plan.keys.get(task.id, str(task.id))
        event = PlanProgress(kind, task, key, len(self.results), len(self.order), result, trace_id)
        try:
            self._on_progress(event)
        except Exception:  # a broken progress display must not break the plan
            self._log.exception("progress_callback_failed")

    def _launch(self, task: AgentTask) -> None:
        if task.depends_on:
            outputs = {str(dep): self.results[dep].output for dep in dict.fromkeys(task.depends_on)}
            task = task.model_copy(update={"input": {**task.input, DEPENDENCIES_FIELD: outputs}})
        self._sent[task.id] = task
        runner = asyncio.get_running_loop().create_task(self._run_one(task), name=f"relaybus-plan-{task.id}")
        self._runners.add(runner)
        runner.add_done_callback(self._runners.discard)

    async def _run_one(self, task: AgentTask) -> None:
        def published(trace_id: str | None) -> None:
            self._published[task.id] = time.monotonic() - self._t0
            self._progress("published", task, trace_id=trace_id)

        try:
            if self._limit is None:
                result = await self._run_task(task, published)
            else:
                async with self._limit:
                    result = await self._run_task(task, published)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not hang the plan: the task ends as FAILURE
            self._log.exception("plan_task_crashed", task_id=str(task.id))
            result = ExecutionResult.failed(task.id, ExecutionStatus.FAILURE, type(exc).__name__, str(exc))
        self._done.put_nowait((task.id, result))

    def _record(self, task_id: UUID, result: ExecutionResult) -> None:
        if task_id in self.results:
            return
        self._finish(self._sent.get(task_id, self._by_id[task_id]), result)
        if result.ok:
            for child in self._dependents.get(task_id, ()):
                pending = self._missing[child]
                pending.discard(task_id)
                if not pending and child not in self.results:
                    self._launch(self._by_id[child])
            return
        self._cancel_dependents(task_id, result)

    def _cancel_dependents(self, failed_id: UUID, failed: ExecutionResult) -> None:
        stack = list(self._dependents.get(failed_id, ()))
        why = failed.error.message if failed.error else failed.status.value
        reason = f"dependency {self.plan.label(failed_id)} ended {failed.status.value.upper()}: {why}"
        while stack:
            child = stack.pop()
            if child in self.results or child in self._sent:
                continue
            self._finish(
                self._by_id[child],
                ExecutionResult.failed(child, ExecutionStatus.CANCELLED, "DependencyFailed", reason),
            )
            stack.extend(self._dependents.get(child, ()))

    def _finish(self, task: AgentTask, result: ExecutionResult) -> None:
        self.results[task.id] = result
        self._finished[task.id] = time.monotonic() - self._t0
        self._progress("finished", task, result)
