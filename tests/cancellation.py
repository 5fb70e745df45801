"""Helpers for tests of code that must stop though a cancellation is lost on its way (relaybus._cancel)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

__all__ = ["finishes", "lose_the_cancellation"]


async def lose_the_cancellation(error: Exception) -> None:
    """Wait as a slow library call would, and take the first cancellation for ``error``, as aiormq does with a
    closing channel's (the task is no longer cancelling: ``uncancel``)."""
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        assert task is not None
        task.uncancel()
        raise error from None


async def finishes(awaitable: Awaitable[object], *, within_s: float = 10.0) -> bool:
    """Whether ``awaitable`` (run as a task) finishes within ``within_s`` seconds; stopped either way."""
    task = asyncio.ensure_future(awaitable)
    await asyncio.wait({task}, timeout=within_s)
    done = task.done()
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    return done
