"""The async executor: ``TaskExecutor`` and its modes (``llm``, ``api``, ``script``, custom ones).

See :class:`TaskExecutor` for what callers may rely on and :mod:`relaybus.executor.config` for configuration.

The names below are imported on first use (PEP 562): ``TaskExecutor`` and the providers load httpx and
aiohttp, which a worker whose agents never call the executor does not need (bench/PROFILE.md, memory).
``from relaybus.executor import X`` works for every name in ``__all__``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import ExecutionBackend, RunContext
    from .config import ExecutorConfig, ProviderConfig
    from .core import TaskExecutor
    from .llm import (
        AnthropicProvider,
        ChatRequest,
        Completion,
        EchoProvider,
        LLMProvider,
        OpenAIProvider,
    )
    from .protocol import Executor
    from .ratelimit import RateLimiter
    from .retry import RetryPolicy

__all__ = [
    "AnthropicProvider",
    "ChatRequest",
    "Completion",
    "EchoProvider",
    "ExecutionBackend",
    "Executor",
    "ExecutorConfig",
    "LLMProvider",
    "OpenAIProvider",
    "ProviderConfig",
    "RateLimiter",
    "RetryPolicy",
    "RunContext",
    "TaskExecutor",
]

_MODULE_OF = {
    "AnthropicProvider": ".llm",
    "ChatRequest": ".llm",
    "Completion": ".llm",
    "EchoProvider": ".llm",
    "ExecutionBackend": ".backend",
    "Executor": ".protocol",
    "ExecutorConfig": ".config",
    "LLMProvider": ".llm",
    "OpenAIProvider": ".llm",
    "ProviderConfig": ".config",
    "RateLimiter": ".ratelimit",
    "RetryPolicy": ".retry",
    "RunContext": ".backend",
    "TaskExecutor": ".core",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
