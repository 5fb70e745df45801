"""``eventually()``: wait for a condition by polling it, instead of sleeping a fixed time and hoping.

A fixed sleep of 50 ms is either too long (a slow suite) or too short (a flaky one under load).
``eventually`` returns as soon as the condition holds and waits up to a generous ``timeout`` before it fails
with a message that says what was awaited and what it last saw. On ``MemoryBus``, prefer ``await bus.join()``
when the wait is "until every delivery is handled"; use ``eventually`` for a specific condition (and on
``AmqpBus``, where there is no ``join``).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["DEFAULT_TIMEOUT_S", "eventually", "let_the_loop_run"]

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 20.0
"""Generous on purpose: a condition that holds returns at once, so only a real failure waits this long."""

_FIRST_INTERVAL_S = 0.001
_MAX_INTERVAL_S = 0.05


async def eventually(
    predicate: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    what: str | None = None,
    max_interval: float = _MAX_INTERVAL_S,
) -> T:
    """Poll ``predicate`` until it returns a truthy value, and return that value.

    ``predicate`` may be sync or async. It may also ``assert``: an ``AssertionError`` counts as "not yet", and
    the last one is re-raised (with its message) if the time runs out. Between polls the event loop runs other
    tasks: the first polls come quickly (in-memory work is usually done within a few loop turns), then the
    interval grows to at most ``max_interval`` (50 ms) so that a long wait costs little CPU (raise it for a
    predicate that is costly, e.g. one that asks a broker). Fails with ``AssertionError`` naming
    ``what`` (default: the predicate's source) and its last value after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    interval = _FIRST_INTERVAL_S
    polls = 0
    while True:
        polls += 1
        failure: AssertionError | None = None
        value: object = None
        try:
            outcome = predicate()
            value = await outcome if inspect.isawaitable(outcome) else outcome
        except AssertionError as exc:
            failure = exc
        else:
            if value:
                return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            described = what or _describe(predicate)
            if failure is not None:
                raise AssertionError(
                    f"not true within {timeout:g}s ({polls} polls): {described}: {failure}"
                ) from failure
            raise AssertionError(
                f"not true within {timeout:g}s ({polls} polls): {described} (last value: {value!r})"
            )
        await asyncio.sleep(interval)
        interval = min(interval * 2, max_interval)


async def let_the_loop_run(turns: int = 100) -> None:
    """Let every other ready task run ``turns`` times: for *negative* checks on in-memory objects.

    "Nothing more arrives" cannot be polled until true. On ``MemoryBus`` a publish, ack or nack delivers by
    starting a handler task, so whatever would arrive has arrived after a few turns of the loop, however
    loaded the machine: counting turns is exact where a wall-clock sleep is a guess. (Use ``bus.join()``
    instead when no delivery is deliberately left unsettled.)
    """
    for _ in range(turns):
        await asyncio.sleep(0)


def _describe(predicate: Callable[..., object]) -> str:
    try:
        return inspect.getsource(predicate).strip()
    except (OSError, TypeError):
        return getattr(predicate, "__qualname__", repr(predicate))
