"""What the ``llm`` mode sends: how a task and an agent's system prompt become one chat request.

The system prompt (the agent's, passed to ``execute(..., system_prompt=...)``) is the system message. The user
message is ``task.prompt``; when ``task.input`` is not empty it follows after a blank line as
``Input (JSON):`` and the input as indented JSON with sorted keys, so the same task always reads the same.
"""

from __future__ import annotations

import json

from relaybus.messages import AgentTask

from .base import ChatRequest
from .chat import ChatMessage, SystemMessage, UserMessage

__all__ = ["INPUT_HEADING", "build_request", "task_messages", "user_message"]

INPUT_HEADING = "Input (JSON):"


def user_message(task: AgentTask) -> str:
    """The user message for ``task`` (see the module docstring for the layout)."""
    if not task.input:
        return task.prompt
    rendered = json.dumps(task.input, indent=2, sort_keys=True, ensure_ascii=False)
    if not task.prompt:
        return f"{INPUT_HEADING}\n{rendered}"
    return f"{task.prompt}\n\n{INPUT_HEADING}\n{rendered}"


def task_messages(task: AgentTask, system_prompt: str | None) -> tuple[ChatMessage, ...]:
    """The conversation a task starts: the system prompt (when not empty), then the user message."""
    user = UserMessage(user_message(task))
    return (SystemMessage(system_prompt), user) if system_prompt else (user,)


def build_request(
    task: AgentTask, system_prompt: str | None, *, max_tokens: int, temperature: float | None
) -> ChatRequest:
    """The single-call request of the ``llm`` mode: :func:`task_messages`, no tools."""
    return ChatRequest(task_messages(task, system_prompt), max_tokens=max_tokens, temperature=temperature)
