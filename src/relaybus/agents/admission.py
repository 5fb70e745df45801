"""Admission: whether a delivered task may run here, and the one deadline and delegation chain it runs with.

Checked once per delivery, so the refusal check and the run see the same deadline and chain: a task that
must carry its own id, names a ``reply_to`` that is not a reply queue, is addressed to another agent, was
cancelled before it came, arrives through a delegation loop or too deep a chain, or carries a malformed
deadline, is refused here with the reason; one whose deadline already passed is :class:`Expired`. A
deadline header later than a task's longest run (7 days) is capped at it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from uuid import UUID

from relaybus.bus.base import DEADLINE_HEADER, Delivery
from relaybus.bus.codec import decode
from relaybus.bus.rpc import is_reply_queue
from relaybus.bus.salvage import readable_id
from relaybus.exceptions import DelegationError, InvalidMessage
from relaybus.log import FilteringBoundLogger
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus

from .agent import Agent
from .delegation import check_incoming, parse_chain
from .outcomes import refused
from .running import Run

__all__ = ["MAX_TASK_S", "Admission", "Expired", "answerable_id", "deadline_of", "decode_task"]


def answerable_id(delivery: Delivery, max_bytes: int) -> UUID | None:
    """The id to answer a refused ``delivery`` under, when it has a reply queue a worker may publish to and
    an id can be read (:func:`~relaybus.bus.salvage.readable_id`); None when it can only be dead-lettered."""
    if not delivery.reply_to or not is_reply_queue(delivery.reply_to):
        return None
    return readable_id(delivery.body, "id", delivery.message_id, delivery.correlation_id, max_bytes=max_bytes)


def decode_task(delivery: Delivery, max_bytes: int) -> AgentTask | str:
    """The task ``delivery`` carries, or why it must be dead-lettered rather than answered: refused by the
    codec, or without an id of its own (it would run again on every redelivery), or with another id than
    its message's, or with a ``reply_to`` that is not a reply queue (a result must not be written into
    another agent's task queue or the dead letters)."""
    if delivery.reply_to and not is_reply_queue(delivery.reply_to):
        return (
            f"reply_to {delivery.reply_to[:120]!r} is not a reply queue: a worker publishes results only to "
            "'relaybus.reply.<name>' (a ReplyRouter's queue) or 'amq.rabbitmq.reply-to'; the task was not run"
        )
    try:
        task = decode(
            delivery.body,
            delivery.headers,
            AgentTask,
            content_type=delivery.content_type,
            max_bytes=max_bytes,
        )
    except InvalidMessage as exc:
        return exc.reason
    if "id" not in task.model_fields_set:
        return (
            "invalid AgentTask: id: field required (a task without an id would run again on every "
            "redelivery); send the task's UUID in 'id' and as the AMQP message_id"
        )
    if delivery.message_id and delivery.message_id != str(task.id):
        return (
            f"message_id {delivery.message_id[:64]!r} does not match the task's id {task.id}; publish tasks "
            "with encode_task (message_id = id)"
        )
    return task


MAX_TASK_S = 7 * 24 * 3600.0
"""The longest a task may run: ``AgentTask.timeout_s``'s own limit, and the cap of a deadline header."""


def deadline_of(task: AgentTask, delivery: Delivery) -> float | None:
    """The ``relaybus-deadline`` header (Unix seconds), else the task's ``timeout_s`` from now, else None.

    A header is never a way to run without a deadline: one later than :data:`MAX_TASK_S` from now (``1e300``,
    ``2**62``) is capped there, and ``inf`` or ``nan`` are taken as no header at all but with that cap
    (``timeout_s`` from now, else ``MAX_TASK_S``). Raises :class:`~relaybus.exceptions.InvalidMessage` for a
    header that is not a positive number."""
    raw = delivery.headers.get(DEADLINE_HEADER)
    now = time.time()
    if raw is None or raw == "":
        return now + task.timeout_s if task.timeout_s else None
    if isinstance(raw, bool):
        raw = None
    try:
        value = float(raw)  # type: ignore[arg-type]
    except OverflowError:  # an integer too big for a float: as late as can be, capped below
        value = _MAX_DEADLINE
    except (TypeError, ValueError):
        value = -1.0
    if value <= 0:
        raise InvalidMessage(
            f"header {DEADLINE_HEADER!r} = {str(raw)[:40]!r} is not a Unix time in seconds; "
            "send e.g. '1767225600.5' or leave the header out"
        )
    if not math.isfinite(value):
        return now + (task.timeout_s or MAX_TASK_S)
    return min(value, now + MAX_TASK_S)


_MAX_DEADLINE = 1e300
"""What an integer header too big for a float stands for: later than any cap."""


@dataclass(frozen=True, slots=True)
class Expired:
    """A task whose deadline passed ``late_s`` seconds before it reached a worker: its caller stopped waiting,
    so it is dropped (acked, counted, logged), neither run nor answered nor dead-lettered."""

    late_s: float


class Admission:
    """Decides, for the agents of one worker, whether each delivered task runs (see the module docstring)."""

    def __init__(self, *, worker: str, max_depth: int, log: FilteringBoundLogger) -> None:
        self._worker = worker
        self._max_depth = max_depth
        self._log = log

    def admit(
        self, agent: Agent, task: AgentTask, delivery: Delivery, cancelled: str | None
    ) -> Run | ExecutionResult | Expired:
        """The run of ``task`` for ``agent``, with its deadline and chain, the result that answers the task
        without running it, or :class:`Expired`. ``cancelled`` is the reason of a cancel request that came
        before the task."""
        name = agent.name
        if task.agent is not None and task.agent != name:
            # Published straight into this agent's queue (or bound to it by topic) while addressed to another.
            return refused(
                task.id,
                ExecutionStatus.REJECTED,
                "WrongAgent",
                f"the task is addressed to agent {task.agent!r} but was delivered to {name!r}'s queue; it "
                f"was not run: publish it with encode_task (routing key agent.{task.agent})",
                agent=name,
                worker=self._worker,
            )
        if cancelled is not None:
            return refused(
                task.id, ExecutionStatus.CANCELLED, "Cancelled", cancelled, agent=name, worker=self._worker
            )
        try:
            chain = parse_chain(delivery.headers)
            check_incoming(chain, name, self._max_depth)
        except DelegationError as exc:
            self._log.warning("delegation_refused", task_id=str(task.id), agent=name, error=str(exc))
            return refused(
                task.id, ExecutionStatus.FAILURE, "DelegationError", str(exc), agent=name, worker=self._worker
            )
        try:
            deadline = deadline_of(task, delivery)
        except InvalidMessage as exc:
            return refused(
                task.id,
                ExecutionStatus.REJECTED,
                "InvalidDeadline",
                exc.reason,
                agent=name,
                worker=self._worker,
            )
        if deadline is not None and (late := time.time() - deadline) >= 0:
            return Expired(late)
        return Run(task=task, agent=agent, deadline=deadline, chain=chain)
