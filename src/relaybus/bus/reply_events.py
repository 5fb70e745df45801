"""The task events arriving on a reply queue, passed to the callback listening for their task id.

Part of :class:`~relaybus.bus.rpc.ReplyRouter`: an event is decoded (an invalid one is dead-lettered with the
reason), its ``correlation_id`` checked against its task id, handed to the callback of that id, and acked.
Events are best effort: one for an id nobody listens to is acked and counted, and a callback that raises is
logged, never a reason to redeliver.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from relaybus.exceptions import BusError, InvalidMessage
from relaybus.log import get_logger
from relaybus.messages import TaskEvent

from .base import Delivery
from .codec import decode_task_event

__all__ = ["EventCallback", "EventRoutes"]

EventCallback = Callable[[TaskEvent], None]
"""Gets each event of one task, synchronously, in arrival order: keep it quick (put it in a queue)."""


class EventRoutes:
    """Task id -> the callback for its events, on the reply queue ``queue``."""

    def __init__(self, queue: str) -> None:
        self._routes: dict[UUID, EventCallback] = {}
        self._log = get_logger("relaybus.bus.rpc", reply_queue=queue)
        self.dropped = 0
        """Events that arrived for an id nobody listened to."""

    def listen(self, task_id: UUID, callback: EventCallback) -> None:
        self._routes[task_id] = callback

    def unlisten(self, task_id: UUID) -> None:
        self._routes.pop(task_id, None)

    async def route(self, delivery: Delivery) -> None:
        """Decode ``delivery`` as an event, pass it on, settle it."""
        try:
            event = decode_task_event(delivery.body, delivery.headers, content_type=delivery.content_type)
            if delivery.correlation_id is not None and delivery.correlation_id != str(event.task_id):
                raise InvalidMessage(
                    f"correlation_id {delivery.correlation_id[:64]!r} does not match the event's task_id"
                )
        except InvalidMessage as exc:
            self._log.warning("task_event_dead_lettered", message_id=delivery.message_id, reason=exc.reason)
            await delivery.dead_letter(exc.reason)
            return
        callback = self._routes.get(event.task_id)
        if callback is None:
            self.dropped += 1
        else:
            try:
                callback(event)
            except Exception:
                self._log.exception("on_event_failed", task_id=str(event.task_id))
        try:
            await delivery.ack()
        except BusError:  # best effort: a redelivered copy is dropped by the listener's seq check
            self._log.debug("task_event_ack_lost", task_id=str(event.task_id))
