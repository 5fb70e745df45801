"""The tracing hooks the bus, the worker, the LLM backend and the agent loop call: one line each there.

Each hook imports :mod:`relaybus.telemetry.tracing` (and with it OpenTelemetry's API) on its first call, so
importing relaybus does not load OpenTelemetry; see that module for the spans they make.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from relaybus.agents.agent import Agent
    from relaybus.agents.context import AgentContext
    from relaybus.bus.base import Handler, OutgoingMessage
    from relaybus.messages import AgentTask

__all__ = [
    "invoke_agent",
    "task_trace",
    "traced_chat_attempt",
    "traced_consume",
    "traced_publish",
    "traced_tool_call",
]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


@functools.cache
def _tracing() -> ModuleType:
    from . import tracing

    return tracing


def traced_publish(fn: F) -> F:
    """Makes a bus's ``publish(message)`` of ``fn(self, message, trace=None)``, which sends ``message`` with
    the headers ``trace`` in place of its own trace headers (:func:`relaybus.bus.core.with_trace`; None: as
    it is): trace headers on every message, a ``publish`` span when tracing."""

    @functools.wraps(fn)
    async def publish(self: Any, message: OutgoingMessage) -> None:
        await _tracing().publish(fn, self, message)

    return publish  # type: ignore[return-value]


def task_trace(name: str) -> AbstractContextManager[str]:
    """:func:`~relaybus.telemetry.tracing.start_trace`: the block in the current trace, else in a new one
    (a root span ``name`` when tracing); gives the trace's id, the one every message published in the block
    carries in its ``traceparent``."""
    manager: AbstractContextManager[str] = _tracing().start_trace(name)
    return manager


def traced_consume(fn: F) -> F:
    """Decorates a bus's ``consume(queue, handler, ...)``: each delivery is handled inside its trace."""

    @functools.wraps(fn)
    async def consume(self: Any, queue: str, handler: Handler, **kwargs: Any) -> Any:
        return await fn(self, queue, _tracing().consumer(queue, handler), **kwargs)

    return consume  # type: ignore[return-value]


async def invoke_agent(agent: Agent, task: AgentTask, ctx: AgentContext) -> Any:
    """``agent.handle(task, ctx)``, in an ``invoke_agent`` span when tracing."""
    return await _tracing().invoke_agent(agent, task, ctx)


def traced_chat_attempt(fn: F) -> F:
    """Decorates the LLM backend's one-request function ``(provider, request, relay)``: a ``chat`` span."""

    @functools.wraps(fn)
    async def attempt(provider: Any, request: Any, relay: Any) -> Any:
        return await _tracing().chat_attempt(fn, provider, request, relay)

    return attempt  # type: ignore[return-value]


def traced_tool_call(fn: F) -> F:
    """Decorates the agent loop's one-call function ``(toolbox, call, ...)``: an ``execute_tool`` span."""

    @functools.wraps(fn)
    async def call(toolbox: Any, tool_call: Any, *rest: Any) -> Any:
        return await _tracing().execute_tool(fn, toolbox, tool_call, *rest)

    return call  # type: ignore[return-value]
