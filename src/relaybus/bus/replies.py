"""Reply queues: which names a worker may send a result to, and the results a caller makes itself when no
result came in time (a task not published, or not answered, by its deadline)."""

from __future__ import annotations

import re
from uuid import UUID

from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus

__all__ = [
    "DIRECT_REPLY_TO",
    "EVENTS_QUEUE_PREFIX",
    "EVENTS_QUEUE_RE",
    "REPLY_QUEUE_PREFIX",
    "closed_result",
    "is_direct_reply_to",
    "is_events_queue",
    "is_private_reply_queue",
    "is_reply_queue",
    "publish_timeout_result",
    "refused_result",
    "timeout_result",
]

REPLY_QUEUE_PREFIX = "relaybus.reply."
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
EVENTS_QUEUE_PREFIX = "relaybus.events."
EVENTS_QUEUE_RE = re.compile(f"^{re.escape(EVENTS_QUEUE_PREFIX)}[0-9a-f]{{32}}$")
# A router's queue (``relaybus.reply.<name>``, ``<name>`` as NAME_RE), or RabbitMQ's direct reply-to, which a
# worker sees with the broker's channel token appended (``amq.rabbitmq.reply-to.g1h...``).
_REPLY_QUEUE_RE = re.compile(
    r"^(relaybus\.reply\.[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}|amq\.rabbitmq\.reply-to(\.[A-Za-z0-9+/=._-]{1,255})?)$"
)


def is_direct_reply_to(name: str) -> bool:
    """Whether ``name`` is RabbitMQ's direct reply-to (``amq.rabbitmq.reply-to`` or, as a worker sees it,
    ``amq.rabbitmq.reply-to.<token>``): no real queue, at-most-once, the caller's channel consumes it."""
    return name == DIRECT_REPLY_TO or name.startswith(DIRECT_REPLY_TO + ".")


# An anonymous router's queue: ``relaybus.reply.`` and 32 hex digits (names of that form are refused).
_PRIVATE_RE = re.compile(r"^(relaybus\.reply\.[0-9a-f]{32}|amq\.rabbitmq\.reply-to(\..*)?)$")


def is_private_reply_queue(name: str) -> bool:
    """Whether ``name`` is a reply queue that never comes back once gone: an anonymous router's
    (``relaybus.reply.<32 hex digits>``, deleted at its close or when it expires) or RabbitMQ's direct
    reply-to. A named router's queue (``relaybus.reply.<name>``) is not: its process declares it again."""
    return _PRIVATE_RE.match(name) is not None


def is_reply_queue(name: str) -> bool:
    """Whether ``name`` is a queue a worker may publish a result to: ``relaybus.reply.<name>`` (what every
    :class:`ReplyRouter` uses) or RabbitMQ's direct reply-to (``amq.rabbitmq.reply-to[.<token>]``). Anything
    else (another agent's task queue, ``relaybus.dead``) is refused by workers."""
    return _REPLY_QUEUE_RE.match(name) is not None


def is_events_queue(name: str) -> bool:
    """Whether ``name`` is a caller's events queue, ``relaybus.events.<32 hex digits>``: the only other queue
    (besides a reply queue) a worker sends a task's events to."""
    return EVENTS_QUEUE_RE.match(name) is not None


def publish_timeout_result(task: AgentTask, limit_s: float, blocked: object = None) -> ExecutionResult:
    """The retryable ``TIMEOUT`` result (``error.type == "PublishTimeout"``) of ``task`` when the broker did
    not take it within ``limit_s`` seconds; ``blocked`` is the bus's ``connection.blocked`` reason, if any."""
    why = f"RabbitMQ blocks publishing ({blocked})" if isinstance(blocked, str) else "the broker held it back"
    return ExecutionResult.failed(
        task.id,
        ExecutionStatus.TIMEOUT,
        "PublishTimeout",
        f"task {task.id} was not published within {limit_s:g}s: {why}; a memory or disk alarm blocks every "
        "publisher until it clears (free memory or disk on the broker); a result that comes later is dropped",
        retryable=True,
    )


def timeout_result(task: AgentTask, limit_s: float) -> ExecutionResult:
    """The retryable ``TIMEOUT`` result (``error.type == "ReplyTimeout"``) of ``task`` when no result came
    within ``limit_s`` seconds; its message names the agent or topic and what to do about it."""
    target = f"agent {task.agent!r}" if task.agent else f"topic {task.topic!r}"
    return ExecutionResult.failed(
        task.id,
        ExecutionStatus.TIMEOUT,
        "ReplyTimeout",
        f"no result for task {task.id} within {limit_s:g}s; a worker for {target} may be slow, overloaded or "
        "down: raise the timeout (the task's timeout_s) or start more workers",
        retryable=True,
    )


def closed_result(task_id: UUID, queue: str) -> ExecutionResult:
    """The retryable ``CANCELLED`` result (``error.type == "ReplyRouterClosed"``) of a task still awaited when
    the router of reply queue ``queue`` closed."""
    return ExecutionResult.failed(
        task_id,
        ExecutionStatus.CANCELLED,
        "ReplyRouterClosed",
        f"the reply router on {queue!r} was closed before a result arrived",
        retryable=True,
    )


def refused_result(task_id: UUID, reason: str) -> ExecutionResult:
    """The ``FAILURE`` result (``error.type == "InvalidResult"``) of a task whose result was refused on
    receipt for ``reason`` (and dead-lettered)."""
    return ExecutionResult.failed(
        task_id,
        ExecutionStatus.FAILURE,
        "InvalidResult",
        f"the result for task {task_id} was refused on receipt: {reason}; the worker that sent it speaks "
        "another wire format (see docs/wire.md), the result is in the dead letters",
    )
