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
- Without a script, the answer text is ``reply`` applied to the last user message: by default
  ``"fake reply: " + message``; ``reply`` may be a fixed string or a function. Token counts are
  whitespace-separated words (prompt: every message including the system prompt; completion: the answer).
- ``answers`` (or :meth:`set_answers`) scripts what the model says, in both formats: a list of
  :class:`~relaybus.testing.ScriptedAnswer` (text, content parts, tool calls, structured output, refusal,
  finish reason, usage; a plain ``str`` is a text answer) given in order, or a function of the
  :class:`~relaybus.testing.SeenRequest` (the messages, tools and tool choice parsed back from either format).
  Only requests answered normally take an answer (a fault or a 400 does not use one up). A list that runs
  out, a function that raises, or an answer the format cannot carry gets a 500 naming the problem.
- With ``api_key`` set, requests without that key get a 401: ``Authorization: Bearer`` for the OpenAI
  endpoints, ``x-api-key`` or ``Authorization: Bearer`` for Anthropic's. Requests without ``model`` or
  ``messages`` (or, for Anthropic, ``max_tokens``), with an unknown role, a tool result that answers no
  earlier tool call, or a forced tool that is not offered get a 400, as from the real APIs.
- A request with ``stream: true`` gets the same answer as server-sent events, as each API streams it (see
  :mod:`~relaybus.testing.fake_llm_stream`): text, refusals and tool arguments cut every ``chunk_size``
  characters (default 4), ``chunk_delay_s`` (default 0) between two events, and for OpenAI the usage in a
  last chunk when the request asks for it (``stream_options: {include_usage: true}``). Both settable at any
  time.
- ``latency_s`` (settable at any time) delays every answer (a stream: its first byte). :meth:`inject` adds a
  fault: ``"rate_limit"`` (429 with ``Retry-After``, seconds or any string such as an HTTP-date),
  ``"server_error"`` (``status``, default 500), ``"slow"`` (``delay_s`` extra before answering normally) or
  ``"drop"`` (the connection is closed without an answer); and for streamed requests only (others do not use
  them up), after ``after_chunks`` events of the stream: ``"break_stream"`` (the connection is closed),
  ``"stream_error"`` (an error event, of ``error_type``, ends the stream) or ``"malformed_chunk"`` (a
  ``data:`` line that is not JSON, then the end). A fault applies to the next ``times`` requests (``None``:
  until :meth:`clear_faults`), each with probability ``fraction`` drawn from a RNG seeded by ``seed``, so a
  run is repeatable. Faults are checked in the order they were added; at most one applies per request.
- Counters: ``requests`` (received), ``in_flight``, ``max_in_flight``, ``disconnects`` (requests whose
  connection closed before the answer: the client gave up, or a ``drop`` fault), ``statuses`` (a Counter of
  answered status codes), ``faults`` (a Counter of the faults served) and ``calls``
  (:class:`RecordedCall`: path, API, JSON body, the parsed :class:`~relaybus.testing.SeenRequest`, headers
  with the values of ``authorization`` / ``x-api-key`` replaced by ``[redacted]``, and arrival time); for
  streams, ``streams`` (begun), ``streams_open`` (begun and not ended) and ``chunks_sent`` (events written,
  all streams together). :meth:`reset_stats` zeroes them.
- It handles at least 1,000 concurrent requests.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

from aiohttp import web

from relaybus.exceptions import ConfigError, UsageError

from .fake_llm_scripts import AnswerScript, Script, ScriptedAnswer, SeenRequest
from .fake_llm_stream import anthropic_events, malformed_event, openai_events, stream_error_event
from .fake_llm_wire import (
    Api,
    BadRequest,
    anthropic_answer,
    error_body,
    openai_answer,
    parse_anthropic_request,
    parse_openai_request,
)

__all__ = ["FakeLLMServer", "Fault", "FaultKind", "RecordedCall"]

FaultKind = Literal[
    "rate_limit", "server_error", "slow", "drop", "break_stream", "stream_error", "malformed_chunk"
]
_STREAM_FAULTS = ("break_stream", "stream_error", "malformed_chunk")
_FAULT_KINDS = ("rate_limit", "server_error", "slow", "drop", *_STREAM_FAULTS)
_AUTH_HEADERS = ("authorization", "x-api-key")
REDACTED = "[redacted]"


@dataclass
class Fault:
    """A fault the server injects; see :meth:`FakeLLMServer.inject`."""

    kind: FaultKind
    times: int | None = None
    fraction: float = 1.0
    retry_after: str | float | None = 1
    status: int = 500
    delay_s: float = 5.0
    after_chunks: int = 0
    error_type: str | None = None


@dataclass(frozen=True)
class RecordedCall:
    """One request the server received; header names are lower-cased, key values redacted.

    ``request`` is the body parsed into chat types (None when it could not be parsed: the request got a 400).
    """

    path: str
    body: Any
    headers: dict[str, str]
    received_at: float = field(default_factory=time.monotonic)
    api: Api | None = None
    request: SeenRequest | None = None


class FakeLLMServer:
    """A fake LLM API server for tests; use as ``async with FakeLLMServer() as server:`` (see module docs)."""

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        reply: str | Callable[[str], str] | None = None,
        answers: Script | None = None,
        api_key: str | None = None,
        seed: int = 0,
        record_calls: bool = True,
        chunk_size: int = 4,
        chunk_delay_s: float = 0.0,
    ) -> None:
        if chunk_size < 1:
            raise ConfigError(f"chunk_size must be at least 1 character, got {chunk_size}")
        self.latency_s = latency_s
        self.chunk_size = chunk_size
        self.chunk_delay_s = chunk_delay_s
        self.reply = reply
        self._script = AnswerScript(answers) if answers is not None else None
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
    def set_answers(self, answers: Script | None) -> None:
        """Script the answers from now on (None: back to ``reply``); see the module docs."""
        self._script = AnswerScript(answers) if answers is not None else None

    @property
    def answers_left(self) -> int | None:
        """Scripted answers not yet given; None without a list (no script, or a function)."""
        return self._script.left if self._script is not None else None

    def inject(
        self,
        kind: FaultKind,
        *,
        times: int | None = None,
        fraction: float = 1.0,
        retry_after: str | float | None = 1,
        status: int = 500,
        delay_s: float = 5.0,
        after_chunks: int = 0,
        error_type: str | None = None,
    ) -> Fault:
        """Add a fault (see the module docs); returns it, so a test can change or inspect it."""
        if kind not in _FAULT_KINDS:
            raise ConfigError(f"unknown fault kind {kind!r}: use one of {', '.join(_FAULT_KINDS)}")
        if not 0.0 <= fraction <= 1.0:
            raise ConfigError(f"fraction must be between 0 and 1, got {fraction}")
        if times is not None and times < 1:
            raise ConfigError(f"times must be at least 1 (or None for 'until cleared'), got {times}")
        if after_chunks < 0:
            raise ConfigError(f"after_chunks must not be negative, got {after_chunks}")
        fault = Fault(kind, times, fraction, retry_after, status, delay_s, after_chunks, error_type)
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
        self.streams = 0
        self.streams_open = 0
        self.chunks_sent = 0

    def _pick_fault(self, streamed: bool) -> Fault | None:
        for fault in self._faults:
            if fault.kind in _STREAM_FAULTS and not streamed:
                continue
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
            response = await self._answer(request, api, self.requests)
        except asyncio.CancelledError:
            self.disconnects += 1
            raise
        finally:
            self.in_flight -= 1
        self.statuses[response.status] += 1
        return response

    async def _answer(self, request: web.Request, api: Api, number: int) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        problem = _check(body, api)
        seen: SeenRequest | None = None
        if problem is None:
            try:
                parse = parse_anthropic_request if api == "anthropic" else parse_openai_request
                seen = parse(body, number)
            except BadRequest as exc:
                problem = str(exc)
        if self._record:
            headers = _redacted(request.headers)
            self.calls.append(RecordedCall(request.path, body, headers, api=api, request=seen))
        streamed = isinstance(body, dict) and body.get("stream") is True
        fault = self._pick_fault(streamed)
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
        if self._api_key is not None and self._api_key not in _keys_of(request, api):
            return _error(api, 401, "authentication_error", "invalid API key")
        if problem is not None or seen is None:
            return _error(api, 400, "invalid_request_error", problem or "the request could not be read")
        try:
            answer = self._next_answer(seen)
            render = anthropic_answer if api == "anthropic" else openai_answer
            whole = render(answer, seen)
        except ConfigError as exc:
            return _error(api, 500, "api_error", f"FakeLLMServer script: {exc}")
        if not streamed:
            return web.json_response(whole)
        if api == "anthropic":
            events = anthropic_events(whole, self.chunk_size)
        else:
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            events = openai_events(whole, self.chunk_size, include_usage)
        return await self._stream(request, api, events, fault)

    async def _stream(
        self, request: web.Request, api: Api, events: list[bytes], fault: Fault | None
    ) -> web.StreamResponse:
        """Write ``events`` one by one, ``chunk_delay_s`` apart; a stream fault cuts in after its count."""
        cut = fault.after_chunks if fault is not None and fault.kind in _STREAM_FAULTS else None
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        self.streams += 1
        self.streams_open += 1
        try:
            for number, event in enumerate(events):
                if number and self.chunk_delay_s > 0:
                    await asyncio.sleep(self.chunk_delay_s)
                if number == cut:
                    assert fault is not None
                    if fault.kind == "break_stream":
                        if request.transport is not None:
                            request.transport.abort()
                        await asyncio.sleep(3600)  # cancelled at once: the connection is gone
                    await response.write(
                        stream_error_event(api, fault.error_type)
                        if fault.kind == "stream_error"
                        else malformed_event()
                    )
                    break
                await response.write(event)
                self.chunks_sent += 1
            await response.write_eof()
        finally:
            self.streams_open -= 1
        return response

    def _next_answer(self, seen: SeenRequest) -> ScriptedAnswer:
        if self._script is not None:
            return self._script.next(seen)
        reply = self.reply
        user = seen.last_user_text
        text = reply(user) if callable(reply) else (reply if reply is not None else f"fake reply: {user}")
        return ScriptedAnswer(text=text)


def _redacted(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers with lower-cased names and key values replaced (a bearer token keeps its scheme word)."""
    result: dict[str, str] = {}
    for name, value in headers.items():
        name = name.lower()
        if name in _AUTH_HEADERS:
            scheme, _, token = value.partition(" ")
            value = f"{scheme} {REDACTED}" if token and name == "authorization" else REDACTED
        result[name] = value
    return result


def _keys_of(request: web.Request, api: Api) -> tuple[str, ...]:
    """The keys a request offers: a bearer token, and for Anthropic also ``x-api-key``."""
    auth = request.headers.get("Authorization", "")
    keys = [auth[7:]] if auth.startswith("Bearer ") else []
    if api == "anthropic" and "x-api-key" in request.headers:
        keys.append(request.headers["x-api-key"])
    return tuple(keys)


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
    if not isinstance(body.get("stream", False), bool):
        return "'stream' must be a boolean"
    return None


def _error(
    api: Api, status: int, kind: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(error_body(api, kind, message, status), status=status, headers=headers)
