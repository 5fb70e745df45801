"""``ReplyRouter``: request/reply over any ``Bus`` with one reply queue per process.

Every task is published with ``reply_to`` = the router's queue and ``correlation_id`` = the task id; results
come back on that one queue and are matched to waiting futures by task id, so thousands of requests can be
in flight at once without a queue or a consumer per request.

What a caller may rely on:

- Register with :meth:`ReplyRouter.expect` *before* publishing; :meth:`ReplyRouter.request` does this for you.
- The first result for a task id wins. Later duplicates (at-least-once delivery, a redelivered task) are
  acked and dropped, and so are results that arrive after :meth:`ReplyRouter.discard` (e.g. after a timeout).
- A result that arrives before anyone expects it is kept (up to ``max_unclaimed`` results,
  ``max_unclaimed_bytes`` of JSON and ``max_unclaimed_age_s`` seconds, oldest dropped first with a warning)
  and handed over by a later ``expect``. A *named* router has a durable queue
  ``relaybus.reply.<name>``: results that arrive while its process is down wait there, and a restarted
  process collects them with ``expect`` (register before or after :meth:`ReplyRouter.start`), or with
  :meth:`ReplyRouter.expect_all`, which also waits until every result that was waiting has been collected.
- A named router holds its name (:class:`~relaybus.bus.name_lock.NameLock`) from :meth:`start` to
  :meth:`close`: a second live router (or orchestrator) with the same name, in this process or another, is
  refused at :meth:`start` with :class:`~relaybus.ConfigError` naming the holder where it can be known.
- An *anonymous* router's queue ``relaybus.reply.<random hex>`` is a durable quorum queue too, declared with
  ``expires_s`` (default 300 s): it survives a broker restart and the reconnect that follows, so a worker
  that finishes a task during the outage still finds it (no result is lost to a missing private queue), and
  the broker deletes it by itself ``expires_s`` after its process died without :meth:`close`. (A worker
  whose reply still finds no queue dead-letters the result: see :mod:`relaybus.agents.worker`.)
- ``result_publishers`` (agent name -> RabbitMQ user) authenticates results where each agent's workers log
  in as a user of their own: a result is taken only when its AMQP ``user_id`` (which RabbitMQ checks against
  the publishing connection's login, see :class:`~relaybus.bus.amqp.AmqpBus`) is the user mapped to the
  agent the result names; any other (a forged result, an agent not in the map) is dead-lettered with the
  reason and the task goes on waiting for its real result. :attr:`ReplyRouter.refused` counts them.
  (It sets agents apart from outsiders, not from each other: an agent's user can answer for that agent.)
  For signatures instead of users see :mod:`relaybus.bus.signing`.
- A router name of 32 hex digits, the anonymous form, is refused with :class:`~relaybus.ConfigError`.
- :attr:`ReplyRouter.duplicates_dropped` counts the repeated results dropped so far.
- A body that is not a valid ``ExecutionResult`` (or whose correlation id names another task) is
  dead-lettered with the reason; when the task it answers can be read (correlation id, else the body's
  ``task_id``) and is awaited, its wait ends at once with FAILURE ``InvalidResult`` giving the reason.
  Every result is acked only after its future is resolved and ``on_result`` has run.
- :meth:`ReplyRouter.request` never hangs past its timeout and never raises for a slow or failed task: it
  returns the worker's result, or a ``TIMEOUT`` result of its own. ``NoRouteError`` (no agent subscribes to
  the topic) and other publish errors propagate.
- :meth:`ReplyRouter.close` resolves the futures still waiting with a ``CANCELLED`` result.
- Task events (messages with the ``relaybus-event`` header, :class:`~relaybus.messages.TaskEvent`) go to the
  callback registered for their task id (:meth:`ReplyRouter.listen`, or ``request(..., on_event=...)``),
  synchronously and in arrival order; events for an id nobody listens to (any more) are acked and dropped,
  counted in :attr:`ReplyRouter.events_dropped`. An invalid one is dead-lettered with the reason. They come
  on the router's events queue, a classic non-durable queue declared the first time a task is streamed
  (:meth:`ReplyRouter.stream_headers` names it to the worker), or on the reply queue from a worker that does
  not know events queues (see :mod:`relaybus.bus.reply_events`).
- A bad ``name`` or a task id that is not a UUID raises :class:`~relaybus.ConfigError`; ``request`` before
  ``start`` raises :class:`~relaybus.UsageError`.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Self
from uuid import UUID

from relaybus._bounded import BoundedMap
from relaybus.exceptions import BusError, ConfigError, InvalidMessage, UsageError
from relaybus.log import get_logger
from relaybus.messages import NAME_RE, AgentTask, ExecutionResult

from .base import EVENTS_TO_HEADER, STREAM_HEADER, Bus, Delivery, HeaderValue, Subscription, check_expires
from .codec import DEFAULT_MAX_BODY_BYTES, decode, encode_result, encode_task, is_task_event, wants_stream
from .name_lock import NameLock
from .replies import (
    REPLY_QUEUE_PREFIX,
    closed_result,
    is_direct_reply_to,
    is_private_reply_queue,
    is_reply_queue,
    publish_timeout_result,
    refused_result,
    timeout_result,
)
from .reply_events import EventCallback, EventRoutes
from .result_auth import check_publishers, publisher_mismatch
from .salvage import readable_id
from .unclaimed import UnclaimedResults

__all__ = [
    "DEFAULT_BARRIER_TIMEOUT_S",
    "DEFAULT_MAX_UNCLAIMED_AGE_S",
    "DEFAULT_MAX_UNCLAIMED_BYTES",
    "DEFAULT_REPLY_EXPIRES_S",
    "REPLY_QUEUE_PREFIX",
    "ReplyRouter",
    "ResultCallback",
    "is_direct_reply_to",
    "is_private_reply_queue",
    "is_reply_queue",
    "publish_timeout_result",
    "timeout_result",
]

DEFAULT_REPLY_EXPIRES_S = 300.0
DEFAULT_MAX_UNCLAIMED_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_UNCLAIMED_AGE_S = 3600.0
"""Results for ids nobody expects are kept at most this long (and this many bytes): anyone who knows a reply
queue's name (it is in every task's ``reply_to``) can send results to it."""
"""How long an anonymous router's reply queue outlives its last consumer (a crashed caller)."""
DEFAULT_BARRIER_TIMEOUT_S = 30.0
"""How long :meth:`ReplyRouter.expect_all` waits for the results already in a durable reply queue."""
ResultCallback = Callable[[ExecutionResult], Awaitable[None] | None]


class ReplyRouter:
    """One reply queue and a table task id -> future. See the module docstring for the guarantees.

    ``name=None``: a private queue ``relaybus.reply.<random hex>`` (durable, with ``expires_s``), deleted on
    :meth:`close`. ``name="x"``: the durable queue ``relaybus.reply.x`` without expiry, kept across restarts
    of this process; a second live router named ``x`` is refused at start.
    """

    def __init__(
        self,
        bus: Bus,
        *,
        name: str | None = None,
        on_result: ResultCallback | None = None,
        prefetch: int = 256,
        max_unclaimed: int = 10_000,
        max_unclaimed_bytes: int = DEFAULT_MAX_UNCLAIMED_BYTES,
        max_unclaimed_age_s: float = DEFAULT_MAX_UNCLAIMED_AGE_S,
        max_finished: int = 100_000,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        expires_s: float = DEFAULT_REPLY_EXPIRES_S,
        result_publishers: Mapping[str, str] | None = None,
    ) -> None:
        check_expires(expires_s)
        self._publishers = check_publishers(result_publishers)
        if name is not None and not NAME_RE.match(name):
            raise ConfigError(
                f"reply router name {name!r} is invalid: use 1-100 letters, digits, '_', '-' or '.'"
            )
        if name is not None and is_private_reply_queue(REPLY_QUEUE_PREFIX + name):
            raise ConfigError(
                f"reply router name {name!r} is 32 hex digits, the form of anonymous reply queues (whose "
                "results are dropped once the queue is gone): give a name with another character in it"
            )
        self._bus = bus
        self._name = name
        self._queue = REPLY_QUEUE_PREFIX + (name if name is not None else uuid.uuid4().hex)
        self._on_result = on_result
        self._prefetch = prefetch
        self._max_body_bytes = max_body_bytes
        self._expires_s = expires_s
        self.duplicates_dropped = 0
        """Results dropped because a result for the same task id had already arrived (or was discarded)."""
        self.refused = 0
        """Results dead-lettered because their publisher is not the user ``result_publishers`` expects."""
        self._pending: dict[UUID, asyncio.Future[ExecutionResult]] = {}
        if not max_unclaimed_age_s > 0:
            raise ConfigError(f"max_unclaimed_age_s must be > 0 seconds, got {max_unclaimed_age_s!r}")
        self._log = get_logger("relaybus.bus.rpc", reply_queue=self._queue)
        self._unclaimed = UnclaimedResults(max_unclaimed, max_unclaimed_bytes, max_unclaimed_age_s, self._log)
        self._finished: BoundedMap[UUID, None] = BoundedMap(
            max_finished
        )  # answered or discarded: drop repeats
        self._events = EventRoutes(self._queue)
        self._barriers: set[UUID] = set()  # markers of expect_all in flight: not results, not for on_result
        self._subscription: Subscription | None = None
        self._lock = None if name is None else NameLock(bus, name, f"the reply router of {self._queue}")

    @property
    def events_dropped(self) -> int:
        """Task events that arrived for a task id nobody listened to (not streamed, or already answered)."""
        return self._events.dropped

    def listen(self, task_id: UUID | str, on_event: EventCallback) -> None:
        """Pass the task events of ``task_id`` to ``on_event`` (synchronously: keep it quick, e.g. put the
        event in a queue) until :meth:`unlisten`; register before publishing the task."""
        self._events.listen(_as_uuid(task_id), on_event)

    def unlisten(self, task_id: UUID | str) -> None:
        """Stop passing the events of ``task_id`` on; later ones are dropped."""
        self._events.unlisten(_as_uuid(task_id))

    async def stream_headers(self) -> dict[str, HeaderValue]:
        """The headers that ask a worker for a task's events: ``relaybus-stream: 1`` and, naming this router's
        events queue (declared on the first call), ``relaybus-events-to``. When the broker refuses that
        queue, only the first (the events then come on the reply queue) and a warning. Raises
        ``UsageError`` before :meth:`start`."""
        self._require_started()
        try:
            events_queue = await self._events.open(self._bus, prefetch=self._prefetch)
        except BusError as exc:
            self._log.warning("events_queue_failed", error=str(exc))
            return {STREAM_HEADER: "1"}
        return {STREAM_HEADER: "1", EVENTS_TO_HEADER: events_queue}

    @property
    def events_queue(self) -> str | None:
        """The events queue's name once a task has been streamed, else None."""
        return self._events.queue

    @property
    def queue(self) -> str:
        """The reply queue's name: what tasks carry in ``reply_to``."""
        return self._queue

    @property
    def durable(self) -> bool:
        """True for a named router: its queue never expires and a restarted process resumes it."""
        return self._name is not None

    @property
    def started(self) -> bool:
        return self._subscription is not None

    @property
    def in_flight(self) -> int:
        """How many results are expected and not yet arrived."""
        return len(self._pending)

    async def start(self) -> None:
        """Declare the reply queue and start consuming it (idempotent)."""
        if self._subscription is not None:
            return
        if self._lock is not None:
            await self._lock.acquire()
        try:
            await self._bus.declare_queue(self._queue, expires_s=None if self.durable else self._expires_s)
            self._subscription = await self._bus.consume(
                self._queue, self._on_delivery, prefetch=self._prefetch
            )
        except BaseException:
            if self._lock is not None:
                await self._lock.release()
            raise
        self._log.debug("reply_router_started", durable=self.durable)

    async def close(self) -> None:
        """Stop consuming, resolve waiting futures with CANCELLED, delete a private queue (idempotent)."""
        subscription, self._subscription = self._subscription, None
        await self._events.close(self._bus)
        if subscription is not None:
            await subscription.cancel()
            if not self.durable:
                try:
                    await self._bus.delete_queue(self._queue)
                except BusError as exc:  # the connection may be gone already; the queue goes with it
                    self._log.debug("reply_queue_delete_failed", error=str(exc))
        if self._lock is not None:
            await self._lock.release()
        pending, self._pending = self._pending, {}
        for task_id, future in pending.items():
            if not future.done():
                future.set_result(closed_result(task_id, self._queue))

    def expect(self, task_id: UUID | str) -> asyncio.Future[ExecutionResult]:
        """A future for the result of ``task_id``; call it before publishing the task.

        Already resolved when the result arrived earlier. Expecting an id again while it is pending returns
        the same future; expecting an id that was answered before waits for a new result (a resubmission).
        """
        key = _as_uuid(task_id)
        future = self._pending.get(key)
        if future is not None and not future.done():
            return future
        future = asyncio.get_running_loop().create_future()
        early = self._unclaimed.pop(key)
        if early is not None:
            future.set_result(early)
            self._mark_finished(key)
            return future
        self._finished.pop(key)
        self._pending[key] = future
        return future

    async def expect_all(
        self,
        task_ids: Iterable[UUID | str],
        *,
        timeout: float = DEFAULT_BARRIER_TIMEOUT_S,  # noqa: ASYNC109
    ) -> dict[UUID, asyncio.Future[ExecutionResult]]:
        """:meth:`expect` every id; for a named router, first collect the results already in its queue.

        Returns id -> future, in the order of ``task_ids``. A named (durable) queue may hold results that
        arrived while this process was down: after registering every id this sends a marker through the
        queue and waits for it (the queue is FIFO), so when this returns every result that was waiting is
        in its future, which is already done. If the marker cannot be published or is not back within
        ``timeout`` seconds this logs a warning and returns anyway (results still arriving resolve their
        futures later). The marker never reaches ``on_result``. Raises ``UsageError`` before :meth:`start`.
        """
        self._require_started()
        futures = {key: self.expect(key) for key in map(_as_uuid, task_ids)}
        if not self.durable:
            return futures
        marker = uuid.uuid4()
        arrived = self.expect(marker)
        self._barriers.add(marker)
        barrier = ExecutionResult.success(marker, {"relaybus": "reply-queue barrier"})
        try:
            await self._bus.publish(encode_result(barrier, reply_to=self._queue))
            await asyncio.wait_for(arrived, timeout)
        except (BusError, TimeoutError) as exc:  # costs the caller only re-doing what already had a result
            self._log.warning("reply_barrier_failed", error=repr(exc))
        finally:
            self._barriers.discard(marker)
            self.discard(marker)
        collected = sum(1 for future in futures.values() if future.done())
        if collected:
            self._log.info("waiting_results_collected", collected=collected, total=len(futures))
        return futures

    def discard(self, task_id: UUID | str) -> None:
        """Stop waiting for ``task_id``: its future is cancelled and a late result is dropped."""
        key = _as_uuid(task_id)
        future = self._pending.pop(key, None)
        if future is not None and not future.done():
            future.cancel()
        self._unclaimed.pop(key)
        self._mark_finished(key)

    def resolve(self, task_id: UUID | str, result: ExecutionResult) -> bool:
        """End the wait for ``task_id`` now with ``result`` (e.g. a cancel decided on this side).

        The pending future gets ``result`` and a result arriving later is dropped as a duplicate. Returns
        False, changing nothing, when nothing is waiting for ``task_id`` or its result is already in.
        """
        key = _as_uuid(task_id)
        future = self._pending.get(key)
        if future is None or future.done():
            return False
        del self._pending[key]
        future.set_result(result)
        self._mark_finished(key)
        return True

    async def request(
        self,
        task: AgentTask,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the caller's budget, turned into a TIMEOUT result
        headers: Mapping[str, HeaderValue] | None = None,
        on_event: EventCallback | None = None,
    ) -> ExecutionResult:
        """Publish ``task`` and wait for its result; ``on_event`` gets the task's events meanwhile (the
        task must be sent with ``relaybus-stream: 1`` in ``headers`` for the worker to send any: then this
        adds :meth:`stream_headers`).

        ``timeout`` defaults to ``task.timeout_s``; with neither, wait until a result comes or the router
        closes. On timeout returns a ``TIMEOUT`` result (``error.type == "ReplyTimeout"``) and drops a late
        result. Raises ``NoRouteError`` when no queue is bound for the task, ``UsageError`` when not started.
        """
        self._require_started()
        limit = timeout if timeout is not None else task.timeout_s
        if on_event is not None and headers is not None and wants_stream(headers):
            headers = {**headers, **await self.stream_headers()}
        future = self.expect(task.id)
        message = encode_task(task, reply_to=self._queue, headers=headers)
        if on_event is not None:
            self.listen(task.id, on_event)
        try:
            if limit is None:
                await self._bus.publish(message)
                return await asyncio.shield(future)
            published = False
            try:
                async with asyncio.timeout(limit):  # from the call on: a publish held back counts too
                    await self._bus.publish(message)
                    published = True
                    return await asyncio.shield(future)
            except TimeoutError:
                self._log.info("reply_timeout", task_id=str(task.id), topic=task.topic, timeout_s=limit)
                if not published:
                    return publish_timeout_result(task, limit, getattr(self._bus, "blocked", None))
                return timeout_result(task, limit)
        finally:
            if on_event is not None:
                self.unlisten(task.id)
            if not future.done():  # timed out, cancelled, or the publish failed: drop a late result
                self.discard(task.id)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- internals ------------------------------------------------------------------------------------------

    def _require_started(self) -> None:
        if self._subscription is None:
            raise UsageError(
                "ReplyRouter is not started: call `await router.start()` or use `async with router:`"
            )

    async def _on_delivery(self, delivery: Delivery) -> None:
        if is_task_event(delivery.headers):
            await self._events.route(delivery)
            return
        try:
            result = decode(
                delivery.body,
                delivery.headers,
                ExecutionResult,
                content_type=delivery.content_type,
                max_bytes=self._max_body_bytes,
            )
        except InvalidMessage as exc:
            await self._refused(delivery, exc.reason)
            return
        key = result.task_id
        if delivery.correlation_id is not None and delivery.correlation_id != str(key):
            await delivery.dead_letter(
                f"correlation_id {delivery.correlation_id[:64]!r} does not match the result's task_id {key}"
            )
            return
        if self._publishers is not None and key not in self._barriers:
            reason = publisher_mismatch(self._publishers, delivery.user_id, result)
            if reason is not None:
                self.refused += 1
                self._log.warning("result_refused", task_id=str(key), reason=reason)
                await delivery.dead_letter(reason)
                return
        future = self._pending.pop(key, None)
        if future is not None and not future.done():
            future.set_result(result)
            self._mark_finished(key)
        elif future is not None or key in self._finished or key in self._unclaimed:
            self.duplicates_dropped += 1
            self._log.debug("duplicate_result_dropped", task_id=str(key), status=result.status.value)
            await self._ack(delivery, key)
            return
        else:
            self._unclaimed.put(key, result, len(delivery.body))
        await self._notify(result)
        await self._ack(delivery, key)

    async def _refused(self, delivery: Delivery, reason: str) -> None:
        """Dead-letter a result refused on receipt; when someone waits for the task it names (its
        correlation_id, else the body's ``task_id``), end that wait now with FAILURE ``InvalidResult``."""
        await delivery.dead_letter(reason)
        self._log.warning("reply_dead_lettered", message_id=delivery.message_id, reason=reason)
        key = readable_id(
            delivery.body,
            "task_id",
            delivery.correlation_id,
            delivery.message_id,
            max_bytes=self._max_body_bytes,
            prefix="result-",
        )
        if key is None:
            return
        failure = refused_result(key, reason)
        if self.resolve(key, failure):
            await self._notify(failure)

    async def _ack(self, delivery: Delivery, key: UUID) -> None:
        try:
            await delivery.ack()
        except BusError:  # the channel went away (broker restart): the copy that comes back is a duplicate
            self._log.info("reply_ack_lost", task_id=str(key))

    async def _notify(self, result: ExecutionResult) -> None:
        if self._on_result is None or result.task_id in self._barriers:
            return
        try:
            outcome = self._on_result(result)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            self._log.exception("on_result_failed", task_id=str(result.task_id))

    @property
    def unclaimed_bytes(self) -> int:
        """The bytes of the results kept for ids nobody expects yet (bounded by ``max_unclaimed_bytes``)."""
        return self._unclaimed.size

    @property
    def unclaimed(self) -> int:
        """How many results are kept for ids nobody expects yet (at most ``max_unclaimed``)."""
        return len(self._unclaimed)

    def _mark_finished(self, key: UUID) -> None:
        self._finished.put(key, None)


def _as_uuid(task_id: UUID | str) -> UUID:
    if isinstance(task_id, UUID):
        return task_id
    try:
        return UUID(task_id)
    except (ValueError, TypeError, AttributeError):
        raise ConfigError(f"task id {task_id!r} is not a UUID") from None
