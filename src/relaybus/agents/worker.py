"""``AgentWorker``: hosts agents in one process and runs the tasks the bus brings them.

What a caller may rely on:

- **Topology.** For each agent the worker declares the durable queue ``relaybus.agent.<name>``, bound to
  ``task.<pattern>`` for each of the agent's topic patterns and to ``agent.<name>``, and consumes it with a
  prefetch of ``concurrency``. Every process hosting the same agent consumes the same queue (competing
  consumers). At most ``concurrency`` tasks run ``handle`` at once in the whole worker; a task waiting for a
  delegated sub-task gives its slot back while it waits.
- **Every delivery is checked** (:func:`~relaybus.bus.codec.decode_delivery`): an invalid one is
  dead-lettered with the reason and the worker goes on.
- **Results.** ``handle``'s return value becomes an ``ExecutionResult`` (``agent`` = the agent's name,
  ``worker`` = ``host:pid``, ``started_at`` / ``finished_at`` = the time spent in ``handle``). It is published
  to the task's ``reply_to`` and waited for (publisher confirm); *only then* is the task acked, so a crash at
  any point means the broker redelivers the task (at-least-once). A task without ``reply_to`` runs and is
  acked after. A result whose reply queue no longer exists (the broker answers "no route") is not dropped:
  it is dead-lettered, the result itself with ``relaybus-error: reply queue <name> is gone ...`` and
  ``relaybus-original-routing-key`` = the reply queue, so ``relaybus dlq list`` shows it and ``replay``
  delivers it once the queue is back. A result larger than ``max_body_bytes`` is replaced by a FAILURE of
  type ``ResultTooLarge``.
- **A task must carry its id.** A body without ``id`` (it would get a fresh one on every delivery, so a
  redelivery would run again) or whose AMQP ``message_id`` names another id is dead-lettered with the reason.
- **Duplicates.** The last ``result_cache_size`` results (at most ``result_cache_bytes`` of JSON) are kept by
  task id: a redelivered task whose result was already produced here is answered from the cache, not run
  again; a duplicate of a task still running here waits for that run and gets its result. (Across
  processes, the orchestrator drops duplicate results.)
- **Long tasks and RabbitMQ's** ``consumer_timeout`` (30 min by default): the broker closes the channel of a
  consumer that holds a delivery longer than that (checked every ``channel_tick_interval``, 60 s by
  default) and returns its unacked deliveries to the queue. The task keeps running; its redelivered copy
  joins the run when it reaches the same process (one run, one result), and runs again on another worker
  otherwise (the caller keeps the first result). Each such close counts against ``x-delivery-limit``
  (default 5): a task running longer than about ``(delivery_limit + 1) x consumer_timeout`` is
  dead-lettered by the broker although its result is still published. Set ``consumer_timeout`` in
  rabbitmq.conf above your longest task.
- **Deadlines** travel in the ``relaybus-deadline`` header (Unix seconds). When there is none, the task's
  ``timeout_s`` counted from receipt applies. A task past its deadline gets a TIMEOUT result and its
  ``handle`` (with the executor call or delegation it awaits) is cancelled.
- **Cancellation.** Each worker has a private queue bound to ``event.relaybus.cancel``; a
  :class:`~relaybus.messages.CancelRequest` cancels the named task if it runs here (CANCELLED result), and a
  task cancelled before it reached this worker is answered CANCELLED without running.
- **Delegation** loops and chains deeper than ``max_delegation_depth`` are refused with a FAILURE result of
  type ``DelegationError`` (see :mod:`relaybus.agents.delegation`).
- **Liveness.** A :class:`~relaybus.agents.heartbeat.WorkerHeartbeat` every ``heartbeat_interval_s`` on
  ``event.relaybus.worker.heartbeat``, and a last one on ``event.relaybus.worker.stopped`` at exit.
- **Lifecycle.** ``async with AgentWorker(...)`` calls each agent's ``on_start``, consumes until the block
  ends, then drains: it stops taking tasks, lets running ones finish for up to ``grace_s`` seconds, returns
  the rest to their queue (``nack`` with requeue, no result published), and calls each ``on_stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self
from uuid import UUID

from pydantic import BaseModel, JsonValue, TypeAdapter, ValidationError

from relaybus.bus.base import (
    CANCEL_ROUTING_KEY,
    DEAD_LETTER_EXCHANGE,
    DEADLINE_HEADER,
    DEFAULT_EXCHANGE,
    ERROR_HEADER,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_QUEUE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    Bus,
    Delivery,
    OutgoingMessage,
    Subscription,
    agent_queue_name,
    agent_routing_key,
)
from relaybus.bus.codec import (
    CONTROL_MAX_BODY_BYTES,
    DEFAULT_MAX_BODY_BYTES,
    PING_ROUTING_KEY,
    decode_delivery,
    encode_heartbeat,
    encode_result,
)
from relaybus.bus.rpc import ReplyRouter
from relaybus.bus.topic import topic_binding
from relaybus.exceptions import ConfigError, DelegationError, NoRouteError
from relaybus.executor.protocol import Executor
from relaybus.log import get_logger
from relaybus.messages import (
    AgentTask,
    CancelRequest,
    ExecutionResult,
    ExecutionStatus,
    Usage,
    WorkerHeartbeat,
)
from relaybus.secrets import mask_secrets

from .agent import Agent, validate_agent
from .context import AgentContext
from .delegation import DEFAULT_MAX_DEPTH, check_incoming, parse_chain

if (
    TYPE_CHECKING
):  # imported when first used: it loads httpx and aiohttp (~13 MiB) that most workers never need
    from relaybus.executor.core import TaskExecutor

__all__ = ["AgentWorker", "default_worker_id"]

_Reason = Literal["timeout", "cancelled", "shutdown"]
_SHUTDOWN_STEP_S = 5.0  # bounds the courtesy steps of a stop (stopped event, queue clean-up)
_JSON_OUTPUT: TypeAdapter[JsonValue] = TypeAdapter(JsonValue)


def default_worker_id() -> str:
    """``host:pid`` of this process: what ``ExecutionResult.worker`` and heartbeats name."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(eq=False)
class _Run:
    """One task this worker is running (or waiting to run)."""

    task: AgentTask
    agent: Agent
    deadline: float | None
    # The bus handler's task while, and only while, it awaits ``_execute``: what ``_interrupt`` cancels.
    runner: asyncio.Task[Any] | None = None
    reason: _Reason | None = None
    detail: str = ""
    started: bool = False
    holds_slot: bool = False
    ctx: AgentContext | None = None
    done: asyncio.Future[ExecutionResult | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class AgentWorker:
    """Hosts ``agents`` on ``bus``; see the module docstring for the guarantees.

    ``executor`` runs tasks for agents using the default ``handle``; when None, a ``TaskExecutor`` configured
    from the environment is created on first use and closed when the worker stops.
    """

    def __init__(
        self,
        bus: Bus,
        agents: Sequence[Agent],
        *,
        executor: Executor | None = None,
        concurrency: int = 16,
        grace_s: float = 30.0,
        heartbeat_interval_s: float = 5.0,
        max_delegation_depth: int = DEFAULT_MAX_DEPTH,
        result_cache_size: int = 10_000,
        result_cache_bytes: int = 64 * 1024 * 1024,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        worker_id: str | None = None,
    ) -> None:
        if isinstance(agents, Agent):
            raise ConfigError("agents must be a sequence of Agent instances: AgentWorker(bus, [MyAgent()])")
        agents = tuple(validate_agent(a) for a in agents)
        if not agents:
            raise ConfigError("AgentWorker needs at least one agent: AgentWorker(bus, [MyAgent()])")
        names = [a.name for a in agents]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"agent names must be unique in one worker; repeated: {', '.join(duplicates)}")
        if concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
        if grace_s < 0 or heartbeat_interval_s <= 0:
            raise ConfigError("grace_s must be >= 0 and heartbeat_interval_s > 0")
        if max_delegation_depth < 0 or result_cache_size < 0 or result_cache_bytes < 0:
            raise ConfigError("max_delegation_depth, result_cache_size and result_cache_bytes must be >= 0")
        self._bus = bus
        self._agents = agents
        self._executor_arg = executor
        self._concurrency = concurrency
        self.grace_s = grace_s
        self._heartbeat_s = heartbeat_interval_s
        self._max_depth = max_delegation_depth
        self._cache_size = result_cache_size
        self._cache_bytes = result_cache_bytes
        self._max_body = max_body_bytes
        self.worker_id = worker_id or default_worker_id()
        self._host = socket.gethostname()
        self._log = get_logger("relaybus.worker", worker=self.worker_id)

        self._executor: Executor | None = None
        self._router: ReplyRouter | None = None
        self._stack: AsyncExitStack | None = None
        self._subscriptions: list[Subscription] = []
        self._control_queue = f"relaybus.worker.{uuid.uuid4().hex}"
        self._slots = asyncio.Semaphore(concurrency)
        self._runs: dict[UUID, _Run] = {}
        self._results: OrderedDict[UUID, OutgoingMessage] = OrderedDict()
        self._cached_bytes = 0
        self._cancelled: OrderedDict[UUID, str] = OrderedDict()
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._beat_now = asyncio.Event()
        self._status: Literal["running", "draining", "stopped"] = "stopped"
        self._stopping = False
        self.processed = 0

    # -- public ---------------------------------------------------------------------------------------------

    @property
    def agents(self) -> tuple[Agent, ...]:
        return self._agents

    @property
    def in_flight(self) -> int:
        """Tasks received and not yet settled (running, waiting for a slot, or waiting on a delegate)."""
        return len(self._runs)

    @property
    def running(self) -> bool:
        return self._status == "running"

    @property
    def queues(self) -> list[str]:
        return [agent_queue_name(a.name) for a in self._agents]

    async def start(self) -> None:
        """Start the agents (``on_start``), declare the queues and begin consuming. Raises on failure, after
        undoing what was started."""
        if self._stack is not None:
            raise RuntimeError("this AgentWorker was started already; create a new one to start again")
        self._stack = AsyncExitStack()
        self._stopping = False
        try:
            await self._start(self._stack)
        except BaseException:
            stack, self._stack = self._stack, None
            await stack.aclose()
            raise
        self._log.info(
            "worker_started",
            agents=[a.name for a in self._agents],
            queues=self.queues,
            concurrency=self._concurrency,
            bus=self._bus.url,
        )

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain and stop (idempotent): stop taking tasks, wait up to ``grace_s`` (default ``self.grace_s``)
        for running ones, return the rest to their queue, publish a ``stopped`` event, call ``on_stop``."""
        stack, self._stack = self._stack, None
        if stack is None:
            return
        grace = self.grace_s if grace_s is None else grace_s
        self._stopping = True
        self._status = "draining"
        self._log.info("worker_draining", in_flight=self.in_flight, grace_s=grace)
        subscriptions, self._subscriptions = self._subscriptions, []
        # Cancelling a subscription stops deliveries at once but waits for running handlers: let it wait in
        # the background while this drains the runs within the grace period.
        cancelling = [asyncio.ensure_future(s.cancel()) for s in subscriptions]
        try:
            await self._drain(grace)
            if cancelling:
                await asyncio.gather(*cancelling, return_exceptions=True)
        finally:
            self._status = "stopped"
            await stack.aclose()
            self._log.info("worker_stopped", processed=self.processed)

    def abort_in_flight(self) -> int:
        """Return every task this worker holds to its queue now, without waiting (a second Ctrl-C during a
        drain); returns how many. Their ``handle`` is cancelled and no result is published."""
        runs = list(self._runs.values())
        for run in runs:
            self._interrupt(run, "shutdown", "the worker was told to stop at once")
        return len(runs)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def heartbeat(self) -> WorkerHeartbeat:
        """This worker's current state, as its heartbeat event carries it."""
        return WorkerHeartbeat(
            worker=self.worker_id,
            host=self._host,
            pid=os.getpid(),
            agents=tuple(a.name for a in self._agents),
            in_flight=self.in_flight,
            capacity=self._concurrency,
            processed=self.processed,
            status=self._status,
            interval_s=self._heartbeat_s,
        )

    # -- start and stop -------------------------------------------------------------------------------------

    async def _start(self, stack: AsyncExitStack) -> None:
        stack.push_async_callback(self._publish_stopped)
        self._executor = self._executor_arg or _LazyTaskExecutor()
        if isinstance(self._executor, _LazyTaskExecutor):
            stack.push_async_callback(self._executor.aclose)
        self._router = ReplyRouter(self._bus)
        await self._router.start()
        stack.push_async_callback(self._router.close)
        for agent in self._agents:
            await agent.on_start()
            stack.push_async_callback(self._agent_stopped, agent)
        await self._bus.declare_queue(
            self._control_queue, bindings=(CANCEL_ROUTING_KEY, PING_ROUTING_KEY), durable=False
        )
        stack.push_async_callback(self._delete_control_queue)
        control = await self._bus.consume(self._control_queue, self._on_control, prefetch=64)
        stack.push_async_callback(control.cancel)
        for agent in self._agents:
            bindings = [topic_binding(p) for p in agent.topics] + [agent_routing_key(agent.name)]
            await self._bus.declare_queue(agent_queue_name(agent.name), bindings=bindings)
        for agent in self._agents:
            subscription = await self._bus.consume(
                agent_queue_name(agent.name), self._handler_for(agent), prefetch=self._concurrency
            )
            self._subscriptions.append(subscription)
            stack.push_async_callback(subscription.cancel)  # idempotent; stop() cancels it earlier
        self._status = "running"
        self._heartbeat_task = asyncio.create_task(self._heartbeat_loop(), name="relaybus-worker-heartbeat")
        stack.push_async_callback(self._stop_heartbeat)

    async def _drain(self, grace: float) -> None:
        await asyncio.sleep(0)  # let tasks just received take the free slots first
        for run in list(self._runs.values()):  # still waiting for a slot: straight back to the queue
            if not run.started:
                self._interrupt(run, "shutdown", "the worker is stopping")
        waiting = [r.done for r in self._runs.values() if not r.done.done()]
        if waiting:
            _, late = await asyncio.wait(waiting, timeout=grace)
            if late:
                self._log.warning("drain_grace_expired", returned_to_queue=len(late), grace_s=grace)
        for run in list(self._runs.values()):
            self._interrupt(run, "shutdown", "the worker stopped before the task finished")
        remaining = [r.done for r in self._runs.values() if not r.done.done()]
        if remaining:
            await asyncio.wait(remaining)

    async def _agent_stopped(self, agent: Agent) -> None:
        try:
            await agent.on_stop()
        except Exception as exc:
            self._log.error("agent_on_stop_failed", agent=agent.name, error=mask_secrets(repr(exc)))

    async def _delete_control_queue(self) -> None:
        # A private queue: it goes with the connection anyway, so a broker that is away must not hold us up.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_SHUTDOWN_STEP_S):
                await self._bus.delete_queue(self._control_queue)

    async def _stop_heartbeat(self) -> None:
        task, self._heartbeat_task = self._heartbeat_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _publish_stopped(self) -> None:
        self._status = "stopped"
        try:
            async with asyncio.timeout(_SHUTDOWN_STEP_S):
                await self._publish_heartbeat()
        except TimeoutError:
            self._log.warning("stopped_event_not_sent", timeout_s=_SHUTDOWN_STEP_S)

    # -- heartbeats and control events ----------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await self._publish_heartbeat()
            self._beat_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat_now.wait(), self._heartbeat_s)

    async def _publish_heartbeat(self) -> None:
        try:
            await self._bus.publish(encode_heartbeat(self.heartbeat()))
        except Exception as exc:  # the broker may be away; the next beat tries again
            self._log.warning("heartbeat_failed", error=mask_secrets(repr(exc))[:300])

    async def _on_control(self, delivery: Delivery) -> None:
        if delivery.routing_key == PING_ROUTING_KEY:
            self._beat_now.set()
            await delivery.ack()
            return
        request = await decode_delivery(delivery, CancelRequest, max_bytes=CONTROL_MAX_BODY_BYTES)
        if request is None:
            return
        self._remember_cancel(request.task_id, request.reason)
        run = self._runs.get(request.task_id)
        if run is not None:
            self._log.info("task_cancel_requested", task_id=str(request.task_id), reason=request.reason)
            self._interrupt(run, "cancelled", request.reason)
        await delivery.ack()

    def _remember_cancel(self, task_id: UUID, reason: str) -> None:
        self._cancelled[task_id] = reason
        while len(self._cancelled) > max(self._cache_size, 1):
            self._cancelled.popitem(last=False)

    # -- tasks ----------------------------------------------------------------------------------------------

    def _handler_for(self, agent: Agent) -> Any:
        async def handler(delivery: Delivery) -> None:
            await self._on_delivery(agent, delivery)

        return handler

    async def _on_delivery(self, agent: Agent, delivery: Delivery) -> None:
        if self._stopping:
            await delivery.nack(requeue=True)
            return
        task = await decode_delivery(delivery, AgentTask, max_bytes=self._max_body)
        if task is not None:
            refused = _identity_problem(task, delivery)
            if refused is not None:
                await delivery.dead_letter(refused)
                task = None
        if task is None:
            self._log.warning("task_dead_lettered", agent=agent.name, message_id=delivery.message_id)
            return
        cached = self._results.get(task.id)
        if cached is not None:
            self._log.info("duplicate_task_answered_from_cache", task_id=str(task.id), agent=agent.name)
            await self._reply(delivery, cached, task.id)
            return
        running = self._runs.get(task.id)
        if running is not None:
            # The same task again while it runs here (e.g. redelivered after a reconnect): share the run.
            self._log.info("duplicate_task_joins_run", task_id=str(task.id), agent=agent.name)
            outcome = await asyncio.shield(running.done)
            message = self._results.get(task.id) if outcome is not None else None
            if message is None:  # returned to the queue (or already evicted): so is this copy
                await self._settle_quietly(delivery.nack(requeue=True), task.id, "nack")
            else:
                await self._reply(delivery, message, task.id)
            return
        early = self._refuse_early(agent, task, delivery)
        if early is not None:
            await self._finish(delivery, task, early)
            return
        await self._run(agent, task, delivery)

    def _refuse_early(self, agent: Agent, task: AgentTask, delivery: Delivery) -> ExecutionResult | None:
        """A result for a task that must not run at all, or None to run it."""
        fields: dict[str, Any] = {"agent": agent.name, "worker": self.worker_id}
        now = datetime.now(UTC)
        reason = self._cancelled.get(task.id)
        if reason is not None:
            return ExecutionResult.failed(
                task.id,
                ExecutionStatus.CANCELLED,
                "Cancelled",
                reason,
                started_at=now,
                finished_at=now,
                **fields,
            )
        try:
            check_incoming(parse_chain(delivery.headers), agent.name, self._max_depth)
        except DelegationError as exc:
            self._log.warning("delegation_refused", task_id=str(task.id), agent=agent.name, error=str(exc))
            return ExecutionResult.failed(
                task.id,
                ExecutionStatus.FAILURE,
                "DelegationError",
                str(exc),
                started_at=now,
                finished_at=now,
                **fields,
            )
        try:
            deadline = self._deadline_of(task, delivery)
        except ValueError as exc:
            return ExecutionResult.failed(
                task.id,
                ExecutionStatus.REJECTED,
                "InvalidDeadline",
                str(exc),
                started_at=now,
                finished_at=now,
                **fields,
            )
        if deadline is not None and deadline <= time.time():
            late = time.time() - deadline
            return ExecutionResult.failed(
                task.id,
                ExecutionStatus.TIMEOUT,
                "DeadlineExceeded",
                f"the task's deadline passed {late:.1f}s before a worker took it; it was not run",
                retryable=True,
                started_at=now,
                finished_at=now,
                **fields,
            )
        return None

    @staticmethod
    def _deadline_of(task: AgentTask, delivery: Delivery) -> float | None:
        raw = delivery.headers.get(DEADLINE_HEADER)
        if raw is None or raw == "":
            return time.time() + task.timeout_s if task.timeout_s else None
        if isinstance(raw, bool):
            raw = None
        try:
            value = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            value = float("nan")
        if not value == value or value <= 0:  # NaN or nonsense
            raise ValueError(
                f"header {DEADLINE_HEADER!r} = {str(raw)[:40]!r} is not a Unix time in seconds; "
                "send e.g. '1767225600.5' or leave the header out"
            )
        return value

    async def _run(self, agent: Agent, task: AgentTask, delivery: Delivery) -> None:
        run = _Run(task=task, agent=agent, deadline=self._deadline_of(task, delivery))
        chain = parse_chain(delivery.headers)
        self._runs[task.id] = run
        outcome: ExecutionResult | None = None
        try:
            outcome = await self._await_run(run, chain)
        finally:
            self._runs.pop(task.id, None)
            if not run.done.done():
                run.done.set_result(outcome)
        if outcome is None:
            self._log.info("task_returned_to_queue", task_id=str(task.id), agent=agent.name)
            await self._settle_quietly(delivery.nack(requeue=True), task.id, "nack")
            return
        self.processed += 1
        await self._finish(delivery, task, outcome)

    async def _await_run(self, run: _Run, chain: tuple[str, ...]) -> ExecutionResult | None:
        """Run the task in this (the bus handler's) task; None: return it to the queue.

        No child task: a deadline or an interrupt cancels this task while, and only while, it awaits
        ``_execute`` (``run.runner`` is set), and that one cancellation is taken back (``uncancel``) here, so
        the handler goes on to publish the TIMEOUT / CANCELLED result. A cancellation from anyone else (the
        bus dropping the handler) propagates. Saves a Task, a waiter and two loop iterations per task.
        """
        me = asyncio.current_task()
        assert me is not None
        timer: asyncio.TimerHandle | None = None
        if run.deadline is not None:
            loop = asyncio.get_running_loop()
            timer = loop.call_at(
                loop.time() + (run.deadline - time.time()), self._interrupt, run, "timeout", ""
            )
        run.runner = me
        try:
            result = await self._execute(run, chain)
        except asyncio.CancelledError:
            if run.reason is None:  # not ours: the bus dropped this handler; the broker returns the delivery
                run.reason, run.detail = "shutdown", "the bus connection was lost"
                raise
            if me.uncancel() > 0:  # ours, but someone else cancelled this handler as well
                raise
        else:
            if run.reason is None:
                return result
            me.uncancel()  # ``handle`` swallowed our cancellation; the interrupt still decides the result
        finally:
            run.runner = None
            if timer is not None:
                timer.cancel()
        return self._interrupted_result(run)

    def _interrupted_result(self, run: _Run) -> ExecutionResult | None:
        now = datetime.now(UTC)
        fields: dict[str, Any] = {"agent": run.agent.name, "worker": self.worker_id, "finished_at": now}
        if run.ctx is not None:  # tokens spent before the deadline or the cancel still count
            fields["usage"] = run.ctx.usage
        if run.reason == "timeout":
            budget = (
                ""
                if run.deadline is None
                else f" (deadline {datetime.fromtimestamp(run.deadline, UTC):%H:%M:%S})"
            )
            return ExecutionResult.failed(
                run.task.id,
                ExecutionStatus.TIMEOUT,
                "DeadlineExceeded",
                f"the task did not finish before its deadline{budget}; its work was cancelled",
                retryable=True,
                **fields,
            )
        if run.reason == "cancelled":
            return ExecutionResult.failed(
                run.task.id, ExecutionStatus.CANCELLED, "Cancelled", run.detail, **fields
            )
        return None  # shutdown: back to the queue

    def _interrupt(self, run: _Run, reason: _Reason, detail: str) -> None:
        if run.reason is not None or run.runner is None:
            return
        run.reason = reason
        run.detail = detail
        run.runner.cancel()

    async def _execute(self, run: _Run, chain: tuple[str, ...]) -> ExecutionResult:
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
                worker=self.worker_id,
                executor=self._executor,
                bus=self._bus,
                log=log,
                requester=self._router,
                chain=chain,
                deadline=run.deadline,
                max_delegation_depth=self._max_depth,
                release_slot=lambda: self._slot_released(run),
            )
            run.ctx = ctx
            started = datetime.now(UTC)
            log.debug("task_started", topic=task.topic)
            try:
                value = await agent.handle(task, ctx)
            except Exception as exc:
                log.warning("task_failed", error_type=type(exc).__name__, error=mask_secrets(str(exc))[:500])
                return ExecutionResult.failed(
                    task.id,
                    ExecutionStatus.FAILURE,
                    type(exc).__name__,
                    mask_secrets(str(exc)) or repr(exc),
                    agent=agent.name,
                    worker=self.worker_id,
                    started_at=started,
                    finished_at=datetime.now(UTC),
                    usage=ctx.usage,
                )
            result = self._to_result(task, agent, value, started, ctx.usage)
            log.debug("task_finished", status=result.status.value)
            return result
        finally:
            self._release(run)

    def _to_result(
        self, task: AgentTask, agent: Agent, value: object, started: datetime, usage: Usage
    ) -> ExecutionResult:
        stamp: dict[str, Any] = {
            "agent": agent.name,
            "worker": self.worker_id,
            "started_at": started,
            "finished_at": datetime.now(UTC),
        }
        if usage != Usage():  # what the context metered covers every call made for this task
            stamp["usage"] = usage
        if isinstance(value, ExecutionResult):
            # Also a result of another task (``return await ctx.delegate(...)``): it answers this task now.
            return value.model_copy(update={"task_id": task.id, **stamp})
        try:
            output = (
                value.model_dump(mode="json")
                if isinstance(value, BaseModel)
                else _JSON_OUTPUT.validate_python(value)
            )
        except ValidationError:
            return ExecutionResult.failed(
                task.id,
                ExecutionStatus.FAILURE,
                "TypeError",
                f"{type(agent).__name__}.handle returned a {type(value).__name__}, which is not JSON: "
                "return an ExecutionResult, a pydantic model, or JSON values (dict, list, str, numbers, "
                "bool, None)",
                **stamp,
            )
        return ExecutionResult.success(task.id, output, **stamp)

    async def _acquire(self, run: _Run) -> None:
        await self._slots.acquire()
        run.holds_slot = True

    def _release(self, run: _Run) -> None:
        if run.holds_slot:
            run.holds_slot = False
            self._slots.release()

    @contextlib.asynccontextmanager
    async def _slot_released(self, run: _Run) -> AsyncIterator[None]:
        self._release(run)
        try:
            yield
        finally:
            await self._acquire(run)

    async def _finish(self, delivery: Delivery, task: AgentTask, result: ExecutionResult) -> None:
        message = self._encode(result)
        self._remember(task.id, message)
        # DEBUG for the common case: rendering and writing one line per task was 5-6% of the worker's CPU
        # (bench/PROFILE.md W1); the heartbeat carries the count. Anything but SUCCESS stays visible.
        log = self._log.debug if result.status is ExecutionStatus.SUCCESS else self._log.info
        log(
            "task_done",
            task_id=str(task.id),
            agent=result.agent,
            status=result.status.value,
            duration_s=result.duration_s,
        )
        await self._reply(delivery, message, task.id)

    def _encode(self, result: ExecutionResult) -> OutgoingMessage:
        """The result message (its routing key is set per reply); a result too big to send becomes a FAILURE
        that says so, rather than a message the broker refuses on every redelivery."""
        message = encode_result(result, reply_to="")
        if len(message.body) <= self._max_body:
            return message
        self._log.warning("result_too_large", task_id=str(result.task_id), size=len(message.body))
        too_large = ExecutionResult.failed(
            result.task_id,
            ExecutionStatus.FAILURE,
            "ResultTooLarge",
            f"the result is {len(message.body)} bytes of JSON, over the limit of {self._max_body}: return a "
            "smaller output, or store large data elsewhere and return a reference (a URL or a path)",
            agent=result.agent,
            worker=result.worker,
            started_at=result.started_at,
            finished_at=result.finished_at,
            usage=result.usage,
        )
        return encode_result(too_large, reply_to="")

    def _remember(self, task_id: UUID, message: OutgoingMessage) -> None:
        old = self._results.pop(task_id, None)
        if old is not None:
            self._cached_bytes -= len(old.body)
        self._results[task_id] = message
        self._cached_bytes += len(message.body)
        while self._results and (
            len(self._results) > self._cache_size or self._cached_bytes > self._cache_bytes
        ):
            _, dropped = self._results.popitem(last=False)
            self._cached_bytes -= len(dropped.body)

    async def _reply(self, delivery: Delivery, message: OutgoingMessage, task_id: UUID) -> None:
        """Publish the result to the delivery's ``reply_to`` (confirmed), then ack the delivery."""
        if delivery.reply_to:
            try:
                try:
                    await self._bus.publish(dataclasses.replace(message, routing_key=delivery.reply_to))
                except NoRouteError:
                    await self._dead_letter_result(message, delivery.reply_to, task_id)
            except Exception as exc:
                # Not confirmed: return the task; its redelivery is answered from the result cache.
                self._log.error(
                    "result_publish_failed", task_id=str(task_id), error=mask_secrets(repr(exc))[:300]
                )
                await self._settle_quietly(delivery.nack(requeue=True), task_id, "nack")
                return
        await self._settle_quietly(delivery.ack(), task_id, "ack")

    async def _dead_letter_result(self, message: OutgoingMessage, reply_to: str, task_id: UUID) -> None:
        """Keep a result whose reply queue is gone in ``relaybus.dead`` (confirmed) instead of dropping it."""
        reason = (
            f"reply queue {reply_to} is gone: the caller that sent task {task_id} stopped (or its queue "
            "expired) before the result arrived; replay it once the caller's queue exists again"
        )
        headers = {
            **message.headers,
            ERROR_HEADER: reason,
            ORIGINAL_QUEUE_HEADER: reply_to,
            ORIGINAL_ROUTING_KEY_HEADER: reply_to,
            ORIGINAL_EXCHANGE_HEADER: DEFAULT_EXCHANGE,
        }
        await self._bus.publish(
            dataclasses.replace(
                message, exchange=DEAD_LETTER_EXCHANGE, routing_key=reply_to, headers=headers, mandatory=True
            )
        )
        self._log.warning("result_dead_lettered", task_id=str(task_id), reply_to=reply_to, reason=reason)

    async def _settle_quietly(self, settle: Any, task_id: UUID, verb: str) -> None:
        try:
            await settle
        except Exception as exc:  # the channel is gone: the broker redelivers, the cache answers
            self._log.warning(
                "settle_failed", task_id=str(task_id), verb=verb, error=mask_secrets(repr(exc))[:300]
            )


def _identity_problem(task: AgentTask, delivery: Delivery) -> str | None:
    """Why a decoded task must not run (no id of its own, or another id than its message), or None."""
    if "id" not in task.model_fields_set:
        return (
            "invalid AgentTask: id: field required (a task without an id would run again on every "
            "redelivery); send the task's UUID in 'id' and as the AMQP message_id"
        )
    if delivery.message_id and delivery.message_id != str(task.id):
        return (
            f"message_id {delivery.message_id[:64]!r} does not match the task's id {task.id}; publish tasks "
            "with encode_task (message_id = id)"
        )
    return None


class _LazyTaskExecutor:
    """The default executor: ``TaskExecutor.from_env()``, created when a task first needs it.

    Lazy so that a worker whose agents never call the executor needs no LLM settings to start; a bad setting
    then shows up as the FAILURE result (with the configuration error's message) of the first task using it.
    """

    def __init__(self) -> None:
        self._inner: TaskExecutor | None = None
        self._lock = asyncio.Lock()

    async def _get(self) -> TaskExecutor:
        if self._inner is not None:  # the hot path: no lock once created
            return self._inner
        async with self._lock:
            if self._inner is None:
                from relaybus.executor.core import TaskExecutor

                self._inner = TaskExecutor.from_env()
            return self._inner

    async def execute(
        self,
        task: AgentTask,
        agent: str | None = None,
        mode: str | None = None,
        *,
        system_prompt: str | None = None,
    ) -> ExecutionResult:
        inner = await self._get()
        return await inner.execute(task, agent, mode, system_prompt=system_prompt)

    def cancel(self, task_id: UUID) -> bool:
        return self._inner.cancel(task_id) if self._inner is not None else False

    async def aclose(self) -> None:
        inner, self._inner = self._inner, None
        if inner is not None:
            await inner.aclose()
