"""The agent loop's journal: each finished step recorded in the state store, replayed after a crash.

With a state store (``AgentWorker(state=...)``), the loop of a task records every step it finishes under
(task id, step): a model answer (its text, tool calls, finish reason, usage and HTTP attempts) and each tool
call's result (what went back to the model, and the usage a delegated call cost). Steps are numbered in the
order the conversation takes them: the model answer of a turn, then one step per tool call of that answer, in
the order the model asked for them; so a task redelivered after its worker died replays its journal and
calls the model (and runs the tools) only for the steps not yet done. The replayed steps' usage is counted
in the result again (and in the context's ``usage``): it is what the task cost.

- A step whose journal entry is missing or corrupt (skipped by the store, with a warning) is run again; from
  a model answer run again on, the journal is not replayed any more (the new answer may ask for other calls),
  and the steps recorded before the crash are kept as they were (``journal_append`` writes a step once).
- Only the first loop a task's context runs is journaled (a handler running two loops on the same task would
  otherwise replay the first one's steps into the second).
- A store that fails while recording is logged (``journal_append_failed``) and the loop goes on: a journal
  entry lost means only that this step runs again after a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pydantic import JsonValue

from relaybus.exceptions import StateError
from relaybus.executor.llm.base import Completion
from relaybus.executor.llm.chat import FinishReason, ToolCall
from relaybus.log import FilteringBoundLogger
from relaybus.messages import Usage
from relaybus.tools import ToolOutcome

if TYPE_CHECKING:
    from relaybus.agents.context import AgentContext
    from relaybus.messages import AgentTask
    from relaybus.state import StateStore

__all__ = ["LoopJournal", "ReplayedTurn", "open_journal"]

MODEL = "model"
TOOL = "tool"


class ReplayedTurn:
    """A model answer taken from the journal: the completion, and the usage and attempts it cost."""

    __slots__ = ("attempts", "completion", "usage")

    def __init__(self, completion: Completion, usage: Usage, attempts: int) -> None:
        self.completion = completion
        self.usage = usage
        self.attempts = attempts


async def open_journal(ctx: AgentContext, task: AgentTask) -> LoopJournal | None:
    """The journal of ``task``'s loop, loaded, when its context has a store and this is its first loop."""
    store = ctx.state
    if store is None or task.id != ctx.task.id or ctx.journaled:
        return None
    ctx.journaled = True
    try:
        entries = await store.journal(task.id)
    except StateError as exc:
        ctx.log.warning("journal_read_failed", error=str(exc))
        entries = None
    steps = {} if entries is None else {entry.step: (entry.kind, entry.data) for entry in entries}
    if steps:
        ctx.log.info("loop_resumed_from_journal", steps=len(steps))
    return LoopJournal(store, task.id, steps, ctx.log, ctx._add_usage)


class LoopJournal:
    """One loop's journal: what the store held at the start (``steps``), and the recording of new steps."""

    def __init__(
        self,
        store: StateStore,
        task_id: UUID,
        steps: dict[int, tuple[str, JsonValue]],
        log: FilteringBoundLogger,
        on_replayed_usage: Callable[[Usage], None] = lambda usage: None,
    ) -> None:
        self.store = store
        self._on_replayed_usage = on_replayed_usage
        self.task_id = task_id
        self._steps = steps
        self._log = log
        self.replaying = bool(steps)
        self.replayed = 0
        """Steps answered from the journal so far."""

    def model_turn(self, step: int) -> ReplayedTurn | None:
        """The recorded model answer of ``step``, or None (then the model is asked, and replay ends)."""
        data = self._entry(step, MODEL)
        if data is None:
            self.replaying = False
            return None
        try:
            turn = ReplayedTurn(
                Completion(
                    text=str(data["text"]),
                    usage=Usage.model_validate(data["usage"]),
                    model=str(data["model"]),
                    finish_reason=FinishReason.of(str(data["finish_reason"])),
                    tool_calls=tuple(
                        ToolCall(str(call["id"]), str(call["name"]), str(call["arguments"]))
                        for call in data["tool_calls"]
                    ),
                ),
                Usage.model_validate(data["usage"]),
                int(data["attempts"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            self._log.warning("journal_entry_unusable", step=step, error=str(exc)[:200])
            self.replaying = False
            return None
        self.replayed += 1
        self._on_replayed_usage(turn.usage)
        return turn

    def tool_result(self, step: int, call: ToolCall) -> ToolOutcome | None:
        """The recorded result of tool call ``call`` at ``step``, or None (then the tool runs)."""
        data = self._entry(step, TOOL)
        if data is None or data.get("call_id") != call.id:
            return None
        try:
            outcome = ToolOutcome(
                str(data["content"]), bool(data["is_error"]), Usage.model_validate(data["usage"])
            )
        except (KeyError, TypeError, ValueError) as exc:
            self._log.warning("journal_entry_unusable", step=step, error=str(exc)[:200])
            return None
        self.replayed += 1
        self._on_replayed_usage(outcome.usage)
        return outcome

    async def record_model(self, step: int, completion: Completion, usage: Usage, attempts: int) -> None:
        await self._append(
            step,
            MODEL,
            {
                "text": completion.text,
                "model": completion.model,
                "finish_reason": completion.finish_reason.value,
                "tool_calls": [
                    {"id": c.id, "name": c.name, "arguments": c.arguments} for c in completion.tool_calls
                ],
                "usage": usage.model_dump(mode="json"),
                "attempts": attempts,
            },
        )

    async def record_tool(self, step: int, call: ToolCall, outcome: ToolOutcome) -> None:
        await self._append(
            step,
            TOOL,
            {
                "call_id": call.id,
                "name": call.name,
                "content": outcome.content,
                "is_error": outcome.is_error,
                "usage": outcome.usage.model_dump(mode="json"),
            },
        )

    def _entry(self, step: int, kind: str) -> dict[str, Any] | None:
        if not self.replaying:
            return None
        found = self._steps.get(step)
        if found is None or found[0] != kind or not isinstance(found[1], dict):
            return None
        return found[1]

    async def _append(self, step: int, kind: str, data: JsonValue) -> None:
        try:
            await self.store.journal_append(self.task_id, step, kind, data)
        except StateError as exc:
            self._log.warning("journal_append_failed", step=step, error=str(exc)[:300])
