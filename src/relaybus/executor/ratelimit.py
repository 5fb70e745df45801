"""Client-side rate limits per provider: requests and tokens per minute, as token buckets.

One :class:`RateLimiter` per provider is shared by every task of an executor, so a burst of tasks waits its
turn instead of failing with 429s. Waiting is first come, first served.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from relaybus.exceptions import ConfigError

__all__ = ["RateLimiter", "TokenBucket"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class TokenBucket:
    """``capacity`` tokens that refill at ``rate_per_s``; the level may go below zero after :meth:`adjust`."""

    def __init__(self, rate_per_s: float, capacity: float, *, clock: Clock = time.monotonic) -> None:
        if rate_per_s <= 0 or capacity <= 0:
            raise ConfigError("a token bucket needs a positive rate and a positive capacity")
        self.rate_per_s = rate_per_s
        self.capacity = capacity
        self._clock = clock
        self._level = capacity
        self._updated = clock()

    @property
    def level(self) -> float:
        self._refill()
        return self._level

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._updated) * self.rate_per_s)
        self._updated = now

    def wait_time(self, amount: float) -> float:
        """Seconds until ``amount`` (clamped to the capacity, so it is always reachable) is available."""
        self._refill()
        missing = min(amount, self.capacity) - self._level
        return max(missing / self.rate_per_s, 0.0)

    def take(self, amount: float) -> None:
        self._refill()
        self._level -= min(amount, self.capacity)

    def adjust(self, delta: float) -> None:
        """Take ``delta`` more tokens (or give back ``-delta``) once the real cost of a request is known."""
        self._refill()
        self._level = min(self.capacity, self._level - delta)


class RateLimiter:
    """Requests per minute and tokens per minute for one provider; ``None`` means no limit.

    ``burst`` is the fraction of a minute's allowance that may go out at once (1.0: a full minute's worth,
    the way providers count). :meth:`block_for` holds everyone back, e.g. after a 429 with ``Retry-After``.
    A limit or ``burst`` that is not positive raises :class:`ConfigError`.
    """

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        *,
        burst: float = 1.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if burst <= 0:
            raise ConfigError("RateLimiter burst must be positive")
        for label, value in (
            ("requests_per_minute", requests_per_minute),
            ("tokens_per_minute", tokens_per_minute),
        ):
            if value is not None and value <= 0:
                raise ConfigError(f"{label} must be positive, or None for no limit; got {value}")
        self._clock = clock
        self._sleep = sleep
        self._requests = (
            TokenBucket(requests_per_minute / 60.0, max(requests_per_minute * burst, 1.0), clock=clock)
            if requests_per_minute
            else None
        )
        self._tokens = (
            TokenBucket(tokens_per_minute / 60.0, max(tokens_per_minute * burst, 1.0), clock=clock)
            if tokens_per_minute
            else None
        )
        self._blocked_until = 0.0
        self._lock = asyncio.Lock()

    @property
    def limited(self) -> bool:
        return self._requests is not None or self._tokens is not None

    @property
    def open_now(self) -> bool:
        """Whether ``acquire`` would return at once: no limit set, and no server asked to wait."""
        return not self.limited and self._blocked_until <= self._clock()

    @property
    def counts_tokens(self) -> bool:
        """Whether a tokens-per-minute limit is set (else the ``tokens`` given to ``acquire`` are unused)."""
        return self._tokens is not None

    def __repr__(self) -> str:
        rpm = self._requests.rate_per_s * 60 if self._requests else None
        tpm = self._tokens.rate_per_s * 60 if self._tokens else None
        return f"RateLimiter(requests_per_minute={rpm}, tokens_per_minute={tpm})"

    def _wait_time(self, tokens: float) -> float:
        wait = self._blocked_until - self._clock()
        if self._requests is not None:
            wait = max(wait, self._requests.wait_time(1))
        if self._tokens is not None and tokens > 0:
            wait = max(wait, self._tokens.wait_time(tokens))
        return wait

    async def acquire(self, tokens: float = 0) -> float:
        """Wait until one request of about ``tokens`` tokens may go out; returns the seconds waited."""
        if self.open_now:
            return 0.0
        start = self._clock()
        async with self._lock:  # FIFO: a big request is not starved by later small ones
            while (wait := self._wait_time(tokens)) > 0:
                await self._sleep(wait)
            if self._requests is not None:
                self._requests.take(1)
            if self._tokens is not None and tokens > 0:
                self._tokens.take(tokens)
        return self._clock() - start

    def settle(self, estimated_tokens: float, actual_tokens: float) -> None:
        """Correct the token bucket once a response reports what a request really cost."""
        if self._tokens is not None:
            self._tokens.adjust(actual_tokens - min(estimated_tokens, self._tokens.capacity))

    def block_for(self, seconds: float) -> None:
        """Let no request out for ``seconds`` (the provider said so)."""
        self._blocked_until = max(self._blocked_until, self._clock() + max(seconds, 0.0))
