"""The executor's one shared ``httpx.AsyncClient``, and reading a response with a size cap.

The transport under the client is chosen by measurement (``bench/executor.py``): httpx's own connection pool
spends CPU in proportion to its size at high concurrency (encode/httpx#3215), while the aiohttp transport of
``httpx-aiohttp`` keeps the httpx API and stays near the ideal with 1,000 requests in flight. ``httpx`` stays
available as an option.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from .config import Transport

__all__ = ["CappedResponse", "is_timeout", "make_client", "request_capped"]


def make_client(
    *, transport: Transport = "aiohttp", max_connections: int = 100, connect_timeout_s: float = 10.0
) -> httpx.AsyncClient:
    """A client with a pool of ``max_connections`` and no read timeout.

    Reads are bounded by each task's timeout instead, so a long completion is not cut by a second, smaller
    limit. Redirects are not followed (the ``api`` mode's host allow-list must hold for every request). With
    httpx's own pool, keep-alive connections stay at httpx's default of 20: its pool spends CPU in proportion
    to the idle connections it keeps (200 calls with 100 in flight: 0.7 s with 20, 3.2 s with 100).
    """
    timeout = httpx.Timeout(connect=connect_timeout_s, read=None, write=None, pool=None)
    if transport == "aiohttp":
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        return httpx.AsyncClient(
            transport=AiohttpTransport(limits=limits), timeout=timeout, follow_redirects=False
        )
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
    headers: httpx.Headers
    content: bytes
    request: httpx.Request
    truncated: bool

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @cached_property
    def response(self) -> httpx.Response:
        headers = self.headers.copy()
        headers.pop("content-encoding", None)  # the body is already decoded
        headers.pop("content-length", None)
        return httpx.Response(self.status_code, headers=headers, content=self.content, request=self.request)


async def request_capped(
    client: httpx.AsyncClient, method: str, url: str, *, max_bytes: int, **kwargs: Any
) -> CappedResponse:
    """Send a request and read at most ``max_bytes`` of the (decoded) body; the rest is not read."""
    async with client.stream(method, url, **kwargs) as streamed:
        chunks: list[bytes] = []
        size = 0
        truncated = False
        async for chunk in streamed.aiter_bytes():
            if size + len(chunk) > max_bytes:
                chunks.append(chunk[: max_bytes - size])
                truncated = True
                break
            chunks.append(chunk)
            size += len(chunk)
    content = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return CappedResponse(streamed.status_code, streamed.headers, content, streamed.request, truncated)


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
