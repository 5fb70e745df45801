"""Test your own agents in memory, with the same API you deploy them with.

``AgentTestHarness`` starts real :class:`~relaybus.AgentWorker` s on an in-process
:class:`~relaybus.bus.memory.MemoryBus` (or a bus you pass in) and sends tasks to them through the bus, the
way an orchestrator does, so a test sees exactly what a deployed agent does: routing by topic, the result
conversion, delegation between agents, deadlines, cancellation and events::

    async def test_reviewer() -> None:
        async with AgentTestHarness([Reviewer(), Writer()]) as h:
            result = await h.run(AgentTask(topic="code.review", prompt="def f(): pass"))
        assert result.ok

A streamed task's events (:class:`~relaybus.TaskEvent`: model text, ``ctx.emit`` lines, the agent loop's
tool steps, a delegated agent's events, the ``result`` event last) come from :meth:`AgentTestHarness.stream`
(``async for event in h.stream(task)``) or, all at once, from :meth:`AgentTestHarness.run_streamed`.

Agents that use the default ``handle`` run on ``executor``; the default :class:`FakeExecutor` answers offline
and records what it was asked, so no LLM is needed. Agents with tools run their agent loop on it too: give
the model's answers as a script (``AgentTestHarness([Solver(), Counter()], script=[...])``, see
:class:`~relaybus.testing.ScriptedAnswer`) and read the requests it saw in ``h.executor.requests``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from uuid import UUID

from pydantic import JsonValue

from relaybus.agents.agent import Agent
from relaybus.agents.worker import AgentWorker, default_worker_id
from relaybus.bus.base import Bus, Delivery, HeaderValue
from relaybus.bus.codec import encode_cancel, encode_task
from relaybus.bus.memory import MemoryBus
from relaybus.bus.rpc import ReplyRouter
from relaybus.bus.topic import topic_matches
from relaybus.exceptions import ConfigError, UsageError
from relaybus.executor.llm.base import ChatRequest, LLMProvider
from relaybus.executor.llm.chat import ChatMessage, ResponseSchema, ToolChoice
from relaybus.executor.llm.errors import classify, unusable_answer
from relaybus.executor.llm.stream import DeltaCallback, TextDelta, completion_deltas
from relaybus.executor.protocol import ChatTurn, Executor
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus, TaskEvent, Usage
from relaybus.orchestrator.streaming import stream_request
from relaybus.tools.spec import ToolSpec

from .fake_llm_scripts import Script, ScriptedProvider, SeenRequest

__all__ = ["AgentTestHarness", "CapturedEvent", "FakeExecutor"]

Responder = Callable[[AgentTask, str | None], JsonValue]


def _fake_reply(seen: SeenRequest) -> str:
    return f"fake reply: {seen.last_user_text}"


class FakeExecutor:
    """An offline :class:`~relaybus.executor.protocol.Executor` for tests.

    Answers each task with a SUCCESS result whose output is ``respond(task, agent)``, or by default
    ``{"agent": agent, "prompt": task.prompt, "system_prompt": system_prompt}``, after ``delay_s`` seconds.
    Its usage: one request, a prompt token per word of ``task.prompt``, one completion token.
    ``calls`` lists every task it was given, in order; ``cancel`` ends a running call with CANCELLED.

    Model turns (:meth:`chat`, what the agent loop of an agent with tools runs on) are answered by
    ``provider``, by default a :class:`~relaybus.testing.ScriptedProvider` of ``script`` (answers in order,
    or a function of the request; without one: ``"fake reply: "`` + the last user message), after
    ``delay_s`` seconds. ``requests`` lists every :class:`~relaybus.executor.ChatRequest` it was sent. A
    provider that raises gives the turn's failure, as a real provider's error would (a script that ran out:
    ``ConfigError``).
    """

    def __init__(
        self,
        *,
        delay_s: float = 0.0,
        respond: Responder | None = None,
        script: Script | None = None,
        provider: LLMProvider | None = None,
        max_tokens: int = 1024,
    ) -> None:
        if script is not None and provider is not None:
            raise ConfigError("give FakeExecutor a script or a provider, not both")
        self.delay_s = delay_s
        self._respond = respond
        self.provider: LLMProvider = provider or ScriptedProvider(
            script if script is not None else _fake_reply
        )
        self.max_tokens = max_tokens
        self.calls: list[AgentTask] = []
        self.requests: list[ChatRequest] = []
        self._running: dict[UUID, asyncio.Task[None]] = {}

    async def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
        response_schema: ResponseSchema | None = None,
        agent: str | None = None,
        on_delta: DeltaCallback | None = None,
    ) -> ChatTurn:
        request = ChatRequest(
            tuple(messages), tuple(tools), tool_choice, response_schema, max_tokens=self.max_tokens
        )
        self.requests.append(request)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        name = self.provider.name
        try:
            completion = await self.provider.complete(request)
        except Exception as exc:
            return ChatTurn(request, None, classify(exc, name), 1, Usage(requests=1))
        if on_delta is not None:  # streamed: the whole answer as its deltas, as a provider that cannot stream
            for delta in completion_deltas(completion):
                on_delta(delta)
        failure = unusable_answer(completion, request, name)
        usage = completion.usage.model_copy(update={"requests": 1})
        return ChatTurn(request, completion, failure, 1, usage, name)

    async def execute(
        self,
        task: AgentTask,
        agent: str | None = None,
        mode: str | None = None,
        *,
        system_prompt: str | None = None,
        on_delta: DeltaCallback | None = None,
    ) -> ExecutionResult:
        self.calls.append(task)
        sleeper = asyncio.ensure_future(asyncio.sleep(self.delay_s))
        self._running[task.id] = sleeper
        try:
            await sleeper
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # cancelled from outside: propagate, as the Executor protocol says
            return ExecutionResult.failed(
                task.id,
                ExecutionStatus.CANCELLED,
                "Cancelled",
                "cancelled by FakeExecutor.cancel",
                agent=agent,
            )
        finally:
            self._running.pop(task.id, None)
        if self._respond is not None:
            output = self._respond(task, agent)
        else:
            output = {"agent": agent, "prompt": task.prompt, "system_prompt": system_prompt}
        if on_delta is not None and isinstance(output, str):  # streamed: a text answer as one delta
            on_delta(TextDelta(output))
        usage = Usage(prompt_tokens=len(task.prompt.split()), completion_tokens=1, requests=1)
        return ExecutionResult.success(task.id, output, agent=agent, usage=usage)

    def cancel(self, task_id: UUID) -> bool:
        sleeper = self._running.get(task_id)
        if sleeper is None or sleeper.done():
            return False
        sleeper.cancel()
        return True


@dataclass(frozen=True, slots=True)
class CapturedEvent:
    """An event seen on the bus: ``topic`` without the ``event.`` prefix, ``payload`` parsed from JSON."""

    topic: str
    payload: Any
    correlation_id: str | None


class AgentTestHarness:
    """Agents on real workers on an in-memory bus; see the module docstring.

    ``agents``: instances (shared by every worker) or Agent classes (one instance per worker).
    ``workers``: how many workers to start, like separate processes; each has its own ``worker_id``
    (``host:pid#n``, or ``<worker_id>#n`` when given) so a test can tell which one ran a task.
    ``worker_options`` go to each :class:`~relaybus.AgentWorker` (``concurrency``, ``grace_s``,
    ``max_delegation_depth``, ...); ``grace_s`` defaults to 0 here, so tasks a test left running are cancelled
    when the block ends instead of holding the test up.
    ``timeout_s`` bounds :meth:`run` unless it is given a timeout.
    ``script`` is the model's answers for the agents' loops: the harness's executor is then
    ``FakeExecutor(script=script)`` (give ``executor`` or ``script``, not both).
    """

    def __init__(
        self,
        agents: Sequence[Agent | type[Agent]],
        *,
        executor: Executor | None = None,
        script: Script | None = None,
        bus: Bus | None = None,
        workers: int = 1,
        timeout_s: float = 30.0,
        **worker_options: Any,
    ) -> None:
        if workers < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}")
        if executor is not None and script is not None:
            raise ConfigError("give AgentTestHarness an executor or a script, not both")
        self._agent_specs = tuple(agents)
        self.executor: Executor = executor if executor is not None else FakeExecutor(script=script)
        self._own_bus = bus is None
        self.bus: Bus = bus if bus is not None else MemoryBus()
        self._worker_count = workers
        self.timeout_s = timeout_s
        self._base_id: str = worker_options.pop("worker_id", None) or default_worker_id()
        worker_options.setdefault("grace_s", 0.0)
        self._options = worker_options
        self.workers: list[AgentWorker] = []
        self._router: ReplyRouter | None = None
        self._events: list[CapturedEvent] = []
        self._events_queue = f"relaybus.test-events.{uuid.uuid4().hex}"
        self._events_sub: Any = None

    @property
    def worker(self) -> AgentWorker:
        """The first (often the only) worker."""
        return self.workers[0]

    async def __aenter__(self) -> Self:
        if self._own_bus:
            await self.bus.connect()
        try:
            await self.bus.declare_queue(self._events_queue, bindings=("event.#",), durable=False)
            self._events_sub = await self.bus.consume(self._events_queue, self._on_event, prefetch=256)
            for index in range(self._worker_count):
                agents = [a() if isinstance(a, type) else a for a in self._agent_specs]
                worker_id = self._base_id + (f"#{index + 1}" if self._worker_count > 1 else "")
                worker = AgentWorker(
                    self.bus, agents, executor=self.executor, worker_id=worker_id, **self._options
                )
                await worker.start()
                self.workers.append(worker)
            self._router = ReplyRouter(self.bus)
            await self._router.start()
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        if self._router is not None:
            await self._router.close()
            self._router = None
        for worker in self.workers:
            await worker.stop()
        if self._events_sub is not None:
            await self._events_sub.cancel()
            self._events_sub = None
        if self._own_bus:
            await self.bus.close()

    async def run(
        self,
        task: AgentTask,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the budget becomes a TIMEOUT result
        headers: Mapping[str, HeaderValue] | None = None,
    ) -> ExecutionResult:
        """Send ``task`` over the bus as an orchestrator would; return its result (TIMEOUT if none came)."""
        if self._router is None:
            raise UsageError("use the harness inside `async with AgentTestHarness(...) as h:`")
        return await self._router.request(task, timeout=timeout or self.timeout_s, headers=headers)

    def stream(
        self,
        task: AgentTask,
        *,
        timeout: float | None = None,
    ) -> AsyncIterator[TaskEvent]:
        """Send ``task`` asking for its events and yield them in ``seq`` order, the ``result`` event last
        (its ``result`` is what :meth:`run` would return), as ``ProjectOrchestrator.stream`` does."""
        router = self._router
        if router is None:
            raise UsageError("use the harness inside `async with AgentTestHarness(...) as h:`")
        return stream_request(router, task, timeout=timeout or self.timeout_s)

    async def run_streamed(
        self,
        task: AgentTask,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the budget becomes a TIMEOUT result
    ) -> tuple[ExecutionResult, list[TaskEvent]]:
        """:meth:`stream` ``task`` to its end: its result and every event (the ``result`` event last)."""
        events = [event async for event in self.stream(task, timeout=timeout)]
        result = events[-1].result
        assert result is not None  # a stream always ends with the result event
        return result, events

    async def run_many(
        self,
        tasks: Sequence[AgentTask],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the budget becomes a TIMEOUT result
    ) -> list[ExecutionResult]:
        """Run ``tasks`` concurrently; results in the order of ``tasks``."""
        return list(await asyncio.gather(*(self.run(t, timeout=timeout) for t in tasks)))

    async def submit(self, task: AgentTask, *, headers: Mapping[str, HeaderValue] | None = None) -> None:
        """Publish ``task`` without waiting for (or receiving) its result."""
        await self.bus.publish(encode_task(task, reply_to=None, headers=headers))

    async def cancel(self, task_id: UUID, reason: str = "cancelled by the test") -> None:
        """Publish a :class:`~relaybus.messages.CancelRequest` for ``task_id``, as an orchestrator does."""
        await self.bus.publish(encode_cancel(task_id, reason))

    def events(self, pattern: str = "#") -> list[CapturedEvent]:
        """Events published so far whose topic matches ``pattern`` (``event.`` prefix left out)."""
        return [e for e in self._events if topic_matches(pattern, e.topic)]

    async def _on_event(self, delivery: Delivery) -> None:
        try:
            payload = json.loads(delivery.body)
        except ValueError:
            payload = delivery.body
        topic = delivery.routing_key.removeprefix("event.")
        self._events.append(CapturedEvent(topic, payload, delivery.correlation_id))
        await delivery.ack()
