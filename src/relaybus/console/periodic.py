"""``Periodic``: one coroutine function run every ``interval_s`` seconds in a task of its own, until closed.

A :class:`~relaybus.exceptions.RelaybusError` it raises (the broker or the store is away) is logged as a
warning and the next round goes on; anything else ends the loop, as a bug should.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from relaybus.exceptions import RelaybusError
from relaybus.log import get_logger

__all__ = ["Periodic"]


class Periodic:
    def __init__(self, name: str, work: Callable[[], Awaitable[None]], interval_s: float) -> None:
        self._name = name
        self._work = work
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._log = get_logger("relaybus.console")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"relaybus-console-{self._name}")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            try:
                await self._work()
            except RelaybusError as exc:
                self._log.warning("console_refresh_failed", what=self._name, error=str(exc)[:300])
            await asyncio.sleep(self._interval_s)
