"""Spans after the semantic conventions, in memory: real workers on a MemoryBus, a real ``TaskExecutor`` whose
provider is scripted (so the LLM backend's retries and the agent loop run as deployed), the SDK's
in-memory exporter. The same trace across real worker processes on RabbitMQ: ``test_tracing_processes.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from relaybus import Agent, AgentContext, AgentTask, AgentTool, AgentWorker, ExecutionStatus
from relaybus.bus.base import DEAD_LETTER_QUEUE, EXCHANGE, Delivery, OutgoingMessage, agent_queue_name
from relaybus.bus.codec import encode_cancel, encode_heartbeat
from relaybus.bus.memory import MemoryBus
from relaybus.executor import ExecutorConfig, TaskExecutor
from relaybus.executor.llm.base import ChatRequest, Completion
from relaybus.executor.retry import RetryPolicy
from relaybus.messages import WorkerHeartbeat
from relaybus.orchestrator import Plan, ProjectOrchestrator
from relaybus.state.sqlite import SqliteStore
from relaybus.telemetry.trace_context import current_trace_id, format_trace_id, trace_id_of
from relaybus.telemetry.tracing import tracing_enabled
from relaybus.testing import AgentTestHarness, ScriptedAnswer, ScriptedProvider, ScriptedToolCall, SeenRequest

PLANNER_USAGE = (11, 3)
WRITER_USAGE = (7, 5)


def script(seen: SeenRequest) -> ScriptedAnswer:
    if not seen.tools:  # the writer's one call
        return ScriptedAnswer(text="a sentence", usage=WRITER_USAGE)
    if seen.tool_results:
        return ScriptedAnswer(text="done: " + seen.tool_results[0].content, usage=PLANNER_USAGE)
    return ScriptedAnswer(
        tool_calls=[ScriptedToolCall("write", {"prompt": "one sentence"})], usage=PLANNER_USAGE
    )


class Flaky:
    """A provider whose first ``failures`` plain requests fail to connect (the backend retries), then
    scripted."""

    kind = "openai"

    def __init__(self, failures: int = 0) -> None:
        self.inner = ScriptedProvider(script, model="m1")
        self.model = "m1"
        self.failures = failures

    @property
    def name(self) -> str:
        return "flaky"

    async def complete(self, request: ChatRequest) -> Completion:
        if self.failures and not request.tools:
            self.failures -= 1
            raise httpx.ConnectError("refused")
        return await self.inner.complete(request)


class Planner(Agent):
    name = "trace-planner"
    topics = ("trace.plan",)
    tools = (AgentTool("trace.write", name="write", description="Ask the writer for a sentence"),)


class Writer(Agent):
    name = "trace-writer"
    topics = ("trace.write",)


class Broken(Agent):
    name = "trace-broken"
    topics = ("trace.broken",)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        raise ValueError("broken on purpose")


class TraceReader(Agent):
    name = "trace-reader"
    topics = ("trace.read.outer",)
    seen: list[str | None] = []

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        self.seen.append(current_trace_id())
        if task.input.get("delegate"):
            await ctx.delegate(AgentTask(topic="trace.read.inner", prompt="inner"))
        return "read"


class InnerReader(TraceReader):
    name = "trace-inner-reader"
    topics = ("trace.read.inner",)


def executor(failures: int = 0) -> TaskExecutor:
    retry = RetryPolicy(base_delay_s=0.0, jitter=0.0)
    return TaskExecutor(ExecutorConfig(retry=retry), provider=Flaky(failures))


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def one(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    found = by_name(spans, name)
    assert len(found) == 1, f"{len(found)} spans named {name!r} among {[s.name for s in spans]}"
    return found[0]


def parent_of(span: ReadableSpan, spans: tuple[ReadableSpan, ...]) -> ReadableSpan:
    assert span.parent is not None, f"{span.name} has no parent"
    return next(s for s in spans if s.context.span_id == span.parent.span_id)


async def test_one_trace_from_the_caller_through_a_delegation_with_messaging_and_genai_spans(
    spans: InMemorySpanExporter, tracer: trace.Tracer
) -> None:
    async with AgentTestHarness([Planner(), Writer()], executor=executor(failures=1)) as h:
        with tracer.start_as_current_span("caller") as caller:
            result = await h.run(AgentTask(topic="trace.plan", prompt="plan"))
    assert result.status is ExecutionStatus.SUCCESS, result.error
    assert result.output == "done: a sentence"
    done = spans.get_finished_spans()
    trace_id = caller.get_span_context().trace_id
    assert {s.context.trace_id for s in done} == {trace_id}

    # the caller's publish, and the planner's process span a child of it and linked to it
    publish = parent_of(one(done, f"process {agent_queue_name('trace-planner')}"), done)
    assert publish.name == f"publish {EXCHANGE}"
    assert publish.kind is SpanKind.PRODUCER
    assert parent_of(publish, done).name == "caller"
    process = one(done, f"process {agent_queue_name('trace-planner')}")
    assert process.kind is SpanKind.CONSUMER
    assert [link.context.span_id for link in process.links] == [publish.context.span_id]
    attributes = dict(process.attributes or {})
    assert attributes["messaging.system"] == "rabbitmq"
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.rabbitmq.destination.routing_key"] == "task.trace.plan"
    assert attributes["messaging.message.id"] == str(result.task_id)
    assert attributes["relaybus.settle"] == "acked"
    assert dict(publish.attributes or {})["messaging.message.id"] == str(result.task_id)

    # invoke_agent under the process span; its model turns and the tool call under it
    planner = one(done, "invoke_agent trace-planner")
    assert parent_of(planner, done) is process
    assert (
        dict(planner.attributes or {})["gen_ai.usage.input_tokens"] == 2 * PLANNER_USAGE[0] + WRITER_USAGE[0]
    )
    tool = one(done, "execute_tool write")
    assert parent_of(tool, done) is planner
    assert dict(tool.attributes or {})["gen_ai.tool.name"] == "write"
    planner_chats = [s for s in by_name(done, "chat m1") if parent_of(s, done) is planner]
    assert len(planner_chats) == 2
    first = dict(planner_chats[0].attributes or {})
    assert first["gen_ai.operation.name"] == "chat"
    assert first["gen_ai.provider.name"] == "openai"
    assert first["gen_ai.request.model"] == "m1"
    assert first["gen_ai.response.model"] == "m1"
    assert (first["gen_ai.usage.input_tokens"], first["gen_ai.usage.output_tokens"]) == PLANNER_USAGE
    assert first["gen_ai.response.finish_reasons"] == ("tool_calls",)

    # the delegated task: published under the tool call, processed by the writer, whose call was retried once
    writer = one(done, "invoke_agent trace-writer")
    writer_process = parent_of(writer, done)
    assert writer_process.name == f"process {agent_queue_name('trace-writer')}"
    assert parent_of(parent_of(writer_process, done), done) is tool
    attempts = sorted(
        (s for s in by_name(done, "chat m1") if parent_of(s, done) is writer), key=lambda s: s.start_time or 0
    )
    assert [s.status.status_code for s in attempts] == [StatusCode.ERROR, StatusCode.UNSET]
    failed = attempts[0]
    assert dict(failed.attributes or {})["error.type"] == "ConnectError"
    assert [e.name for e in failed.events] == ["exception"]
    assert dict(attempts[1].attributes or {})["gen_ai.usage.output_tokens"] == WRITER_USAGE[1]

    # the results went back to reply queues in the same trace
    replies = [s for s in done if s.name == "publish amq.default"]
    assert len(replies) == 2
    assert all(s.kind is SpanKind.PRODUCER for s in replies)


async def test_a_failing_agent_gives_an_error_span_with_the_exception(
    spans: InMemorySpanExporter,
) -> None:
    async with AgentTestHarness([Broken()], executor=executor()) as h:
        result = await h.run(AgentTask(topic="trace.broken", prompt="x"))
    assert result.status is ExecutionStatus.FAILURE
    done = spans.get_finished_spans()
    span = one(done, "invoke_agent trace-broken")
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "ValueError"
    (event,) = span.events
    assert event.name == "exception"
    assert dict(event.attributes or {})["exception.message"] == "broken on purpose"
    # the task still got its (FAILURE) result: the delivery was acked
    assert dict(one(done, f"process {agent_queue_name('trace-broken')}").attributes or {})[
        "relaybus.settle"
    ] == ("acked")


async def test_a_dead_letter_keeps_the_trace_of_the_message_it_holds(
    spans: InMemorySpanExporter, tracer: trace.Tracer
) -> None:
    dead: list[Delivery] = []

    async def keep(delivery: Delivery) -> None:
        dead.append(delivery)
        await delivery.ack()

    async with AgentTestHarness([Writer()], executor=executor()) as h:
        await h.bus.consume(DEAD_LETTER_QUEUE, keep)
        with tracer.start_as_current_span("caller") as caller:
            await h.bus.publish(OutgoingMessage(b"not json", routing_key="task.trace.write"))
        async with asyncio.timeout(5):
            while not dead:
                await asyncio.sleep(0.01)
    trace_id = format_trace_id(caller.get_span_context().trace_id)
    assert trace_id_of(dead[0].headers) == trace_id
    process = one(spans.get_finished_spans(), f"process {agent_queue_name('trace-writer')}")
    assert dict(process.attributes or {})["relaybus.settle"] == "dead-lettered"


async def test_cancels_carry_the_trace_and_heartbeats_none(tracer: trace.Tracer) -> None:
    got: list[Delivery] = []

    async def keep(delivery: Delivery) -> None:
        got.append(delivery)
        await delivery.ack()

    async with MemoryBus() as bus:
        await bus.declare_queue("tap", bindings=["event.#"], durable=False)
        await bus.consume("tap", keep)
        with tracer.start_as_current_span("caller") as caller:
            await bus.publish(encode_cancel(AgentTask(topic="t").id, "no longer needed"))
            await bus.publish(
                encode_heartbeat(
                    WorkerHeartbeat(
                        worker="w", host="h", pid=1, agents=(), in_flight=0, capacity=1, interval_s=5
                    )
                )
            )
        async with asyncio.timeout(5):
            while len(got) < 2:
                await asyncio.sleep(0.01)
    cancel, heartbeat = got
    assert trace_id_of(cancel.headers) == format_trace_id(caller.get_span_context().trace_id)
    assert "traceparent" not in heartbeat.headers


async def test_without_an_sdk_the_trace_context_travels_and_each_task_outside_a_trace_gets_its_own() -> None:
    assert not tracing_enabled()
    TraceReader.seen = []
    async with AgentTestHarness([TraceReader(), InnerReader()], executor=executor()) as h:
        first = await h.run(AgentTask(topic="trace.read.outer", prompt="outer", input={"delegate": True}))
        second = await h.run(AgentTask(topic="trace.read.outer", prompt="again"))
    assert first.ok
    assert second.ok
    outer, inner, again = TraceReader.seen
    assert outer is not None
    assert again is not None
    assert inner == outer  # the delegated task, handled in the same trace
    assert again != outer  # a task published outside any trace starts its own


@pytest.mark.parametrize("sdk", [False, True])
async def test_a_message_published_outside_any_trace_continues_the_trace_it_already_carries(
    request: pytest.FixtureRequest, sdk: bool
) -> None:
    if sdk:
        request.getfixturevalue("spans")
    got: list[Delivery] = []

    async def keep(delivery: Delivery) -> None:
        got.append(delivery)
        await delivery.ack()

    carried = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with MemoryBus() as bus:
        await bus.declare_queue("replayed", bindings=["task.replayed"], durable=False)
        await bus.consume("replayed", keep)
        await bus.publish(
            OutgoingMessage(b"{}", routing_key="task.replayed", headers={"traceparent": carried})
        )
        async with asyncio.timeout(5):
            while not got:
                await asyncio.sleep(0.01)
    assert trace_id_of(got[0].headers) == "0af7651916cd43dd8448eb211c80319c"


class Echo(Agent):
    name = "trace-echo"
    topics = ("trace.echo",)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        return task.prompt


async def test_a_plan_task_outside_any_trace_gets_a_root_span_whose_trace_the_run_history_keeps(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    first = AgentTask(topic="trace.echo", prompt="one")
    plan = Plan((first, AgentTask(topic="trace.echo", prompt="two", depends_on=(first.id,))), name="echo")
    async with (
        MemoryBus(close_timeout=1) as bus,
        SqliteStore(tmp_path / "state.db") as store,
        AgentWorker(bus, [Echo()]),
        ProjectOrchestrator(bus, state=store) as orchestrator,
    ):
        assert (await orchestrator.run_plan(plan, run_id="r")).ok
        detail = await store.run("r")
    assert detail is not None
    finished = spans.get_finished_spans()
    for task in detail.tasks:
        [publish] = [
            s
            for s in by_name(finished, f"publish {EXCHANGE}")
            if dict(s.attributes or {}).get("messaging.message.id") == str(task.task_id)
        ]
        root = parent_of(publish, finished)
        assert (root.name, root.parent) == ("execute_task trace.echo", None)
        assert task.trace_id == format_trace_id(publish.context.trace_id)
    assert detail.tasks[0].trace_id != detail.tasks[1].trace_id
    process = by_name(finished, f"process {agent_queue_name('trace-echo')}")
    assert {format_trace_id(s.context.trace_id) for s in process} == {t.trace_id for t in detail.tasks}
