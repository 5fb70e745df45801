"""One turn's tool calls: all run at once, their results back to the model in the order it asked for them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from relaybus.agents.usage import UsageTally
from relaybus.executor.llm.chat import ToolCall, ToolResultMessage
from relaybus.log import FilteringBoundLogger
from relaybus.messages import Usage
from relaybus.secrets import mask_secrets
from relaybus.telemetry.hooks import traced_tool_call
from relaybus.tools import Delegate, Toolbox, ToolOutcome

if TYPE_CHECKING:
    from .journal import LoopJournal

__all__ = ["ToolCallRecord", "TurnCalls", "run_tool_calls"]


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
    ``i`` is step ``first_step + i``: answered from the journal when recorded there, else run and recorded.
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
