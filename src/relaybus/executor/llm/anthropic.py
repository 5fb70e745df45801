"""Anthropic Messages API."""

from __future__ import annotations

from typing import Any

from relaybus.exceptions import ProviderResponseError
from relaybus.messages import Usage

from ._http import HttpProvider, post_json, token_count
from .base import ChatRequest, Completion

__all__ = ["ANTHROPIC_VERSION", "AnthropicProvider"]

ANTHROPIC_VERSION = "2023-06-01"


class AnthropicProvider(HttpProvider):
    """``POST {base_url}/v1/messages`` with ``x-api-key`` and ``anthropic-version: 2023-06-01``.

    ``base_url`` is the host without the version path (``https://api.anthropic.com``), as in the Anthropic
    SDK. The system prompt goes in ``system``; the text is the concatenation of the ``text`` blocks of
    ``content``; usage comes from ``usage.input_tokens`` / ``usage.output_tokens``.
    """

    kind = "anthropic"
    default_base_url = "https://api.anthropic.com"

    async def complete(self, request: ChatRequest) -> Completion:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "messages": [{"role": "user", "content": request.user}],
        }
        if request.system:
            body["system"] = request.system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if self._api_key:
            headers["x-api-key"] = self._api_key.reveal()
        data = await post_json(self._client, f"{self.base_url}/v1/messages", body, headers, self.name)
        content = data.get("content")
        if not isinstance(content, list):
            raise ProviderResponseError(f"{self.name} answered without a content list")
        text = "".join(
            block["text"]
            for block in content
            if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
        )
        usage = data.get("usage")
        stop = data.get("stop_reason")
        return Completion(
            text=text,
            usage=Usage(
                prompt_tokens=token_count(usage, "input_tokens"),
                completion_tokens=token_count(usage, "output_tokens"),
                requests=1,
            ),
            model=str(data.get("model") or self.model),
            finish_reason=stop if isinstance(stop, str) else None,
        )
