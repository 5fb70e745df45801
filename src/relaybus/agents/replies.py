"""Replies: encode a task's result, publish it to the task's ``reply_to`` (confirmed), then settle the task.

The delivery is acked only after the broker confirmed the result, so a crash at any point means the task is
redelivered (at-least-once); a result that could not be published returns the task to its queue instead. A
result whose reply queue is gone is dead-lettered rather than dropped (once per task, not once per
redelivery), unless that queue was an anonymous caller's, which never comes back: that result is dropped,
counted and logged. A result larger than the body limit is replaced by a FAILURE of type ``ResultTooLarge``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Awaitable
from typing import Literal
from uuid import UUID

from relaybus._bounded import BoundedMap
from relaybus.bus.base import (
    DEAD_LETTER_EXCHANGE,
    DEFAULT_EXCHANGE,
    Bus,
    Delivery,
    OutgoingMessage,
)
from relaybus.bus.codec import encode_result
from relaybus.bus.core import dead_letter_headers
from relaybus.bus.rpc import is_direct_reply_to, is_private_reply_queue
from relaybus.exceptions import NoRouteError
from relaybus.log import FilteringBoundLogger
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus
from relaybus.secrets import mask_secrets
from relaybus.telemetry.metrics import WorkerMetrics

from .outcomes import refused

__all__ = ["Replier", "ResultCache", "addressed", "content_digest"]


@dataclasses.dataclass(frozen=True, slots=True)
class _Cached:
    digest: str
    reply_to: str | None
    publisher: str | None
    message: OutgoingMessage


class ResultCache:
    """A worker's last results by task id (at most ``max_items`` and ``max_bytes`` of JSON), each kept with
    the digest of its task (all but ``created_at``), its ``reply_to`` and its publisher (the AMQP
    ``user_id``, which RabbitMQ checks against the publishing connection's login).

    A cached result answers a copy of the same task sent to the same reply queue, or to another reply queue
    by the same publisher (a caller that restarted with a new queue, or an agent loop resumed on another
    worker, sending its delegated call again under the same id); never another body under a known id, nor
    another publisher's copy, nor one without a publisher to compare (a message without ``user_id``). The
    digest is the caller's, computed once per delivery (:func:`content_digest`, or the state store's
    ``task_digest``): one worker must give every call the same kind."""

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self._items: BoundedMap[UUID, _Cached] = BoundedMap(max_items, max_bytes=max_bytes)

    def put(
        self,
        task: AgentTask,
        reply_to: str | None,
        message: OutgoingMessage,
        digest: str,
        publisher: str | None = None,
    ) -> None:
        self._items.put(task.id, _Cached(digest, reply_to, publisher, message), len(message.body))

    def get(
        self, task: AgentTask, reply_to: str | None, digest: str, publisher: str | None = None
    ) -> OutgoingMessage | str | None:
        """The result that answers ``task`` sent to ``reply_to`` by ``publisher``, None when none is kept, or
        why the result kept under its id must not answer it (another body, or another reply queue of
        another publisher: someone else reusing the id)."""
        cached = self._items.get(task.id)
        if cached is None:
            return None
        if cached.digest != digest:
            return (
                f"task id {task.id} was already used here for a task with a different body; a task id is "
                "used once: give a new task a new id (AgentTask() makes one)"
            )
        if cached.reply_to != reply_to and (publisher is None or publisher != cached.publisher):
            return (
                f"task {task.id} was already answered here to another reply queue of another publisher; its "
                "result goes only to the caller that sent it"
            )
        return cached.message


def addressed(message: OutgoingMessage, delivery: Delivery, reply_to: str) -> OutgoingMessage:
    """``message`` (a result) sent to ``reply_to`` with the task's own ``correlation_id`` echoed (a caller may
    use its own; relaybus callers use the task id). A direct reply-to (``amq.rabbitmq.reply-to.*``) is not
    mandatory: RabbitMQ cannot tell at routing time whether its caller is still there, and 3.10 returns such
    a message although it delivered it, which would write a spurious "reply queue is gone" letter."""
    # Built field by field: ``dataclasses.replace`` costs half as much again, once per result.
    return OutgoingMessage(
        body=message.body,
        routing_key=reply_to,
        exchange=message.exchange,
        message_id=message.message_id,
        correlation_id=delivery.correlation_id or message.correlation_id,
        reply_to=message.reply_to,
        headers=message.headers,
        priority=message.priority,
        content_type=message.content_type,
        mandatory=not is_direct_reply_to(reply_to),
        persistent=message.persistent,
    )


def content_digest(task: AgentTask) -> str:
    """A digest of ``task``'s content for :class:`ResultCache`: all but ``created_at`` (a resumed plan
    publishes the same task again with a new timestamp); cheaper than the state store's ``task_digest``."""
    body = task.model_dump_json(exclude={"created_at"}).encode()
    return hashlib.blake2b(body, digest_size=16).hexdigest()


class Replier:
    """Sends results for one worker on ``bus``; ``max_body`` bounds the size of a result message."""

    def __init__(
        self,
        bus: Bus,
        *,
        max_body: int,
        log: FilteringBoundLogger,
        metrics: WorkerMetrics | None = None,
        remember: int = 10_000,
    ) -> None:
        self._bus = bus
        self._metrics = metrics
        self._max_body = max_body
        self._log = log
        # Tasks whose result was dead-lettered for want of its reply queue: a redelivery (answered from the
        # cache) would add the same letter again, one per delivery instead of one per task.
        self._dead_lettered: BoundedMap[tuple[UUID, str], None] = BoundedMap(remember)
        self._replying: dict[tuple[UUID, str], asyncio.Future[None]] = {}  # replies in flight, per task

    def encode(self, result: ExecutionResult) -> OutgoingMessage:
        """The result message (its routing key is set per reply); a result too big to send becomes a FAILURE
        that says so, rather than a message the broker refuses on every redelivery."""
        message = encode_result(result, reply_to="")
        if len(message.body) <= self._max_body:
            return message
        self._log.warning("result_too_large", task_id=str(result.task_id), size=len(message.body))
        too_large = ExecutionResult.failed(
            result.task_id,
            ExecutionStatus.FAILURE,
            "ResultTooLarge",
            f"the result is {len(message.body)} bytes of JSON, over the limit of {self._max_body}: return a "
            "smaller output, or store large data elsewhere and return a reference (a URL or a path)",
            agent=result.agent,
            worker=result.worker,
            started_at=result.started_at,
            finished_at=result.finished_at,
            usage=result.usage,
        )
        return encode_result(too_large, reply_to="")

    async def reply(
        self, delivery: Delivery, message: OutgoingMessage, task_id: UUID, agent: str = ""
    ) -> None:
        """Publish the result to the delivery's ``reply_to`` (confirmed), then ack the delivery. A reply queue
        found gone is a caller gone for good when it was anonymous (the result of ``agent`` is dropped,
        counted and logged) and dead-lettered otherwise (a named caller declares its queue again).

        Copies of one task reply one after the other, so a reply queue found gone by the first is known to
        the next, which is acked without a second dead letter."""
        reply_to = delivery.reply_to
        if not reply_to:
            await self.settle_quietly(delivery.ack(), task_id, "ack")
            return
        key = (task_id, reply_to)
        while (earlier := self._replying.get(key)) is not None:
            await asyncio.shield(earlier)
        if key in self._dead_lettered:
            self._log.info("reply_queue_gone_before", task_id=str(task_id), reply_to=reply_to)
            await self.settle_quietly(delivery.ack(), task_id, "ack")
            return
        done = asyncio.get_running_loop().create_future()
        self._replying[key] = done
        try:
            try:
                try:
                    await self._bus.publish(addressed(message, delivery, reply_to))
                except NoRouteError:
                    if is_private_reply_queue(reply_to):
                        self._orphaned(reply_to, task_id, agent)
                    else:
                        await self._dead_letter(message, reply_to, task_id)
            except Exception as exc:
                # Not confirmed: return the task; its redelivery is answered from the result cache.
                self._log.error(
                    "result_publish_failed", task_id=str(task_id), error=mask_secrets(repr(exc))[:300]
                )
                await self.settle_quietly(delivery.nack(requeue=True), task_id, "nack")
                return
        finally:
            del self._replying[key]
            done.set_result(None)
        await self.settle_quietly(delivery.ack(), task_id, "ack")

    async def refuse(
        self,
        delivery: Delivery,
        task_id: UUID,
        reason: str,
        *,
        agent: str,
        worker: str,
        error_type: str = "TaskIdReused",
    ) -> None:
        """Answer ``delivery`` at once with a REJECTED result of type ``error_type`` giving ``reason`` when it
        has a reply queue, then dead-letter it with ``reason``; it is not run."""
        log_event = "task_id_reused" if error_type == "TaskIdReused" else "task_refused"
        self._log.warning(log_event, task_id=str(task_id), agent=agent, reply_to=delivery.reply_to)
        if delivery.reply_to:
            rejected = refused(
                task_id, ExecutionStatus.REJECTED, error_type, reason, agent=agent, worker=worker
            )
            message = addressed(encode_result(rejected, reply_to=""), delivery, delivery.reply_to)
            try:
                await self._bus.publish(message)
            except Exception as exc:  # the dead letter below still says why
                self._log.warning("rejection_publish_failed", task_id=str(task_id), error=repr(exc)[:300])
        try:
            await delivery.dead_letter(reason)
        except Exception as exc:
            self._log.warning(
                "settle_failed", task_id=str(task_id), verb="dead_letter", error=repr(exc)[:300]
            )

    async def settle_quietly(
        self, settle: Awaitable[None], task_id: UUID, verb: Literal["ack", "nack"]
    ) -> None:
        """Await ``settle`` (an ack or nack); a failure is logged, not raised: the channel is gone, so the
        broker redelivers the task and the result cache answers it."""
        try:
            await settle
        except Exception as exc:
            self._log.warning(
                "settle_failed", task_id=str(task_id), verb=verb, error=mask_secrets(repr(exc))[:300]
            )

    def _orphaned(self, reply_to: str, task_id: UUID, agent: str) -> None:
        """The caller of ``task_id`` is gone for good: a letter could never be replayed, so keep none."""
        self._dead_lettered.put((task_id, reply_to), None)
        if self._metrics is not None:
            self._metrics.result_orphaned(agent)
        self._log.info("result_orphaned", task_id=str(task_id), agent=agent, reply_to=reply_to)

    async def _dead_letter(self, message: OutgoingMessage, reply_to: str, task_id: UUID) -> None:
        """Keep a result whose reply queue is gone in ``relaybus.dead`` (confirmed) instead of dropping it;
        once per task and reply queue: :meth:`reply` remembers it and acks later copies of the task."""
        reason = (
            f"reply queue {reply_to} is gone: the caller that sent task {task_id} stopped (or its queue "
            "expired) before the result arrived; replay it once the caller's queue exists again"
        )
        headers = dead_letter_headers(
            message.headers, reason=reason, queue=reply_to, routing_key=reply_to, exchange=DEFAULT_EXCHANGE
        )
        await self._bus.publish(
            dataclasses.replace(
                message, exchange=DEAD_LETTER_EXCHANGE, routing_key=reply_to, headers=headers, mandatory=True
            )
        )
        self._dead_lettered.put((task_id, reply_to), None)
        if self._metrics is not None:
            self._metrics.dead_lettered("reply_queue_gone")
        self._log.warning("result_dead_lettered", task_id=str(task_id), reply_to=reply_to, reason=reason)
