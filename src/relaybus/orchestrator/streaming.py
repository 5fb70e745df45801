"""The caller's side of streaming: a task's events in ``seq`` order, ended by the ``result`` event.

:class:`EventRelay` stands between the reply router and the caller's callback for one task: it passes on
events in increasing ``seq`` (a copy or an older event is dropped; a missing number stays missing, visible as
a gap) and, once the result is in, makes the ``result`` event (``seq`` one past the last event seen) that
carries it. :func:`stream_events` runs one task and yields its events as an async iterator, through a
bounded buffer: a caller that reads slower than the events come loses the oldest unread ones (a gap), never
the result. Leaving the ``async for`` early stops waiting for the task.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING
from uuid import UUID

from relaybus.bus.base import STREAM_HEADER, HeaderValue
from relaybus.messages import AgentTask, ExecutionResult, TaskEvent

if TYPE_CHECKING:
    from relaybus.bus.rpc import ReplyRouter

__all__ = [
    "DEFAULT_EVENT_BUFFER",
    "EventHandler",
    "EventRelay",
    "result_event",
    "stream_events",
    "stream_request",
]

DEFAULT_EVENT_BUFFER = 10_000
EventHandler = Callable[[TaskEvent], Awaitable[None] | None]
"""A caller's callback for a task's events; ``execute_task`` awaits it when it returns an awaitable."""


def result_event(task_id: UUID, seq: int, result: ExecutionResult) -> TaskEvent:
    """The last event of a stream: ``kind="result"``, carrying ``result``."""
    return TaskEvent(task_id=task_id, seq=seq, kind="result", agent=result.agent, result=result)


class EventRelay:
    """Passes the events of ``task_id`` to ``callback`` in increasing ``seq``; :meth:`finish` adds the result
    event. ``callback`` is called synchronously from the reply queue's consumer: keep it quick."""

    def __init__(self, task_id: UUID, callback: Callable[[TaskEvent], None]) -> None:
        self.task_id = task_id
        self._callback = callback
        self.last_seq = 0
        self.received = 0
        self._ended = False

    def __call__(self, event: TaskEvent) -> None:
        if self._ended or event.seq <= self.last_seq:
            return
        self.last_seq = event.seq
        self.received += 1
        self._callback(event)

    @property
    def gaps(self) -> int:
        """How many numbers are missing among the events seen so far (events lost on the way)."""
        return self.last_seq - self.received

    def finish(self, result: ExecutionResult) -> TaskEvent:
        """Hand the ``result`` event to the callback (once; later events are dropped) and return it."""
        event = result_event(self.task_id, self.last_seq + 1, result)
        if not self._ended:
            self._ended = True
            self._callback(event)
        return event


async def stream_events(
    task_id: UUID,
    execute: Callable[[EventRelay], Awaitable[ExecutionResult]],
    *,
    buffer: int = DEFAULT_EVENT_BUFFER,
) -> AsyncIterator[TaskEvent]:
    """Run ``execute`` (which publishes the task with ``relay`` listening and returns its result) and yield
    the task's events, the ``result`` event last. Closing the iterator early cancels ``execute``."""
    pending: collections.deque[TaskEvent] = collections.deque(maxlen=buffer)
    arrived = asyncio.Event()

    def keep(event: TaskEvent) -> None:
        pending.append(event)
        arrived.set()

    relay = EventRelay(task_id, keep)
    runner = asyncio.ensure_future(execute(relay))
    runner.add_done_callback(lambda _: arrived.set())
    try:
        while True:
            while pending:
                event = pending.popleft()
                yield event
                if event.kind == "result":
                    return
            if runner.done():
                relay.finish(runner.result())
                continue
            arrived.clear()
            await arrived.wait()
    finally:
        if not runner.done():
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)


def stream_request(
    router: ReplyRouter,
    task: AgentTask,
    *,
    timeout: float | None = None,
    headers: Mapping[str, HeaderValue] | None = None,
) -> AsyncIterator[TaskEvent]:
    """:func:`stream_events` of ``task`` sent by ``router.request`` with ``relaybus-stream: 1`` added to
    ``headers`` (the harness's and ``relaybus submit --stream``'s way to stream without an orchestrator)."""

    def execute(relay: EventRelay) -> Awaitable[ExecutionResult]:
        sent = {**(headers or {}), STREAM_HEADER: "1"}
        return router.request(task, timeout=timeout, headers=sent, on_event=relay)

    return stream_events(task.id, execute)


async def call_handler(handler: EventHandler, event: TaskEvent) -> None:
    """Call a caller's ``on_event``, awaiting what it returns if that is awaitable."""
    outcome = handler(event)
    if inspect.isawaitable(outcome):
        await outcome
