"""The ``LLMProvider`` protocol and the request/response types every provider speaks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from relaybus.exceptions import ConfigError, ProviderResponseError
from relaybus.messages import Usage
from relaybus.tools.spec import ToolSpec

from .chat import (
    AssistantMessage,
    ChatMessage,
    FinishReason,
    NamedToolChoice,
    ResponseSchema,
    SystemMessage,
    ToolCall,
    ToolChoice,
    UserMessage,
    message_text,
)

__all__ = ["ChatRequest", "Completion", "LLMProvider", "ProviderResponseError"]

_TOOL_CHOICE_MODES = ("auto", "none", "required")


@dataclass(frozen=True)
class ChatRequest:
    """One model turn: the conversation so far, the tools the model may call, and the budget.

    ``messages`` is never empty. ``tool_choice`` other than ``"auto"``/``"none"`` needs ``tools``; a
    :class:`NamedToolChoice` must name one of them; tool names are unique and must not clash with
    ``response_schema.name``. Bad combinations raise :class:`ConfigError` at construction.
    """

    messages: tuple[ChatMessage, ...]
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = "auto"
    response_schema: ResponseSchema | None = None
    max_tokens: int = 1024
    temperature: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "messages", tuple(self.messages))
        object.__setattr__(self, "tools", tuple(self.tools))
        if not self.messages:
            raise ConfigError("a ChatRequest needs at least one message")
        names = [spec.name for spec in self.tools]
        if len(set(names)) != len(names):
            raise ConfigError(f"tool names must be unique in one request, got {names}")
        if self.response_schema is not None and self.response_schema.name in names:
            raise ConfigError(f"response schema name {self.response_schema.name!r} is also a tool's name")
        choice = self.tool_choice
        if isinstance(choice, NamedToolChoice):
            if choice.name not in names:
                raise ConfigError(f"tool_choice names {choice.name!r}, which is not among the tools {names}")
        elif choice not in _TOOL_CHOICE_MODES:
            raise ConfigError(
                f"tool_choice must be 'auto', 'none', 'required' or a NamedToolChoice, got {choice!r}"
            )
        elif choice == "required" and not self.tools:
            raise ConfigError("tool_choice 'required' needs at least one tool")
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1, got {self.max_tokens}")

    @classmethod
    def from_prompt(
        cls,
        user: str,
        system: str | None = None,
        *,
        max_tokens: int = 1024,
        temperature: float | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> ChatRequest:
        """The single-call request: an optional system message, then one user message."""
        messages: list[ChatMessage] = [SystemMessage(system)] if system else []
        messages.append(UserMessage(user))
        return cls(tuple(messages), tuple(tools), max_tokens=max_tokens, temperature=temperature)

    @property
    def system(self) -> str | None:
        """The system messages' text joined by a blank line; None when there is none."""
        texts = [m.text for m in self.messages if isinstance(m, SystemMessage)]
        return "\n\n".join(texts) if texts else None

    @property
    def user(self) -> str:
        """The text of the last user message ("" when there is none)."""
        return next((m.text for m in reversed(self.messages) if isinstance(m, UserMessage)), "")

    def estimated_tokens(self) -> int:
        """A rough upper estimate of the tokens this request costs, for the tokens-per-minute limit.

        About four characters per prompt token (every message, tool call, tool result and tool schema), plus
        the completion budget (``max_tokens``), which is how providers count a request against their own
        limits before they know the real cost.
        """
        chars = sum(len(message_text(m)) for m in self.messages)
        chars += sum(len(t.name) + len(t.description) + len(json.dumps(t.parameters)) for t in self.tools)
        if self.response_schema is not None:
            chars += len(json.dumps(self.response_schema.schema))
        return chars // 4 + 1 + self.max_tokens


@dataclass(frozen=True)
class Completion:
    """What a provider answered.

    ``text`` is the answer's text parts joined (with a response schema: the JSON object as text);
    ``tool_calls`` the calls it asks for, in order; ``finish_reason`` the normalized reason and
    ``provider_finish_reason`` the server's own word for it; ``refusal`` the model's refusal text when it
    declined (``finish_reason`` is then ``REFUSAL``). A plain string given as ``finish_reason`` becomes the
    member of that value (``OTHER`` if none), None becomes ``STOP``.
    """

    text: str
    usage: Usage
    model: str
    finish_reason: FinishReason = FinishReason.STOP
    tool_calls: tuple[ToolCall, ...] = ()
    refusal: str | None = None
    provider_finish_reason: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tool_calls", tuple(self.tool_calls))
        if not isinstance(self.finish_reason, FinishReason):  # a custom provider passed a string, or None
            reason = self.finish_reason
            object.__setattr__(
                self, "finish_reason", FinishReason.STOP if reason is None else FinishReason.of(str(reason))
            )

    @property
    def message(self) -> AssistantMessage:
        """This answer as history for the next turn."""
        return AssistantMessage(self.text, self.tool_calls)


@runtime_checkable
class LLMProvider(Protocol):
    """Turns a :class:`ChatRequest` into a :class:`Completion`.

    Failures raise: ``httpx.HTTPStatusError`` for a non-2xx answer, ``httpx.TransportError`` when the
    connection fails, :class:`ProviderResponseError` for an answer of the wrong shape. A truncated answer or
    a refusal is not an exception: it is the completion's ``finish_reason``. The executor decides what to
    retry. ``name`` identifies the provider in results and logs; it must not contain a key. A provider that
    can also stream its answer has ``stream(request)`` too
    (:class:`~relaybus.executor.llm.stream.StreamingProvider`); one without is streamed as one delta.
    """

    @property
    def name(self) -> str: ...

    async def complete(self, request: ChatRequest) -> Completion: ...
