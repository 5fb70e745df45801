"""``EventSender``: a running task's events to the caller that streams it, numbered, coalesced, best effort.

One sender per task whose caller asked for events (the ``relaybus-stream: 1`` header). What it guarantees:

- Events are numbered ``seq`` 1, 2, ... in the order the task made them and published in that order, by one
  background publisher per task: making an event never waits for the broker. Events are not confirmed,
  not persistent and not retried: a lost one shows as a gap in ``seq``, never as an error of the task.
- Model text (``delta``) is coalesced: the first piece goes out at once, later pieces at most every
  ``interval_s`` (20 ms) or when ``max_chars`` have gathered, so a fast model does not make one message per
  token. Any other event first sends the text gathered so far, so the order is kept.
- Sizes are capped: text longer than :data:`~relaybus.messages.MAX_EVENT_TEXT` is split (deltas) or cut
  (other kinds), ``data`` over ``max_data_bytes`` of JSON is replaced by a note saying so, and at most
  ``max_queued`` events wait for the publisher (more are dropped: a gap).
- :meth:`EventSender.finish` sends the text still gathered and waits for the events queued to be published
  for at most ``finish_timeout_s`` (in practice one publish), before the worker sends the result; the result
  is the authoritative message and is never held longer than that.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from uuid import UUID

from pydantic import JsonValue, TypeAdapter

from relaybus.bus.base import Bus
from relaybus.bus.codec import encode_task_event
from relaybus.exceptions import BusError
from relaybus.log import FilteringBoundLogger
from relaybus.messages import MAX_EVENT_TEXT, TaskEvent, TaskEventKind

__all__ = ["DEFAULT_COALESCE_S", "EMITTABLE_KINDS", "EventSender"]

DEFAULT_COALESCE_S = 0.02
EMITTABLE_KINDS: frozenset[str] = frozenset({"delta", "progress", "tool_call", "tool_result"})
"""The kinds a worker sends; ``result`` is made by the caller from the result message."""
_JSON: TypeAdapter[JsonValue] = TypeAdapter(JsonValue)


class EventSender:
    """Sends the events of task ``task_id`` to ``reply_to`` on ``bus``; see the module docstring."""

    def __init__(
        self,
        bus: Bus,
        *,
        task_id: UUID,
        reply_to: str,
        agent: str | None,
        log: FilteringBoundLogger,
        interval_s: float = DEFAULT_COALESCE_S,
        max_chars: int = 4000,
        max_data_bytes: int = 32 * 1024,
        max_queued: int = 1000,
        finish_timeout_s: float = 0.25,
    ) -> None:
        self._bus = bus
        self._task_id = task_id
        self._reply_to = reply_to
        self._agent = agent
        self._log = log
        self._interval = interval_s
        self._max_chars = min(max_chars, MAX_EVENT_TEXT)
        self._max_data = max_data_bytes
        self._max_queued = max_queued
        self._finish_timeout = finish_timeout_s
        self._seq = 0
        self._text: list[str] = []
        self._text_len = 0
        self._last_delta = float("-inf")  # loop time the last delta went out
        self._timer: asyncio.TimerHandle | None = None
        self._queue: collections.deque[TaskEvent] = collections.deque()
        self._ready = asyncio.Event()
        self._publisher: asyncio.Task[None] | None = None
        self._closed = False
        self.sent = 0
        """Events published so far."""
        self.dropped = 0
        """Events numbered but not published (queue full, publish failed, or left when the task ended)."""

    @property
    def seq(self) -> int:
        """The ``seq`` of the last event made so far (0 before the first)."""
        return self._seq

    def delta(self, text: str) -> None:
        """Add the next piece of model text; it goes out at once, or with the pieces of the next 20 ms."""
        if self._closed or not text:
            return
        self._text.append(text)
        self._text_len += len(text)
        if self._text_len >= self._max_chars:
            self._flush_text()
            return
        if self._timer is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._last_delta + self._interval - loop.time()
        if wait <= 0:
            self._flush_text()
        else:
            self._timer = loop.call_later(wait, self._flush_text)

    def emit(
        self,
        kind: TaskEventKind,
        text: str = "",
        data: JsonValue = None,
        *,
        sub_task_id: UUID | None = None,
        agent: str | None = None,
    ) -> None:
        """Send one event of ``kind`` (after the model text gathered so far); never blocks, never raises for
        the bus."""
        if self._closed:
            return
        if kind == "delta" and sub_task_id is None:
            self.delta(text)
            return
        self._flush_text()
        self._enqueue(kind, text[:MAX_EVENT_TEXT], self._capped(data), sub_task_id, agent or self._agent)

    def forward(self, event: TaskEvent, sub_task_id: UUID) -> None:
        """Pass on an event of the delegated task ``sub_task_id`` (or of one it delegated to), renumbered
        in this task's ``seq`` and tagged with the task that made it."""
        if event.kind != "result":
            origin = event.sub_task_id or sub_task_id
            self.emit(event.kind, event.text, event.data, sub_task_id=origin, agent=event.agent)

    async def finish(self) -> None:
        """Send the text still gathered, wait (at most ``finish_timeout_s``) for the queued events to be
        published, then stop; what is left is dropped. Idempotent."""
        if self._closed:
            return
        self._flush_text()
        self._closed = True
        publisher = self._publisher
        if publisher is not None and not publisher.done():
            self._ready.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(publisher), self._finish_timeout)
        self.abort()

    def abort(self) -> None:
        """Stop at once (the task was interrupted): events not yet published are dropped."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._publisher is not None and not self._publisher.done():
            self._publisher.cancel()
        self.dropped += len(self._queue)
        self._queue.clear()
        self._publisher = None

    # -- internals ------------------------------------------------------------------------------------------

    def _flush_text(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._text:
            return
        text = "".join(self._text)
        self._text.clear()
        self._text_len = 0
        self._last_delta = asyncio.get_running_loop().time()
        for start in range(0, len(text), MAX_EVENT_TEXT):
            self._enqueue("delta", text[start : start + MAX_EVENT_TEXT], None, None, self._agent)

    def _capped(self, data: JsonValue) -> JsonValue:
        if data is None:
            return None
        size = len(_JSON.dump_json(data))
        if size <= self._max_data:
            return data
        return {"relaybus": f"data of {size} bytes left out: over the event limit of {self._max_data}"}

    def _enqueue(
        self, kind: TaskEventKind, text: str, data: JsonValue, sub_task_id: UUID | None, agent: str | None
    ) -> None:
        self._seq += 1
        if len(self._queue) >= self._max_queued:
            self.dropped += 1
            return
        event = TaskEvent(
            task_id=self._task_id,
            seq=self._seq,
            kind=kind,
            text=text,
            data=data,
            sub_task_id=sub_task_id,
            agent=agent,
        )
        self._queue.append(event)
        self._ready.set()
        if self._publisher is None:
            self._publisher = asyncio.create_task(
                self._publish_all(), name=f"relaybus-events-{self._task_id}"
            )

    async def _publish_all(self) -> None:
        while True:
            while self._queue:
                event = self._queue.popleft()
                try:
                    await self._bus.publish(encode_task_event(event, reply_to=self._reply_to))
                    self.sent += 1
                except BusError as exc:  # best effort: the caller sees the gap
                    self.dropped += 1
                    self._log.debug("task_event_dropped", seq=event.seq, error=str(exc))
            if self._closed:
                return
            self._ready.clear()
            await self._ready.wait()
