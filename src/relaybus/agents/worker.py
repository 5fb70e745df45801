"""``AgentWorker``: hosts agents in one process and runs the tasks the bus brings them.

What a caller may rely on:

- **Topology.** For each agent the worker declares the durable queue ``relaybus.agent.<name>``, bound to
  ``task.<pattern>`` for each of the agent's topic patterns and to ``agent.<name>``, and consumes it with a
  prefetch of ``concurrency``. Every process hosting the same agent consumes the same queue (competing
  consumers). At most ``concurrency`` tasks run ``handle`` at once in the whole worker; a task waiting for a
  delegated sub-task gives its slot back while it waits.
- **Every delivery is checked** (:func:`~relaybus.bus.codec.decode`): an invalid one is
  dead-lettered with the reason and the worker goes on; when its id (the body's ``id``, else a UUID
  ``message_id`` or ``correlation_id``) and a reply queue can be read, it is also answered at once with a
  REJECTED result of type ``InvalidTask`` giving the reason.
- **Results.** ``handle``'s return value becomes an ``ExecutionResult`` (``agent`` = the agent's name,
  ``worker`` = ``host:pid``, ``started_at`` / ``finished_at`` = the time spent in ``handle``). It is published
  to the task's ``reply_to`` and waited for (publisher confirm); *only then* is the task acked, so a crash at
  any point means the broker redelivers the task (at-least-once). A task without ``reply_to`` runs and is
  acked after. A result whose named reply queue no longer exists (the broker answers "no route") is not
  dropped: it is dead-lettered, the result itself with ``relaybus-error: reply queue <name> is gone ...`` and
  ``relaybus-original-routing-key`` = the reply queue, so ``relaybus dlq list`` shows it and ``replay``
  delivers it once the queue is back; but an anonymous caller's queue never comes back, so such a result is
  dropped, logged as ``result_orphaned`` and counted in ``relaybus_results_orphaned_total{agent}``. A
  result larger than ``max_body_bytes`` is replaced by a FAILURE of type ``ResultTooLarge``.
- **A task must carry its id.** A body without ``id`` (it would get a fresh one on every delivery, so a
  redelivery would run again) or whose AMQP ``message_id`` names another id is dead-lettered with the reason
  (and answered REJECTED as above). A result echoes the task's ``correlation_id`` (a caller's own, else the
  task id); a direct reply-to (``amq.rabbitmq.reply-to``) gets its result at most once (RabbitMQ's rule).
- **Duplicates.** The last ``result_cache_size`` results (at most ``result_cache_bytes`` of JSON) are kept by
  task id: a redelivered task whose result was already produced here is answered from the cache, not run
  again, but only for a copy of the same task (``created_at`` aside) with the same ``reply_to`` or from the
  same publisher (AMQP ``user_id``); another body, or another publisher's reply queue, under a known id is
  answered REJECTED, type ``TaskIdReused``, and dead-lettered. A run stopped from outside (cancelled, past its
  deadline) is not kept: a copy published again later runs. A
  duplicate of a task still running here waits for that run and gets its result. (Across processes, the
  orchestrator drops duplicate results.)
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
  ``handle`` (with the executor call or delegation it awaits) is cancelled. A task whose deadline passed
  before it started (in the queue, or waiting for a slot) is dropped: acked without a result (its caller
  stopped waiting), logged as ``task_expired`` and counted in ``relaybus_tasks_expired_total{agent}``.
- **Cancellation.** Each worker has a private queue bound to ``event.relaybus.cancel``; a
  :class:`~relaybus.messages.CancelRequest` cancels the named task if it runs here (CANCELLED result), and a
  task cancelled before it reached this worker is answered CANCELLED without running.
- **Delegation** loops and chains deeper than ``max_delegation_depth`` are refused with a FAILURE result of
  type ``DelegationError`` (see :mod:`relaybus.agents.delegation`).
- **Liveness.** A :class:`~relaybus.messages.WorkerHeartbeat` every ``heartbeat_interval_s`` on
  ``event.relaybus.worker.heartbeat``, and a last one on ``event.relaybus.worker.stopped`` at exit.
- **State** (``state=``, a :class:`~relaybus.state.StateStore`): each task id runs once across the workers
  sharing the store, unless its worker dies mid-run (:mod:`~relaybus.agents.claims`, leases of ``lease_s``).
- **Lifecycle.** ``async with AgentWorker(...)`` starts each agent's tools (one
  :class:`~relaybus.tools.Toolbox` per agent: its MCP servers' sessions opened, so a server that cannot
  start fails the start with :class:`~relaybus.MCPConnectionError` naming the agent), registers the scripts
  and modes the agents declare on the executor (:mod:`~relaybus.agents.startup`), calls each agent's
  ``on_start`` (with a :class:`~relaybus.agents.startup.StartContext` holding the executor), consumes
  until the block ends, then drains: it stops taking tasks, lets running ones finish for up to ``grace_s``
  seconds, returns the rest to their queue (``nack`` with requeue, no result published), and calls each
  ``on_stop`` and closes the tools.

The work is done in rooms: :mod:`~relaybus.agents.admission` decides whether a task runs,
:mod:`~relaybus.agents.running` runs it within slots and deadlines, :mod:`~relaybus.agents.replies` sends the
result and settles the delivery, :mod:`~relaybus.agents.control` handles cancel requests, pings and
heartbeats. ``AgentWorker`` keeps the lifecycle and the path of each delivery through them.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import socket
from collections.abc import Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Self

from relaybus.bus.base import (
    Bus,
    Delivery,
    Subscription,
    agent_queue_name,
    agent_routing_key,
)
from relaybus.bus.codec import DEFAULT_MAX_BODY_BYTES, stream_destination
from relaybus.bus.rpc import ReplyRouter
from relaybus.bus.topic import topic_binding
from relaybus.exceptions import ConfigError, UsageError
from relaybus.executor.lazy import LazyTaskExecutor
from relaybus.executor.protocol import Executor
from relaybus.log import IntervalSampler, get_logger
from relaybus.messages import (
    MAX_HEARTBEAT_TASKS,
    AgentTask,
    ExecutionResult,
    ExecutionStatus,
    WorkerHeartbeat,
)
from relaybus.secrets import mask_secrets
from relaybus.state import task_digest
from relaybus.telemetry.metrics import WorkerMetrics

from .admission import Admission, Expired, answerable_id, decode_task
from .agent import Agent, validate_agents
from .claims import DEFAULT_LEASE_S, TaskClaims
from .control import WorkerControl
from .delegation import DEFAULT_MAX_DEPTH
from .outcomes import is_interrupted
from .replies import Replier, ResultCache, content_digest
from .running import TaskRunner
from .startup import StartContext, register_declared, start_agent

if TYPE_CHECKING:
    from relaybus.state import StateStore
    from relaybus.tools import Toolbox

__all__ = ["AgentWorker", "default_worker_id"]


def default_worker_id() -> str:
    """``host:pid`` of this process: what ``ExecutionResult.worker`` and heartbeats name."""
    return f"{socket.gethostname()}:{os.getpid()}"


class AgentWorker:
    """Hosts ``agents`` on ``bus``; see the module docstring for the guarantees.

    ``executor`` runs tasks for agents using the default ``handle``; when None, a ``TaskExecutor`` configured
    from the environment is created on first use and closed when the worker stops. ``metrics``, when given,
    counts tasks, durations, LLM calls and dead letters (:class:`~relaybus.telemetry.WorkerMetrics`). ``llm``
    (``provider/model``) is what heartbeats say the executor uses.
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
        metrics: WorkerMetrics | None = None,
        state: StateStore | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        llm: str | None = None,
    ) -> None:
        self._agents = validate_agents(agents)
        if concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
        if grace_s < 0 or heartbeat_interval_s <= 0:
            raise ConfigError("grace_s must be >= 0 and heartbeat_interval_s > 0")
        if max_delegation_depth < 0 or result_cache_size < 0 or result_cache_bytes < 0:
            raise ConfigError("max_delegation_depth, result_cache_size and result_cache_bytes must be >= 0")
        self._bus = bus
        self._executor_arg = executor
        self._concurrency = concurrency
        self.grace_s = grace_s
        self._heartbeat_s = heartbeat_interval_s
        self._max_body = max_body_bytes
        self.worker_id = worker_id or default_worker_id()
        self.llm = llm
        """The executor's provider and model as heartbeats report them (``relaybus agents`` shows it)."""
        self._host = socket.gethostname()
        self._log = get_logger("relaybus.worker", worker=self.worker_id)
        self._metrics = metrics
        self._successes = IntervalSampler(1.0)  # which successes get an INFO task_done line

        self._admission = Admission(worker=self.worker_id, max_depth=max_delegation_depth, log=self._log)
        self._runner = TaskRunner(
            bus,
            worker=self.worker_id,
            concurrency=concurrency,
            max_depth=max_delegation_depth,
            log=self._log,
            metrics=metrics,
            state=state,
        )
        self._replies = Replier(bus, max_body=max_body_bytes, log=self._log, metrics=metrics)
        self._control = WorkerControl(
            bus,
            describe=self.heartbeat,
            on_cancel=self._runner.cancel,
            interval_s=heartbeat_interval_s,
            remember=result_cache_size,
            log=self._log,
        )
        self._results = ResultCache(result_cache_size, result_cache_bytes)
        # A task's digest, once per delivery; with a store, the claim's (task_digest) serves the cache too.
        self._digest = content_digest if state is None else task_digest
        self.state = state
        self.claims = (
            None
            if state is None
            else TaskClaims(state, worker=self.worker_id, log=self._log, lease_s=lease_s)
        )
        self._stack: AsyncExitStack | None = None
        self._subscriptions: list[Subscription] = []
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
        return len(self._runner.runs)

    @property
    def is_running(self) -> bool:
        """Whether the worker is consuming (started, and not draining or stopped)."""
        return self._status == "running"

    @property
    def queues(self) -> list[str]:
        return [agent_queue_name(a.name) for a in self._agents]

    @property
    def consuming(self) -> list[str]:
        """The queues this worker has a consumer on: every agent's while running, none once stopped."""
        return self.queues[: len(self._subscriptions)]  # subscribed in the order of the agents

    async def start(self) -> None:
        """Start the agents (``on_start``), declare the queues and begin consuming. Raises on failure, after
        undoing what was started; :class:`~relaybus.UsageError` when this worker was started before."""
        if self._stack is not None:
            raise UsageError("this AgentWorker was started already; create a new one to start again")
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
        if self.claims is not None:
            self.claims.stop()
        self._log.info("worker_draining", in_flight=self.in_flight, grace_s=grace)
        subscriptions, self._subscriptions = self._subscriptions, []
        # Cancelling a subscription stops deliveries at once but waits for running handlers: let it wait in
        # the background while this drains the runs within the grace period.
        cancelling = [asyncio.ensure_future(s.cancel()) for s in subscriptions]
        try:
            await self._runner.drain(grace)
            if cancelling:
                await asyncio.gather(*cancelling, return_exceptions=True)
        finally:
            self._status = "stopped"
            await stack.aclose()
            self._log.info("worker_stopped", processed=self.processed)

    def abort_in_flight(self) -> int:
        """Return every task this worker holds to its queue now, without waiting (a second Ctrl-C during a
        drain); returns how many. Their ``handle`` is cancelled and no result is published."""
        return self._runner.interrupt_all("the worker was told to stop at once")

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
            broker=getattr(self._bus, "node", None),  # AmqpBus: the node connected to now
            llm=self.llm,
            running=tuple(itertools.islice(self._runner.runs, MAX_HEARTBEAT_TASKS)),
        )

    # -- start and stop -------------------------------------------------------------------------------------

    async def _start(self, stack: AsyncExitStack) -> None:
        stack.push_async_callback(self._publish_stopped)
        if self.state is not None and not self.state.is_open:  # opened here, so closed here
            await self.state.open()
            stack.push_async_callback(self.state.close)
        executor = self._executor_arg
        if executor is None:
            lazy = LazyTaskExecutor()
            stack.push_async_callback(lazy.close)
            executor = lazy
        router = ReplyRouter(self._bus)
        await router.start()
        stack.push_async_callback(router.close)
        toolboxes: dict[str, Toolbox] = {}
        if any(agent.tools for agent in self._agents):  # the tools package loads only for agents with tools
            from .loop import open_toolboxes

            toolboxes = await open_toolboxes(self._agents, stack)
        self._runner.bind(executor, router, toolboxes)
        await register_declared(self._agents, executor)
        start = StartContext(executor=executor, bus=self._bus, worker=self.worker_id)
        for agent in self._agents:
            await start_agent(agent, start)
            stack.push_async_callback(self._agent_stopped, agent)
        await self._control.open(stack)
        for agent in self._agents:
            bindings = [topic_binding(p) for p in agent.topics] + [agent_routing_key(agent.name)]
            await self._bus.declare_queue(agent_queue_name(agent.name), bindings=bindings)
        for agent in self._agents:
            subscription = await self._bus.consume(
                agent_queue_name(agent.name),
                functools.partial(self._on_delivery, agent),
                prefetch=self._concurrency,
            )
            self._subscriptions.append(subscription)
            stack.push_async_callback(subscription.cancel)  # idempotent; stop() cancels it earlier
        self._status = "running"
        self._control.start_heartbeats(stack)

    async def _agent_stopped(self, agent: Agent) -> None:
        try:
            await agent.on_stop()
        except Exception as exc:
            self._log.error("agent_on_stop_failed", agent=agent.name, error=mask_secrets(repr(exc)))

    async def _publish_stopped(self) -> None:
        self._status = "stopped"
        await self._control.publish_stopped()

    # -- the path of a delivery -----------------------------------------------------------------------------

    async def _on_delivery(self, agent: Agent, delivery: Delivery) -> None:
        if self._stopping:
            await delivery.nack(requeue=True)
            return
        task = decode_task(delivery, self._max_body)
        if isinstance(task, str):
            await self._refuse_invalid(agent, delivery, task)
            return
        digest = self._digest(task)
        cached = self._results.get(task, delivery.reply_to, digest, delivery.user_id)
        if isinstance(cached, str):
            await self._replies.refuse(delivery, task.id, cached, agent=agent.name, worker=self.worker_id)
            return
        if cached is not None:
            self._log.info("duplicate_task_answered_from_cache", task_id=str(task.id), agent=agent.name)
            await self._replies.reply(delivery, cached, task.id, agent.name)
            return
        running = self._runner.runs.get(task.id)
        if running is not None:
            # The same task again while it runs here (e.g. redelivered after a reconnect): share the run.
            self._log.info("duplicate_task_joins_run", task_id=str(task.id), agent=agent.name)
            outcome = await asyncio.shield(running.done)
            message = (
                self._results.get(task, delivery.reply_to, digest, delivery.user_id)
                if outcome is not None
                else None
            )
            if message is None:  # returned to the queue (or already evicted): so is this copy
                await self._replies.settle_quietly(delivery.nack(requeue=True), task.id, "nack")
            elif isinstance(message, str):
                await self._replies.refuse(
                    delivery, task.id, message, agent=agent.name, worker=self.worker_id
                )
            else:
                await self._replies.reply(delivery, message, task.id, agent.name)
            return
        run = self._admission.admit(agent, task, delivery, self._control.cancel_reason(task))
        if isinstance(run, ExecutionResult):
            await self._finish(delivery, task, run, digest)
            return
        if isinstance(run, Expired):
            await self._expired(delivery, task, agent, run.late_s)
            return
        run.stream_to = stream_destination(delivery.reply_to, delivery.headers)
        if self.claims is None:
            outcome = await self._runner.run(run)
        else:
            claimed = await self.claims.execute(
                task, self._runner, run, digest=digest, publisher=delivery.user_id
            )
            if claimed.refused is not None:
                await self._replies.refuse(
                    delivery, task.id, claimed.refused, agent=agent.name, worker=self.worker_id
                )
                return
            if claimed.result is not None and not claimed.ran:  # answered from the stored result
                await self._finish(delivery, task, claimed.result, digest)
                return
            outcome = claimed.result
        if outcome is None:
            self._log.info("task_returned_to_queue", task_id=str(task.id), agent=agent.name)
            await self._replies.settle_quietly(delivery.nack(requeue=True), task.id, "nack")
            return
        if not run.started and outcome.status is ExecutionStatus.TIMEOUT:  # expired waiting for a slot
            await self._expired(delivery, task, agent, 0.0)
            return
        self.processed += 1
        await self._finish(delivery, task, outcome, digest)

    async def _refuse_invalid(self, agent: Agent, delivery: Delivery, reason: str) -> None:
        """Dead-letter a task refused on receipt; when its id and a reply queue can be read, answer it at once
        with REJECTED (type ``InvalidTask``) and the reason, so its caller does not wait for a timeout."""
        if self._metrics is not None:
            self._metrics.dead_lettered("invalid_task")
        task_id = answerable_id(delivery, self._max_body)
        if task_id is None:
            await delivery.dead_letter(reason)
            self._log.warning("task_dead_lettered", agent=agent.name, message_id=delivery.message_id)
            return
        await self._replies.refuse(
            delivery, task_id, reason, agent=agent.name, worker=self.worker_id, error_type="InvalidTask"
        )

    async def _expired(self, delivery: Delivery, task: AgentTask, agent: Agent, late_s: float) -> None:
        """The task's deadline passed before it started: its caller gave up, so no result and no letter."""
        if self._metrics is not None:
            self._metrics.task_expired(agent.name)
        self._log.info("task_expired", task_id=str(task.id), agent=agent.name, late_s=round(late_s, 3))
        await self._replies.settle_quietly(delivery.ack(), task.id, "ack")

    async def _finish(
        self, delivery: Delivery, task: AgentTask, result: ExecutionResult, digest: str
    ) -> None:
        message = self._replies.encode(result)
        if not is_interrupted(result):  # not the task's own result: a copy published again later runs
            self._results.put(task, delivery.reply_to, message, digest, delivery.user_id)
        if self._metrics is not None:
            self._metrics.task_answered(result)
        # Anything but SUCCESS at INFO; successes at INFO at most once a second (with how many were not),
        # else DEBUG: a JSON line per task costs about a no-op task's CPU (bench/telemetry.py).
        # A DEBUG line filtered out is not even built (its fields cost more than the call).
        shown = self._successes.sample() if result.status is ExecutionStatus.SUCCESS else 0
        if shown is not None or self._log.is_enabled_for(logging.DEBUG):
            log = self._log.debug if shown is None else self._log.info
            duration = result.duration_s
            log(
                "task_done",
                task_id=str(task.id),
                agent=result.agent,
                status=result.status.value,
                duration_ms=None if duration is None else round(duration * 1000, 1),
                **({"successes_not_shown": shown} if shown else {}),
            )
        await self._replies.reply(delivery, message, task.id, result.agent or "")
