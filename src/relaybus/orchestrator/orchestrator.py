"""``ProjectOrchestrator``: publish tasks, await their results by correlation id, and run plans.

What a caller may rely on:

- One reply queue per orchestrator (a :class:`~relaybus.bus.rpc.ReplyRouter`): any number of tasks are in
  flight at once, each matched to its result by task id. The first result for a task wins; duplicates
  (at-least-once delivery) are dropped.
- Nothing hangs and nothing raises for a failed task: every task ends with a result by its deadline
  (``task.timeout_s``, else ``default_timeout_s``, counted from its publish). The deadline travels to the
  worker in the ``relaybus-deadline`` header, which enforces it too; when it passes first on this side the
  result is a ``TIMEOUT`` of type ``ReplyTimeout`` and a ``CancelRequest`` goes out so the worker stops.
  A task that no agent subscribes to ends at once as ``REJECTED`` (type ``NoRouteError``, the message says
  which worker to start); a publish the broker refuses ends as ``FAILURE`` of type ``BusError`` (retryable).
- :meth:`ProjectOrchestrator.cancel` ends the wait for a task at once with a ``CANCELLED`` result, and asks
  the worker running it to stop (a ``CancelRequest`` event on ``event.relaybus.cancel``). A task of a running
  plan that was not published yet is not published at all, and its dependents end CANCELLED too.
- :meth:`ProjectOrchestrator.run_plan` checks the plan (cycles, missing dependencies, duplicate ids) before
  publishing anything, runs every task as soon as its dependencies succeeded, gives it their outputs in
  ``input["dependencies"]`` (keyed by the dependency's task id as a string), and ends the dependents of a
  task that did not succeed as ``CANCELLED`` (type ``DependencyFailed``) without publishing them.

Restart of a named orchestrator (``name="x"``, durable reply queue ``relaybus.reply.x``): results that arrive
while it is down wait in that queue. Run the same plan again (a plan file loaded with the same run id has the
same task ids) and ``run_plan`` first registers every task id, then sends a marker message through its own
reply queue and waits for it: the queue is FIFO, so once the marker is back every result that was waiting has
been collected. Tasks with a result are not published again; the others are (re-)published. A task that was
still running at the restart is thus published a second time: that is safe because workers drop a task id they
already answered (replying with the stored result) and this orchestrator keeps only the first result per id.
Two live orchestrators must not share a name (they would take each other's results).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self
from uuid import UUID, uuid4

from relaybus.bus.base import DEADLINE_HEADER, Bus
from relaybus.bus.codec import encode_cancel, encode_result, encode_task
from relaybus.bus.rpc import ReplyRouter
from relaybus.exceptions import BusError, ConfigError, NoRouteError
from relaybus.log import get_logger
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus

from .dag import dependents_of
from .plan import DEPENDENCIES_FIELD, Plan
from .pricing import ModelPrice
from .result import PlanResult, TaskTiming

__all__ = ["DEFAULT_TIMEOUT_S", "PlanProgress", "ProgressCallback", "ProjectOrchestrator"]

DEFAULT_TIMEOUT_S = 300.0
_BARRIER_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class PlanProgress:
    """One step of a running plan, for progress displays.

    ``kind`` is ``"published"`` (the task went to the bus) or ``"finished"`` (it has a result; ``result`` is
    set). ``done`` counts finished tasks out of ``total``.
    """

    kind: str
    task: AgentTask
    key: str
    done: int
    total: int
    result: ExecutionResult | None = None


ProgressCallback = Callable[[PlanProgress], None]


class ProjectOrchestrator:
    """Publishes tasks on ``bus`` and aggregates their results; see the module docstring.

    Use it as ``async with ProjectOrchestrator(bus) as orchestrator:`` (or :meth:`start` and :meth:`close`);
    the first call that needs it starts it too. ``bus`` must be connected. ``prices`` (model -> price) and
    ``default_model`` feed the cost columns of :class:`PlanResult` (see :mod:`relaybus.orchestrator.pricing`).
    """

    def __init__(
        self,
        bus: Bus,
        *,
        name: str | None = None,
        default_timeout_s: float = DEFAULT_TIMEOUT_S,
        prices: Mapping[str, ModelPrice] | None = None,
        default_model: str | None = None,
    ) -> None:
        if not default_timeout_s > 0:
            raise ConfigError(f"default_timeout_s must be > 0 seconds, got {default_timeout_s!r}")
        self._bus = bus
        self._router = ReplyRouter(bus, name=name)
        self._name = name
        self.default_timeout_s = default_timeout_s
        self.prices: dict[str, ModelPrice] = dict(prices or {})
        self.default_model = default_model
        self._start_lock = asyncio.Lock()
        self._waiting: set[UUID] = set()  # published by ``_execute``, result not in yet: what cancel() ends
        self._plan_runs: set[_PlanRun] = set()
        self._log = get_logger("relaybus.orchestrator", orchestrator=name or "anonymous")

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def reply_queue(self) -> str:
        """The queue results come back to (``reply_to`` of every task this orchestrator publishes)."""
        return self._router.queue

    @property
    def in_flight(self) -> int:
        """Tasks published and still waiting for a result."""
        return len(self._waiting)

    @property
    def duplicates_dropped(self) -> int:
        """Repeated results for a task id that already had one (at-least-once delivery), ignored so far."""
        return self._router.duplicates_dropped

    async def start(self) -> None:
        """Declare the reply queue and start collecting results (idempotent)."""
        async with self._start_lock:
            await self._router.start()

    async def close(self) -> None:
        """Stop collecting results; tasks still waiting end as CANCELLED. A named reply queue is kept."""
        await self._router.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- single tasks ------------------------------------------------------------------------------------
    async def execute_task(self, task: AgentTask) -> ExecutionResult:
        """Publish ``task`` and return its result; never raises for a task that fails or times out."""
        await self.start()
        return await self._execute(task)

    async def execute_tasks(self, tasks: Sequence[AgentTask]) -> list[ExecutionResult]:
        """Run ``tasks`` concurrently; the results come back in the order of ``tasks``.

        ``depends_on`` is not looked at here (use :meth:`run_plan` for a DAG). A task listed twice (same id)
        is published once and its result returned at both places.
        """
        await self.start()
        unique = {task.id: task for task in tasks}
        results = await asyncio.gather(*(self._execute(task) for task in unique.values()))
        by_id = dict(zip(unique, results, strict=True))
        return [by_id[task.id] for task in tasks]

    async def cancel(self, task_id: UUID, reason: str = "cancelled by the orchestrator") -> None:
        """Cancel ``task_id``: a wait for it ends now as CANCELLED, the worker running it is asked to stop,
        and a task of a running plan that was not yet published never is."""
        reason = reason[:1000]
        if task_id in self._waiting:
            self._router.resolve(
                task_id, ExecutionResult.failed(task_id, ExecutionStatus.CANCELLED, "Cancelled", reason)
            )
        for run in self._plan_runs:
            run.cancel_unpublished(task_id, reason)
        await self._publish_cancel(task_id, reason)

    async def _publish_cancel(self, task_id: UUID, reason: str) -> None:
        try:
            await self._bus.publish(encode_cancel(task_id, reason))
        except BusError as exc:  # the worker's deadline still stops the task
            self._log.warning("cancel_publish_failed", task_id=str(task_id), error=str(exc))

    async def _execute(
        self,
        task: AgentTask,
        *,
        waiting: asyncio.Future[ExecutionResult] | None = None,
        on_publish: Callable[[], None] | None = None,
    ) -> ExecutionResult:
        """Publish and await one task. ``waiting`` is a future from an earlier ``expect`` (a resumed plan):
        when it already holds a result the task is not published again."""
        future = waiting if waiting is not None else self._router.expect(task.id)
        if future.done() and not future.cancelled():
            return future.result()
        timeout = task.timeout_s or self.default_timeout_s
        # cancel() resolves the router's future itself, so one future and one loop timer per task suffice.
        self._waiting.add(task.id)
        try:
            deadline = time.time() + timeout
            message = encode_task(
                task, reply_to=self._router.queue, headers={DEADLINE_HEADER: f"{deadline:.3f}"}
            )
            try:
                await self._bus.publish(message)
            except NoRouteError as exc:
                self._router.discard(task.id)
                return ExecutionResult.failed(task.id, ExecutionStatus.REJECTED, "NoRouteError", str(exc))
            except BusError as exc:
                self._router.discard(task.id)
                self._log.warning("publish_failed", task_id=str(task.id), error=str(exc))
                return ExecutionResult.failed(
                    task.id,
                    ExecutionStatus.FAILURE,
                    "BusError",
                    f"could not publish the task: {exc}",
                    retryable=True,
                )
            if on_publish is not None:
                on_publish()
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout_at(loop.time() + max(0.0, deadline - time.time())):
                    return await future
            except TimeoutError:
                pass
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if not future.cancelled() or (current is not None and current.cancelling()):
                    raise
                # Only the future was cancelled (dropped elsewhere), not this task: no result will come.
            self._router.discard(task.id)
            await self._publish_cancel(task.id, f"no result within {timeout:g}s")
            target = f"agent {task.agent!r}" if task.agent else f"topic {task.topic!r}"
            return ExecutionResult.failed(
                task.id,
                ExecutionStatus.TIMEOUT,
                "ReplyTimeout",
                f"no result within {timeout:g}s; the worker for {target} may be slow, overloaded or down: "
                "raise the task's timeout_s or start more workers",
                retryable=True,
            )
        except BaseException:
            self._router.discard(task.id)
            raise
        finally:
            self._waiting.discard(task.id)

    # -- plans -------------------------------------------------------------------------------------------
    async def run_plan(
        self,
        plan: Plan | Sequence[AgentTask],
        *,
        on_progress: ProgressCallback | None = None,
        max_in_flight: int | None = None,
    ) -> PlanResult:
        """Run a DAG of tasks and aggregate the results; see the module docstring.

        Raises :class:`~relaybus.PlanError` (before publishing anything) for a cycle, a missing dependency or
        duplicate ids. ``max_in_flight`` bounds how many tasks are published and unanswered at once
        (default: no bound). ``on_progress`` is called (synchronously, keep it quick) at each publish and
        each result.
        """
        plan = Plan.of(plan)
        order = plan.ordered()
        await self.start()
        return await _PlanRun(self, plan, order, on_progress, max_in_flight).run()

    async def _collect_waiting(self, ids: Sequence[UUID]) -> dict[UUID, asyncio.Future[ExecutionResult]]:
        """Register every id, then wait until results already in a durable reply queue are collected."""
        futures = {task_id: self._router.expect(task_id) for task_id in ids}
        if not self._router.durable:
            return futures
        marker = uuid4()
        arrived = self._router.expect(marker)
        barrier = ExecutionResult.success(marker, {"relaybus": "reply-queue barrier"})
        try:
            await self._bus.publish(encode_result(barrier, reply_to=self._router.queue))
            await asyncio.wait_for(asyncio.shield(arrived), _BARRIER_TIMEOUT_S)
        except (BusError, TimeoutError) as exc:  # only costs re-publishing tasks that already have a result
            self._log.warning("reply_barrier_failed", error=repr(exc))
            self._router.discard(marker)
        collected = sum(1 for f in futures.values() if f.done())
        if collected:
            self._log.info("plan_results_collected", collected=collected, total=len(ids))
        return futures


class _PlanRun:
    """The state of one ``run_plan`` call: which tasks wait for which, and what came back."""

    def __init__(
        self,
        orchestrator: ProjectOrchestrator,
        plan: Plan,
        order: list[AgentTask],
        on_progress: ProgressCallback | None,
        max_in_flight: int | None,
    ) -> None:
        if max_in_flight is not None and max_in_flight < 1:
            raise ConfigError(f"max_in_flight must be at least 1, got {max_in_flight!r}")
        self.o = orchestrator
        self.plan = plan
        self.order = order
        self.on_progress = on_progress
        self.limit = asyncio.Semaphore(max_in_flight) if max_in_flight else None
        self.by_id = {task.id: task for task in order}
        self.dependents = dependents_of(order)
        self.missing = {task.id: set(task.depends_on) for task in order}
        self.results: dict[UUID, ExecutionResult] = {}
        self.sent: dict[UUID, AgentTask] = {}
        self.published: dict[UUID, float] = {}
        self.finished: dict[UUID, float] = {}
        # Results of finished runners; None only wakes the loop up after a cancel() recorded a result itself.
        self.done_queue: asyncio.Queue[tuple[UUID, ExecutionResult] | None] = asyncio.Queue()
        self.runners: set[asyncio.Task[None]] = set()
        self.waiting: dict[UUID, asyncio.Future[ExecutionResult]] = {}
        self.t0 = 0.0

    def _progress(self, kind: str, task: AgentTask, result: ExecutionResult | None = None) -> None:
        if self.on_progress is None:
            return
        event = PlanProgress(
            kind, task, self.plan.keys.get(task.id, str(task.id)), len(self.results), len(self.order), result
        )
        try:
            self.on_progress(event)
        except Exception:  # a broken progress display must not break the plan
            self.o._log.exception("progress_callback_failed")

    async def run(self) -> PlanResult:
        log = self.o._log.bind(plan=self.plan.name, tasks=len(self.order))
        self.waiting = await self.o._collect_waiting([task.id for task in self.order])
        self.t0 = time.monotonic()
        log.info("plan_started")
        self.o._plan_runs.add(self)
        try:
            for task in self.order:
                if not self.missing[task.id]:
                    self._launch(task)
            while len(self.results) < len(self.order):
                item = await self.done_queue.get()
                if item is not None:
                    self._record(*item)
        finally:
            self.o._plan_runs.discard(self)
            for runner in self.runners:
                runner.cancel()
            for task_id, future in self.waiting.items():
                if task_id not in self.results and not future.done():
                    self.o._router.discard(task_id)
        wall = time.monotonic() - self.t0
        outcome = PlanResult(
            name=self.plan.name,
            tasks={t.id: self.sent.get(t.id, t) for t in self.plan.tasks},
            results={t.id: self.results[t.id] for t in self.plan.tasks},
            timings={
                t.id: TaskTiming(self.published.get(t.id), self.finished[t.id]) for t in self.plan.tasks
            },
            wall_s=wall,
            keys=dict(self.plan.keys),
            prices={**self.o.prices, **self.plan.prices},
            default_model=self.o.default_model,
        )
        log.info(
            "plan_finished",
            wall_s=round(wall, 3),
            speedup=round(outcome.speedup, 2),
            **{status.value: n for status, n in outcome.statuses.items() if n},
        )
        return outcome

    def _launch(self, task: AgentTask) -> None:
        if task.depends_on:
            outputs = {str(dep): self.results[dep].output for dep in dict.fromkeys(task.depends_on)}
            task = task.model_copy(update={"input": {**task.input, DEPENDENCIES_FIELD: outputs}})
        self.sent[task.id] = task
        runner = asyncio.get_running_loop().create_task(self._run_one(task), name=f"relaybus-plan-{task.id}")
        self.runners.add(runner)
        runner.add_done_callback(self.runners.discard)

    async def _run_one(self, task: AgentTask) -> None:
        try:
            if self.limit is None:
                result = await self._execute(task)
            else:
                async with self.limit:
                    result = await self._execute(task)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not hang the plan: the task ends as FAILURE
            self.o._log.exception("plan_task_crashed", task_id=str(task.id))
            result = ExecutionResult.failed(task.id, ExecutionStatus.FAILURE, type(exc).__name__, str(exc))
        self.done_queue.put_nowait((task.id, result))

    async def _execute(self, task: AgentTask) -> ExecutionResult:
        def published() -> None:
            self.published[task.id] = time.monotonic() - self.t0
            self._progress("published", task)

        return await self.o._execute(task, waiting=self.waiting.get(task.id), on_publish=published)

    def _record(self, task_id: UUID, result: ExecutionResult) -> None:
        if task_id in self.results:
            return
        self.results[task_id] = result
        self.finished[task_id] = time.monotonic() - self.t0
        self._progress("finished", self.sent.get(task_id, self.by_id[task_id]), result)
        if result.ok:
            for child in self.dependents.get(task_id, ()):
                pending = self.missing[child]
                pending.discard(task_id)
                if not pending and child not in self.results:
                    self._launch(self.by_id[child])
            return
        self._cancel_dependents(task_id, result)

    def cancel_unpublished(self, task_id: UUID, reason: str) -> None:
        """End ``task_id`` as CANCELLED (and its dependents with it) if this run has not published it yet."""
        if task_id not in self.by_id or task_id in self.results or task_id in self.sent:
            return
        self._record(task_id, ExecutionResult.failed(task_id, ExecutionStatus.CANCELLED, "Cancelled", reason))
        self.done_queue.put_nowait(None)

    def _cancel_dependents(self, failed_id: UUID, failed: ExecutionResult) -> None:
        stack = list(self.dependents.get(failed_id, ()))
        why = failed.error.message if failed.error else failed.status.value
        label = self.plan.label(failed_id)
        reason = f"dependency {label} ended {failed.status.value.upper()}: {why}"
        while stack:
            child = stack.pop()
            if child in self.results or child in self.sent:
                continue
            result = ExecutionResult.failed(child, ExecutionStatus.CANCELLED, "DependencyFailed", reason)
            self.results[child] = result
            self.finished[child] = time.monotonic() - self.t0
            self._progress("finished", self.by_id[child], result)
            stack.extend(self.dependents.get(child, ()))
