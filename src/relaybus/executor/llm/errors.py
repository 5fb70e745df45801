"""Sort a failed provider call, or an answer that cannot be used, into what the task result says."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from relaybus.secrets import Secret, mask_secrets

from ..http import is_timeout
from ..retry import parse_retry_after
from .base import ChatRequest, Completion, ProviderResponseError
from .chat import FinishReason
from .stream import ProviderStreamError

__all__ = ["CallFailure", "answer_text", "broken_stream", "classify", "unusable_answer"]

_RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
_BODY_EXCERPT = 300


@dataclass(frozen=True)
class CallFailure:
    """One failed call; ``retry_after`` is what the server asked for, in seconds, if it said."""

    type: str
    message: str
    retryable: bool
    retry_after: float | None = None


def classify(exc: Exception, provider: str, secrets: Sequence[Secret] = ()) -> CallFailure:
    """What ``exc``, raised by ``provider``'s call, means for the task; messages have keys masked."""

    def masked(text: str) -> str:
        return mask_secrets(text, *secrets)

    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        status = response.status_code
        url = f"{response.request.url.host}{response.request.url.path}"
        try:
            body = response.text[:_BODY_EXCERPT]
        except (httpx.ResponseNotRead, UnicodeDecodeError):
            body = ""
        detail = f"{provider}: HTTP {status} from {url}: {body}".rstrip(": ")
        if status == 429:
            retry_after = parse_retry_after(response.headers)
            return CallFailure("RateLimited", masked(detail), True, retry_after)
        if status in _RETRYABLE_STATUS or status >= 500:
            return CallFailure(
                "ProviderServerError", masked(detail), True, parse_retry_after(response.headers)
            )
        if status in (401, 403):
            hint = (
                " (check the provider's API key: OPENAI_API_KEY / ANTHROPIC_API_KEY, or the config's api_key)"
            )
            return CallFailure("ProviderAuthError", masked(detail + hint), False)
        return CallFailure("ProviderRequestError", masked(detail), False)
    if isinstance(exc, httpx.TransportError) and is_timeout(exc):
        return CallFailure("ProviderTimeout", masked(f"{provider}: HTTP timeout: {exc!s}"), True)
    if isinstance(exc, httpx.TransportError):
        reason = str(exc) or type(exc).__name__
        return CallFailure(
            "ProviderConnectionError", masked(f"{provider}: connection failed: {reason}"), True
        )
    if isinstance(exc, ProviderStreamError):  # its message names the provider
        if exc.kind in ("rate_limit_error", "rate_limit_exceeded"):
            return CallFailure("RateLimited", masked(str(exc)), True)
        if exc.retryable:
            return CallFailure("ProviderServerError", masked(str(exc)), True)
        return CallFailure("ProviderRequestError", masked(str(exc)), False)
    if isinstance(exc, ProviderResponseError):
        return CallFailure("InvalidProviderResponse", masked(f"{provider}: {exc}"), False)
    return CallFailure(type(exc).__name__, masked(f"{provider}: {exc}"), False)


def broken_stream(
    exc: Exception, provider: str, deltas: int, chars: int, secrets: Sequence[Secret] = ()
) -> CallFailure:
    """``StreamBroken``: ``exc`` ended a stream after ``deltas`` deltas (``chars`` characters of text) had
    reached the caller. Retryable when its cause is (a dropped connection, an overloaded server): running the
    task again may succeed, though the caller has seen this attempt's beginning."""
    cause = classify(exc, provider, secrets)
    return CallFailure(
        "StreamBroken",
        f"{cause.message} (the stream broke after {deltas} deltas; the {chars} characters of text received "
        "are the result's output)",
        cause.retryable,
    )


def unusable_answer(completion: Completion, request: ChatRequest, provider: str) -> CallFailure | None:
    """Why ``completion`` (the answer to ``request``) is not a final answer to pass off as a success.

    None for a complete answer, and for tool calls when the request offered tools (the caller runs them).
    Otherwise a failure that no retry fixes: ``OutputTruncated`` (finish reason ``length``), ``Refused``,
    ``ContentFiltered``, or ``UnexpectedToolCalls`` (the model called tools though none were offered).
    """
    reason = completion.finish_reason
    if reason is FinishReason.LENGTH:
        return CallFailure(
            "OutputTruncated",
            f"{provider}: the answer was cut at the token budget (max_tokens={request.max_tokens}; "
            "ExecutorConfig.max_tokens); the partial text is the result's output",
            False,
        )
    if reason is FinishReason.REFUSAL:
        shown = (completion.refusal or "")[:_BODY_EXCERPT]
        return CallFailure("Refused", f"{provider}: the model refused: {shown or '(no reason given)'}", False)
    if reason is FinishReason.CONTENT_FILTER:
        return CallFailure(
            "ContentFiltered",
            f"{provider}: the provider's content filter stopped the answer; the text it kept is the output",
            False,
        )
    if completion.tool_calls and not request.tools:
        names = ", ".join(sorted({call.name for call in completion.tool_calls}))
        return CallFailure(
            "UnexpectedToolCalls",
            f"{provider}: the model called tools ({names}) but the request offered none",
            False,
        )
    return None


def answer_text(completion: Completion) -> str:
    """What the model said: the refusal text for a refusal that has one, else the answer's text."""
    if completion.finish_reason is FinishReason.REFUSAL and completion.refusal:
        return completion.refusal
    return completion.text
