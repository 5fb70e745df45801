"""``LazyTaskExecutor``: the worker's default executor, a ``TaskExecutor.from_env()`` made on first use."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING
from uuid import UUID

from relaybus.messages import AgentTask, ExecutionResult

if (
    TYPE_CHECKING
):  # imported when first used: it loads httpx and aiohttp (~13 MiB) that most workers never need
    from relaybus.executor.core import TaskExecutor
    from relaybus.executor.llm.chat import ChatMessage, ResponseSchema, ToolChoice
    from relaybus.executor.llm.stream import DeltaCallback
    from relaybus.executor.protocol import ChatTurn
    from relaybus.tools.spec import ToolSpec

__all__ = ["LazyTaskExecutor"]


class LazyTaskExecutor:
    """An :class:`~relaybus.executor.protocol.Executor` that creates ``TaskExecutor.from_env()`` when a task
    first needs it, and closes it in :meth:`close`.

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

    async def materialize(self) -> TaskExecutor:
        """The executor, created now if it was not yet (a worker whose agents declare scripts or modes)."""
        return await self._get()

    async def execute(
        self,
        task: AgentTask,
        agent: str | None = None,
        mode: str | None = None,
        *,
        system_prompt: str | None = None,
        on_delta: DeltaCallback | None = None,
    ) -> ExecutionResult:
        inner = await self._get()
        return await inner.execute(task, agent, mode, system_prompt=system_prompt, on_delta=on_delta)

    async def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
        response_schema: ResponseSchema | None = None,
        agent: str | None = None,
        on_delta: DeltaCallback | None = None,
    ) -> ChatTurn:
        inner = await self._get()
        return await inner.chat(
            messages,
            tools=tools,
            tool_choice=tool_choice,
            response_schema=response_schema,
            agent=agent,
            on_delta=on_delta,
        )

    def cancel(self, task_id: UUID) -> bool:
        return self._inner.cancel(task_id) if self._inner is not None else False

    async def close(self) -> None:
        """Close the executor if one was made (idempotent); a later task makes a new one."""
        inner, self._inner = self._inner, None
        if inner is not None:
            await inner.close()
