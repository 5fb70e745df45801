"""The chat vocabulary of every provider: messages, tool calls, tool choice, response schema, finish reason.

These are provider-neutral: :mod:`.openai` and :mod:`.anthropic` turn them into their wire formats and back.
A conversation is a sequence of :data:`ChatMessage`; an assistant answer with tool calls is followed by one
:class:`ToolResultMessage` per call, matched by ``tool_call_id``.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from relaybus.exceptions import ConfigError
from relaybus.tools.spec import TOOL_NAME_RE

__all__ = [
    "AssistantMessage",
    "ChatMessage",
    "FinishReason",
    "NamedToolChoice",
    "ResponseSchema",
    "SystemMessage",
    "ToolCall",
    "ToolChoice",
    "ToolChoiceMode",
    "ToolResultMessage",
    "UserMessage",
    "message_text",
]


class FinishReason(enum.StrEnum):
    """Why the model stopped, the same for every provider (each provider's own value is kept beside it).

    ``STOP``: a complete answer. ``LENGTH``: cut at the token budget (or the context window). ``TOOL_CALLS``:
    the answer asks for tool calls. ``REFUSAL``: the model declined. ``CONTENT_FILTER``: the provider's filter
    cut the answer. ``OTHER``: anything else a server says.
    """

    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    REFUSAL = "refusal"
    CONTENT_FILTER = "content_filter"
    OTHER = "other"

    @classmethod
    def of(cls, value: str) -> FinishReason:
        """The member whose value is ``value``; ``OTHER`` for any other string."""
        try:
            return cls(value)
        except ValueError:
            return cls.OTHER


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call the model asks for: ``arguments`` is JSON text, as the model wrote it (it may be invalid).

    ``id`` is the provider's id (OpenAI ``call_...``, Anthropic ``toolu_...``); the tool's result goes back as
    a :class:`ToolResultMessage` with the same ``tool_call_id``.
    """

    id: str
    name: str
    arguments: str = "{}"

    def arguments_object(self) -> dict[str, Any] | None:
        """The arguments parsed, ``{}`` for empty text, None when they are not a JSON object."""
        try:
            value = json.loads(self.arguments) if self.arguments.strip() else {}
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


@dataclass(frozen=True, slots=True)
class SystemMessage:
    """Instructions for the model. Anthropic takes them top-level: several are joined by a blank line."""

    text: str
    role: Literal["system"] = field(default="system", init=False)


@dataclass(frozen=True, slots=True)
class UserMessage:
    """What the user (here: the task) says."""

    text: str
    role: Literal["user"] = field(default="user", init=False)


@dataclass(frozen=True, slots=True)
class AssistantMessage:
    """An earlier answer of the model, sent back as history: its text and the tool calls it asked for."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    role: Literal["assistant"] = field(default="assistant", init=False)


@dataclass(frozen=True, slots=True)
class ToolResultMessage:
    """The result of one tool call, as text; ``is_error`` marks a failed call (Anthropic sends it along)."""

    tool_call_id: str
    content: str
    is_error: bool = False
    role: Literal["tool"] = field(default="tool", init=False)


ChatMessage = SystemMessage | UserMessage | AssistantMessage | ToolResultMessage
"""One message of a conversation."""


def message_text(message: ChatMessage) -> str:
    """All the text ``message`` gives the model (tool calls as name and arguments), for token estimates."""
    if isinstance(message, ToolResultMessage):
        return message.content
    if isinstance(message, AssistantMessage) and message.tool_calls:
        calls = " ".join(f"{c.name} {c.arguments}" for c in message.tool_calls)
        return f"{message.text} {calls}" if message.text else calls
    return message.text


ToolChoiceMode = Literal["auto", "none", "required"]


@dataclass(frozen=True, slots=True)
class NamedToolChoice:
    """Force the model to call the tool ``name`` (which must be among the request's tools)."""

    name: str


ToolChoice = ToolChoiceMode | NamedToolChoice
"""``"auto"`` (the model decides), ``"none"`` (no tool calls), ``"required"`` (at least one), or one tool."""


@dataclass(frozen=True, slots=True)
class ResponseSchema:
    """Ask for a final answer that is a JSON object matching ``schema`` (structured output).

    OpenAI-compatible servers get ``response_format: {type: json_schema, json_schema: {name, schema,
    strict}}``; Anthropic gets a tool named ``name`` whose input schema is ``schema`` (see
    :class:`~relaybus.executor.llm.AnthropicProvider`). Either way the completion's ``text`` is the JSON.
    """

    name: str
    schema: Mapping[str, Any]
    description: str = ""
    strict: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not TOOL_NAME_RE.match(self.name):
            raise ConfigError(
                f"response schema name {self.name!r} is not 1-64 letters, digits, '_' or '-' "
                "(what OpenAI and Anthropic accept)"
            )
        if not isinstance(self.schema, Mapping) or self.schema.get("type") != "object":
            raise ConfigError(f'response schema {self.name!r} must be a JSON Schema with "type": "object"')
