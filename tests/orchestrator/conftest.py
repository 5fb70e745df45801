"""Fixtures of the orchestrator tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from relaybus.bus.memory import MemoryBus


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    async with MemoryBus(close_timeout=1) as memory_bus:
        yield memory_bus
