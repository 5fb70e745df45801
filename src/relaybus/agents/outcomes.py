"""Outcomes: the ``ExecutionResult`` a worker reports for each way a task can end."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, JsonValue, TypeAdapter, ValidationError

from relaybus.messages import ExecutionResult, ExecutionStatus, Usage
from relaybus.secrets import mask_secrets

from .agent import Agent
from .usage import NO_USAGE

__all__ = ["handle_failed", "handle_returned", "interrupted", "is_interrupted", "refused"]

_JSON_OUTPUT: TypeAdapter[JsonValue] = TypeAdapter(JsonValue)


def refused(
    task_id: UUID,
    status: ExecutionStatus,
    error_type: str,
    message: str,
    *,
    agent: str,
    worker: str,
    retryable: bool = False,
) -> ExecutionResult:
    """A task answered without running (cancelled before it came, refused by admission): no time spent."""
    now = datetime.now(UTC)
    return ExecutionResult.failed(
        task_id,
        status,
        error_type,
        message,
        retryable=retryable,
        agent=agent,
        worker=worker,
        started_at=now,
        finished_at=now,
    )


def handle_returned(
    task_id: UUID, value: object, *, agent: Agent, worker: str, started: datetime, usage: Usage
) -> ExecutionResult:
    """What ``agent.handle`` returned, as the task's result.

    An ``ExecutionResult`` (also one of another task: ``return await ctx.delegate(...)``) answers this task;
    a pydantic model or JSON values become the output of a SUCCESS; anything else a FAILURE saying so. The
    result is stamped with this agent, worker and the time spent; ``usage``, when not empty, is what the
    context metered for every call made for the task.
    """
    stamp: dict[str, Any] = {
        "agent": agent.name,
        "worker": worker,
        "started_at": started,
        "finished_at": datetime.now(UTC),
    }
    if usage is not NO_USAGE and usage != NO_USAGE:  # the tally hands out the shared empty one
        stamp["usage"] = usage
    if isinstance(value, ExecutionResult):
        return value.model_copy(update={"task_id": task_id, **stamp})
    try:
        output = (
            value.model_dump(mode="json")
            if isinstance(value, BaseModel)
            else _JSON_OUTPUT.validate_python(value)
        )
    except ValidationError:
        return ExecutionResult.failed(
            task_id,
            ExecutionStatus.FAILURE,
            "TypeError",
            f"{type(agent).__name__}.handle returned a {type(value).__name__}, which is not JSON: return an "
            "ExecutionResult, a pydantic model, or JSON values (dict, list, str, numbers, bool, None)",
            **stamp,
        )
    return ExecutionResult.success(task_id, output, **stamp)


def handle_failed(
    task_id: UUID, exc: Exception, *, agent: str, worker: str, started: datetime, usage: Usage
) -> ExecutionResult:
    """The FAILURE result of a ``handle`` that raised ``exc`` (its type and message, secrets masked)."""
    return ExecutionResult.failed(
        task_id,
        ExecutionStatus.FAILURE,
        type(exc).__name__,
        mask_secrets(str(exc)) or repr(exc),
        agent=agent,
        worker=worker,
        started_at=started,
        finished_at=datetime.now(UTC),
        usage=usage,
    )


# The error types of a run stopped from outside (its deadline passed, a cancel request).
_INTERRUPTED = frozenset({"DeadlineExceeded", "Cancelled"})


def is_interrupted(result: ExecutionResult) -> bool:
    """Whether ``result`` says the task was stopped from outside (past its deadline, cancelled) rather than
    what the task itself gave: such a result is answered but neither stored nor cached, so the same task
    published again later runs."""
    return result.error is not None and result.error.type in _INTERRUPTED


def interrupted(
    task_id: UUID,
    reason: str | None,
    detail: str,
    *,
    deadline: float | None,
    agent: str,
    worker: str,
    usage: Usage | None,
) -> ExecutionResult | None:
    """The result of a task stopped while it ran: TIMEOUT for ``"timeout"``, CANCELLED (with ``detail``)
    for ``"cancelled"``; None for a shutdown, whose task goes back to its queue. ``usage`` is what was spent
    before it stopped, if the task got that far."""
    fields: dict[str, Any] = {"agent": agent, "worker": worker, "finished_at": datetime.now(UTC)}
    if usage is not None:  # tokens spent before the deadline or the cancel still count
        fields["usage"] = usage
    if reason == "timeout":
        budget = "" if deadline is None else f" (deadline {datetime.fromtimestamp(deadline, UTC):%H:%M:%S})"
        return ExecutionResult.failed(
            task_id,
            ExecutionStatus.TIMEOUT,
            "DeadlineExceeded",
            f"the task did not finish before its deadline{budget}; its work was cancelled",
            retryable=True,
            **fields,
        )
    if reason == "cancelled":
        return ExecutionResult.failed(task_id, ExecutionStatus.CANCELLED, "Cancelled", detail, **fields)
    return None
