"""Build the provider a :class:`~relaybus.executor.config.ProviderConfig` describes."""

from __future__ import annotations

import httpx

from ..config import ProviderConfig
from .anthropic import AnthropicProvider
from .base import LLMProvider
from .echo import EchoProvider
from .openai import OpenAIProvider

__all__ = ["build_provider"]


def build_provider(config: ProviderConfig, client: httpx.AsyncClient) -> LLMProvider:
    """The provider of ``config.kind``; the HTTP ones share ``client``."""
    if config.kind == "openai":
        return OpenAIProvider(
            client,
            model=config.model_name,
            base_url=config.url,
            api_key=config.secret,
            max_tokens_field=config.max_tokens_field,
        )
    if config.kind == "anthropic":
        return AnthropicProvider(client, model=config.model_name, base_url=config.url, api_key=config.secret)
    return EchoProvider(model=config.model_name, latency_s=config.echo_latency_s)
