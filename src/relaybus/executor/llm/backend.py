"""The ``llm`` mode: rate limit, call the provider, retry what can be retried, fall back if configured."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from relaybus.exceptions import ProviderResponseError
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus, Usage
from relaybus.secrets import Secret
from relaybus.telemetry import metrics
from relaybus.telemetry.hooks import traced_chat_attempt

from ..backend import RunContext
from ..ratelimit import RateLimiter
from ..retry import RetryPolicy
from .base import ChatRequest, Completion, LLMProvider
from .errors import CallFailure, answer_text, broken_stream, classify, unusable_answer
from .prompt import build_request
from .stream import DeltaCallback, StreamDelta, TextDelta, stream_chat

__all__ = ["ChatOutcome", "LlmBackend", "Route"]


@dataclass(frozen=True)
class Route:
    """A provider with its rate limiter (shared by every task that goes to this provider)."""

    provider: LLMProvider
    limiter: RateLimiter


@dataclass(frozen=True)
class ChatOutcome:
    """One model turn through :meth:`LlmBackend.chat`: the completion, or why every route failed.

    ``attempts`` counts every HTTP request made (failed ones and the fallback's included); ``provider`` is the
    name of the provider that answered (None when none did). ``partial_text`` is the text already streamed to
    the caller when a streamed turn broke after its first delta (failure ``StreamBroken``), else "".
    """

    completion: Completion | None
    failure: CallFailure | None
    attempts: int
    provider: str | None = None
    partial_text: str = ""

    @property
    def usage(self) -> Usage:
        """The tokens the provider reported, with ``requests`` = ``attempts``."""
        if self.completion is None:
            return Usage(requests=self.attempts)
        return self.completion.usage.model_copy(update={"requests": self.attempts})


class LlmBackend:
    """Runs a task as one chat request (see :mod:`relaybus.executor.llm.prompt` for what is sent).

    SUCCESS output is the completion text; ``usage`` has the tokens the provider reported and ``requests`` =
    every HTTP request made, failed ones included. Retries follow ``retry`` on 429, 5xx, timeouts and
    connection errors. When the primary provider's last attempt fails and a fallback is configured, the task
    is tried on the fallback with the same policy; after ``fallback_after_failures`` such tasks in a row the
    primary is skipped for ``primary_cooldown_s`` seconds.

    An answer that is not a usable one is a FAILURE, never retried and not sent to the fallback (see
    :func:`~relaybus.executor.llm.errors.unusable_answer`): ``OutputTruncated`` (cut at ``max_tokens``),
    ``Refused``, ``ContentFiltered``, ``UnexpectedToolCalls`` (tool calls, but no tools were offered). Such
    a result keeps what the model said in ``output`` (its text, or the refusal text); ``usage`` counts it.

    Streaming: with ``ctx.on_delta`` set (``TaskExecutor.execute(..., on_delta=...)``), the turn is streamed
    and each delta handed to it as it arrives (see :meth:`chat`); the result is the same as unstreamed, and a
    stream that breaks after its first delta is a FAILURE ``StreamBroken`` whose ``output`` is the text
    streamed so far.
    """

    def __init__(
        self,
        primary: Route,
        fallback: Route | None = None,
        *,
        retry: RetryPolicy | None = None,
        max_tokens: int = 1024,
        temperature: float | None = None,
        secrets: Sequence[Secret] = (),
        fallback_after_failures: int = 3,
        primary_cooldown_s: float = 30.0,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.retry = retry or RetryPolicy()
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._secrets = tuple(secrets)
        self._fallback_after = max(fallback_after_failures, 1)
        self._cooldown_s = primary_cooldown_s
        self._primary_failures = 0
        self._primary_skipped_until = 0.0

    def __repr__(self) -> str:
        fallback = self.fallback.provider.name if self.fallback else None
        return f"LlmBackend(primary={self.primary.provider.name!r}, fallback={fallback!r})"

    def _routes(self) -> list[Route]:
        if self.fallback is None:
            return [self.primary]
        if time.monotonic() < self._primary_skipped_until:
            return [self.fallback]
        return [self.primary, self.fallback]

    async def run(self, task: AgentTask, ctx: RunContext) -> ExecutionResult:
        request = build_request(
            task, ctx.system_prompt, max_tokens=self.max_tokens, temperature=self.temperature
        )
        outcome = await self.chat(request, ctx, on_delta=ctx.on_delta)
        completion, attempts = outcome.completion, outcome.attempts
        if completion is None:
            assert outcome.failure is not None
            failure = outcome.failure
        else:
            unusable = unusable_answer(completion, request, outcome.provider or "")
            if unusable is None:
                return ExecutionResult.success(
                    task.id, completion.text, attempts=attempts, usage=outcome.usage
                )
            failure = unusable
        return ExecutionResult.failed(
            task.id,
            ExecutionStatus.FAILURE,
            failure.type,
            failure.message,
            retryable=failure.retryable,
            attempts=attempts,
            usage=outcome.usage,
            output=answer_text(completion) if completion is not None else (outcome.partial_text or None),
        )

    async def chat(
        self, request: ChatRequest, ctx: RunContext, *, on_delta: DeltaCallback | None = None
    ) -> ChatOutcome:
        """One model turn: rate limit, retries, fallback. Never raises for a provider failure.

        The completion is returned as the provider gave it, whatever its finish reason or tool calls; a
        failure message joins each route's last error (``"...; then ..."``).

        With ``on_delta``, the turn is streamed (:func:`~relaybus.executor.llm.stream.stream_chat`: a
        provider without ``stream`` gives its whole answer as one delta) and ``on_delta`` gets every delta in
        order before ``chat`` returns. Failures before the first delta are retried and sent to the fallback
        as without streaming. Once a delta has reached ``on_delta`` nothing is retried or sent to the
        fallback (the caller would see a second answer after the first one's beginning): a failure then is
        ``StreamBroken``, with ``partial_text`` the text streamed so far; it is ``retryable`` when its cause
        is (a dropped connection, an overloaded server), so that the caller may run the task again. An
        exception raised by ``on_delta`` propagates.
        """
        attempts = 0
        failures: list[str] = []
        last: CallFailure | None = None
        relay = _Relay(on_delta) if on_delta is not None else None
        for route in self._routes():
            outcome = await self._try_route(route, request, ctx, relay)
            attempts += outcome.attempts
            self._note(route, outcome)
            if outcome.completion is not None:
                return ChatOutcome(outcome.completion, None, attempts, route.provider.name)
            assert outcome.failure is not None
            last = outcome.failure
            failures.append(last.message)
            if relay is not None and relay.started:
                break
        assert last is not None
        joined = CallFailure(last.type, "; then ".join(failures), last.retryable, last.retry_after)
        partial = relay.text if relay is not None and relay.started else ""
        return ChatOutcome(None, joined, attempts, partial_text=partial)

    def _note(self, route: Route, outcome: ChatOutcome) -> None:
        if route is not self.primary or self.fallback is None:
            return
        if outcome.completion is not None:
            self._primary_failures = 0
            return
        self._primary_failures += 1
        if self._primary_failures >= self._fallback_after:
            self._primary_skipped_until = time.monotonic() + self._cooldown_s
            self._primary_failures = 0

    async def _try_route(
        self, route: Route, request: ChatRequest, ctx: RunContext, relay: _Relay | None
    ) -> ChatOutcome:
        policy = self.retry
        # Counting the request's characters costs a few percent of a call's CPU: only for a token limit.
        estimate = request.estimated_tokens() if route.limiter.counts_tokens else 0
        provider = route.provider
        failure: CallFailure | None = None
        for attempt in range(1, policy.max_attempts + 1):
            if not route.limiter.open_now:  # else no wait: keep the deadline's timer as it is
                async with ctx.outside_timeout():
                    await route.limiter.acquire(estimate)
            answer = await _attempt(provider, request, relay)
            if isinstance(answer, Completion):
                route.limiter.settle(estimate, answer.usage.total_tokens)
                metrics.llm_succeeded(provider.name, answer.model, answer.usage)
                return ChatOutcome(answer, None, attempt, provider.name)
            if relay is not None and relay.started:  # the tokens were spent: the estimate stays charged
                failure = broken_stream(answer, provider.name, relay.deltas, len(relay.text), self._secrets)
                ctx.log.warning(
                    "llm_stream_broken",
                    provider=provider.name,
                    deltas=relay.deltas,
                    error_type=type(answer).__name__,
                )
                metrics.llm_failed(provider.name)
                return ChatOutcome(None, failure, attempt)
            route.limiter.settle(estimate, 0)  # a refused request cost nothing against the limit
            failure = classify(answer, provider.name, self._secrets)
            if failure.retry_after is not None:
                route.limiter.block_for(min(failure.retry_after, policy.max_retry_after_s))
            if not failure.retryable or attempt == policy.max_attempts:
                break
            if failure.retry_after is not None and failure.retry_after > policy.max_retry_after_s:
                failure = CallFailure(
                    failure.type,
                    f"{failure.message} (the server asked to retry after {failure.retry_after:.0f} s, "
                    f"more than RetryPolicy.max_retry_after_s={policy.max_retry_after_s:.0f})",
                    True,
                    failure.retry_after,
                )
                break
            delay = policy.delay(attempt, failure.retry_after)
            metrics.llm_retried(route.provider.name, failure.type)
            ctx.log.info(
                "llm_retry",
                provider=provider.name,
                attempt=attempt,
                error_type=failure.type,
                delay_s=round(delay, 3),
            )
            await asyncio.sleep(delay)
        assert failure is not None
        metrics.llm_failed(route.provider.name)
        ctx.log.warning(
            "llm_call_failed",
            provider=provider.name,
            attempts=attempt,
            error_type=failure.type,
            retryable=failure.retryable,
        )
        return ChatOutcome(None, failure, attempt)


class _Relay:
    """Hands a streamed turn's deltas to the caller's callback and remembers what it has handed on."""

    __slots__ = ("_texts", "deltas", "on_delta")

    def __init__(self, on_delta: DeltaCallback) -> None:
        self.on_delta = on_delta
        self.deltas = 0
        self._texts: list[str] = []

    @property
    def started(self) -> bool:
        return self.deltas > 0

    @property
    def text(self) -> str:
        return "".join(self._texts)

    def forward(self, delta: StreamDelta) -> None:
        if isinstance(delta, TextDelta):
            self._texts.append(delta.text)
        self.deltas += 1
        self.on_delta(delta)


@traced_chat_attempt
async def _attempt(
    provider: LLMProvider, request: ChatRequest, relay: _Relay | None
) -> Completion | Exception:
    """One request: its completion, or the exception the provider raised (returned, so that an exception of
    the relay's callback is not mistaken for the provider's: it propagates)."""
    if relay is None:
        try:
            return await provider.complete(request)
        except Exception as exc:  # CancelledError is not an Exception: it propagates
            return exc
    chunks = stream_chat(provider, request)
    try:
        while True:
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                return ProviderResponseError(f"{provider.name}'s stream ended without its completion")
            except Exception as exc:
                return exc
            if isinstance(chunk, Completion):
                return chunk
            relay.forward(chunk)
    finally:
        close = getattr(chunks, "aclose", None)  # an async generator: close its HTTP response now
        if close is not None:
            await close()
