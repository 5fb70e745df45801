"""The seam between agents and whatever runs their work: one task (``execute``), one model turn (``chat``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable
from uuid import UUID

from relaybus.messages import AgentTask, ExecutionResult, Usage

if TYPE_CHECKING:  # the chat types load the LLM layer, which a worker without tool agents never needs
    from relaybus.executor.llm.base import ChatRequest, Completion
    from relaybus.executor.llm.chat import ChatMessage, ResponseSchema, ToolChoice
    from relaybus.executor.llm.errors import CallFailure
    from relaybus.tools.spec import ToolSpec

__all__ = ["ChatTurn", "Executor"]


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """One model turn as an executor ran it.

    ``request`` is what was sent (the executor's token budget and temperature filled in). ``completion`` is
    the model's answer, None when no provider answered. ``failure`` is set when the turn cannot go on: the
    call failed (``RateLimited``, ``ProviderTimeout``, ``Timeout``, ...) or the answer is not usable
    (``OutputTruncated``, ``Refused``, ``ContentFiltered``, ``UnexpectedToolCalls``; ``completion`` is then
    kept). ``attempts`` counts the HTTP requests made; ``usage`` the tokens reported, with ``requests`` =
    ``attempts``. A completion without ``failure`` is either a final answer or tool calls to run.
    """

    request: ChatRequest
    completion: Completion | None
    failure: CallFailure | None
    attempts: int
    usage: Usage
    provider: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None and self.completion is not None


@runtime_checkable
class Executor(Protocol):
    """Runs one task, or one model turn, and reports how it ended; ``TaskExecutor`` is the one relaybus
    ships, :class:`~relaybus.testing.FakeExecutor` the one for tests.

    ``execute`` never raises for a failed task: failures, timeouts and bad input come back as a result with a
    status and an ``ErrorInfo``. An asyncio cancellation from outside cancels the work (HTTP request, child
    process) and propagates ``CancelledError``; ``cancel(task_id)`` instead ends a running task with a
    CANCELLED result and returns whether such a task was running.

    ``chat`` sends one model turn (the conversation so far, the tools the model may call, an optional
    response schema) and never raises for a failed call: see :class:`ChatTurn`. The agent loop
    (``Agent.tools``) runs on it.
    """

    async def execute(
        self,
        task: AgentTask,
        agent: str | None = None,
        mode: str | None = None,
        *,
        system_prompt: str | None = None,
    ) -> ExecutionResult: ...

    async def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
        response_schema: ResponseSchema | None = None,
        agent: str | None = None,
    ) -> ChatTurn: ...

    def cancel(self, task_id: UUID) -> bool: ...
