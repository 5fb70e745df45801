"""The offline ``echo`` provider: deterministic answers without a network, for demos and tests."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from relaybus.exceptions import ConfigError
from relaybus.messages import Usage

from .base import ChatRequest, Completion
from .chat import message_text
from .stream import StreamChunk, TextDelta

__all__ = ["EchoProvider", "count_tokens", "words_of"]

_WORD = re.compile(r"\s*\S+|\s+")


def words_of(text: str) -> list[str]:
    """``text`` cut before each word (a word keeps the whitespace before it); joined, they are ``text``."""
    return _WORD.findall(text)


def count_tokens(text: str) -> int:
    """The echo provider's token count: whitespace-separated words (deterministic, good enough to test)."""
    return len(text.split())


class EchoProvider:
    """Answers ``"echo: " + <the last user message>`` after ``latency_s`` seconds (``asyncio.sleep``).

    It never calls tools, so an agent loop on it ends after one turn. The same request always gives the same
    text and usage: prompt tokens are the words of every message, completion tokens the words of the answer.
    :meth:`stream` gives the same answer word by word, ``latency_s`` split evenly before the words. A
    negative ``latency_s`` raises :class:`ConfigError`.
    """

    def __init__(self, *, model: str = "echo", latency_s: float = 0.0) -> None:
        if latency_s < 0:
            raise ConfigError("EchoProvider latency_s must not be negative")
        self.model = model
        self.latency_s = latency_s

    @property
    def name(self) -> str:
        return f"echo/{self.model}"

    def __repr__(self) -> str:
        return f"EchoProvider(model={self.model!r}, latency_s={self.latency_s})"

    async def complete(self, request: ChatRequest) -> Completion:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return self._answer(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        completion = self._answer(request)
        words = words_of(completion.text)
        pause = self.latency_s / len(words)
        for word in words:
            if pause:
                await asyncio.sleep(pause)
            yield TextDelta(word)
        yield completion

    def _answer(self, request: ChatRequest) -> Completion:
        text = f"echo: {request.user}"
        usage = Usage(
            prompt_tokens=sum(count_tokens(message_text(m)) for m in request.messages),
            completion_tokens=count_tokens(text),
            requests=1,
        )
        return Completion(text=text, usage=usage, model=self.model, provider_finish_reason="stop")
