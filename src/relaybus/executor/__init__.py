"""The async executor: ``TaskExecutor`` and its modes (``llm``, ``api``, ``script``, custom ones).

See :class:`TaskExecutor` for what callers may rely on and :mod:`relaybus.executor.config` for configuration.

The names below are imported on first use (PEP 562): ``TaskExecutor`` and the providers load httpx and
aiohttp, which a worker whose agents never call the executor does not need (bench/PROFILE.md, memory).
``from relaybus.executor import X`` works for every name in ``__all__``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relaybus._lazy import lazy_exports

if TYPE_CHECKING:
    from .backend import ExecutionBackend, RunContext
    from .config import ExecutorConfig, ProviderConfig
    from .core import TaskExecutor
    from .llm import (
        AnthropicProvider,
        AssistantMessage,
        ChatMessage,
        ChatOutcome,
        ChatRequest,
        Completion,
        DeltaCallback,
        EchoProvider,
        FinishReason,
        LLMProvider,
        NamedToolChoice,
        OpenAIProvider,
        RefusalDelta,
        ResponseSchema,
        StreamChunk,
        StreamDelta,
        StreamingProvider,
        SystemMessage,
        TextDelta,
        ToolCall,
        ToolCallDelta,
        ToolChoice,
        ToolResultMessage,
        UserMessage,
    )
    from .protocol import ChatTurn, Executor
    from .ratelimit import RateLimiter
    from .retry import RetryPolicy
    from .script import Script
    from .script_args import ScriptArgs

__all__ = [
    "AnthropicProvider",
    "AssistantMessage",
    "ChatMessage",
    "ChatOutcome",
    "ChatRequest",
    "ChatTurn",
    "Completion",
    "DeltaCallback",
    "EchoProvider",
    "ExecutionBackend",
    "Executor",
    "ExecutorConfig",
    "FinishReason",
    "LLMProvider",
    "NamedToolChoice",
    "OpenAIProvider",
    "ProviderConfig",
    "RateLimiter",
    "RefusalDelta",
    "ResponseSchema",
    "RetryPolicy",
    "RunContext",
    "Script",
    "ScriptArgs",
    "StreamChunk",
    "StreamDelta",
    "StreamingProvider",
    "SystemMessage",
    "TaskExecutor",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "ToolResultMessage",
    "UserMessage",
]

_MODULE_OF = {
    "ScriptArgs": ".script_args",
    "AnthropicProvider": ".llm",
    "AssistantMessage": ".llm",
    "ChatMessage": ".llm",
    "ChatOutcome": ".llm",
    "ChatRequest": ".llm",
    "ChatTurn": ".protocol",
    "Completion": ".llm",
    "DeltaCallback": ".llm",
    "EchoProvider": ".llm",
    "ExecutionBackend": ".backend",
    "Executor": ".protocol",
    "ExecutorConfig": ".config",
    "FinishReason": ".llm",
    "LLMProvider": ".llm",
    "NamedToolChoice": ".llm",
    "OpenAIProvider": ".llm",
    "ProviderConfig": ".config",
    "RateLimiter": ".ratelimit",
    "RefusalDelta": ".llm",
    "ResponseSchema": ".llm",
    "RetryPolicy": ".retry",
    "RunContext": ".backend",
    "Script": ".script",
    "StreamChunk": ".llm",
    "StreamDelta": ".llm",
    "StreamingProvider": ".llm",
    "SystemMessage": ".llm",
    "TaskExecutor": ".core",
    "TextDelta": ".llm",
    "ToolCall": ".llm",
    "ToolCallDelta": ".llm",
    "ToolChoice": ".llm",
    "ToolResultMessage": ".llm",
    "UserMessage": ".llm",
}


__getattr__, __dir__ = lazy_exports(globals(), _MODULE_OF)
