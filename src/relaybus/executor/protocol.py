"""The seam between agents and whatever runs their tasks."""

from __future__ import annotations

from typing import Protocol, runtime_checkable
from uuid import UUID

from relaybus.messages import AgentTask, ExecutionResult

__all__ = ["Executor"]


@runtime_checkable
class Executor(Protocol):
    """Runs one task and reports how it ended; ``TaskExecutor`` is the implementation relaybus ships.

    ``execute`` never raises for a failed task: failures, timeouts and bad input come back as a result with a
    status and an ``ErrorInfo``. An asyncio cancellation from outside cancels the work (HTTP request, child
    process) and propagates ``CancelledError``; ``cancel(task_id)`` instead ends a running task with a
    CANCELLED result and returns whether such a task was running.
    """

    async def execute(
        self,
        task: AgentTask,
        agent: str | None = None,
        mode: str | None = None,
        *,
        system_prompt: str | None = None,
    ) -> ExecutionResult: ...

    def cancel(self, task_id: UUID) -> bool: ...
