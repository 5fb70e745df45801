"""The task events a caller receives, passed to the callback listening for their task id.

Part of :class:`~relaybus.bus.rpc.ReplyRouter`. Events arrive on the caller's *events queue*
(``relaybus.events.<32 hex digits>``: classic, not durable, exclusive to the caller's connection), declared
the first time the caller streams a task (:meth:`EventRoutes.open`) and named to the worker by the task's
``relaybus-events-to`` header; a worker that does not know that header sends them to the task's
``reply_to``, where the router passes them here too. Events are best effort by design (numbered, so a loss
shows as a gap; the result is the authoritative answer), so they are kept out of the durable, replicated
reply queue: no quorum write per event, one broker trip less to the first token, and nothing left on disk
for a caller that is gone.

An event is decoded (an invalid one is dead-lettered with the reason), its ``correlation_id`` checked
against its task id, handed to the callback of that id, and acked. One for an id nobody listens to is acked
and counted, and a callback that raises is logged, never a reason to redeliver. A message on the events
queue that is not an event (no ``relaybus-event`` header) is dead-lettered with the reason.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from uuid import UUID

from relaybus.exceptions import BusError, InvalidMessage
from relaybus.log import get_logger
from relaybus.messages import TaskEvent

from .base import Bus, Delivery, Subscription
from .codec import decode_task_event, is_task_event
from .replies import EVENTS_QUEUE_PREFIX

__all__ = ["EventCallback", "EventRoutes"]

EventCallback = Callable[[TaskEvent], None]
"""Gets each event of one task, synchronously, in arrival order: keep it quick (put it in a queue)."""


class EventRoutes:
    """Task id -> the callback for its events; the events queue of the router whose reply queue is
    ``queue``."""

    def __init__(self, queue: str) -> None:
        self._routes: dict[UUID, EventCallback] = {}
        self._log = get_logger("relaybus.bus.rpc", reply_queue=queue)
        self._events_queue = EVENTS_QUEUE_PREFIX + uuid.uuid4().hex
        self._subscription: Subscription | None = None
        self._opening = asyncio.Lock()
        self.dropped = 0
        """Events that arrived for an id nobody listened to."""

    @property
    def queue(self) -> str | None:
        """The events queue's name once :meth:`open` has declared it, else None."""
        return self._events_queue if self._subscription is not None else None

    async def open(self, bus: Bus, *, prefetch: int) -> str:
        """Declare the events queue on ``bus`` and consume it, once; return its name. Raises
        :class:`~relaybus.BusError` when the broker refuses (the caller may stream through its reply queue
        instead)."""
        if self._subscription is not None:  # every streamed task asks: no lock once it is open
            return self._events_queue
        async with self._opening:
            if self._subscription is None:
                await bus.declare_queue(self._events_queue, durable=False)
                self._subscription = await bus.consume(
                    self._events_queue, self._on_delivery, prefetch=prefetch
                )
                self._log.debug("events_queue_opened", events_queue=self._events_queue)
        return self._events_queue

    async def close(self, bus: Bus) -> None:
        """Stop consuming and delete the events queue (idempotent; it goes with the connection anyway)."""
        subscription, self._subscription = self._subscription, None
        if subscription is None:
            return
        try:
            await subscription.cancel()
            await bus.delete_queue(self._events_queue)
        except BusError as exc:  # the connection may be gone already; the exclusive queue goes with it
            self._log.debug("events_queue_delete_failed", error=str(exc))

    def listen(self, task_id: UUID, callback: EventCallback) -> None:
        self._routes[task_id] = callback

    def unlisten(self, task_id: UUID) -> None:
        self._routes.pop(task_id, None)

    async def _on_delivery(self, delivery: Delivery) -> None:
        if not is_task_event(delivery.headers):
            reason = (
                "an events queue takes only task events (header relaybus-event); results go to the task's "
                "reply_to"
            )
            self._log.warning("events_queue_dead_lettered", message_id=delivery.message_id, reason=reason)
            await delivery.dead_letter(reason)
            return
        await self.route(delivery)

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
