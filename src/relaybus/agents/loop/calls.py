"""One turn's tool calls: all run at once, their results back to the model in the order it asked for them."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from relaybus.agents.usage import UsageTally
from relaybus.executor.llm.chat import ToolCall, ToolResultMessage
from relaybus.log import FilteringBoundLogger
from relaybus.messages import AgentTask, ExecutionResult, Usage
from relaybus.secrets import mask_secrets
from relaybus.telemetry.hooks import traced_tool_call
from relaybus.tools import Delegate, Toolbox, ToolOutcome

if TYPE_CHECKING:
    from .journal import LoopJournal

__all__ = ["ToolCallRecord", "TurnCalls", "run_tool_calls", "sub_task_id"]


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    """One tool call the agent loop ran: in which model ``turn`` (from 1), the model's call ``id``, the tool
    ``name`` and ``arguments`` (JSON text as the model wrote it), what went back to the model (``content``,
    ``is_error``) and how long the call took (``duration_s``)."""

    turn: int
    id: str
    name: str
    arguments: str
    content: str
    is_error: bool
    duration_s: float


@dataclass(frozen=True, slots=True)
class TurnCalls:
    """What one turn's calls gave: the tool messages in call order, their records and the usage they cost."""

    messages: tuple[ToolResultMessage, ...]
    records: tuple[ToolCallRecord, ...]
    usage: Usage


async def run_tool_calls(
    toolbox: Toolbox,
    calls: Sequence[ToolCall],
    *,
    delegate: Delegate,
    turn: int,
    log: FilteringBoundLogger,
    journal: LoopJournal | None = None,
    first_step: int = 0,
) -> TurnCalls:
    """Run every call in ``calls`` concurrently (one call: inline) and gather their outcomes in order.

    A cancellation (the task's deadline, a cancel request) cancels every call still running, delegated tasks
    included (``ctx.delegate`` cancels them remotely), and is raised once they have stopped. ``usage`` is the
    delegated results' (which ``delegate`` already added to the task's context). With a ``journal``, call
    ``i`` is step ``first_step + i``: answered from the journal when recorded there, else run and recorded;
    and the tasks it delegates are sent under ids derived from the task, the step and the model's call id
    (:func:`sub_task_id`), so that a loop resumed after a crash sends a call that was in flight under the
    same id again, and the delegated agent answers it from its result (cache or store) instead of running
    it twice.
    """
    if len(calls) == 1:
        results = [await _call(toolbox, calls[0], delegate, log, journal, first_step)]
    else:
        results = list(
            await asyncio.gather(
                *(
                    _call(toolbox, call, delegate, log, journal, first_step + i)
                    for i, call in enumerate(calls)
                )
            )
        )
    usage = UsageTally()
    messages: list[ToolResultMessage] = []
    records: list[ToolCallRecord] = []
    for call, (outcome, seconds) in zip(calls, results, strict=True):
        usage.add(outcome.usage)
        messages.append(ToolResultMessage(call.id, outcome.content, outcome.is_error))
        records.append(
            ToolCallRecord(
                turn, call.id, call.name, call.arguments, outcome.content, outcome.is_error, seconds
            )
        )
    return TurnCalls(tuple(messages), tuple(records), usage.usage())


@traced_tool_call
async def _call(
    toolbox: Toolbox,
    call: ToolCall,
    delegate: Delegate,
    log: FilteringBoundLogger,
    journal: LoopJournal | None,
    step: int,
) -> tuple[ToolOutcome, float]:
    replayed = None if journal is None else journal.tool_result(step, call)
    if replayed is not None:
        return replayed, 0.0
    if journal is not None:
        delegate = _stable_ids(delegate, journal.task_id, step, call.id)
    started = time.perf_counter()
    try:
        outcome = await toolbox.call(call.name, call.arguments, delegate=delegate)
    except Exception as exc:
        # Tools report their faults as outcomes; one that raises anyway must not take its siblings down.
        log.error("tool_call_raised", tool=call.name, error=mask_secrets(repr(exc)))
        outcome = ToolOutcome.error(f"{call.name} failed: {type(exc).__name__}: {mask_secrets(str(exc))}")
    seconds = time.perf_counter() - started
    if journal is not None:
        await journal.record_tool(step, call, outcome)
    return outcome, seconds


def sub_task_id(task_id: uuid.UUID, step: int, call_id: str, n: int = 0) -> uuid.UUID:
    """The id of the ``n``-th task (from 0) that journal step ``step`` (the model's call ``call_id``) of the
    loop of task ``task_id`` delegates: the same on every replay of that step, distinct across steps."""
    return uuid.uuid5(task_id, f"relaybus.tool:{step}:{call_id}:{n}")


def _stable_ids(delegate: Delegate, task_id: uuid.UUID, step: int, call_id: str) -> Delegate:
    sent = itertools.count()

    async def send(task: AgentTask, /, *, timeout: float | None = None) -> ExecutionResult:  # noqa: ASYNC109
        stable = task.model_copy(update={"id": sub_task_id(task_id, step, call_id, next(sent))})
        return await delegate(stable, timeout=timeout)

    return send
