"""Fixtures of the orchestrator tests, and ``eventually`` for waiting on a condition without a fixed sleep."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from relaybus.bus.memory import MemoryBus


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    async with MemoryBus(close_timeout=1) as memory_bus:
        yield memory_bus


async def eventually(check: Callable[[], bool], *, timeout: float = 30.0, what: str = "a condition") -> None:
    """Return as soon as ``check()`` is true (polled every 10 ms); fail the test after ``timeout`` seconds.

    For conditions ``MemoryBus.join`` cannot wait for: a handler that is still running, a worker process.
    """
    try:
        async with asyncio.timeout(timeout):
            while not check():
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
