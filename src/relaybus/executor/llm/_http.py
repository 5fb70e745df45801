"""What the HTTP providers share: post JSON with a size cap, raise on non-2xx, parse the JSON or SSE body."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, ClassVar, Protocol

import httpx

from relaybus.exceptions import ProviderResponseError
from relaybus.messages import Usage
from relaybus.secrets import Secret, mask_url

from ..http import CappedResponse, open_post, post_capped
from .base import Completion
from .sse import SseDecoder, SseEvent
from .stream import StreamChunk, StreamDelta

__all__ = [
    "MAX_RESPONSE_BYTES",
    "HttpProvider",
    "StreamAssembler",
    "json_object",
    "post_json",
    "post_sse",
    "reported_usage",
    "stream_chunks",
    "token_count",
]

MAX_RESPONSE_BYTES = 8 * 1024 * 1024
_ERROR_BODY_BYTES = 64 * 1024


async def post_json(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str], provider: str
) -> dict[str, Any]:
    """POST ``body``; raise ``httpx.HTTPStatusError`` on non-2xx, ``ProviderResponseError`` on a bad body."""
    capped = await post_capped(client, url, body, headers, max_bytes=MAX_RESPONSE_BYTES)
    if not capped.is_success:
        capped.response.raise_for_status()
    if capped.truncated:
        raise ProviderResponseError(f"{provider} answered with more than {MAX_RESPONSE_BYTES} bytes")
    try:
        data = json.loads(capped.content)  # what httpx's Response.json() does, without building a Response
    except ValueError:
        raise ProviderResponseError(
            f"{provider} answered HTTP {capped.status_code} with a body that is not JSON: "
            f"{capped.response.text[:200]!r}"
        ) from None
    if not isinstance(data, dict):
        raise ProviderResponseError(f"{provider} answered with JSON that is not an object")
    return data


async def post_sse(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str], provider: str
) -> AsyncGenerator[SseEvent, None]:
    """POST ``body`` and yield the answer's server-sent events as the bytes arrive.

    A non-2xx answer raises ``httpx.HTTPStatusError`` before any event (its body read, up to 64 KiB, for the
    error message); a body longer than :data:`MAX_RESPONSE_BYTES` raises ``ProviderResponseError``; a
    connection lost mid-body raises ``httpx.TransportError``. Closing the generator closes the response.
    """
    async with open_post(client, url, body, headers) as streamed:
        if not streamed.is_success:
            content = b""
            async for chunk in streamed.chunks:
                content += chunk
                if len(content) >= _ERROR_BODY_BYTES:
                    break
            error = CappedResponse(streamed.status_code, streamed.headers, content, "POST", url, False)
            error.response.raise_for_status()
        decoder = SseDecoder()
        size = 0
        async for chunk in streamed.chunks:
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise ProviderResponseError(f"{provider} streamed more than {MAX_RESPONSE_BYTES} bytes")
            for event in decoder.feed(chunk):
                yield event
        for event in decoder.close():
            yield event


class StreamAssembler(Protocol):
    """Reads one streamed answer: the deltas in each event's data, then the whole completion."""

    def feed(self, data: str) -> list[StreamDelta]: ...

    def completion(self) -> Completion: ...


async def stream_chunks(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    provider: str,
    assembler: StreamAssembler,
) -> AsyncIterator[StreamChunk]:
    """:func:`post_sse` read by ``assembler``: each event's deltas as it arrives, then the completion."""
    async with aclosing(post_sse(client, url, body, headers, provider)) as events:
        async for event in events:  # read to the end after the end marker, so the connection is reused
            for delta in assembler.feed(event.data):
                yield delta
    yield assembler.completion()


def json_object(data: str, provider: str, what: str) -> dict[str, Any]:
    """``data`` parsed; ``ProviderResponseError`` naming ``what`` when it is not a JSON object."""
    try:
        value = json.loads(data)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ProviderResponseError(f"{provider} streamed {what} that is not a JSON object: {data[:200]!r}")
    return value


def token_count(usage: Any, key: str) -> int:
    """A non-negative int from ``usage[key]``, 0 when missing or malformed (some local servers omit usage)."""
    if not isinstance(usage, dict):
        return 0
    value = usage.get(key)
    return value if isinstance(value, int) and value >= 0 else 0


def reported_usage(data: dict[str, Any], prompt_key: str, completion_key: str) -> Usage:
    """One request's usage from the answer's ``usage`` object, under the provider's own key names."""
    usage = data.get("usage")
    return Usage(
        prompt_tokens=token_count(usage, prompt_key),
        completion_tokens=token_count(usage, completion_key),
        requests=1,
    )


class HttpProvider:
    """Holds what every HTTP provider has: the shared client, the model, the base URL and the key."""

    kind: ClassVar[str]
    default_base_url: ClassVar[str]

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        model: str,
        base_url: str | None = None,
        api_key: Secret | None = None,
    ) -> None:
        self._client = client
        self.model = model
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self._api_key = api_key

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.model}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self.model!r}, base_url={mask_url(self.base_url)!r}, "
            f"api_key={self._api_key!r})"
        )
