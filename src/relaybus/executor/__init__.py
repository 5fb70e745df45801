"""The async executor: ``TaskExecutor`` and its modes (``llm``, ``api``, ``script``, custom ones).

See :class:`TaskExecutor` for what callers may rely on and :mod:`relaybus.executor.config` for configuration.
"""

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
