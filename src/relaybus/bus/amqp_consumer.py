"""How ``AmqpBus`` consumes a queue: ``AmqpSubscription``, a consumer that keeps itself consuming.

It consumes on aiormq's channel under aio-pika's robust one: aio-pika's ``IncomingMessage`` and the Task it
starts per delivery cost about a quarter of a delivery's CPU (``bench/PROFILE.md``, ``python -m
bench.consume_paths``). The price is that aio-pika's robust queue does not restore such a consumer, so the
subscription restores itself (see :class:`AmqpSubscription`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import TYPE_CHECKING, cast

import aiormq
from aio_pika.abc import AbstractRobustChannel, AbstractRobustQueue
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from . import amqp_connection
from .amqp_delivery import AmqpDelivery, AmqpMessage
from .amqp_settle import SettleBatch
from .base import EXCHANGE, Handler
from .core import start_handler

if TYPE_CHECKING:
    from .amqp import AmqpBus

__all__ = ["AmqpSubscription"]

_RECONSUME_FIRST_S = 0.1  # the first pause before consuming again after a failed attempt (doubles, capped)
_RECONSUME_MAX_S = 5.0


class AmqpSubscription:
    """A consumer on its own channel. ``cancel`` stops it, waits for running handlers, closes the channel.

    It consumes on aiormq's channel under aio-pika's robust one (see :class:`AmqpMessage`), so aio-pika's
    robust queue does not restore it; it keeps itself consuming instead, under one consumer tag:

    - after the robust channel reopens (a reconnect, a closed channel), from the channel's reopen callbacks,
      once aio-pika has declared the queue again;
    - after the broker cancels it (``Basic.Cancel``, e.g. someone deleted the queue), by declaring the queue
      again as this bus declared it, with its bindings (one declared elsewhere: once it exists again), and
      consuming on the channel it already has: the rest of the connection is not disturbed;
    - a failed attempt is retried after 0.1 s, doubling to 5 s, until it succeeds or ``cancel`` is called.
    """

    def __init__(
        self, bus: AmqpBus, queue_name: str, handler: Handler, channel: AbstractRobustChannel
    ) -> None:
        self._bus = bus
        self.queue = queue_name
        self._handler = handler
        self._channel = channel
        self._queue: AbstractRobustQueue | None = None
        self._tag = f"relaybus.{uuid.uuid4().hex}"
        self._running: set[asyncio.Task[None]] = set()
        self._cancelled = False
        self._resuming: asyncio.Task[None] | None = None
        self._settles: SettleBatch | None = None  # the current channel's; a new channel gets its own

    async def _start(self, queue: AbstractRobustQueue) -> None:
        self._queue = queue
        await self._consume_on(await self._underlay())
        self._channel.reopen_callbacks.add(self._on_reopen)

    async def _underlay(self) -> aiormq.Channel:
        # What aio-pika's robust channel holds underneath (it casts the same way).
        return cast(aiormq.Channel, await self._channel.get_underlay_channel())

    async def _consume_on(self, underlay: aiormq.Channel) -> None:
        underlay.on_consumer_cancel_callbacks.add(self._on_broker_cancel)
        if self._tag in underlay.consumers:  # consuming already (or being started by another attempt)
            return
        try:
            await underlay.basic_consume(
                self.queue,
                self._on_message,
                no_ack=False,
                consumer_tag=self._tag,
                timeout=self._bus.operation_timeout,
            )
        except BaseException:
            # aiormq registers the tag before asking: a refused or timed-out consume must not look active.
            underlay.consumers.pop(self._tag, None)
            raise

    async def _on_reopen(self, _channel: object) -> None:
        # aio-pika has declared the queue again on the new channel (``RobustChannel._on_open``) by now.
        if self._cancelled:
            return
        try:
            await self._consume_on(await self._underlay())
        except Exception as exc:  # the callback's errors are only logged by aio-pika: keep trying here
            self._resume(f"consuming again after the channel reopened failed: {type(exc).__name__}")

    def _on_broker_cancel(self, frame: Basic.Cancel) -> None:
        if frame.consumer_tag != self._tag or self._cancelled:
            return
        self._bus._log.warning("consumer_cancelled_by_broker", queue=self.queue)
        self._resume("the broker cancelled the consumer")

    def _resume(self, why: str) -> None:
        if self._cancelled or (self._resuming is not None and not self._resuming.done()):
            return  # one attempt loop at a time; it declares the queue again whatever started it
        self._resuming = asyncio.get_running_loop().create_task(
            self._keep_trying(why), name=f"relaybus-consume-again:{self.queue}"
        )

    async def _keep_trying(self, why: str) -> None:
        pause = _RECONSUME_FIRST_S
        attempts = 0
        while not self._cancelled:
            attempts += 1
            try:
                underlay = await asyncio.wait_for(self._underlay(), self._bus.operation_timeout)
                # Also after a failed reopen: declaring a queue that exists again is a no-op, and a cancel
                # that comes while this loop runs needs it.
                await self._declare_again()
                await self._consume_on(underlay)
            except Exception as exc:
                if attempts == 1:
                    self._bus._log.warning(
                        "consume_again_failed", queue=self.queue, why=why, error=type(exc).__name__
                    )
                await asyncio.sleep(pause)
                pause = min(pause * 2, _RECONSUME_MAX_S)
                continue
            self._bus._log.info("consumer_resumed", queue=self.queue, why=why, attempts=attempts)
            return

    async def _declare_again(self) -> None:
        bus = self._bus
        spec = bus._specs.get(self.queue)
        if spec is None or self._queue is None:
            await bus.queue_backlog(self.queue)  # declared elsewhere: fails until it is there again
            return
        await self._queue.declare(timeout=bus.operation_timeout)
        for pattern in spec.bindings:
            await self._queue.bind(EXCHANGE, routing_key=pattern, timeout=bus.operation_timeout)

    async def _on_message(self, message: DeliveredMessage) -> None:
        # In a task of our own (start_handler): a broker restart must not cancel user code half-way (aiormq
        # cancels the task it runs this callback in when the channel closes). The handler finishes; its ack
        # then fails (the broker has requeued the message) and the redelivery is deduplicated by id.
        settles = self._settles
        if settles is None or settles.channel is not message.channel:
            settles = self._settles = SettleBatch(message.channel)
        received = AmqpMessage(message, settles)
        settles.delivered(received.delivery_tag)
        running = self._running
        start_handler(
            self._handler,
            AmqpDelivery(received, queue=self.queue, bus=self._bus),
            self._bus._log,
            running=running,
            name=f"relaybus-handler:{self.queue}",
            on_done=running.discard,
        )

    async def _stop_consuming(self) -> None:
        underlay = await self._underlay()
        underlay.on_consumer_cancel_callbacks.discard(self._on_broker_cancel)
        if self._tag in underlay.consumers:
            await underlay.basic_cancel(self._tag)

    def _stop_resuming(self) -> None:
        self._channel.reopen_callbacks.discard(self._on_reopen)
        if self._resuming is not None:
            self._resuming.cancel()

    async def cancel(self) -> None:
        """Stop consuming; unsettled deliveries are requeued once their handlers return."""
        if self._cancelled:
            return
        self._cancelled = True
        self._bus._forget(self)
        self._stop_resuming()
        if self._queue is not None:
            with contextlib.suppress(Exception):  # the connection may be down: closing the channel suffices
                await asyncio.wait_for(self._stop_consuming(), self._bus.operation_timeout)
        current = asyncio.current_task()
        running = [t for t in self._running if t is not current]
        if running:
            await asyncio.wait(running)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._channel.close(), self._bus.operation_timeout)

    async def _abort(self, wait_s: float | None = None) -> None:
        """The connection is going away: cancel running handlers (their deliveries return to the queue) and
        wait ``wait_s`` seconds (default ``amqp_connection.CLOSE_STEP_S``) at most for them to stop: a
        handler that swallows its cancellation must not hold the bus's ``close`` forever (it is logged,
        ``handlers_still_running``, and left behind)."""
        self._cancelled = True
        self._stop_resuming()
        current = asyncio.current_task()
        running = [t for t in self._running if t is not current]
        for task in running:
            task.cancel()
        if running:
            wait_s = amqp_connection.CLOSE_STEP_S if wait_s is None else wait_s
            _, pending = await asyncio.wait(running, timeout=wait_s)
            if pending:
                self._bus._log.warning(
                    "handlers_still_running", queue=self.queue, handlers=len(pending), waited_s=wait_s
                )

    def __repr__(self) -> str:
        return f"AmqpSubscription(queue={self.queue!r}, running={len(self._running)})"
