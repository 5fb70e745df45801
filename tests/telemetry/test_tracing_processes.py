"""One trace across three processes on RabbitMQ: this test (the caller, SDK in memory), a ``relaybus worker``
with an agent-loop agent whose model calls a tool that delegates to an agent in a second ``relaybus worker``.
The workers set the SDK up from ``OTEL_*`` as deployed and export OTLP/HTTP to a receiver in this test; the
model is a FakeLLMServer over real HTTP, so the token counts on the spans are the server's."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from relaybus.bus.base import EXCHANGE, agent_queue_name
from relaybus.bus.rpc import ReplyRouter
from relaybus.executor.llm.chat import UserMessage
from relaybus.messages import AgentTask, ExecutionStatus
from relaybus.telemetry.trace_context import format_span_id, format_trace_id
from relaybus.testing import FakeLLMServer, ScriptedAnswer, ScriptedToolCall, SeenRequest

from ..agents import processes
from ..agents.processes import Fleet
from ..eventually import eventually
from .otlp_receiver import ReceivedSpan, otlp_receiver

pytestmark = [pytest.mark.integration, pytest.mark.slow]
fleet = processes.fleet

LOOP_TURN_ONE = (10, 2)
LOOP_TURN_TWO = (20, 3)
WRITER = (7, 1)


def model(seen: SeenRequest) -> ScriptedAnswer:
    if not seen.tools:  # the writer's one call
        return ScriptedAnswer(text="a fine sentence", usage=WRITER)
    if seen.tool_results:
        return ScriptedAnswer(text="wrote: " + seen.tool_results[0].content, usage=LOOP_TURN_TWO)
    assert any(isinstance(m, UserMessage) and m.text == "trace me" for m in seen.messages)
    return ScriptedAnswer(tool_calls=[ScriptedToolCall("write", {"prompt": "one"})], usage=LOOP_TURN_ONE)


def tokens(span: ReceivedSpan) -> tuple[int, int]:
    return span.attributes["gen_ai.usage.input_tokens"], span.attributes["gen_ai.usage.output_tokens"]


def only(spans: list[ReceivedSpan], name: str, process: str) -> ReceivedSpan:
    found = [s for s in spans if s.name == name and s.resource.get("test.process") == process]
    assert len(found) == 1, f"{len(found)} spans {name!r} from {process}: {[s.name for s in spans]}"
    return found[0]


async def test_one_trace_from_the_caller_through_two_worker_processes(
    fleet: Fleet, spans: InMemorySpanExporter, tracer: trace.Tracer
) -> None:
    async with FakeLLMServer(answers=model) as llm, otlp_receiver() as receiver:
        env = {
            "RELAYBUS_LLM_PROVIDER": "openai",
            "RELAYBUS_LLM_MODEL": "fake-model",
            "OPENAI_BASE_URL": llm.openai_base_url,
            "OPENAI_API_KEY": "",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint + "/v1/traces",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        await fleet.start("ToolUser", env={**env, "OTEL_RESOURCE_ATTRIBUTES": "test.process=a"})
        await fleet.start("Writer", env={**env, "OTEL_RESOURCE_ATTRIBUTES": "test.process=b"})
        with tracer.start_as_current_span("caller") as caller:
            async with ReplyRouter(fleet.bus) as router:
                result = await router.request(
                    AgentTask(topic=fleet.topic("tools"), prompt="trace me"), timeout=60
                )
        assert result.status is ExecutionStatus.SUCCESS, result.error
        assert result.output == "wrote: a fine sentence"
        assert llm.requests == 3

        tool_user, writer = fleet.name("tool-user"), fleet.name("writer")
        for agent in (tool_user, writer):  # the process span ends last, once the delivery is settled
            queue = agent_queue_name(agent)
            await eventually(lambda q=queue: receiver.named(f"process {q}"), timeout=30)
        received = receiver.spans
    trace_id = format_trace_id(caller.get_span_context().trace_id)
    assert {s.trace_id for s in received} == {trace_id}
    assert {s.resource["service.name"] for s in received} == {"relaybus-worker"}

    # the caller's publish (in this process) -> worker a's process span, child of it and linked to it
    (publish,) = [s for s in spans.get_finished_spans() if s.name == f"publish {EXCHANGE}"]
    a_process = only(received, f"process {agent_queue_name(tool_user)}", "a")
    assert a_process.kind == "SPAN_KIND_CONSUMER"
    assert a_process.parent_span_id == format_span_id(publish.context.span_id)
    assert a_process.links == (a_process.parent_span_id,)
    assert a_process.attributes["messaging.system"] == "rabbitmq"
    assert a_process.attributes["messaging.message.id"] == str(result.task_id)
    assert a_process.attributes["relaybus.settle"] == "acked"
    a_agent = only(received, f"invoke_agent {tool_user}", "a")
    assert a_agent.parent_span_id == a_process.span_id
    assert (
        a_agent.attributes["gen_ai.usage.input_tokens"],
        a_agent.attributes["gen_ai.usage.output_tokens"],
    ) == (
        LOOP_TURN_ONE[0] + LOOP_TURN_TWO[0] + WRITER[0],
        LOOP_TURN_ONE[1] + LOOP_TURN_TWO[1] + WRITER[1],
    )
    a_chats = [s for s in received if s.name == "chat fake-model" and s.resource["test.process"] == "a"]
    assert [
        (c.attributes["gen_ai.usage.input_tokens"], c.attributes["gen_ai.usage.output_tokens"])
        for c in a_chats
    ] == [
        LOOP_TURN_ONE,
        LOOP_TURN_TWO,
    ]
    assert all(c.kind == "SPAN_KIND_CLIENT" and c.parent_span_id == a_agent.span_id for c in a_chats)
    assert a_chats[0].attributes["gen_ai.provider.name"] == "openai"
    assert a_chats[0].attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
    tool = only(received, "execute_tool write", "a")
    assert tool.parent_span_id == a_agent.span_id
    delegated = only(received, f"publish {EXCHANGE}", "a")
    assert delegated.kind == "SPAN_KIND_PRODUCER"
    assert delegated.parent_span_id == tool.span_id

    # worker b: the delegated task in the same trace, under the publish of worker a
    b_process = only(received, f"process {agent_queue_name(writer)}", "b")
    assert b_process.parent_span_id == delegated.span_id
    b_agent = only(received, f"invoke_agent {writer}", "b")
    assert b_agent.parent_span_id == b_process.span_id
    b_chat = only(received, "chat fake-model", "b")
    assert b_chat.parent_span_id == b_agent.span_id
    assert b_chat.attributes["gen_ai.request.model"] == "fake-model"
    assert b_chat.attributes["gen_ai.response.model"] == "fake-model"
    assert (
        b_chat.attributes["gen_ai.usage.input_tokens"],
        b_chat.attributes["gen_ai.usage.output_tokens"],
    ) == WRITER
    assert b_chat.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    # each worker's result went back in the trace
    assert {s.resource["test.process"] for s in received if s.name == "publish amq.default"} == {"a", "b"}
