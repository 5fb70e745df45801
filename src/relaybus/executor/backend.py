"""The seam for execution modes: ``llm``, ``api``, ``script`` and any mode a user registers.

A backend is a plain class with an ``async run(task, ctx)``; the :class:`~relaybus.executor.TaskExecutor`
around it supplies the concurrency limit, the per-task timeout, ``cancel(task_id)``, timestamps and the
conversion of a raised exception into a FAILURE result, so a backend only does its one job.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pydantic import JsonValue

from relaybus.log import FilteringBoundLogger, get_logger
from relaybus.messages import AgentTask, ExecutionResult

if TYPE_CHECKING:
    from .llm.stream import DeltaCallback

__all__ = ["ExecutionBackend", "RunContext"]


@dataclass
class RunContext:
    """What the executor tells a backend about one run of one task."""

    agent: str | None = None
    system_prompt: str | None = None
    log: FilteringBoundLogger = field(default_factory=lambda: get_logger("relaybus.executor"), repr=False)
    """A structlog logger with ``task_id``, ``agent`` and ``mode`` bound."""
    on_delta: DeltaCallback | None = field(default=None, repr=False)
    """Set when the caller streams: the ``llm`` mode streams the model's answer into it; a custom backend
    may call it with :class:`~relaybus.executor.llm.TextDelta` s of its own."""
    _scope: asyncio.Timeout | None = field(default=None, repr=False)

    @asynccontextmanager
    async def outside_timeout(self) -> AsyncIterator[None]:
        """Time spent in this block does not count against the task's timeout.

        For queueing that is not the task's own work (waiting for a rate limiter), so that a burst of tasks
        slows down instead of timing out.
        """
        scope = self._scope
        deadline = scope.when() if scope is not None else None
        if scope is None or deadline is None:
            yield
            return
        loop = asyncio.get_running_loop()
        remaining = deadline - loop.time()
        scope.reschedule(None)
        try:
            yield
        finally:
            if not scope.expired():
                scope.reschedule(loop.time() + max(remaining, 0.0))


@runtime_checkable
class ExecutionBackend(Protocol):
    """Runs tasks of one mode.

    ``run`` returns an :class:`ExecutionResult` (any status) or a plain JSON value, which becomes a SUCCESS
    result with that output. An exception it raises becomes a FAILURE result naming the exception; a
    cancellation must be let through (the executor turns it into CANCELLED or propagates it).
    """

    async def run(self, task: AgentTask, ctx: RunContext) -> ExecutionResult | JsonValue: ...
