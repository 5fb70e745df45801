"""The ``LLMProvider`` protocol and the request/response types every provider speaks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from relaybus.exceptions import ProviderResponseError
from relaybus.messages import Usage

__all__ = ["ChatRequest", "Completion", "LLMProvider", "ProviderResponseError"]


@dataclass(frozen=True)
class ChatRequest:
    """One chat turn: an optional system message and one user message."""

    user: str
    system: str | None = None
    max_tokens: int = 1024
    temperature: float | None = None

    def estimated_tokens(self) -> int:
        """A rough upper estimate of the tokens this request costs, for the tokens-per-minute limit.

        About four characters per prompt token, plus the completion budget (``max_tokens``), which is how
        providers count a request against their own limits before they know the real cost.
        """
        chars = len(self.user) + len(self.system or "")
        return chars // 4 + 1 + self.max_tokens


@dataclass(frozen=True)
class Completion:
    """What a provider answered: the text, the token usage it reported, and the model that answered."""

    text: str
    usage: Usage
    model: str
    finish_reason: str | None = None


@runtime_checkable
class LLMProvider(Protocol):
    """Turns a :class:`ChatRequest` into a :class:`Completion`.

    Failures raise: ``httpx.HTTPStatusError`` for a non-2xx answer, ``httpx.TransportError`` when the
    connection fails, :class:`ProviderResponseError` for an answer of the wrong shape. The executor decides
    what to retry. ``name`` identifies the provider in results and logs; it must not contain a key.
    """

    @property
    def name(self) -> str: ...

    async def complete(self, request: ChatRequest) -> Completion: ...
