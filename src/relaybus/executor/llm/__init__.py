"""The ``llm`` mode: the ``LLMProvider`` protocol, the built-in providers, and the backend that calls them."""

from .anthropic import AnthropicProvider
from .backend import LlmBackend, Route
from .base import ChatRequest, Completion, LLMProvider
from .echo import EchoProvider
from .factory import build_provider
from .openai import OpenAIProvider
from .prompt import build_request, user_message

__all__ = [
    "AnthropicProvider",
    "ChatRequest",
    "Completion",
    "EchoProvider",
    "LLMProvider",
    "LlmBackend",
    "OpenAIProvider",
    "Route",
    "build_provider",
    "build_request",
    "user_message",
]
