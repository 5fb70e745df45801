"""``Periodic``: one coroutine function run every ``interval_s`` seconds in a task of its own, until closed.

A :class:`~relaybus.exceptions.RelaybusError` it raises (the broker or the store is away) is logged as a
warning and the next round goes on; anything else ends the loop, as a bug should.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from relaybus._cancel import cancel_and_wait
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
        """Stop the loop and wait until it has stopped (a cancellation lost in ``work`` is sent again); a bug
        that had ended the loop is raised here."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
            if not task.cancelled():
                task.result()

    async def _loop(self) -> None:
        me = asyncio.current_task()
        while self._task is me:  # a round that lost its cancellation (see cancel_and_wait) is the last
            try:
                await self._work()
            except RelaybusError as exc:
                self._log.warning("console_refresh_failed", what=self._name, error=str(exc)[:300])
            await asyncio.sleep(self._interval_s)
