"""Fixtures of the console tests without a broker: a console on a MemoryBus and a SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import aiohttp
import pytest

from relaybus.bus.memory import MemoryBus
from relaybus.console import Console, ConsoleConfig
from relaybus.secrets import Secret
from relaybus.state import StateStore, store_from_url

from .support import TOKEN, Client


@dataclass
class Stack:
    console: Console
    store: StateStore
    client: Client
    cancelled: list[tuple[UUID, str]] = field(default_factory=list)


async def _stack(tmp_path: Path, **config: object) -> AsyncIterator[Stack]:
    cancelled: list[tuple[UUID, str]] = []

    async def cancel(task_id: UUID, reason: str) -> None:
        cancelled.append((task_id, reason))

    async with MemoryBus() as bus, store_from_url(f"sqlite:///{tmp_path / 'state.db'}") as store:
        settings = ConsoleConfig(port=0, **config)  # type: ignore[arg-type]
        console = Console(bus, settings, store=store, cancel=cancel)
        async with console, aiohttp.ClientSession() as session:
            yield Stack(console, store, Client(session, console.url), cancelled)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """A console with an operator token, a store, and a fake cancel that records what it was asked."""
    async for made in _stack(tmp_path, operator_token=Secret(TOKEN), max_body_bytes=64 * 1024):
        yield made


@pytest.fixture
async def read_only_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async for made in _stack(tmp_path):
        yield made
