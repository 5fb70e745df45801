"""The ``api`` mode: one HTTP request described by the task, only to hosts the executor was configured with.

``task.input`` describes the request::

    {"method": "POST",                       # optional, default GET
     "url": "https://api.example.com/v1/x",  # http or https; the host must be allowed
     "headers": {"Accept": "application/json"},   # optional, strings only
     "params": {"q": "relaybus"},            # optional query parameters
     "json": {...}  or  "body": "raw text"}  # optional, not both

SUCCESS output is ``{"status": int, "headers": {name: value}, "body": <JSON if the answer is JSON, else
text>}``. A non-2xx answer is a FAILURE (``HTTPError``, retryable for 408/429/5xx) that still carries that
output. A host not in ``api_allowed_hosts`` gives a REJECTED result; so does a malformed description.
Redirects are not followed (they could leave the allowed hosts); a task's ``Host`` and hop-by-hop headers
(``Connection``, ``Transfer-Encoding``, ...) are dropped (:data:`DROPPED_HEADERS`); answers over
``api_max_response_bytes`` fail with ``ResponseTooLarge``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import JsonValue

from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus
from relaybus.secrets import mask_url

from .backend import RunContext
from .http import is_timeout, request_capped

__all__ = ["ApiBackend"]

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_ALLOWED_KEYS = frozenset({"method", "url", "headers", "params", "json", "body"})
DROPPED_HEADERS = frozenset(
    {
        "host",  # the request goes to the allowed host of the URL; a Host header could name another
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
"""Task-supplied headers that are dropped: ``Host`` (virtual hosting behind the allowed address) and the
hop-by-hop and framing headers (RFC 9110 section 7.6.1), which belong to the connection, not to a task."""


@dataclass(frozen=True)
class _Refusal:
    """Why a task's request description is unusable; becomes a REJECTED result."""

    error_type: str
    message: str


@dataclass(frozen=True)
class _Request:
    method: str
    url: str
    kwargs: dict[str, Any]


class ApiBackend:
    """Sends the request a task describes (see the module docstring) over the executor's shared client."""

    def __init__(
        self, client: httpx.AsyncClient, *, allowed_hosts: frozenset[str], max_response_bytes: int
    ) -> None:
        self._client = client
        self.allowed_hosts = allowed_hosts
        self.max_response_bytes = max_response_bytes

    def __repr__(self) -> str:
        return f"ApiBackend(allowed_hosts={sorted(self.allowed_hosts)})"

    async def run(self, task: AgentTask, ctx: RunContext) -> ExecutionResult:
        described = self._describe(task.input)
        if isinstance(described, _Refusal):
            return ExecutionResult.failed(
                task.id, ExecutionStatus.REJECTED, described.error_type, described.message
            )
        method, url, kwargs = described.method, described.url, described.kwargs
        try:
            capped = await request_capped(
                self._client, method, url, max_bytes=self.max_response_bytes, **kwargs
            )
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            timeout = is_timeout(exc)
            return ExecutionResult.failed(
                task.id,
                ExecutionStatus.FAILURE,
                "HTTPTimeout" if timeout else "ConnectionError",
                f"{method} {mask_url(url)}: {'timed out' if timeout else 'connection failed'}: {reason}",
                retryable=True,
            )
        response = capped.response
        if capped.truncated:
            return ExecutionResult.failed(
                task.id,
                ExecutionStatus.FAILURE,
                "ResponseTooLarge",
                f"{method} {mask_url(url)} answered with more than {self.max_response_bytes} bytes; raise "
                "ExecutorConfig(api_max_response_bytes=...) if such answers are expected",
            )
        output: JsonValue = {
            "status": response.status_code,
            "headers": dict(response.headers.items()),
            "body": _body(response),
        }
        if response.is_success:
            return ExecutionResult.success(task.id, output)
        status = response.status_code
        return ExecutionResult.failed(
            task.id,
            ExecutionStatus.FAILURE,
            "HTTPError",
            f"{method} {mask_url(url)} answered HTTP {status}: {response.text[:300]}",
            retryable=status in (408, 429) or status >= 500,
            output=output,
        )

    def _describe(self, spec: dict[str, JsonValue]) -> _Request | _Refusal:
        unknown = set(spec) - _ALLOWED_KEYS
        if unknown:
            return _Refusal(
                "InvalidApiRequest",
                f"unknown keys {sorted(unknown)} in the api task input: use {sorted(_ALLOWED_KEYS)}",
            )
        method = spec.get("method", "GET")
        if not isinstance(method, str) or method.upper() not in METHODS:
            return _Refusal("InvalidApiRequest", f"method must be one of {sorted(METHODS)}, got {method!r}")
        url = spec.get("url")
        if not isinstance(url, str):
            return _Refusal("InvalidApiRequest", "the api task input needs 'url': an http(s) URL string")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return _Refusal(
                "InvalidApiRequest", f"url must be an absolute http(s) URL, got {mask_url(url)!r}"
            )
        host = parts.hostname.lower()
        try:
            port = parts.port
        except ValueError:
            return _Refusal("InvalidApiRequest", f"url has an invalid port: {mask_url(url)!r}")
        if host not in self.allowed_hosts and f"{host}:{port}" not in self.allowed_hosts:
            return _Refusal(
                "HostNotAllowed",
                f"the api mode may not call host {host!r}: add it to ExecutorConfig(api_allowed_hosts=...) "
                "or to RELAYBUS_API_ALLOWED_HOSTS (comma-separated host or host:port)",
            )
        kwargs: dict[str, Any] = {}
        headers = spec.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            return _Refusal("InvalidApiRequest", "headers must be an object of string values")
        kwargs["headers"] = {k: v for k, v in headers.items() if k.lower() not in DROPPED_HEADERS}
        params = spec.get("params", {})
        if not isinstance(params, dict) or not all(
            isinstance(v, str | int | float | bool) for v in params.values()
        ):
            return _Refusal(
                "InvalidApiRequest", "params must be an object of string, number or boolean values"
            )
        kwargs["params"] = params
        if "json" in spec and "body" in spec:
            return _Refusal("InvalidApiRequest", "give either 'json' or 'body', not both")
        if "json" in spec:
            kwargs["json"] = spec["json"]
        if "body" in spec:
            body = spec["body"]
            if not isinstance(body, str):
                return _Refusal("InvalidApiRequest", "body must be a string (use 'json' for structured data)")
            kwargs["content"] = body.encode()
        return _Request(method.upper(), url, kwargs)


def _body(response: httpx.Response) -> JsonValue:
    if "json" in response.headers.get("content-type", ""):
        try:
            value: JsonValue = response.json()
        except ValueError:
            return response.text
        return value
    return response.text
