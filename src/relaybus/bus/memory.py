"""``MemoryBus``: a RabbitMQ-shaped broker inside one process, the embedded default and the bus for tests.

Each ``MemoryBus`` is its own broker (no global state). It behaves like the RabbitMQ topology of DESIGN.md,
and passes the same contract tests as ``AmqpBus`` (``tests/bus/test_contract.py``):

- Exchanges ``relaybus`` (topic, matching as :func:`relaybus.bus.topic.topic_matches`), ``""`` (the default
  exchange: routing key = queue name) and ``relaybus.dlx`` (fanout) bound to the queue ``relaybus.dead``,
  all declared by :meth:`MemoryBus.connect`. Publishing to any other exchange raises ``BusError``.
- A message goes to every queue with a matching binding (fan-out), once per queue; the consumers of one
  queue compete for its messages, round robin among those below their ``prefetch``.
- A mandatory message that reaches no queue raises :class:`~relaybus.NoRouteError`; a non-mandatory one is
  dropped, as in AMQP.
- Queues are FIFO; returned messages (nack with requeue, handler exception, cancelled consumer) are
  delivered again before the others, in the order they came back, like RabbitMQ quorum queues. Message
  priority is carried but not used for ordering (RabbitMQ 3.10 quorum queues ignore it as well).
- ``delivery_count`` is 0 on the first delivery and grows by one each time the message is returned. A
  durable queue with ``delivery_limit=N`` dead-letters a message when it is returned with ``delivery_count``
  already at N, i.e. after N + 1 deliveries, with header ``x-first-death-reason: delivery_limit`` (RabbitMQ
  3.10 quorum queues do exactly this). Non-durable queues have no delivery limit (RabbitMQ's classic queues
  don't either).
- ``nack(requeue=False)`` dead-letters with ``x-first-death-reason: rejected``; ``dead_letter(reason)`` with
  ``relaybus-error: <reason>``. Every dead-lettered message carries ``relaybus-error`` and the
  ``relaybus-original-queue / -routing-key / -exchange`` headers, built by :mod:`relaybus.bus.core` exactly
  as ``AmqpBus`` builds them (reason masked and capped; for broker dead-letters derived from the
  ``x-first-death-*`` headers). It keeps its routing key and arrives from exchange ``relaybus.dlx``.
  ``relaybus.dead`` itself has no delivery limit and no dead-letter target.
- Handlers run as :func:`relaybus.bus.core.run_handler` says: one that raises is logged and its delivery
  returned (nack with requeue); the consumer goes on. One that returns without settling keeps its delivery
  (and its prefetch slot) unsettled, as with AMQP manual acks, until someone settles it or the consumer
  goes away.
- ``Subscription.cancel()`` stops new deliveries, waits for running handlers, then returns the deliveries
  still unsettled to the queue. :meth:`MemoryBus.close` does the same for every consumer (handlers still
  running after ``close_timeout`` are cancelled), then deletes the non-durable queues; durable queues keep
  their messages, and a later ``connect()`` on the same object finds them (how a test "restarts" a process).
- A queue declared with ``expires_s`` is deleted with its messages once it has had no consumer (and no
  re-declaration) for that many seconds, as RabbitMQ's ``x-expires`` does; a durable one keeps its messages
  across ``close()`` / ``connect()`` until then.
- Bodies over ``max_body_bytes`` are refused at publish with ``BusError``.
- All asyncio, no threads. :meth:`MemoryBus.join` waits until every delivery is handled and settled.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from relaybus.exceptions import BusError, NoRouteError
from relaybus.log import get_logger
from relaybus.telemetry.hooks import traced_consume, traced_publish

from .base import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    ERROR_HEADER,
    Bus,
    Delivery,
    Handler,
    OutgoingMessage,
)
from .codec import DEFAULT_MAX_BODY_BYTES
from .core import (
    FIRST_DEATH_EXCHANGE_HEADER,
    FIRST_DEATH_QUEUE_HEADER,
    FIRST_DEATH_REASON_HEADER,
    BusBase,
    QueueDeclaration,
    check_positive_options,
    check_prefetch,
    fill_death_headers,
    start_handler,
)
from .memory_delivery import MemoryDelivery, MemorySubscription
from .memory_queue import MemoryConsumer, MemoryQueue, QueueStats, Routes, StoredMessage, accept

__all__ = ["MemoryBus", "MemoryDelivery", "MemorySubscription", "QueueStats"]


class MemoryBus(BusBase):
    """An in-process broker with RabbitMQ's semantics; see the module docstring for what it guarantees."""

    def __init__(
        self,
        url: str = "memory://",
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        close_timeout: float = 30.0,
    ) -> None:
        check_positive_options(
            "MemoryBus", {"max_body_bytes": max_body_bytes, "close_timeout": close_timeout}
        )
        self._url = url
        self.max_body_bytes = max_body_bytes
        self.close_timeout = close_timeout
        self._connected = False
        self._queues: dict[str, MemoryQueue] = {}
        self._routes = Routes()
        self._tags = itertools.count(1)
        self._changed = asyncio.Event()
        self._log = get_logger("relaybus.bus.memory", bus=url)

    # -- Bus protocol ---------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._url

    @property
    def is_connected(self) -> bool:
        """True between ``connect()`` and ``close()``."""
        return self._connected

    async def connect(self) -> None:
        """Declare ``relaybus``, ``relaybus.dlx`` and ``relaybus.dead`` (idempotent; also after ``close``)."""
        self._connected = True
        if DEAD_LETTER_QUEUE not in self._queues:
            self._queues[DEAD_LETTER_QUEUE] = MemoryQueue(
                DEAD_LETTER_QUEUE, durable=True, delivery_limit=None
            )
        for queue in self._queues.values():
            self._dispatch(queue)

    async def close(self) -> None:
        """Drop the "connection", like ``AmqpBus.close``: stop every consumer and wait for its running
        handlers (at most ``close_timeout`` seconds, then they are cancelled), return the deliveries still
        unsettled to their queues, and delete the non-durable queues. Durable queues keep their messages
        for a later ``connect()``.
        """
        if not self._connected:
            return
        consumers = [c for q in self._queues.values() for c in q.consumers]
        for consumer in consumers:
            self._detach(consumer)
        me = asyncio.current_task()
        tasks = [t for c in consumers for t in c.tasks if t is not me]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.close_timeout)
            for task in late:
                task.cancel()
            if late:
                self._log.warning("handlers_cancelled_on_close", count=len(late))
                await asyncio.wait(late)
        self._connected = False
        for consumer in consumers:
            self._return_unsettled(consumer)
        for name in [q.name for q in self._queues.values() if not q.durable]:
            self._remove_queue(name)
        self._notify()

    async def _declare_queue(self, queue: QueueDeclaration) -> None:
        """Declare ``name`` and bind it to ``relaybus`` with each pattern (idempotent; bindings add up).

        Re-declaring with a different ``durable``, ``expires_s`` or (durable queues) ``delivery_limit``
        raises ``BusError``, as RabbitMQ refuses inequivalent arguments. ``expires_s``: see the module
        docstring (deleted after that long without a consumer, even while the bus is closed).
        """
        self._require_connected()
        name, durable, limit, expires_s = queue.name, queue.durable, queue.delivery_limit, queue.expires_s
        existing = self._queues.get(name)
        if existing is None:
            existing = MemoryQueue(name, durable=durable, delivery_limit=limit, expires_s=expires_s)
            self._queues[name] = existing
        elif (
            existing.durable != durable
            or (durable and existing.delivery_limit != limit)
            or existing.expires_s != expires_s
        ):
            raise BusError(
                f"queue {name!r} already exists with durable={existing.durable}, "
                f"delivery_limit={existing.delivery_limit}, expires_s={existing.expires_s}; it cannot be "
                f"re-declared with durable={durable}, delivery_limit={limit}, expires_s={expires_s}: "
                "delete it first or declare it as it is"
            )
        self._arm_expiry(existing)  # a declaration counts as use: the countdown starts again
        self._routes.bind(name, queue.bindings)

    async def delete_queue(self, name: str) -> None:
        """Delete ``name`` with its messages and bindings; its consumers stop. A missing queue is fine."""
        self._require_connected()
        queue = self._queues.get(name)
        if queue is None:
            return
        for consumer in list(queue.consumers):
            self._detach(consumer)
            consumer.unsettled.clear()  # messages of a deleted queue are gone; settling them is a no-op
        self._remove_queue(name)
        self._notify()

    async def purge_queue(self, name: str) -> int:
        """Remove the ready messages of ``name`` (unsettled deliveries stay); return how many."""
        self._require_connected()
        queue = self._get_queue(name)
        count = len(queue)
        queue.ready.clear()
        queue.returned.clear()
        self._notify()
        return count

    @traced_publish
    async def publish(self, message: OutgoingMessage, trace: Mapping[str, str] | None = None) -> None:
        """Route ``message`` to its queues; returns once they hold it (the in-memory publisher confirm)."""
        self._require_connected()
        stored = accept(message, self.max_body_bytes, trace)
        targets = self._routes.route(message.exchange, message.routing_key, self._queues)
        if not targets:
            if message.mandatory:
                raise NoRouteError(message.routing_key, message.exchange)
            self._log.debug("message_unroutable", exchange=message.exchange, routing_key=message.routing_key)
        for name in targets:
            queue = self._queues[name]
            # Each queue gets its own message object: delivery counts are per queue.
            queue.ready.append(stored.copy(exchange=stored.exchange, headers=stored.headers))
            self._dispatch(queue)
        # A network publish always yields to the loop; doing the same keeps producers and consumers fair.
        await asyncio.sleep(0)

    @traced_consume
    async def consume(self, queue: str, handler: Handler, *, prefetch: int = 16) -> MemorySubscription:
        """Call ``handler`` for each delivery of ``queue``, at most ``prefetch`` unsettled at once."""
        self._require_connected()
        check_prefetch(prefetch)
        target = self._get_queue(queue)
        consumer = MemoryConsumer(target, handler, prefetch, f"memory-consumer-{next(self._tags)}")
        target.consumers.append(consumer)
        self._arm_expiry(target)
        self._dispatch(target)
        return MemorySubscription(self, consumer)

    # -- extras for tests and tools -------------------------------------------------------------------------

    def queue_names(self) -> list[str]:
        return sorted(self._queues)

    async def queue_backlog(self, name: str) -> int:
        """How many messages wait in ``name``, ready for a consumer (as ``AmqpBus.queue_backlog``)."""
        return self.stats(name).ready

    def stats(self, name: str) -> QueueStats:
        """Messages ``name`` holds ready, deliveries not yet settled, and consumers, right now."""
        return self._get_queue(name).stats()

    async def join(self, *queues: str) -> None:
        """Wait until nothing is in flight: no handler running, no delivery unsettled, and no ready message
        in a queue that has a consumer (ready messages no one consumes don't count).

        Checks ``queues`` only, or every queue. A delivery a handler leaves unsettled keeps ``join`` waiting,
        so wrap it in ``asyncio.timeout`` in tests.
        """
        while not self._idle(queues):
            self._changed.clear()
            await self._changed.wait()
        # Let done-callbacks of finished handler tasks run before the caller looks at the results.
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        state = "connected" if self._connected else "closed"
        return f"MemoryBus({self._url!r}, {state}, queues={len(self._queues)})"

    # -- internals ------------------------------------------------------------------------------------------

    def _require_connected(self) -> None:
        if not self._connected:
            raise BusError("MemoryBus is not connected: call `await bus.connect()` or use `async with bus:`")

    def _get_queue(self, name: str) -> MemoryQueue:
        queue = self._queues.get(name)
        if queue is None:
            raise BusError(f"queue {name!r} does not exist; declare it first: bus.declare_queue({name!r})")
        return queue

    def _remove_queue(self, name: str) -> None:
        queue = self._queues.pop(name, None)
        if queue is not None and queue.expiry is not None:
            queue.expiry.cancel()
            queue.expiry = None
        self._routes.unbind(name)

    def _dispatch(self, queue: MemoryQueue) -> None:
        if not self._connected or self._queues.get(queue.name) is not queue:
            return
        while len(queue):
            consumer = queue.next_consumer()
            if consumer is None:
                break
            self._deliver(consumer, queue.pop())
        self._notify()

    def _deliver(self, consumer: MemoryConsumer, message: StoredMessage) -> None:
        tag = next(self._tags)
        delivery = MemoryDelivery(self, consumer, message, tag)
        consumer.unsettled[tag] = delivery
        start_handler(
            consumer.handler,
            delivery,
            self._log,
            running=consumer.tasks,
            name=f"relaybus-memory-{consumer.tag}-{tag}",
            on_done=lambda task: self._handler_done(consumer, task),
        )

    def _handler_done(self, consumer: MemoryConsumer, task: asyncio.Task[None]) -> None:
        consumer.tasks.discard(task)
        self._notify()

    def _take_unsettled(self, delivery: MemoryDelivery) -> MemoryQueue | None:
        """Remove ``delivery`` from its consumer; its queue, or None when it was deleted meanwhile."""
        consumer = delivery._consumer
        consumer.unsettled.pop(delivery._tag, None)
        queue = consumer.queue
        return queue if self._queues.get(queue.name) is queue else None

    def _return_message(self, queue: MemoryQueue, message: StoredMessage) -> None:
        if not queue.give_back(message):
            self._broker_dead_letter(queue, message, "delivery_limit")

    def _broker_dead_letter(self, queue: MemoryQueue, message: StoredMessage, reason: str) -> None:
        """Dead-letter as the broker does (reject or delivery limit): x-first-death-* headers."""
        if queue.name == DEAD_LETTER_QUEUE:
            self._log.warning("dead_letter_dropped", queue=queue.name, message_id=message.message_id)
            return
        headers = dict(message.headers)
        if FIRST_DEATH_REASON_HEADER not in headers:
            headers[FIRST_DEATH_REASON_HEADER] = reason
            headers[FIRST_DEATH_QUEUE_HEADER] = queue.name
            headers[FIRST_DEATH_EXCHANGE_HEADER] = message.exchange
        fill_death_headers(headers, routing_key=message.routing_key, died_at=time.time())
        self._to_dead_letter_queue(message.copy(exchange=DEAD_LETTER_EXCHANGE, headers=headers))

    def _to_dead_letter_queue(self, message: StoredMessage) -> None:
        dead = self._queues.get(DEAD_LETTER_QUEUE)
        self._log.info(
            "message_dead_lettered", message_id=message.message_id, reason=message.headers.get(ERROR_HEADER)
        )
        if dead is None:
            self._log.warning("dead_letter_queue_missing", message_id=message.message_id)
            return
        dead.ready.append(message)
        self._dispatch(dead)

    def _detach(self, consumer: MemoryConsumer) -> None:
        consumer.active = False
        queue = consumer.queue
        if consumer in queue.consumers:
            queue.consumers.remove(consumer)
            queue.rr = 0
            if self._queues.get(queue.name) is queue:
                self._arm_expiry(queue)

    def _arm_expiry(self, queue: MemoryQueue) -> None:
        """(Re)start the ``expires_s`` countdown of a queue without consumers; stop it while it has some."""
        if queue.expiry is not None:
            queue.expiry.cancel()
            queue.expiry = None
        if queue.expires_s is None or queue.consumers:
            return
        queue.expiry = asyncio.get_running_loop().call_later(queue.expires_s, self._expire, queue)

    def _expire(self, queue: MemoryQueue) -> None:
        queue.expiry = None
        if self._queues.get(queue.name) is not queue or queue.consumers:
            return
        self._log.info("queue_expired", queue=queue.name, dropped=len(queue), expires_s=queue.expires_s)
        self._remove_queue(queue.name)
        self._notify()

    def _return_unsettled(self, consumer: MemoryConsumer) -> None:
        queue = consumer.queue
        pending = sorted(consumer.unsettled.items())
        consumer.unsettled.clear()
        live = self._queues.get(queue.name) is queue
        for _, delivery in pending:
            delivery._state = "returned"
            if live:
                self._return_message(queue, delivery._message)
        if live:
            self._dispatch(queue)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()

    def _idle(self, names: Sequence[str]) -> bool:
        queues = [self._queues[n] for n in names if n in self._queues] if names else self._queues.values()
        for queue in queues:
            if any(c.tasks or c.unsettled for c in queue.consumers):
                return False
            if len(queue) and any(c.active for c in queue.consumers):
                return False
        return True


if TYPE_CHECKING:  # mypy checks that the classes implement the protocols
    _delivery: type[Delivery] = MemoryDelivery
    _bus: type[Bus] = MemoryBus
