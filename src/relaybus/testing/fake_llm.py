"""``FakeLLMServer``: a real HTTP server on 127.0.0.1 that speaks the OpenAI and Anthropic chat APIs.

Use it to test agents and executors without a network or an API key, including how they cope with latency,
rate limits, server errors and dropped connections::

    from relaybus.executor import ExecutorConfig, ProviderConfig, TaskExecutor
    from relaybus.testing import FakeLLMServer

    async def test_my_agent_survives_rate_limits():
        async with FakeLLMServer(latency_s=0.05) as server:
            server.inject("rate_limit", times=2, retry_after=0.1)   # the next 2 calls get 429
            config = ExecutorConfig(provider=ProviderConfig(kind="openai", base_url=server.openai_base_url))
            async with TaskExecutor(config) as executor:
                result = await executor.execute(AgentTask(topic="t", prompt="hi"))
            assert result.ok and result.output == "fake reply: hi"
            assert server.requests == 3

What you may rely on:

- It listens on ``127.0.0.1`` on a free port chosen by the OS. ``server.base_url`` is ``http://127.0.0.1:PORT``;
  ``server.openai_base_url`` is that plus ``/v1`` (what OpenAI-compatible clients expect); Anthropic clients
  take ``server.base_url`` (they append ``/v1/messages``). ``POST /v1/chat/completions`` (also
  ``/chat/completions``) and ``POST /v1/messages`` answer in the providers' formats, with ``usage``.
- The answer text is ``reply`` applied to the last user message: by default ``"fake reply: " + message``;
  ``reply`` may be a fixed string or a function. Token counts are whitespace-separated words (prompt: every
  message including the system prompt; completion: the answer).
- With ``api_key`` set, requests without that key (``Authorization: Bearer`` or ``x-api-key``) get a 401.
  Requests without ``model`` or ``messages`` (or, for Anthropic, ``max_tokens``) get a 400.
- ``latency_s`` (settable at any time) delays every answer. :meth:`inject` adds a fault: ``"rate_limit"``
  (429 with ``Retry-After``, seconds or any string such as an HTTP-date), ``"server_error"`` (``status``,
  default 500), ``"slow"`` (``delay_s`` extra before answering normally) or ``"drop"`` (the connection is
  closed without an answer). A fault applies to the next ``times`` requests (``None``: until
  :meth:`clear_faults`), each with probability ``fraction`` drawn from a RNG seeded by ``seed``, so a run
  is repeatable. Faults are checked in the order they were added; at most one applies per request.
- Counters: ``requests`` (received), ``in_flight``, ``max_in_flight``, ``disconnects`` (requests whose
  connection closed before the answer: the client gave up, or a ``drop`` fault), ``statuses`` (a Counter of
  answered status codes), ``faults`` (a Counter of the faults served) and ``calls`` (path, JSON body,
  headers and arrival time of each request). :meth:`reset_stats` zeroes them.
- It handles at least 1,000 concurrent requests.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

from aiohttp import web

from relaybus.exceptions import ConfigError, UsageError

__all__ = ["FakeLLMServer", "Fault", "FaultKind", "RecordedCall"]

FaultKind = Literal["rate_limit", "server_error", "slow", "drop"]
_FAULT_KINDS = ("rate_limit", "server_error", "slow", "drop")
Api = Literal["openai", "anthropic"]


@dataclass
class Fault:
    """A fault the server injects; see :meth:`FakeLLMServer.inject`."""

    kind: FaultKind
    times: int | None = None
    fraction: float = 1.0
    retry_after: str | float | None = 1
    status: int = 500
    delay_s: float = 5.0


@dataclass(frozen=True)
class RecordedCall:
    """One request the server received; header names are lower-cased."""

    path: str
    body: Any
    headers: dict[str, str]
    received_at: float = field(default_factory=time.monotonic)


class FakeLLMServer:
    """A fake LLM API server for tests; use as ``async with FakeLLMServer() as server:`` (see module docs)."""

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        reply: str | Callable[[str], str] | None = None,
        api_key: str | None = None,
        seed: int = 0,
        record_calls: bool = True,
    ) -> None:
        self.latency_s = latency_s
        self.reply = reply
        self._api_key = api_key
        self._rng = random.Random(seed)
        self._record = record_calls
        self._faults: list[Fault] = []
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self.reset_stats()

    def __repr__(self) -> str:
        where = self.base_url if self._port is not None else "not started"
        return f"FakeLLMServer({where}, latency_s={self.latency_s}, faults={len(self._faults)})"

    # -- life cycle -----------------------------------------------------------------------------------------
    async def start(self) -> Self:
        """Start listening on 127.0.0.1 on a free port."""
        if self._runner is not None:
            return self
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        """Stop the server, dropping requests still in flight. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise UsageError("FakeLLMServer is not started: use 'async with FakeLLMServer() as server:'")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    # -- behaviour ------------------------------------------------------------------------------------------
    def inject(
        self,
        kind: FaultKind,
        *,
        times: int | None = None,
        fraction: float = 1.0,
        retry_after: str | float | None = 1,
        status: int = 500,
        delay_s: float = 5.0,
    ) -> Fault:
        """Add a fault (see the module docs); returns it, so a test can change or inspect it."""
        if kind not in _FAULT_KINDS:
            raise ConfigError(f"unknown fault kind {kind!r}: use one of {', '.join(_FAULT_KINDS)}")
        if not 0.0 <= fraction <= 1.0:
            raise ConfigError(f"fraction must be between 0 and 1, got {fraction}")
        if times is not None and times < 1:
            raise ConfigError(f"times must be at least 1 (or None for 'until cleared'), got {times}")
        fault = Fault(kind, times, fraction, retry_after, status, delay_s)
        self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self._faults.clear()

    def reset_stats(self) -> None:
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.disconnects = 0
        self.statuses: Counter[int] = Counter()
        self.faults: Counter[str] = Counter()
        self.calls: list[RecordedCall] = []

    def _pick_fault(self) -> Fault | None:
        for fault in self._faults:
            if fault.fraction < 1.0 and self._rng.random() >= fault.fraction:
                continue
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
            self.faults[fault.kind] += 1
            return fault
        return None

    # -- handlers -------------------------------------------------------------------------------------------
    async def _openai(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "openai")

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "anthropic")

    async def _handle(self, request: web.Request, api: Api) -> web.StreamResponse:
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            response = await self._answer(request, api)
        except asyncio.CancelledError:
            self.disconnects += 1
            raise
        finally:
            self.in_flight -= 1
        self.statuses[response.status] += 1
        return response

    async def _answer(self, request: web.Request, api: Api) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        if self._record:
            headers = {name.lower(): value for name, value in request.headers.items()}
            self.calls.append(RecordedCall(request.path, body, headers))
        fault = self._pick_fault()
        if fault is not None and fault.kind == "drop":
            if request.transport is not None:
                request.transport.abort()
            await asyncio.sleep(3600)  # cancelled at once: the connection is gone
        delay = self.latency_s + (fault.delay_s if fault is not None and fault.kind == "slow" else 0.0)
        if delay > 0:
            await asyncio.sleep(delay)
        if fault is not None and fault.kind == "rate_limit":
            headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            return _error(api, 429, "rate_limit_error", "rate limit exceeded (injected fault)", headers)
        if fault is not None and fault.kind == "server_error":
            return _error(api, fault.status, "api_error", "internal server error (injected fault)")
        if self._api_key is not None and _key_of(request, api) != self._api_key:
            return _error(api, 401, "authentication_error", "invalid API key")
        problem = _check(body, api)
        if problem:
            return _error(api, 400, "invalid_request_error", problem)
        return web.json_response(self._completion(body, api))

    def _completion(self, body: dict[str, Any], api: Api) -> dict[str, Any]:
        messages = body["messages"]
        texts = [_text(m.get("content")) for m in messages if isinstance(m, dict)]
        system = _text(body.get("system")) if api == "anthropic" else ""
        last_user = next(
            (
                _text(m.get("content"))
                for m in reversed(messages)
                if isinstance(m, dict) and m.get("role") == "user"
            ),
            "",
        )
        reply = self.reply
        text = (
            reply(last_user)
            if callable(reply)
            else (reply if reply is not None else f"fake reply: {last_user}")
        )
        prompt_tokens = sum(len(t.split()) for t in [*texts, system])
        completion_tokens = len(text.split())
        number = self.requests
        if api == "anthropic":
            return {
                "id": f"msg_fake_{number}",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens},
            }
        return {
            "id": f"chatcmpl-fake-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def _text(content: Any) -> str:
    """Message content as text: a string, or the text blocks of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            b.get("text", "") for b in content if isinstance(b, dict) and isinstance(b.get("text"), str)
        )
    return ""


def _key_of(request: web.Request, api: Api) -> str | None:
    if api == "anthropic":
        return request.headers.get("x-api-key")
    auth = request.headers.get("Authorization", "")
    return auth[7:] if auth.startswith("Bearer ") else None


def _check(body: Any, api: Api) -> str | None:
    if not isinstance(body, dict):
        return "the request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "'model' is required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    if api == "anthropic" and not isinstance(body.get("max_tokens"), int):
        return "'max_tokens' is required"
    return None


def _error(
    api: Api, status: int, kind: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    if api == "anthropic":
        payload: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        payload = {"error": {"message": message, "type": kind, "code": status}}
    return web.json_response(payload, status=status, headers=headers)
