"""``NameLock``: one live holder per name on a broker, so two named reply routers never share a queue.

A named :class:`~relaybus.bus.rpc.ReplyRouter` (a named orchestrator) takes the lock of its name before it
consumes ``relaybus.reply.<name>``: on RabbitMQ an *exclusive* classic queue ``relaybus.lock.<name>``
(exclusive to the connection that declared it, deleted when that connection closes, so a killed holder
frees the name by itself), which the broker refuses to a second connection; in the process, a table per
bus object (two holders on one connection, or on a ``MemoryBus``, where nothing is exclusive).
"""

from __future__ import annotations

import contextlib
import os
import weakref

from relaybus.exceptions import BusError, ConfigError

from .base import Bus

__all__ = ["LOCK_QUEUE_PREFIX", "NameLock"]

LOCK_QUEUE_PREFIX = "relaybus.lock."

# bus -> name -> who holds it in this process
_HELD: weakref.WeakKeyDictionary[Bus, dict[str, str]] = weakref.WeakKeyDictionary()


class NameLock:
    """The lock of ``name`` on ``bus``, for a holder described by ``holder`` (shown to a refused second)."""

    def __init__(self, bus: Bus, name: str, holder: str) -> None:
        self._bus = bus
        self._name = name
        self._holder = f"{holder} (pid {os.getpid()})"
        self._queue = LOCK_QUEUE_PREFIX + name
        self._held = False

    @property
    def queue(self) -> str:
        return self._queue

    async def acquire(self) -> None:
        """Take the lock; :class:`~relaybus.ConfigError` naming the holder (or the broker's refusal, when it
        is held from another connection) if someone else has it."""
        held = _HELD.setdefault(self._bus, {})
        other = held.get(self._name)
        if other is not None:
            raise ConfigError(self._refusal(f"by {other} in this process"))
        held[self._name] = self._holder
        try:
            await self._bus.declare_queue(self._queue, durable=False)
        except BusError as exc:
            del held[self._name]
            raise ConfigError(
                self._refusal(f"by another connection (the broker refused the exclusive lock queue: {exc})")
            ) from None
        self._held = True

    async def release(self) -> None:
        """Give the lock up (idempotent): delete the lock queue and forget the holder."""
        if not self._held:
            return
        self._held = False
        _HELD.get(self._bus, {}).pop(self._name, None)
        with contextlib.suppress(BusError):  # the connection is gone, and the exclusive queue with it
            await self._bus.delete_queue(self._queue)

    def _refusal(self, where: str) -> str:
        return (
            f"the name {self._name!r} is held {where}: two live orchestrators (or reply routers) with one "
            "name would take each other's results; stop the other one, or give this one another name"
        )
