"""HTTP plumbing the gateway's handlers share: JSON bodies read under a size cap, JSON and problem responses
(RFC 9457 ``application/problem+json``), and Server-Sent Events streams."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from relaybus.exceptions import RelaybusError

__all__ = [
    "EventStream",
    "HttpProblem",
    "json_response",
    "problem_response",
    "read_body",
    "validation_details",
]

_JSON_TYPES = ("application/json", "application/a2a+json")


class HttpProblem(RelaybusError):
    """A request refused with ``status``; ``detail`` says why and how to fix it (never a secret)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: Sequence[Mapping[str, Any]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})


def json_response(
    payload: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """``payload`` (JSON-ready, or a pydantic model) as an ``application/json`` response."""
    text = payload.model_dump_json() if isinstance(payload, BaseModel) else json.dumps(payload)
    return web.Response(text=text, status=status, content_type="application/json", headers=headers)


def problem_response(problem: HttpProblem) -> web.Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(problem.status).phrase,
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.errors:
        body["errors"] = problem.errors
    return web.Response(
        text=json.dumps(body),
        status=problem.status,
        content_type="application/problem+json",
        headers=problem.headers,
    )


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The request's JSON body as bytes: 415 unless it says ``application/json``, 413 over ``max_bytes``."""
    if request.content_type not in _JSON_TYPES:
        raise HttpProblem(
            415, f"send the body as JSON with Content-Type: application/json, not {request.content_type!r}"
        )
    if request.content_length is not None and request.content_length > max_bytes:
        raise HttpProblem(413, f"the body has {request.content_length} bytes; the limit is {max_bytes}")
    try:
        body = await request.read()  # the app's client_max_size is max_bytes: a chunked body is capped too
    except web.HTTPRequestEntityTooLarge:
        raise HttpProblem(413, f"the body is over the limit of {max_bytes} bytes") from None
    if len(body) > max_bytes:
        raise HttpProblem(413, f"the body has {len(body)} bytes; the limit is {max_bytes}")
    return body


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """The errors of ``exc`` as ``{"loc": "a.b", "msg": ...}`` (no input values: they may be large)."""
    return [
        {
            "loc": ".".join(str(p) for p in error["loc"]) or "(body)",
            "msg": error["msg"],
            "type": error["type"],
        }
        for error in exc.errors(include_url=False, include_input=False)
    ]


class EventStream:
    """One Server-Sent Events response: :meth:`open`, then :meth:`send` events, :meth:`comment` to keep an
    idle connection open, and :meth:`close`. A write to a client that went away raises
    ``ConnectionResetError``: the caller stops streaming."""

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self._response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # reverse proxies: pass each event on at once
            }
        )

    @property
    def response(self) -> web.StreamResponse:
        return self._response

    async def open(self) -> None:
        await self._response.prepare(self._request)

    async def send(self, data: Any, *, event: str | None = None, event_id: str | None = None) -> None:
        """One event; ``data`` is sent as compact JSON on one ``data:`` line."""
        lines = []
        if event_id is not None:
            lines.append(f"id: {event_id}")
        if event is not None:
            lines.append(f"event: {event}")
        text = data.model_dump_json() if isinstance(data, BaseModel) else json.dumps(data)
        lines.append(f"data: {text}")
        await self._response.write(("\n".join(lines) + "\n\n").encode())

    async def comment(self, text: str = "keep-alive") -> None:
        await self._response.write(f": {text}\n\n".encode())

    async def close(self) -> None:
        await self._response.write_eof()
