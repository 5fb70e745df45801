"""The agent loop's steps as task events, for a caller that streams the task.

Before a turn's tool calls run, one ``tool_call`` event per call (text: the tool's name; data: the call's
``id``, ``name``, ``arguments`` as JSON text and the ``turn``); once they ran, one ``tool_result`` event per
call in call order (data: ``id``, ``name``, ``is_error``, ``duration_s`` and the ``content`` the model got,
cut to :data:`MAX_STEP_CONTENT` characters).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import JsonValue

from relaybus.executor.llm.chat import ToolCall

from .calls import ToolCallRecord

if TYPE_CHECKING:
    from relaybus.agents.context import AgentContext

__all__ = ["MAX_STEP_CONTENT", "emit_calls", "emit_results"]

MAX_STEP_CONTENT = 2000


async def emit_calls(ctx: AgentContext, calls: Sequence[ToolCall], turn: int) -> None:
    """One ``tool_call`` event per call the model asked for in ``turn``."""
    for call in calls:
        data: dict[str, JsonValue] = {
            "id": call.id,
            "name": call.name,
            "arguments": call.arguments[:MAX_STEP_CONTENT],
            "turn": turn,
        }
        await ctx.emit("tool_call", text=call.name, data=data)


async def emit_results(ctx: AgentContext, records: Sequence[ToolCallRecord]) -> None:
    """One ``tool_result`` event per call run, in call order."""
    for record in records:
        data: dict[str, JsonValue] = {
            "id": record.id,
            "name": record.name,
            "is_error": record.is_error,
            "duration_s": round(record.duration_s, 4),
            "content": record.content[:MAX_STEP_CONTENT],
            "turn": record.turn,
        }
        await ctx.emit("tool_result", text=record.name, data=data)
