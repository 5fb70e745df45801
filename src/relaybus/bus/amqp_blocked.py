"""``connection.blocked``: RabbitMQ stops reading from publishing connections under a memory or disk alarm.

While blocked, a publish waits (the broker takes nothing); relaybus bounds that wait by the task's deadline
(the orchestrator and :class:`~relaybus.bus.rpc.ReplyRouter` count the publish in the task's time), and this
module makes the state visible: :class:`BlockedWatch` follows the ``connection.blocked`` /
``connection.unblocked`` notifications of one ``AmqpBus`` connection, logs one warning
``amqp_connection_blocked`` (with RabbitMQ's reason, e.g. ``low on memory``) per blocked spell and one
``amqp_connection_unblocked`` at its end, and :attr:`BlockedWatch.reason` says whether it is blocked now
(``AmqpBus.blocked``, shown by the worker's ``/healthz``).

aio-pika has no public hook for these notifications; aiormq (its driver) handles them in two methods of its
connection object, which this wraps on the object (not the class). Should a future aiormq rename them, the
watch logs ``amqp_blocked_watch_unavailable`` at debug level and reports nothing, and the deadlines hold
anyway.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from relaybus.log import FilteringBoundLogger

__all__ = ["BlockedWatch"]

_HOOKS = ("_Connection__handle_connection_blocked", "_Connection__handle_connection_unblocked")


class BlockedWatch:
    """Whether RabbitMQ blocks one connection's publishing, and why (see the module docstring)."""

    def __init__(self, log: FilteringBoundLogger) -> None:
        self._log = log
        self.reason: str | None = None
        """RabbitMQ's reason while the connection is blocked (``low on memory``), None while it is not."""
        self.spells = 0
        """How many times the connection was blocked so far."""

    def attach(self, connection: Any) -> None:
        """Follow the notifications of ``connection`` (an aio-pika connection; call again after each
        reconnect, which brings a new underlying connection, not blocked)."""
        self.reason = None
        underlay = getattr(getattr(connection, "transport", None), "connection", None)
        originals: list[Any] = [getattr(underlay, name, None) for name in _HOOKS]
        if underlay is None or not all(callable(original) for original in originals):
            self._log.debug("amqp_blocked_watch_unavailable")
            return
        for name, original, note in zip(_HOOKS, originals, (self._blocked, self._unblocked), strict=True):
            setattr(underlay, name, _wrap(original, note))

    def _blocked(self, frame: Any) -> None:
        reason = getattr(frame, "reason", None)
        text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason or "unknown")
        if self.reason is None:
            self.spells += 1
            self._log.warning(
                "amqp_connection_blocked",
                reason=text,
                hint="RabbitMQ takes no messages until its memory or disk alarm clears; publishes wait, "
                "bounded by each task's deadline",
            )
        self.reason = text

    def _unblocked(self, _frame: Any) -> None:
        if self.reason is not None:
            self._log.info("amqp_connection_unblocked", was=self.reason)
        self.reason = None


def _wrap(original: Callable[[Any], Awaitable[None]], note: Callable[[Any], None]) -> Callable[[Any], Any]:
    async def hooked(frame: Any) -> None:
        note(frame)
        await original(frame)

    return hooked
