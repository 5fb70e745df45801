"""The executor's one shared ``httpx.AsyncClient``, and reading a response with a size cap.

The transport under the client is chosen by measurement (``bench/executor.py``): httpx's own connection pool
spends CPU in proportion to its size at high concurrency (encode/httpx#3215), while the aiohttp transport of
``httpx-aiohttp`` keeps the httpx API and stays near the ideal with 1,000 requests in flight. ``httpx`` stays
available as an option.

The client relaybus builds for the aiohttp transport (:class:`AiohttpClient`) also lets the LLM providers'
hot path (:func:`post_capped`, :func:`open_post`) skip httpx and use the aiohttp session under it: httpx's
request and response objects, header copies and cookie handling cost about half of the worker's CPU per
LLM call (bench/PROFILE.md H1). Errors are mapped to the same httpx exceptions as through the transport, so
retries and error messages do not depend on the path. A client a user passes in is always used through
httpx (its hooks, auth and mounts apply).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import map_aiohttp_exceptions

from .config import Transport

__all__ = [
    "AiohttpClient",
    "CappedResponse",
    "PostedStream",
    "is_timeout",
    "make_client",
    "open_post",
    "post_capped",
    "request_capped",
]

_CHUNK_BYTES = 64 * 1024


class AiohttpClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` over one aiohttp session that relaybus's providers may also use directly.

    Everything sent through the httpx API goes through ``httpx-aiohttp``'s transport; :meth:`session` is the
    same aiohttp session (same connections, same limits), created on first use inside the running loop.
    """

    def __init__(self, *, max_connections: int, connect_timeout_s: float) -> None:
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._aiohttp_transport = AiohttpTransport(limits=limits)
        super().__init__(
            transport=self._aiohttp_transport,
            timeout=httpx.Timeout(connect=connect_timeout_s, read=None, write=None, pool=None),
            follow_redirects=False,
        )
        # No total or read limit: as through httpx, each task's own timeout bounds the call.
        self.direct_timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_s)

    def session(self) -> aiohttp.ClientSession:
        transport = self._aiohttp_transport
        if not isinstance(transport.client, aiohttp.ClientSession):
            transport.client = transport.get_client()
        return transport.client


def make_client(
    *, transport: Transport = "aiohttp", max_connections: int = 100, connect_timeout_s: float = 10.0
) -> httpx.AsyncClient:
    """A client with a pool of ``max_connections`` and no read timeout.

    Reads are bounded by each task's timeout instead, so a long completion is not cut by a second, smaller
    limit. Redirects are not followed (the ``api`` mode's host allow-list must hold for every request). With
    httpx's own pool, keep-alive connections stay at httpx's default of 20: its pool spends CPU in proportion
    to the idle connections it keeps (200 calls with 100 in flight: 0.7 s with 20, 3.2 s with 100).
    """
    if transport == "aiohttp":
        return AiohttpClient(max_connections=max_connections, connect_timeout_s=connect_timeout_s)
    timeout = httpx.Timeout(connect=connect_timeout_s, read=None, write=None, pool=None)
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=min(20, max_connections))
    return httpx.AsyncClient(limits=limits, timeout=timeout, follow_redirects=False)


@dataclass(frozen=True)
class CappedResponse:
    """A response whose body was read up to a cap; ``truncated`` says the body was longer.

    ``status_code``, ``headers`` and ``content`` (the decoded body) are what a caller on the hot path needs;
    ``response`` builds an ``httpx.Response`` of them on first use (for ``raise_for_status``, ``.text``...):
    building it on every call was a measurable share of an LLM call's CPU (bench/PROFILE.md H1).
    """

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    method: str
    url: str
    truncated: bool

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @cached_property
    def response(self) -> httpx.Response:
        headers = httpx.Headers(self.headers)
        headers.pop("content-encoding", None)  # the body is already decoded
        headers.pop("content-length", None)
        request = httpx.Request(self.method, self.url)
        return httpx.Response(self.status_code, headers=headers, content=self.content, request=request)


async def _read_capped(chunks_of: AsyncIterator[bytes], max_bytes: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    async for chunk in chunks_of:
        if size + len(chunk) > max_bytes:
            chunks.append(chunk[: max_bytes - size])
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), False


async def request_capped(
    client: httpx.AsyncClient, method: str, url: str, *, max_bytes: int, **kwargs: Any
) -> CappedResponse:
    """Send a request and read at most ``max_bytes`` of the (decoded) body; the rest is not read."""
    async with client.stream(method, url, **kwargs) as streamed:
        content, truncated = await _read_capped(streamed.aiter_bytes(), max_bytes)
    return CappedResponse(streamed.status_code, streamed.headers, content, method, str(url), truncated)


def _json_body(body: Mapping[str, Any], headers: Mapping[str, str]) -> tuple[bytes, dict[str, str]]:
    # The bytes and content type httpx sends for ``json=``, so both paths put the same request on the wire.
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    return data, {"Content-Type": "application/json", **headers}


async def post_capped(
    client: httpx.AsyncClient,
    url: str,
    body: Mapping[str, Any],
    headers: Mapping[str, str],
    *,
    max_bytes: int,
) -> CappedResponse:
    """POST ``body`` as JSON and read at most ``max_bytes`` of the answer; see :func:`request_capped`.

    On an :class:`AiohttpClient` the request goes to its aiohttp session directly; connection errors raise
    the ``httpx.TransportError`` the transport would raise.
    """
    if not isinstance(client, AiohttpClient):
        return await request_capped(client, "POST", url, json=body, headers=headers, max_bytes=max_bytes)
    data, sent_headers = _json_body(body, headers)
    with map_aiohttp_exceptions():
        async with client.session().post(
            url, data=data, headers=sent_headers, allow_redirects=False, timeout=client.direct_timeout
        ) as answer:
            content, truncated = await _read_capped(answer.content.iter_chunked(_CHUNK_BYTES), max_bytes)
    return CappedResponse(answer.status, answer.headers, content, "POST", url, truncated)


@dataclass(frozen=True)
class PostedStream:
    """An answer being read: its status and headers, and its (decoded) body as the bytes arrive."""

    status_code: int
    headers: Mapping[str, str]
    chunks: AsyncIterator[bytes]

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300


@asynccontextmanager
async def open_post(
    client: httpx.AsyncClient, url: str, body: Mapping[str, Any], headers: Mapping[str, str]
) -> AsyncIterator[PostedStream]:
    """POST ``body`` as JSON and give the answer to read as it arrives; leaving the block closes it.

    Connection errors, before or while reading, raise ``httpx.TransportError`` on both paths.
    """
    if not isinstance(client, AiohttpClient):
        async with client.stream("POST", url, json=body, headers=headers) as streamed:
            yield PostedStream(streamed.status_code, streamed.headers, streamed.aiter_bytes())
        return
    data, sent_headers = _json_body(body, headers)
    with map_aiohttp_exceptions():
        async with client.session().post(
            url, data=data, headers=sent_headers, allow_redirects=False, timeout=client.direct_timeout
        ) as answer:
            yield PostedStream(answer.status, answer.headers, _mapped(answer.content.iter_any()))


async def _mapped(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    with map_aiohttp_exceptions():
        async for chunk in chunks:
            yield chunk


def is_timeout(exc: httpx.TransportError) -> bool:
    """Whether ``exc`` is really a timeout, not a refused or dropped connection.

    httpx-aiohttp maps every aiohttp connection error (refused, reset, dropped) to ``httpx.ConnectTimeout``;
    the aiohttp cause tells them apart.
    """
    if not isinstance(exc, httpx.TimeoutException):
        return False
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientError):
        return isinstance(cause, aiohttp.ServerTimeoutError)
    return True
