"""``ConsoleContext``: what every handler of the console reads from (one per console, no global state)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from relaybus.bus.base import Bus
from relaybus.gateway.directory import AgentDirectory
from relaybus.state import StateStore

from .config import ConsoleConfig
from .queues import QueueWatch
from .render import Pages
from .security import Guard
from .work import WorkWindow

__all__ = ["ConsoleContext"]


@dataclass
class ConsoleContext:
    config: ConsoleConfig
    bus: Bus
    store: StateStore | None
    directory: AgentDirectory
    queues: QueueWatch
    window: WorkWindow
    guard: Guard
    pages: Pages = field(default_factory=Pages)
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    stream_headers: dict[str, str] = field(default_factory=dict)
    """The security headers, for streams (prepared before the middleware sees their response)."""
