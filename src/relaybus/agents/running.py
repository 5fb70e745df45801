"""Running: a worker's concurrency slots, the deadline timer and the interrupts of the tasks it runs.

At most ``concurrency`` tasks run ``handle`` at once; a task waiting for a delegated sub-task gives its slot
back while it waits. A task past its deadline, cancelled, or caught by a shutdown has its ``handle`` (with
the executor call or delegation it awaits) cancelled, and ends as a TIMEOUT or CANCELLED result, or (a
shutdown) as None: back to its queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from relaybus.bus.base import Bus
from relaybus.bus.rpc import ReplyRouter
from relaybus.executor.protocol import Executor
from relaybus.log import FilteringBoundLogger
from relaybus.messages import AgentTask, ExecutionResult
from relaybus.secrets import mask_secrets
from relaybus.telemetry.hooks import invoke_agent
from relaybus.telemetry.metrics import WorkerMetrics

from .agent import Agent
from .context import AgentContext
from .events import EventSender
from .outcomes import handle_failed, handle_returned, interrupted

if TYPE_CHECKING:
    from relaybus.state import StateStore
    from relaybus.tools import Toolbox

__all__ = ["Reason", "Run", "TaskRunner"]

Reason = Literal["timeout", "cancelled", "shutdown"]


@dataclass(eq=False)
class Run:
    """One task this worker is running (or waiting to run), with the deadline and chain admission gave it."""

    task: AgentTask
    agent: Agent
    deadline: float | None
    chain: tuple[str, ...]
    # The bus handler's task while, and only while, it awaits ``_execute``: what ``interrupt`` cancels.
    runner: asyncio.Task[Any] | None = None
    reason: Reason | None = None
    detail: str = ""
    started: bool = False
    holds_slot: bool = False
    metered_at: float = 0.0  # when the worker's metrics saw it start
    # Delegations of this run waiting at once (``delegate_many``, the agent loop's parallel tool calls): the
    # slot is given back when the first starts and taken again when the last ends.
    waiting: int = 0
    ctx: AgentContext | None = None
    stream_to: str | None = None  # where the events go of a task whose caller streams it: its events queue
    events: EventSender | None = None
    done: asyncio.Future[ExecutionResult | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class TaskRunner:
    """Runs tasks within the worker's slots and deadlines; :meth:`bind` gives it the executor, the reply
    router and the agents' tools once the worker has started them. ``runs`` holds every task received and
    not yet settled."""

    def __init__(
        self,
        bus: Bus,
        *,
        worker: str,
        concurrency: int,
        max_depth: int,
        log: FilteringBoundLogger,
        metrics: WorkerMetrics | None = None,
        state: StateStore | None = None,
    ) -> None:
        self._bus = bus
        self._state = state
        self._metrics = metrics
        self._worker = worker
        self._max_depth = max_depth
        self._log = log
        self._slots = asyncio.Semaphore(concurrency)
        self._executor: Executor | None = None
        self._router: ReplyRouter | None = None
        self._toolboxes: dict[str, Toolbox] = {}
        self.runs: dict[UUID, Run] = {}

    def bind(self, executor: Executor, router: ReplyRouter, toolboxes: dict[str, Toolbox]) -> None:
        """Give the runner what the worker started: the executor, the reply router, each agent's tools."""
        self._executor = executor
        self._router = router
        self._toolboxes = toolboxes

    async def run(self, run: Run) -> ExecutionResult | None:
        """Run the task in this (the bus handler's) task; None: return it to the queue. ``run.done`` gets the
        same outcome, for duplicates of the task that wait for this run.

        No child task: a deadline or an interrupt cancels this task while, and only while, it awaits
        ``_execute`` (``run.runner`` is set), and that one cancellation is taken back (``uncancel``) here, so
        the handler goes on to publish the TIMEOUT / CANCELLED result. A cancellation from anyone else (the
        bus dropping the handler) propagates. Saves a Task, a waiter and two loop iterations per task.
        """
        me = asyncio.current_task()
        assert me is not None
        task_id = run.task.id
        self.runs[task_id] = run
        if self._metrics is not None:  # also binds them to this task, for the LLM calls it makes
            run.metered_at = self._metrics.task_started(run.agent.name, run.chain)
        outcome: ExecutionResult | None = None
        timer: asyncio.TimerHandle | None = None
        if run.deadline is not None:
            loop = asyncio.get_running_loop()
            timer = loop.call_at(
                loop.time() + (run.deadline - time.time()), self.interrupt, run, "timeout", ""
            )
        run.runner = me
        if run.stream_to is not None:
            run.events = EventSender(
                self._bus, task_id=task_id, reply_to=run.stream_to, agent=run.agent.name, log=self._log
            )
        try:
            outcome = await self._execute(run)
        except asyncio.CancelledError:
            if run.reason is None:  # not ours: the bus dropped this handler; the broker returns the delivery
                run.reason, run.detail = "shutdown", "the bus connection was lost"
                raise
            if me.uncancel() > 0:  # ours, but someone else cancelled this handler as well
                raise
            outcome = self._interrupted(run)
        else:
            if run.reason is not None:
                me.uncancel()  # ``handle`` swallowed our cancellation; the interrupt still decides the result
                outcome = self._interrupted(run)
        finally:
            run.runner = None
            # The context's ``release_slot`` holds this run: leaving ``run.ctx`` set would make each task a
            # reference cycle of about 20 objects, freed only by the cyclic garbage collector, whose passes
            # then cost the worker 10-15% of its CPU (bench/PROFILE.md).
            run.ctx = None
            if timer is not None:
                timer.cancel()
            self.runs.pop(task_id, None)
            if self._metrics is not None:
                self._metrics.task_ended(run.agent.name, outcome, run.metered_at)
            if run.events is not None and outcome is None:
                run.events.abort()
            if not run.done.done():
                run.done.set_result(outcome)
        if run.events is not None:  # what the task said before its result, which it never holds up for long
            await run.events.finish()
        return outcome

    def _interrupted(self, run: Run) -> ExecutionResult | None:
        return interrupted(
            run.task.id,
            run.reason,
            run.detail,
            deadline=run.deadline,
            agent=run.agent.name,
            worker=self._worker,
            usage=None if run.ctx is None else run.ctx.usage,
        )

    def interrupt(self, run: Run, reason: Reason, detail: str) -> None:
        """Stop ``run`` for ``reason`` if it is running ``handle`` or waiting for a slot (the first reason
        wins; a run not started or already finished is left alone)."""
        if run.reason is not None or run.runner is None:
            return
        run.reason = reason
        run.detail = detail
        run.runner.cancel()

    def cancel(self, task_id: UUID, reason: str) -> None:
        """Stop the task ``task_id`` with a CANCELLED result, if it runs here."""
        run = self.runs.get(task_id)
        if run is not None:
            self._log.info("task_cancel_requested", task_id=str(task_id), reason=reason)
            self.interrupt(run, "cancelled", reason)

    def interrupt_all(self, detail: str) -> int:
        """Return every task held here to its queue (a shutdown, no result); how many there were."""
        runs = list(self.runs.values())
        for run in runs:
            self.interrupt(run, "shutdown", detail)
        return len(runs)

    async def drain(self, grace: float) -> None:
        """Return the tasks still waiting for a slot to their queue, let the running ones finish for up to
        ``grace`` seconds, then return the rest; returns when every run has ended."""
        await asyncio.sleep(0)  # let tasks just received take the free slots first
        for run in list(self.runs.values()):  # still waiting for a slot: straight back to the queue
            if not run.started:
                self.interrupt(run, "shutdown", "the worker is stopping")
        waiting = [r.done for r in self.runs.values() if not r.done.done()]
        if waiting:
            _, late = await asyncio.wait(waiting, timeout=grace)
            if late:
                self._log.warning("drain_grace_expired", returned_to_queue=len(late), grace_s=grace)
        self.interrupt_all("the worker stopped before the task finished")
        remaining = [r.done for r in self.runs.values() if not r.done.done()]
        if remaining:
            await asyncio.wait(remaining)

    async def _execute(self, run: Run) -> ExecutionResult:
        """Wait for a slot, then run ``handle`` and turn whatever it does into a result."""
        task, agent = run.task, run.agent
        try:
            await self._acquire(run)
            run.started = True
            assert self._executor is not None
            assert self._router is not None
            log = self._log.bind(task_id=str(task.id), agent=agent.name)
            ctx = AgentContext(
                task=task,
                agent=agent.name,
                worker=self._worker,
                executor=self._executor,
                bus=self._bus,
                log=log,
                requester=self._router,
                chain=run.chain,
                deadline=run.deadline,
                max_delegation_depth=self._max_depth,
                release_slot=lambda: self._slot_released(run),
                instance=agent,
                toolbox=self._toolboxes.get(agent.name),
                events=run.events,
                state=self._state,
            )
            run.ctx = ctx
            started = datetime.now(UTC)
            log.debug("task_started", topic=task.topic)
            try:
                value = await invoke_agent(agent, task, ctx)
            except Exception as exc:
                log.warning("task_failed", error_type=type(exc).__name__, error=mask_secrets(str(exc))[:500])
                return handle_failed(
                    task.id, exc, agent=agent.name, worker=self._worker, started=started, usage=ctx.usage
                )
            result = handle_returned(
                task.id, value, agent=agent, worker=self._worker, started=started, usage=ctx.usage
            )
            log.debug("task_finished", status=result.status.value)
            return result
        finally:
            self._release(run)

    async def _acquire(self, run: Run) -> None:
        await self._slots.acquire()
        if run.holds_slot:  # another delegation of this run ended and took it back meanwhile
            self._slots.release()
            return
        run.holds_slot = True

    def _release(self, run: Run) -> None:
        if run.holds_slot:
            run.holds_slot = False
            self._slots.release()

    @contextlib.asynccontextmanager
    async def _slot_released(self, run: Run) -> AsyncIterator[None]:
        run.waiting += 1
        if run.waiting == 1:
            self._release(run)
        try:
            yield
        finally:
            run.waiting -= 1
            if run.waiting == 0:
                await self._acquire(run)
