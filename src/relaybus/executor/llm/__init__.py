"""The ``llm`` mode: the ``LLMProvider`` protocol, the chat types, the built-in providers, and the backend."""

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

__all__ = [
    "AnthropicProvider",
    "AssistantMessage",
    "CallFailure",
    "ChatMessage",
    "ChatOutcome",
    "ChatRequest",
    "Completion",
    "EchoProvider",
    "FinishReason",
    "LLMProvider",
    "LlmBackend",
    "NamedToolChoice",
    "OpenAIProvider",
    "ResponseSchema",
    "Route",
    "SystemMessage",
    "ToolCall",
    "ToolChoice",
    "ToolChoiceMode",
    "ToolResultMessage",
    "UserMessage",
    "build_provider",
    "build_request",
    "task_messages",
    "unusable_answer",
    "user_message",
]
