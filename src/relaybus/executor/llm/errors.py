"""Sort a failed provider call into what the task result says: a type, a message, retry or not."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from relaybus.secrets import Secret, mask_secrets

from ..http import is_timeout
from ..retry import parse_retry_after
from .base import ProviderResponseError

__all__ = ["CallFailure", "classify"]

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
    if isinstance(exc, ProviderResponseError):
        return CallFailure("InvalidProviderResponse", masked(f"{provider}: {exc}"), False)
    return CallFailure(type(exc).__name__, masked(f"{provider}: {exc}"), False)
