"""``ProjectOrchestrator``: publish tasks, await their results by correlation id, and run plans.

What a caller may rely on:

- One reply queue per orchestrator (a :class:`~relaybus.bus.rpc.ReplyRouter`): any number of tasks are in
  flight at once, each matched to its result by task id. The first result for a task wins; duplicates
  (at-least-once delivery) are dropped.
- Nothing hangs and nothing raises for a failed task: every task ends with a result by its deadline
  (``task.timeout_s``, else ``default_timeout_s``, counted from the call: a publish that the broker holds
  back, as under a memory alarm, counts, and ends as ``TIMEOUT`` of type ``PublishTimeout``). The deadline
  travels to the worker in the ``relaybus-deadline`` header, which enforces it too; when it passes first on
  this side the result is a ``TIMEOUT`` of type ``ReplyTimeout`` and a ``CancelRequest`` goes out so the
  worker stops.
  A task that no agent subscribes to ends at once as ``REJECTED`` (type ``NoRouteError``, the message says
  which worker to start); a publish the broker refuses ends as ``FAILURE`` of type ``BusError`` (retryable).
- :meth:`ProjectOrchestrator.cancel` ends the wait for a task at once with a ``CANCELLED`` result, and asks
  the worker running it to stop (a ``CancelRequest`` event on ``event.relaybus.cancel``). A task of a running
  plan that was not published yet is not published at all, and its dependents end CANCELLED too.
- :meth:`ProjectOrchestrator.run_plan` checks the plan (cycles, missing dependencies, duplicate ids) before
  publishing anything, runs every task as soon as its dependencies succeeded, gives it their outputs in
  ``input["dependencies"]`` (keyed by the dependency's task id as a string), and ends the dependents of a
  task that did not succeed as ``CANCELLED`` (type ``DependencyFailed``) without publishing them.
- Streaming: :meth:`ProjectOrchestrator.stream` (``async for event in orchestrator.stream(task)``),
  ``execute_task(task, on_event=...)`` and ``run_plan(..., on_event=...)`` send the task with
  ``relaybus-stream: 1`` and pass on its :class:`~relaybus.TaskEvent` s in ``seq`` order, ending with the
  ``result`` event that carries the result (see :mod:`relaybus.orchestrator.streaming`). The result is the
  same with or without streaming; events are best effort, a lost one is a gap in ``seq``.

Restart of a named orchestrator (``name="x"``, durable reply queue ``relaybus.reply.x``): results that arrive
while it is down wait in that queue. Run the same plan again (a plan file loaded with the same run id has the
same task ids) and ``run_plan`` first collects them (:meth:`~relaybus.bus.rpc.ReplyRouter.expect_all`): tasks
with a result are not published again, the others are (re-)published. A task that was still running at the
restart is thus published a second time: that is safe because workers drop a task id they already answered
(replying with the stored result) and this orchestrator keeps only the first result per id. A second live
orchestrator with the same name is refused at :meth:`ProjectOrchestrator.start` with
:class:`~relaybus.ConfigError` naming the holder where it can be known (they would take each other's
results).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self
from uuid import UUID

from relaybus.bus.base import DEADLINE_HEADER, Bus, HeaderValue
from relaybus.bus.codec import encode_cancel, encode_task
from relaybus.bus.rpc import ReplyRouter, publish_timeout_result, timeout_result
from relaybus.exceptions import BusError, ConfigError, NoRouteError
from relaybus.log import get_logger
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus, TaskEvent
from relaybus.telemetry.hooks import task_trace

from .batch import execute_batch
from .history import RunRecorder, both
from .plan import Plan
from .pricing import ModelPrice
from .result import PlanResult
from .scheduler import PlanScheduler, ProgressCallback
from .streaming import EventHandler, EventRelay, call_handler, stream_events

if TYPE_CHECKING:
    from relaybus.state import StateStore

__all__ = ["DEFAULT_TIMEOUT_S", "ProjectOrchestrator"]

DEFAULT_TIMEOUT_S = 300.0


class ProjectOrchestrator:
    """Publishes tasks on ``bus`` and aggregates their results; see the module docstring.

    Use it as ``async with ProjectOrchestrator(bus) as orchestrator:`` (or :meth:`start` and :meth:`close`);
    the first call that needs it starts it too. ``bus`` must be connected. ``prices`` (model -> price) and
    ``default_model`` feed the cost columns of :class:`PlanResult` (see :mod:`relaybus.orchestrator.pricing`).
    ``result_publishers`` (agent name -> RabbitMQ user) accepts only results published by that agent's user
    (see :class:`~relaybus.bus.rpc.ReplyRouter`).
    """

    def __init__(
        self,
        bus: Bus,
        *,
        name: str | None = None,
        default_timeout_s: float = DEFAULT_TIMEOUT_S,
        prices: Mapping[str, ModelPrice] | None = None,
        default_model: str | None = None,
        result_publishers: Mapping[str, str] | None = None,
        state: StateStore | None = None,
    ) -> None:
        if not default_timeout_s > 0:
            raise ConfigError(f"default_timeout_s must be > 0 seconds, got {default_timeout_s!r}")
        self._bus = bus
        self._router = ReplyRouter(bus, name=name, result_publishers=result_publishers)
        self._name = name
        self.default_timeout_s = default_timeout_s
        self.prices: dict[str, ModelPrice] = dict(prices or {})
        self.default_model = default_model
        self.state = state
        """The state store plan runs are recorded in (opened at start unless open already), or None."""
        self._owns_state = False
        self._start_lock = asyncio.Lock()
        self._waiting: set[UUID] = set()  # published by ``_execute``, result not in yet: what cancel() ends
        self._plan_runs: set[PlanScheduler] = set()  # running plans: cancel() reaches their unpublished tasks
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
    def waiting_ids(self) -> tuple[UUID, ...]:
        """The tasks published (or being published) and still without a result: what an interrupted caller
        cancels. Read it before awaiting anything once the plan's run is cancelled (the runs then end)."""
        return tuple(self._waiting)

    @property
    def unclaimed_bytes(self) -> int:
        """Bytes of results kept for task ids this orchestrator does not wait for (anyone may send results
        to its reply queue): bounded by the reply router's ``max_unclaimed_bytes``, 64 MiB by default."""
        return self._router.unclaimed_bytes

    @property
    def duplicates_dropped(self) -> int:
        """Repeated results for a task id that already had one (at-least-once delivery), ignored so far."""
        return self._router.duplicates_dropped

    async def start(self) -> None:
        """Declare the reply queue and start collecting results (idempotent)."""
        async with self._start_lock:
            if self.state is not None and not self.state.is_open:
                await self.state.open()
                self._owns_state = True
            await self._router.start()

    async def close(self) -> None:
        """Stop collecting results; tasks still waiting end as CANCELLED. A named reply queue is kept."""
        await self._router.close()
        if self._owns_state and self.state is not None:
            self._owns_state = False
            await self.state.close()

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
    async def execute_task(self, task: AgentTask, *, on_event: EventHandler | None = None) -> ExecutionResult:
        """Publish ``task`` and return its result; never raises for a task that fails or times out.

        With ``on_event`` the task is streamed: ``on_event`` gets each of its events in order, the
        ``result`` event last (awaited when it returns an awaitable), as :meth:`stream` yields them."""
        if on_event is None:
            await self.start()
            return await self._execute(task)
        result: ExecutionResult | None = None
        async for event in self.stream(task):
            await call_handler(on_event, event)
            result = event.result
        assert result is not None  # the stream always ends with the result event
        return result

    def stream(self, task: AgentTask) -> AsyncIterator[TaskEvent]:
        """Publish ``task`` asking for its events and yield them in ``seq`` order as they arrive: model text
        (``delta``), ``progress``, the agent loop's ``tool_call`` / ``tool_result``, those of delegated tasks
        (``sub_task_id`` set), and last the ``result`` event, whose ``result`` is what
        :meth:`execute_task` returns. Closing the iterator early (leave ``async with
        contextlib.aclosing(orchestrator.stream(task)) as events: async for event in events: ...``) stops
        waiting for the result; a plain ``break`` stops it only once the iterator is garbage-collected."""

        async def execute(relay: EventRelay) -> ExecutionResult:
            await self.start()
            return await self._execute(task, relay=relay)

        return stream_events(task.id, execute)

    async def execute_tasks(self, tasks: Sequence[AgentTask]) -> list[ExecutionResult]:
        """Run ``tasks`` concurrently; the results come back in the order of ``tasks``.

        ``depends_on`` is not looked at here (use :meth:`run_plan` for a DAG). A task listed twice (same id)
        is published once and its result returned at both places.
        """
        await self.start()
        unique = {task.id: task for task in tasks}
        results = await execute_batch(
            list(unique.values()),
            router=self._router,
            publish=self._publish_in_time,
            cancel_remote=self._publish_cancel,
            waiting=self._waiting,
            default_timeout_s=self.default_timeout_s,
        )
        by_id = dict(zip(unique, results, strict=True))
        return [by_id[task.id] for task in tasks]

    async def cancel(self, task_id: UUID, reason: str = "cancelled by the orchestrator") -> None:
        """Cancel ``task_id``: a wait for it ends now as CANCELLED, the worker running it is asked to stop,
        and a task of a running plan that was not yet published never is.

        Raises :class:`~relaybus.BusError` when the cancel request could not be published: the wait here has
        ended all the same, but the worker was not told (only the task's deadline stops it)."""
        reason = reason[:1000]
        if task_id in self._waiting:
            self._router.resolve(
                task_id, ExecutionResult.failed(task_id, ExecutionStatus.CANCELLED, "Cancelled", reason)
            )
        for run in self._plan_runs:
            run.cancel_unpublished(task_id, reason)
        await self._bus.publish(encode_cancel(task_id, reason))

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
        on_publish: Callable[[str | None], None] | None = None,
        relay: EventRelay | None = None,
    ) -> ExecutionResult:
        """Publish and await one task, in the current trace or else one of its own. ``waiting`` is a future
        from an earlier ``expect`` (a resumed plan): when it already holds a result the task is not
        published again. ``on_publish`` gets the trace id the task's message carries. ``relay`` streams the
        task."""
        future = waiting if waiting is not None else self._router.expect(task.id)
        if future.done() and not future.cancelled():
            return future.result()
        if relay is not None:
            self._router.listen(task.id, relay)
        timeout = task.timeout_s or self.default_timeout_s
        deadline = time.time() + timeout
        loop = asyncio.get_running_loop()
        published = False
        # cancel() resolves the router's future itself, so one future and one loop timer per task suffice:
        # the timer bounds the publish (a broker holding it back gives TIMEOUT ``PublishTimeout``) and then
        # the wait for the result (TIMEOUT, and the worker is told to stop).
        self._waiting.add(task.id)
        try:
            # The trace is decided here, not by the bus at publish, so that on_publish learns the id the
            # message carries (and a cancel sent on timeout is in the same trace).
            with task_trace(f"execute_task {task.agent or task.topic}") as trace_id:
                try:
                    async with asyncio.timeout_at(loop.time() + max(0.0, deadline - time.time())):
                        refused = await self._publish(task, deadline, stream=relay is not None)
                        if refused is None:
                            published = True
                            if on_publish is not None:
                                on_publish(trace_id)
                            return await future
                except TimeoutError:
                    if published:
                        return await self._timed_out(task, timeout)
                    refused = publish_timeout_result(task, timeout, getattr(self._bus, "blocked", None))
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if (
                        not published
                        or not future.cancelled()
                        or (current is not None and current.cancelling())
                    ):
                        raise
                    # Only the future was cancelled (dropped elsewhere), not this task: no result will come.
                    return await self._timed_out(task, timeout)
            self._router.discard(task.id)
            return refused
        except BaseException:
            self._router.discard(task.id)
            raise
        finally:
            self._waiting.discard(task.id)
            if relay is not None:
                self._router.unlisten(task.id)

    async def _publish_in_time(
        self, task: AgentTask, deadline: float, *, stream: bool = False
    ) -> ExecutionResult | None:
        """:meth:`_publish` within the task's deadline: a publish the broker holds back (an alarm) ends the
        task as TIMEOUT ``PublishTimeout``."""
        try:
            async with asyncio.timeout(max(0.0, deadline - time.time())):
                return await self._publish(task, deadline, stream=stream)
        except TimeoutError:
            timeout = task.timeout_s or self.default_timeout_s
            return publish_timeout_result(task, timeout, getattr(self._bus, "blocked", None))

    async def _publish(
        self, task: AgentTask, deadline: float, *, stream: bool = False
    ) -> ExecutionResult | None:
        """Publish ``task`` with its deadline (and ``relaybus-stream: 1`` when ``stream``): None once the bus
        has it, else the task's REJECTED result (no agent subscribes) or retryable FAILURE (the broker
        refused it)."""
        headers: dict[str, HeaderValue] = {DEADLINE_HEADER: f"{deadline:.3f}"}
        if stream:
            headers.update(await self._router.stream_headers())
        message = encode_task(task, reply_to=self._router.queue, headers=headers)
        try:
            await self._bus.publish(message)
        except NoRouteError as exc:
            return ExecutionResult.failed(task.id, ExecutionStatus.REJECTED, "NoRouteError", str(exc))
        except BusError as exc:
            self._log.warning("publish_failed", task_id=str(task.id), error=str(exc))
            return ExecutionResult.failed(
                task.id,
                ExecutionStatus.FAILURE,
                "BusError",
                f"could not publish the task: {exc}",
                retryable=True,
            )
        return None

    async def _timed_out(self, task: AgentTask, timeout_s: float) -> ExecutionResult:
        """No result by the task's deadline: a TIMEOUT, and the worker is told to stop."""
        self._router.discard(task.id)
        await self._publish_cancel(task.id, f"no result within {timeout_s:g}s")
        return timeout_result(task, timeout_s)

    # -- plans -------------------------------------------------------------------------------------------
    async def run_plan(
        self,
        plan: Plan | Sequence[AgentTask],
        *,
        on_progress: ProgressCallback | None = None,
        max_in_flight: int | None = None,
        on_event: Callable[[TaskEvent], None] | None = None,
        run_id: str | None = None,
    ) -> PlanResult:
        """Run a DAG of tasks and aggregate the results; see the module docstring.

        Raises :class:`~relaybus.PlanError` (before publishing anything) for a cycle, a missing dependency or
        duplicate ids. ``max_in_flight`` bounds how many tasks are published and unanswered at once
        (default: no bound). ``on_progress`` is called (synchronously, keep it quick) at each publish and
        each result. ``on_event`` streams every task: it gets their events (``event.task_id`` tells which
        task), each task's ``result`` event last; it too is called synchronously.
        each result. With a state store the run is recorded under ``run_id`` (default: a new id), and a run id
        recorded before resumes: its tasks a worker finished are answered from the store, not published
        (:mod:`relaybus.orchestrator.history`).
        """
        plan = Plan.of(plan)
        waiting: dict[UUID, asyncio.Future[ExecutionResult]] = {}

        async def run_task(task: AgentTask, on_publish: Callable[[str | None], None]) -> ExecutionResult:
            relay = None if on_event is None else EventRelay(task.id, on_event)
            result = await self._execute(
                task, waiting=waiting.get(task.id), on_publish=on_publish, relay=relay
            )
            if relay is not None:
                relay.finish(result)
            return result

        recorder = None
        if self.state is not None:
            recorder = RunRecorder(
                self.state,
                run_id or uuid.uuid4().hex,
                plan,
                log=self._log,
                prices=self.prices,
                default_model=self.default_model,
            )
            on_progress = both(recorder.on_progress, on_progress)
        scheduler = PlanScheduler(
            plan,
            run_task,
            log=self._log,
            on_progress=on_progress,
            max_in_flight=max_in_flight,
            prices=self.prices,
            default_model=self.default_model,
        )
        await self.start()
        stored = {} if recorder is None else await recorder.begin()
        # Every id registered first: a resumed plan's results waiting in a named reply queue are collected.
        waiting.update(await self._router.expect_all(task.id for task in scheduler.order))
        for task_id, result in stored.items():  # finished in an earlier attempt of this run
            self._router.resolve(task_id, result)
        self._plan_runs.add(scheduler)
        try:
            return await scheduler.run()
        finally:
            self._plan_runs.discard(scheduler)
            if recorder is not None:
                await recorder.close()
            for task_id, future in waiting.items():  # never published, or the run was cancelled
                if not future.done():
                    self._router.discard(task_id)
