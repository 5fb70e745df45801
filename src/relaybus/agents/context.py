"""``AgentContext``: what an agent's ``handle`` gets besides the task.

It carries the executor, the bus, a logger bound to the task, the agent loop (:meth:`AgentContext.run_loop`)
and the ways to talk to other agents: delegate a sub-task and await its result (by correlation id, through
the process's one reply queue), delegate many at once, or publish an event. Agents coordinate only over the
bus, never by calling each other directly.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from pydantic import BaseModel, JsonValue

from relaybus.bus.base import DEADLINE_HEADER, DELEGATION_HEADER, STREAM_HEADER, Bus, HeaderValue
from relaybus.bus.codec import encode_cancel, encode_event
from relaybus.exceptions import ConfigError
from relaybus.executor.protocol import ChatTurn, Executor
from relaybus.log import FilteringBoundLogger
from relaybus.messages import AgentTask, ExecutionResult, TaskEvent, TaskEventKind, Usage

from .agent import DEFAULT_MAX_TURNS
from .delegation import check_outgoing, format_chain
from .usage import UsageTally

if TYPE_CHECKING:  # the loop and the tools load only for agents that use them
    from relaybus.executor.llm.chat import ChatMessage, ResponseSchema, ToolChoice
    from relaybus.executor.llm.stream import DeltaCallback
    from relaybus.state import StateStore
    from relaybus.tools import AnyTool, MCPServer, Toolbox, ToolSpec

    from .agent import Agent
    from .events import EventSender
    from .loop import ToolCallRecord

__all__ = ["DEFAULT_DELEGATE_TIMEOUT_S", "AgentContext", "Requester"]

DEFAULT_DELEGATE_TIMEOUT_S = 300.0
"""How long ``delegate`` waits when neither the call, the sub-task nor the parent's deadline says less."""


class Requester(Protocol):
    """Publishes a task and awaits its result by correlation id (``relaybus.bus.rpc.ReplyRouter``)."""

    async def request(
        self,
        task: AgentTask,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the budget becomes a TIMEOUT result
        headers: Mapping[str, HeaderValue] | None = None,
        on_event: Callable[[TaskEvent], None] | None = None,
    ) -> ExecutionResult: ...


class AgentContext:
    """Per-task context handed to :meth:`Agent.handle`.

    Attributes a handler may rely on: ``task`` (the task being handled), ``agent`` (this agent's name),
    ``worker`` (``host:pid`` of this process), ``executor``, ``bus``, ``log`` (a structlog logger already
    bound to ``task_id``, ``agent`` and ``worker``), ``deadline`` (Unix time by which the task must finish,
    or None) and ``chain`` (the agents that delegated this task, outermost first).

    ``usage`` adds up the token usage of every ``executor.execute``, ``executor.chat`` and ``delegate`` result
    of this task; the worker reports it as the task's usage, so a handler that returns plain JSON still
    accounts for its LLM calls and for those of the agents it delegated to. ``tool_calls`` lists every tool
    call the agent loop ran for this task (:class:`~relaybus.agents.loop.ToolCallRecord`), in the order the
    model asked for them.

    ``streaming`` tells whether the caller asked for this task's events; :meth:`emit` sends one (a no-op
    otherwise), and while it streams the executor streams the model's text to the caller and delegated
    tasks stream too, their events forwarded to the caller tagged with their task id.
    """

    def __init__(
        self,
        *,
        task: AgentTask,
        agent: str,
        worker: str,
        executor: Executor,
        bus: Bus,
        log: FilteringBoundLogger,
        requester: Requester,
        chain: tuple[str, ...] = (),
        deadline: float | None = None,
        max_delegation_depth: int,
        release_slot: Callable[[], AbstractAsyncContextManager[None]] | None = None,
        instance: Agent | None = None,
        toolbox: Toolbox | None = None,
        events: EventSender | None = None,
        state: StateStore | None = None,
    ) -> None:
        self.task = task
        self.agent = agent
        self.worker = worker
        self._usage = UsageTally()
        self.tool_calls: list[ToolCallRecord] = []
        self._events = events
        # The tally's own ``add``, not a method of this context: the context holds the executor, so a bound
        # method of its own would make every task's context a reference cycle (see ``TaskRunner.run``).
        self.executor: Executor = _MeteredExecutor(
            executor, self._usage.add, None if events is None else events.delta
        )
        self.bus = bus
        self.log = log
        self.chain = chain
        self.deadline = deadline
        self.max_delegation_depth = max_delegation_depth
        self._requester = requester
        self._release_slot = release_slot
        self._instance = instance
        self._toolbox = toolbox
        self.state = state
        """The worker's state store, or None: the agent loop journals its steps there."""
        self.journaled = False  # whether a loop of this context took the journal (only the first does)

    @property
    def usage(self) -> Usage:
        """The token usage of every executor call and delegated task of this task so far."""
        return self._usage.usage()

    def _add_usage(self, usage: Usage) -> None:
        self._usage.add(usage)

    @property
    def streaming(self) -> bool:
        """Whether the caller streams this task (sent it with ``relaybus-stream: 1``)."""
        return self._events is not None

    async def emit(self, kind: TaskEventKind, *, text: str = "", data: JsonValue = None) -> None:
        """Send the caller a :class:`~relaybus.TaskEvent` of ``kind`` (``progress``, ``delta``, ``tool_call``
        or ``tool_result``) with ``text`` and ``data`` (JSON); returns at once. Nothing is sent when the
        caller does not stream. Events are best effort: never an error for the bus. Raises
        :class:`~relaybus.ConfigError` for another kind (``result`` is the task's result itself)."""
        from .events import EMITTABLE_KINDS

        if kind not in EMITTABLE_KINDS:
            raise ConfigError(
                f"event kind {kind!r} cannot be emitted: use one of {', '.join(sorted(EMITTABLE_KINDS))} "
                "(the result event is the task's result, sent when handle returns)"
            )
        if self._events is not None:
            self._events.emit(kind, text, data)

    def remaining(self) -> float | None:
        """Seconds left before this task's deadline (never negative), or None without a deadline."""
        return None if self.deadline is None else max(0.0, self.deadline - time.time())

    async def delegate(
        self,
        task: AgentTask,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the budget becomes a TIMEOUT result
    ) -> ExecutionResult:
        """Send ``task`` to another agent over the bus and return its result.

        The wait is bounded by ``timeout``, else the sub-task's ``timeout_s``, else
        ``DEFAULT_DELEGATE_TIMEOUT_S``, and never outlasts this task's own deadline; the bound travels as
        the sub-task's deadline header, so the other worker stops too. A sub-task that does not finish in
        time comes back as a TIMEOUT result, a failed one as its FAILURE result: this never raises for a
        sub-task that failed.

        Raises :class:`~relaybus.DelegationError` when the sub-task addresses an agent already in this
        delegation chain (a loop) or the chain would grow past the depth limit; a loop through topics is
        caught by the receiving worker and comes back as a FAILURE result of type ``DelegationError``. Raises
        :class:`~relaybus.NoRouteError` when no agent subscribes to the sub-task's topic.

        While it waits, the task gives its worker's concurrency slot back, so agents hosted by the same worker
        can delegate to each other without starving it.
        """
        chain = check_outgoing(self.chain, self.agent, task.agent, self.max_delegation_depth)
        return await self._send(task, chain, timeout)

    async def delegate_many(
        self,
        tasks: Sequence[AgentTask],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the budget becomes a TIMEOUT result
    ) -> list[ExecutionResult]:
        """Delegate every task concurrently; the results come back in the order of ``tasks``.

        All tasks are checked for loops and depth before any is sent. If one cannot be sent (e.g.
        :class:`~relaybus.NoRouteError`), the others are cancelled and that error is raised.
        """
        chain: tuple[str, ...] = ()
        for task in tasks:
            chain = check_outgoing(self.chain, self.agent, task.agent, self.max_delegation_depth)
        sends = [asyncio.ensure_future(self._send(task, chain, timeout)) for task in tasks]
        try:
            return list(await asyncio.gather(*sends))
        except BaseException:
            # One raised (e.g. NoRouteError) or this task was cancelled: stop the others, here and remotely.
            for send in sends:
                send.cancel()
            await asyncio.gather(*sends, return_exceptions=True)
            raise

    async def _send(self, task: AgentTask, chain: tuple[str, ...], budget: float | None) -> ExecutionResult:
        wait = budget if budget is not None else task.timeout_s or DEFAULT_DELEGATE_TIMEOUT_S
        remaining = self.remaining()
        if remaining is not None:
            wait = min(wait, remaining)
        headers: dict[str, HeaderValue] = {
            DELEGATION_HEADER: format_chain(chain),
            DEADLINE_HEADER: f"{time.time() + wait:.3f}",
        }
        self.log.debug("delegate", sub_task_id=str(task.id), topic=task.topic, to_agent=task.agent)
        extra: dict[str, Callable[[TaskEvent], None]] = {}
        if self._events is not None:  # the caller streams: so does the sub-task, its events passed on
            headers[STREAM_HEADER] = "1"
            forward = self._events.forward
            extra["on_event"] = lambda event: forward(event, task.id)
        try:
            async with self._slot_released():
                result = await self._requester.request(task, timeout=wait, headers=headers, **extra)
            self._add_usage(result.usage)
            return result
        except asyncio.CancelledError:
            # This task was cancelled (deadline, cancel request, shutdown): stop the sub-task too, wherever it
            # runs, rather than let it burn tokens for a result nobody awaits.
            await self._cancel_remote(task)
            raise

    async def _cancel_remote(self, task: AgentTask) -> None:
        reason = f"the delegating task {self.task.id} was cancelled"
        try:
            await self.bus.publish(encode_cancel(task.id, reason))
        except Exception as exc:  # best effort: the sub-task's deadline stops it anyway
            self.log.warning("delegate_cancel_failed", sub_task_id=str(task.id), error=repr(exc))

    def _slot_released(self) -> AbstractAsyncContextManager[None]:
        return nullcontext() if self._release_slot is None else self._release_slot()

    async def run_loop(
        self,
        task: AgentTask | None = None,
        *,
        tools: Iterable[AnyTool | MCPServer] | None = None,
        max_turns: int | None = None,
        output_schema: type[BaseModel] | None = None,
        system_prompt: str | None = None,
    ) -> ExecutionResult:
        """Run the agent loop on ``task`` (default: this task) and return its result; never raises for a fault
        of the model or of a tool.

        Each argument left None is the agent's own (``Agent.tools``, ``max_turns``, ``output_schema``,
        ``system_prompt``); ``tools=()`` offers no tools. The model gets the system prompt, the task (prompt
        and input, as :func:`~relaybus.executor.llm.task_messages` renders them) and the tools' specs; every
        answer with tool calls has all its calls run concurrently, their results sent back in call order,
        until a final answer: SUCCESS with the text as ``output`` (with an output schema: the validated
        object as JSON, after at most one repair turn, else FAILURE ``InvalidStructuredOutput``). FAILURE
        ``MaxTurnsExceeded`` when the model still calls tools at turn ``max_turns``; a failed model call or
        an answer that cannot be used (truncated, refused, filtered) ends the loop with that FAILURE.

        Tool errors (an exception, invalid arguments, an unknown tool name, a delegated task that failed or
        timed out) go back to the model as error tool results. The result's ``usage`` sums every model turn
        and every delegated call; each also adds to :attr:`usage`. The task's deadline bounds the whole loop:
        its cancellation stops the model call or the tool calls in flight, delegated tasks included. Tools
        given here that the worker did not start (an MCP server) are started for this call and closed after.
        """
        from .loop import run_agent_loop

        agent = self._instance
        return await run_agent_loop(
            self,
            task or self.task,
            tools=tuple(tools) if tools is not None else agent.tools if agent else (),
            toolbox=self._toolbox if tools is None else None,
            max_turns=max_turns or (agent.max_turns if agent else DEFAULT_MAX_TURNS),
            output_schema=output_schema or (agent.output_schema if agent else None),
            system_prompt=system_prompt
            if system_prompt is not None
            else (agent.system_prompt if agent else None),
        )

    async def publish_event(self, topic: str, payload: JsonValue | BaseModel) -> None:
        """Publish ``payload`` (JSON, or a pydantic model) as an event on ``event.<topic>``.

        Events are fire-and-forget: one that no queue listens to is dropped without an error. Raises
        :class:`~relaybus.ConfigError` for a topic that is not dot-separated words.
        """
        await self.bus.publish(encode_event(topic, payload, correlation_id=str(self.task.id)))


class _MeteredExecutor:
    """The worker's executor, adding the usage of each result to the task's context."""

    def __init__(
        self,
        inner: Executor,
        on_usage: Callable[[Usage], None],
        on_text: Callable[[str], None] | None = None,
    ) -> None:
        self._inner = inner
        self._on_usage = on_usage
        self._on_delta = None if on_text is None else _text_deltas(on_text)

    @property
    def inner(self) -> Executor:
        """The executor the worker was given."""
        return self._inner

    async def execute(
        self,
        task: AgentTask,
        agent: str | None = None,
        mode: str | None = None,
        *,
        system_prompt: str | None = None,
    ) -> ExecutionResult:
        if self._on_delta is not None and _takes_on_delta(self._inner.execute):
            execute: Any = self._inner.execute
            result: ExecutionResult = await execute(
                task, agent, mode, system_prompt=system_prompt, on_delta=self._on_delta
            )
        else:
            result = await self._inner.execute(task, agent, mode, system_prompt=system_prompt)
        self._on_usage(result.usage)
        return result

    async def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
        response_schema: ResponseSchema | None = None,
        agent: str | None = None,
    ) -> ChatTurn:
        chat: Any = getattr(self._inner, "chat", None)
        if chat is None:
            raise ConfigError(
                f"the worker's executor {self._inner!r} has no chat(): the agent loop needs one "
                "(TaskExecutor and relaybus.testing.FakeExecutor have it)"
            )
        streaming: dict[str, DeltaCallback] = {}
        if self._on_delta is not None and _takes_on_delta(chat):
            streaming["on_delta"] = self._on_delta
        turn: ChatTurn = await chat(
            messages,
            tools=tools,
            tool_choice=tool_choice,
            response_schema=response_schema,
            agent=agent,
            **streaming,
        )
        self._on_usage(turn.usage)
        return turn

    def cancel(self, task_id: UUID) -> bool:
        return self._inner.cancel(task_id)


def _text_deltas(on_text: Callable[[str], None]) -> DeltaCallback:
    """An executor's ``on_delta`` passing the model's text pieces to ``on_text`` (tool-call deltas are not
    text for the caller: the agent loop reports its tool calls as events of their own)."""
    from relaybus.executor.llm.stream import TextDelta

    def on_delta(delta: object) -> None:
        if isinstance(delta, TextDelta):
            on_text(delta.text)

    return on_delta


def _takes_on_delta(method: Callable[..., Any]) -> bool:
    """Whether an executor's ``execute`` or ``chat`` accepts ``on_delta`` (TaskExecutor's do; a custom
    executor's may not). Asked once per function: ``inspect.signature`` costs ~25 us, per streamed task."""
    function = getattr(method, "__func__", method)  # a bound method: its class's function
    try:
        return _accepts_on_delta(function)
    except TypeError:  # an unhashable callable
        return _accepts_on_delta.__wrapped__(function)


@functools.lru_cache(maxsize=256)
def _accepts_on_delta(function: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return "on_delta" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())
