"""``AgentContext``: what an agent's ``handle`` gets besides the task.

It carries the executor, the bus, a logger bound to the task, and the ways to talk to other agents: delegate a
sub-task and await its result (by correlation id, through the process's one reply queue), delegate many at
once, or publish an event. Agents coordinate only over the bus, never by calling each other directly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Protocol
from uuid import UUID

from pydantic import BaseModel, JsonValue

from relaybus.bus.base import DEADLINE_HEADER, DELEGATION_HEADER, Bus, HeaderValue
from relaybus.bus.codec import encode_cancel, encode_event
from relaybus.executor.protocol import Executor
from relaybus.log import FilteringBoundLogger
from relaybus.messages import AgentTask, ExecutionResult, Usage

from .delegation import check_outgoing, format_chain

__all__ = ["DEFAULT_DELEGATE_TIMEOUT_S", "AgentContext", "Requester"]

DEFAULT_DELEGATE_TIMEOUT_S = 300.0
"""How long ``delegate`` waits when neither the call, the sub-task nor the parent's deadline says less."""


class Requester(Protocol):
    """Publishes a task and awaits its result by correlation id (``relaybus.bus.rpc.ReplyRouter``)."""

    async def request(
        self,
        task: AgentTask,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the budget becomes a TIMEOUT result
        headers: Mapping[str, HeaderValue] | None = None,
    ) -> ExecutionResult: ...


class AgentContext:
    """Per-task context handed to :meth:`Agent.handle`.

    Attributes a handler may rely on: ``task`` (the task being handled), ``agent`` (this agent's name),
    ``worker`` (``host:pid`` of this process), ``executor``, ``bus``, ``log`` (a structlog logger already
    bound to ``task_id``, ``agent`` and ``worker``), ``deadline`` (Unix time by which the task must finish,
    or None) and ``chain`` (the agents that delegated this task, outermost first).

    ``usage`` adds up the token usage of every ``executor.execute`` and ``delegate`` result of this task; the
    worker reports it as the task's usage, so a handler that returns plain JSON still accounts for its LLM
    calls and for those of the agents it delegated to.
    """

    def __init__(
        self,
        *,
        task: AgentTask,
        agent: str,
        worker: str,
        executor: Executor,
        bus: Bus,
        log: FilteringBoundLogger,
        requester: Requester,
        chain: tuple[str, ...] = (),
        deadline: float | None = None,
        max_delegation_depth: int,
        release_slot: Callable[[], AbstractAsyncContextManager[None]] | None = None,
    ) -> None:
        self.task = task
        self.agent = agent
        self.worker = worker
        self.usage = Usage()
        self.executor: Executor = _MeteredExecutor(executor, self._add_usage)
        self.bus = bus
        self.log = log
        self.chain = chain
        self.deadline = deadline
        self.max_delegation_depth = max_delegation_depth
        self._requester = requester
        self._release_slot = release_slot

    def _add_usage(self, result: ExecutionResult) -> None:
        self.usage = self.usage + result.usage

    def remaining(self) -> float | None:
        """Seconds left before this task's deadline (never negative), or None without a deadline."""
        return None if self.deadline is None else max(0.0, self.deadline - time.time())

    async def delegate(
        self,
        task: AgentTask,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the budget becomes a TIMEOUT result
    ) -> ExecutionResult:
        """Send ``task`` to another agent over the bus and return its result.

        The wait is bounded by ``timeout``, else the sub-task's ``timeout_s``, else
        ``DEFAULT_DELEGATE_TIMEOUT_S``, and never outlasts this task's own deadline; the bound travels as
        the sub-task's deadline header, so the other worker stops too. A sub-task that does not finish in
        time comes back as a TIMEOUT result, a failed one as its FAILURE result: this never raises for a
        sub-task that failed.

        Raises :class:`~relaybus.DelegationError` when the sub-task addresses an agent already in this
        delegation chain (a loop) or the chain would grow past the depth limit; a loop through topics is
        caught by the receiving worker and comes back as a FAILURE result of type ``DelegationError``. Raises
        :class:`~relaybus.NoRouteError` when no agent subscribes to the sub-task's topic.

        While it waits, the task gives its worker's concurrency slot back, so agents hosted by the same worker
        can delegate to each other without starving it.
        """
        chain = check_outgoing(self.chain, self.agent, task.agent, self.max_delegation_depth)
        return await self._send(task, chain, timeout)

    async def delegate_many(
        self,
        tasks: Sequence[AgentTask],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the budget becomes a TIMEOUT result
    ) -> list[ExecutionResult]:
        """Delegate every task concurrently; the results come back in the order of ``tasks``.

        All tasks are checked for loops and depth before any is sent. If one cannot be sent (e.g.
        :class:`~relaybus.NoRouteError`), the others are cancelled and that error is raised.
        """
        chain: tuple[str, ...] = ()
        for task in tasks:
            chain = check_outgoing(self.chain, self.agent, task.agent, self.max_delegation_depth)
        sends = [asyncio.ensure_future(self._send(task, chain, timeout)) for task in tasks]
        try:
            return list(await asyncio.gather(*sends))
        except BaseException:
            # One raised (e.g. NoRouteError) or this task was cancelled: stop the others, here and remotely.
            for send in sends:
                send.cancel()
            await asyncio.gather(*sends, return_exceptions=True)
            raise

    async def _send(self, task: AgentTask, chain: tuple[str, ...], budget: float | None) -> ExecutionResult:
        wait = budget if budget is not None else task.timeout_s or DEFAULT_DELEGATE_TIMEOUT_S
        remaining = self.remaining()
        if remaining is not None:
            wait = min(wait, remaining)
        headers: dict[str, HeaderValue] = {
            DELEGATION_HEADER: format_chain(chain),
            DEADLINE_HEADER: f"{time.time() + wait:.3f}",
        }
        self.log.debug("delegate", sub_task_id=str(task.id), topic=task.topic, to_agent=task.agent)
        try:
            async with self._slot_released():
                result = await self._requester.request(task, timeout=wait, headers=headers)
            self._add_usage(result)
            return result
        except asyncio.CancelledError:
            # This task was cancelled (deadline, cancel request, shutdown): stop the sub-task too, wherever it
            # runs, rather than let it burn tokens for a result nobody awaits.
            await self._cancel_remote(task)
            raise

    async def _cancel_remote(self, task: AgentTask) -> None:
        reason = f"the delegating task {self.task.id} was cancelled"
        try:
            await self.bus.publish(encode_cancel(task.id, reason))
        except Exception as exc:  # best effort: the sub-task's deadline stops it anyway
            self.log.warning("delegate_cancel_failed", sub_task_id=str(task.id), error=repr(exc))

    def _slot_released(self) -> AbstractAsyncContextManager[None]:
        return nullcontext() if self._release_slot is None else self._release_slot()

    async def publish_event(self, topic: str, payload: JsonValue | BaseModel) -> None:
        """Publish ``payload`` (JSON, or a pydantic model) as an event on ``event.<topic>``.

        Events are fire-and-forget: one that no queue listens to is dropped without an error. Raises
        :class:`~relaybus.ConfigError` for a topic that is not dot-separated words.
        """
        await self.bus.publish(encode_event(topic, payload, correlation_id=str(self.task.id)))


class _MeteredExecutor:
    """The worker's executor, adding the usage of each result to the task's context."""

    def __init__(self, inner: Executor, on_result: Callable[[ExecutionResult], None]) -> None:
        self._inner = inner
        self._on_result = on_result

    @property
    def inner(self) -> Executor:
        """The executor the worker was given."""
        return self._inner

    async def execute(
        self,
        task: AgentTask,
        agent: str | None = None,
        mode: str | None = None,
        *,
        system_prompt: str | None = None,
    ) -> ExecutionResult:
        result = await self._inner.execute(task, agent, mode, system_prompt=system_prompt)
        self._on_result(result)
        return result

    def cancel(self, task_id: UUID) -> bool:
        return self._inner.cancel(task_id)
