"""OpenAI-compatible chat completions: OpenAI, vLLM, Ollama, llama.cpp server, LM Studio (``base_url``)."""

from __future__ import annotations

from typing import Any

from relaybus.exceptions import ProviderResponseError
from relaybus.messages import Usage

from ._http import HttpProvider, post_json, token_count
from .base import ChatRequest, Completion

__all__ = ["OpenAIProvider"]


class OpenAIProvider(HttpProvider):
    """``POST {base_url}/chat/completions`` with ``Authorization: Bearer <key>`` when a key is set.

    ``base_url`` includes the API version path, as in the OpenAI SDK: ``https://api.openai.com/v1``,
    ``http://localhost:11434/v1`` (Ollama), ``http://localhost:8000/v1`` (vLLM). The request carries
    ``model``, ``messages`` (system, then user) and ``max_tokens``; the text is ``choices[0].message.content``
    and usage comes from ``usage.prompt_tokens`` / ``usage.completion_tokens``.
    """

    kind = "openai"
    default_base_url = "https://api.openai.com/v1"

    async def complete(self, request: ChatRequest) -> Completion:
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages.append({"role": "user", "content": request.user})
        body: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": request.max_tokens}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        headers = {"Authorization": f"Bearer {self._api_key.reveal()}"} if self._api_key else {}
        data = await post_json(self._client, f"{self.base_url}/chat/completions", body, headers, self.name)
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ProviderResponseError(f"{self.name} answered without choices[0].message.content") from None
        if not isinstance(text, str):
            text = "" if text is None else str(text)
        usage = data.get("usage")
        return Completion(
            text=text,
            usage=Usage(
                prompt_tokens=token_count(usage, "prompt_tokens"),
                completion_tokens=token_count(usage, "completion_tokens"),
                requests=1,
            ),
            model=str(data.get("model") or self.model),
            finish_reason=choice.get("finish_reason") if isinstance(choice, dict) else None,
        )
