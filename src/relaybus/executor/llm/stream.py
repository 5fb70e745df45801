"""Streamed answers: the deltas a provider sends while it answers, and streaming for providers without it.

A streamed turn is a sequence of :data:`StreamChunk`: deltas (:class:`TextDelta`, :class:`RefusalDelta`,
:class:`ToolCallDelta`) as they arrive, then exactly one :class:`~relaybus.executor.llm.Completion`, the
whole answer, which is what a caller acts on. What a consumer may rely on, for every built-in provider:

- The texts of the ``TextDelta`` s joined are the completion's ``text`` (and the ``RefusalDelta`` s joined
  its ``refusal``). One exception, Anthropic only: an answer that calls the response-schema tool *and* real
  tools is a tool-call answer whose text leaves the early structured output out, as without streaming.
- ``ToolCallDelta`` s of one ``index`` build the call at that position of ``completion.tool_calls``: the first
  carries its ``id`` and ``name``, the ``arguments`` fragments joined are its arguments' JSON text.
- A stream that fails raises what :meth:`~relaybus.executor.llm.LLMProvider.complete` raises
  (``httpx.HTTPStatusError``, ``httpx.TransportError``, :class:`ProviderResponseError`), or
  :class:`ProviderStreamError` for an error the server sent inside the stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from relaybus.exceptions import ProviderResponseError

from .base import ChatRequest, Completion, LLMProvider

__all__ = [
    "DeltaCallback",
    "ProviderStreamError",
    "RefusalDelta",
    "StreamChunk",
    "StreamDelta",
    "StreamingProvider",
    "TextDelta",
    "ToolCallDelta",
    "completion_deltas",
    "stream_chat",
    "stream_error",
]

_TRANSIENT_ERRORS = frozenset(  # Anthropic's and OpenAI's words for errors a new request may not meet
    (
        "api_error",
        "overloaded_error",
        "rate_limit_error",
        "timeout_error",
        "server_error",
        "rate_limit_exceeded",
    )
)


@dataclass(frozen=True, slots=True)
class TextDelta:
    """The next piece of the answer's text."""

    text: str


@dataclass(frozen=True, slots=True)
class RefusalDelta:
    """The next piece of a refusal (OpenAI streams ``delta.refusal`` apart from the text)."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """Progress of the tool call at ``index`` (its position in ``Completion.tool_calls``).

    ``id`` and ``name`` are set on the first delta of a call (None after); ``arguments`` is the next fragment
    of its arguments' JSON text (often empty on the first delta).
    """

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


StreamDelta = TextDelta | RefusalDelta | ToolCallDelta
"""One piece of a streamed answer."""

StreamChunk = StreamDelta | Completion
"""What :meth:`StreamingProvider.stream` yields: deltas, then one :class:`Completion` (always the last)."""

DeltaCallback = Callable[[StreamDelta], None]
"""Called with each delta as it arrives, in order, before the turn ends. It must not block (hand the delta
to a buffer or a queue); an exception it raises ends the turn and propagates to the caller."""


class ProviderStreamError(ProviderResponseError):
    """The server reported an error inside a stream (Anthropic ``event: error``, OpenAI ``{"error": ...}``).

    ``kind`` is the server's error type (``overloaded_error``, ``api_error``...); ``retryable`` says whether
    a new request may not meet it (overloaded, rate limited, a server error, a stream cut short).
    """

    def __init__(self, message: str, *, kind: str = "api_error", retryable: bool = True) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable


def stream_error(provider: str, error: Any) -> ProviderStreamError:
    """The error a server put in a stream: ``{"type" or "code", "message"}`` (or a bare message)."""
    details = error if isinstance(error, dict) else ({"message": str(error)} if error else {})
    kind = str(details.get("type") or details.get("code") or "api_error")
    message = str(details.get("message") or kind)[:200]
    code = details.get("code")
    retryable = kind in _TRANSIENT_ERRORS or (isinstance(code, int) and (code == 429 or code >= 500))
    text = f"{provider}: error in the stream: {kind}: {message}"
    return ProviderStreamError(text, kind=kind, retryable=retryable)


@runtime_checkable
class StreamingProvider(LLMProvider, Protocol):
    """A provider that can also stream: ``stream(request)`` is an async iterator of :data:`StreamChunk`.

    The iterator is an async generator: close it (``contextlib.aclosing``) to stop reading and release the
    connection early. Its last chunk is the :class:`Completion` that ``complete(request)`` would return.
    """

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]: ...


def completion_deltas(completion: Completion) -> list[StreamDelta]:
    """The deltas that stand for a whole completion at once (the stream of a provider that cannot stream)."""
    deltas: list[StreamDelta] = [TextDelta(completion.text)] if completion.text else []
    if completion.refusal:
        deltas.append(RefusalDelta(completion.refusal))
    deltas += [ToolCallDelta(i, c.id, c.name, c.arguments) for i, c in enumerate(completion.tool_calls)]
    return deltas


def stream_chat(provider: LLMProvider, request: ChatRequest) -> AsyncIterator[StreamChunk]:
    """``provider.stream(request)`` when it streams; else its one completion as deltas, then the completion.

    The provider's own iterator is returned as it is, so that closing it closes the provider's connection.
    """
    if isinstance(provider, StreamingProvider):
        return provider.stream(request)
    return _whole(provider, request)


async def _whole(provider: LLMProvider, request: ChatRequest) -> AsyncIterator[StreamChunk]:
    completion = await provider.complete(request)
    for delta in completion_deltas(completion):
        yield delta
    yield completion
