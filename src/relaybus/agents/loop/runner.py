"""The agent loop itself: model turn, tool calls, results back, until a final answer or ``max_turns``.

See :meth:`relaybus.agents.AgentContext.run_loop` for what a caller may rely on. The turns run on
``ctx.executor.chat`` (so every turn adds to ``ctx.usage``) and the tool calls through the agent's
:class:`~relaybus.tools.Toolbox` with ``ctx.delegate`` (so every delegated call carries the task's deadline,
cancellation, loop guard and usage accounting).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel, JsonValue

from relaybus.agents.usage import UsageTally
from relaybus.executor.llm.chat import ChatMessage, UserMessage
from relaybus.executor.llm.errors import answer_text
from relaybus.executor.llm.prompt import task_messages
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus
from relaybus.tools import AnyTool, MCPServer, Toolbox

from .calls import run_tool_calls
from .journal import LoopJournal, open_journal
from .steps import emit_calls, emit_results
from .structured import structured_output

if TYPE_CHECKING:
    from relaybus.agents.context import AgentContext
    from relaybus.executor.protocol import ChatTurn

__all__ = ["run_agent_loop"]


async def run_agent_loop(
    ctx: AgentContext,
    task: AgentTask,
    *,
    tools: Sequence[AnyTool | MCPServer],
    toolbox: Toolbox | None,
    max_turns: int,
    output_schema: type[BaseModel] | None,
    system_prompt: str | None,
) -> ExecutionResult:
    """Run the loop for ``task``; ``toolbox`` is the worker's started one for ``tools``, or None to make (and,
    for MCP servers, start) one for this run."""
    journal = await open_journal(ctx, task)
    if toolbox is not None:
        return await _Loop(ctx, task, toolbox, max_turns, output_schema, journal).run(system_prompt)
    async with Toolbox(tools) as own:
        return await _Loop(ctx, task, own, max_turns, output_schema, journal).run(system_prompt)


class _Loop:
    """The state of one run: the conversation, the turns taken, and what they cost."""

    def __init__(
        self,
        ctx: AgentContext,
        task: AgentTask,
        toolbox: Toolbox,
        max_turns: int,
        output_schema: type[BaseModel] | None,
        journal: LoopJournal | None = None,
    ) -> None:
        self.ctx = ctx
        self.journal = journal
        self.task = task
        self.toolbox = toolbox
        self.max_turns = max_turns
        self.structured = structured_output(output_schema) if output_schema is not None else None
        self.usage = UsageTally()
        self.attempts = 0

    async def run(self, system_prompt: str | None) -> ExecutionResult:
        ctx, structured = self.ctx, self.structured
        messages: list[ChatMessage] = list(task_messages(self.task, system_prompt))
        specs = self.toolbox.specs
        response_schema = structured.response_schema if structured is not None else None
        repaired = False
        turn = 0
        step = 0  # the journal's: each model answer, then each of its tool calls
        while True:
            turn += 1
            replayed = None if self.journal is None else self.journal.model_turn(step)
            if replayed is not None:
                completion = replayed.completion
                self.usage.add(replayed.usage)
                self.attempts += replayed.attempts
            else:
                chat = await ctx.executor.chat(
                    messages, tools=specs, response_schema=response_schema, agent=ctx.agent
                )
                self.usage.add(chat.usage)
                self.attempts += chat.attempts
                if chat.failure is not None or chat.completion is None:
                    return self._failed_turn(chat)
                completion = chat.completion
                if self.journal is not None:
                    await self.journal.record_model(step, completion, chat.usage, chat.attempts)
            step += 1
            calls = completion.tool_calls
            ctx.log.debug("loop_turn", turn=turn, tool_calls=len(calls))
            if calls:
                if turn >= self.max_turns:
                    names = ", ".join(dict.fromkeys(c.name for c in calls))
                    return self._failed(
                        "MaxTurnsExceeded",
                        f"the model still called tools ({names}) at turn {turn}: max_turns={self.max_turns} "
                        f"model turns passed without a final answer; raise max_turns of agent {ctx.agent!r}, "
                        "or give it a smaller task",
                        output=completion.text or None,
                    )
                messages.append(completion.message)
                if ctx.streaming:
                    await emit_calls(ctx, calls, turn)
                done = await run_tool_calls(
                    self.toolbox,
                    calls,
                    delegate=ctx.delegate,
                    turn=turn,
                    log=ctx.log,
                    journal=self.journal,
                    first_step=step,
                )
                if ctx.streaming:
                    await emit_results(ctx, done.records)
                step += len(calls)
                messages.extend(done.messages)
                ctx.tool_calls.extend(done.records)
                self.usage.add(done.usage)
                continue
            if structured is None:
                return self._succeeded(completion.text)
            parsed = structured.parse(completion.text)
            if isinstance(parsed, BaseModel):
                return self._succeeded(parsed.model_dump(mode="json"))
            if repaired:
                return self._failed(
                    "InvalidStructuredOutput",
                    f"the final answer is not a valid {structured.response_schema.name}, even after a repair "
                    f"turn: {parsed}",
                    output=completion.text,
                )
            repaired = True  # one repair turn, past max_turns if need be: the model already answered
            ctx.log.info("loop_repair_turn", turn=turn, reasons=parsed[:300])
            messages.append(completion.message)
            messages.append(UserMessage(structured.repair_prompt(parsed)))

    def _succeeded(self, output: JsonValue) -> ExecutionResult:
        return ExecutionResult.success(
            self.task.id, output, agent=self.ctx.agent, attempts=self.attempts, usage=self.usage.usage()
        )

    def _failed_turn(self, chat: ChatTurn) -> ExecutionResult:
        failure = chat.failure
        assert failure is not None
        completion = chat.completion
        return self._failed(
            failure.type,
            failure.message,
            retryable=failure.retryable,
            output=None if completion is None else answer_text(completion),
        )

    def _failed(
        self, error_type: str, message: str, *, retryable: bool = False, output: str | None = None
    ) -> ExecutionResult:
        return ExecutionResult.failed(
            self.task.id,
            ExecutionStatus.FAILURE,
            error_type,
            message,
            retryable=retryable,
            agent=self.ctx.agent,
            attempts=self.attempts,
            usage=self.usage.usage(),
            output=output,
        )
