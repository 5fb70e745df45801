"""The ``llm`` mode: the ``LLMProvider`` protocol, the chat types, the built-in providers, and the backend.

Names are imported on first use (PEP 562), so that the chat types (:mod:`.chat`) load without httpx.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relaybus._lazy import lazy_exports

if TYPE_CHECKING:
    from .anthropic import AnthropicProvider
    from .backend import ChatOutcome, LlmBackend, Route
    from .base import ChatRequest, Completion, LLMProvider
    from .chat import (
        AssistantMessage,
        ChatMessage,
        FinishReason,
        NamedToolChoice,
        ResponseSchema,
        SystemMessage,
        ToolCall,
        ToolChoice,
        ToolChoiceMode,
        ToolResultMessage,
        UserMessage,
    )
    from .echo import EchoProvider
    from .errors import CallFailure, unusable_answer
    from .factory import build_provider
    from .openai import OpenAIProvider
    from .prompt import build_request, task_messages, user_message
    from .stream import (
        DeltaCallback,
        ProviderStreamError,
        RefusalDelta,
        StreamChunk,
        StreamDelta,
        StreamingProvider,
        TextDelta,
        ToolCallDelta,
        stream_chat,
    )

__all__ = [
    "AnthropicProvider",
    "AssistantMessage",
    "CallFailure",
    "ChatMessage",
    "ChatOutcome",
    "ChatRequest",
    "Completion",
    "DeltaCallback",
    "EchoProvider",
    "FinishReason",
    "LLMProvider",
    "LlmBackend",
    "NamedToolChoice",
    "OpenAIProvider",
    "ProviderStreamError",
    "RefusalDelta",
    "ResponseSchema",
    "Route",
    "StreamChunk",
    "StreamDelta",
    "StreamingProvider",
    "SystemMessage",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "ToolChoiceMode",
    "ToolResultMessage",
    "UserMessage",
    "build_provider",
    "build_request",
    "stream_chat",
    "task_messages",
    "unusable_answer",
    "user_message",
]

_MODULE_OF = {
    "AnthropicProvider": ".anthropic",
    "AssistantMessage": ".chat",
    "CallFailure": ".errors",
    "ChatMessage": ".chat",
    "ChatOutcome": ".backend",
    "ChatRequest": ".base",
    "Completion": ".base",
    "DeltaCallback": ".stream",
    "EchoProvider": ".echo",
    "FinishReason": ".chat",
    "LLMProvider": ".base",
    "LlmBackend": ".backend",
    "NamedToolChoice": ".chat",
    "OpenAIProvider": ".openai",
    "ProviderStreamError": ".stream",
    "RefusalDelta": ".stream",
    "ResponseSchema": ".chat",
    "Route": ".backend",
    "StreamChunk": ".stream",
    "StreamDelta": ".stream",
    "StreamingProvider": ".stream",
    "SystemMessage": ".chat",
    "TextDelta": ".stream",
    "ToolCall": ".chat",
    "ToolCallDelta": ".stream",
    "ToolChoice": ".chat",
    "ToolChoiceMode": ".chat",
    "ToolResultMessage": ".chat",
    "UserMessage": ".chat",
    "build_provider": ".factory",
    "build_request": ".prompt",
    "stream_chat": ".stream",
    "task_messages": ".prompt",
    "unusable_answer": ".errors",
    "user_message": ".prompt",
}

__getattr__, __dir__ = lazy_exports(globals(), _MODULE_OF)
