"""Control: a worker's private control queue (cancel requests, pings) and the heartbeats it publishes.

The queue ``relaybus.worker.<random>`` is bound to ``event.relaybus.cancel`` and
``event.relaybus.worker.ping`` and goes with the worker. A cancel request is remembered (the last
``remember`` of them), so a task cancelled before it reached this worker is answered CANCELLED without
running; but only a copy created (``created_at``) before the request came: the same task id published again
later (a plan resumed after Ctrl-C, an agent loop resumed sending its delegated call again) is new work that
runs. (The comparison is of two hosts' clocks: a sender's clock ahead of this worker's by more than the time
between the cancel and the new copy would let a cancelled copy run; NTP keeps clocks well within that.) A
ping makes the worker beat at once. Heartbeats go out at start, every ``interval_s`` seconds, on
each ping, and a last one (``stopped``) at exit; see :mod:`relaybus.agents.heartbeat`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from uuid import UUID

from relaybus._bounded import BoundedMap
from relaybus._cancel import cancel_and_wait
from relaybus.bus.base import CANCEL_ROUTING_KEY, Bus, Delivery
from relaybus.bus.codec import CONTROL_MAX_BODY_BYTES, PING_ROUTING_KEY, decode_delivery, encode_heartbeat
from relaybus.log import FilteringBoundLogger
from relaybus.messages import AgentTask, CancelRequest, WorkerHeartbeat
from relaybus.secrets import mask_secrets

__all__ = ["WorkerControl"]

_SHUTDOWN_STEP_S = 5.0  # bounds the courtesy steps of a stop (stopped event, queue clean-up)


class WorkerControl:
    """The control side of one worker: ``describe()`` is its current heartbeat, ``on_cancel(task_id,
    reason)`` is called for each cancel request received."""

    def __init__(
        self,
        bus: Bus,
        *,
        describe: Callable[[], WorkerHeartbeat],
        on_cancel: Callable[[UUID, str], None],
        interval_s: float,
        remember: int,
        log: FilteringBoundLogger,
    ) -> None:
        self._bus = bus
        self._describe = describe
        self._on_cancel = on_cancel
        self._interval_s = interval_s
        self._log = log
        self.queue = f"relaybus.worker.{uuid.uuid4().hex}"
        # The reason of each cancel request received (the last ``remember``) and when, by task id.
        self._cancelled: BoundedMap[UUID, tuple[str, float]] = BoundedMap(max(remember, 1))
        self._beat_now = asyncio.Event()
        self._heartbeats: asyncio.Task[None] | None = None

    def cancel_reason(self, task: AgentTask) -> str | None:
        """The reason of the cancel request for ``task`` received after this copy was created, or None."""
        cancel = self._cancelled.get(task.id)
        if cancel is None:
            return None
        reason, received_at = cancel
        return reason if task.created_at.timestamp() <= received_at else None

    async def open(self, stack: AsyncExitStack) -> None:
        """Declare and consume the control queue; ``stack`` stops consuming and deletes it."""
        await self._bus.declare_queue(
            self.queue, bindings=(CANCEL_ROUTING_KEY, PING_ROUTING_KEY), durable=False
        )
        stack.push_async_callback(self._delete_queue)
        consumer = await self._bus.consume(self.queue, self._on_message, prefetch=64)
        stack.push_async_callback(consumer.cancel)

    def start_heartbeats(self, stack: AsyncExitStack) -> None:
        """Beat now and every ``interval_s`` seconds until ``stack`` closes."""
        self._heartbeats = asyncio.create_task(self._heartbeat_loop(), name="relaybus-worker-heartbeat")
        stack.push_async_callback(self._stop_heartbeats)

    async def publish_stopped(self) -> None:
        """Publish the heartbeat one last time (the worker says it stopped), waiting a few seconds at most."""
        try:
            async with asyncio.timeout(_SHUTDOWN_STEP_S):
                await self._publish_heartbeat()
        except TimeoutError:
            self._log.warning("stopped_event_not_sent", timeout_s=_SHUTDOWN_STEP_S)

    async def _on_message(self, delivery: Delivery) -> None:
        if delivery.routing_key == PING_ROUTING_KEY:
            self._beat_now.set()
            await delivery.ack()
            return
        request = await decode_delivery(delivery, CancelRequest, max_bytes=CONTROL_MAX_BODY_BYTES)
        if request is None:
            return
        self._cancelled.put(request.task_id, (request.reason, time.time()))
        self._on_cancel(request.task_id, request.reason)
        await delivery.ack()

    async def _heartbeat_loop(self) -> None:
        me = asyncio.current_task()
        while self._heartbeats is me:  # a beat whose cancellation was lost (see cancel_and_wait) is the last
            await self._publish_heartbeat()
            self._beat_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat_now.wait(), self._interval_s)

    async def _publish_heartbeat(self) -> None:
        try:
            await self._bus.publish(encode_heartbeat(self._describe()))
        except Exception as exc:  # the broker may be away; the next beat tries again
            self._log.warning("heartbeat_failed", error=mask_secrets(repr(exc))[:300])

    async def _stop_heartbeats(self) -> None:
        task, self._heartbeats = self._heartbeats, None
        if task is not None:
            await cancel_and_wait(task)

    async def _delete_queue(self) -> None:
        # A private queue: it goes with the connection anyway, so a broker that is away must not hold us up.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_SHUTDOWN_STEP_S):
                await self._bus.delete_queue(self.queue)
