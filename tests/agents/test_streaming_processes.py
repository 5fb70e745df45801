"""Streaming on RabbitMQ: ``relaybus worker`` processes stream a FakeLLMServer's slow answer to the caller.

The first delta comes long before the end of the stream, the deltas join to the output, ``seq`` has no gap,
coalescing sends far fewer messages than the provider sent chunks, a delegated agent's deltas reach the
original caller, a broken stream ends in a FAILURE after the text that came, a caller that does not stream
gets no event, a lost event costs a gap, never the result, and events travel on the caller's events queue
(classic, not durable), not its durable reply queue.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import AsyncIterator

import pytest

from relaybus import AgentTask, AgentWorker, ExecutionStatus, TaskEvent
from relaybus.bus.base import EVENT_HEADER, OutgoingMessage, agent_queue_name
from relaybus.bus.connect import connect
from relaybus.bus.rpc import ReplyRouter
from relaybus.executor import ExecutorConfig, ProviderConfig, TaskExecutor
from relaybus.orchestrator import ProjectOrchestrator
from relaybus.testing import FakeLLMServer

from . import processes
from . import sample_agents as sa
from .processes import Fleet
from .test_loop_processes import model as loop_model
from .test_loop_processes import openai_env
from .test_loop_processes import start_fleet as start_loop_fleet

pytestmark = [pytest.mark.integration, pytest.mark.slow]
fleet = processes.fleet

WORDS = 40
PROMPT = " ".join(f"w{i}" for i in range(WORDS))
REPLY = f"fake reply: {PROMPT}"


@pytest.fixture
async def server() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer(chunk_size=2, chunk_delay_s=0.01) as fake:  # about 120 chunks: over 1 s
        yield fake


def env(server: FakeLLMServer, kind: str) -> dict[str, str]:
    if kind == "openai":
        return {"RELAYBUS_LLM_PROVIDER": "openai", "OPENAI_BASE_URL": server.openai_base_url}
    return {
        "RELAYBUS_LLM_PROVIDER": "anthropic",
        "ANTHROPIC_BASE_URL": server.base_url,
        "ANTHROPIC_API_KEY": "test-key",
    }


class Watch:
    """Records a stream's events, and whether the provider's stream was still open at the first delta."""

    def __init__(self, server: FakeLLMServer) -> None:
        self.server = server
        self.events: list[TaskEvent] = []
        self.open_at_first_delta: bool | None = None
        self.chunks_at_first_delta = 0

    def __call__(self, event: TaskEvent) -> None:
        if event.kind == "delta" and self.open_at_first_delta is None:
            self.open_at_first_delta = self.server.streams_open == 1
            self.chunks_at_first_delta = self.server.chunks_sent
        self.events.append(event)

    def deltas(self) -> list[TaskEvent]:
        return [e for e in self.events if e.kind == "delta"]


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_slow_answer_streams_from_a_worker_process_to_the_caller(
    fleet: Fleet, server: FakeLLMServer, kind: str
) -> None:
    await fleet.start("Writer", env=env(server, kind))
    watch = Watch(server)
    async with ProjectOrchestrator(fleet.bus) as orchestrator:
        result = await orchestrator.execute_task(
            AgentTask(topic=fleet.topic("write.story"), prompt=PROMPT, timeout_s=60), on_event=watch
        )
    assert result.status is ExecutionStatus.SUCCESS, result.error
    assert result.output == REPLY
    assert watch.open_at_first_delta is True  # the first text came while the model was still writing...
    assert watch.chunks_at_first_delta < server.chunks_sent / 2  # ...long before the end of its stream
    deltas = watch.deltas()
    assert "".join(e.text for e in deltas) == REPLY
    assert [e.seq for e in watch.events] == list(range(1, len(watch.events) + 1))
    assert watch.events[-1].kind == "result"
    # coalesced every 20 ms: a chunk came every 10 ms, so an event carries two or more of them
    assert len(deltas) < server.chunks_sent * 0.7


async def test_a_delegated_writers_deltas_reach_the_original_caller(
    fleet: Fleet, server: FakeLLMServer
) -> None:
    await fleet.start("Relay", "Writer", env=env(server, "openai"), args=("--concurrency", "4"))
    async with ProjectOrchestrator(fleet.bus) as orchestrator:
        events = [
            e
            async for e in orchestrator.stream(
                AgentTask(topic=fleet.topic("relay"), prompt=PROMPT, timeout_s=60)
            )
        ]
    result = events[-1].result
    assert result is not None
    assert result.output == REPLY
    assert events[0].kind == "progress"
    assert events[0].agent == fleet.name("relay")
    deltas = [e for e in events if e.kind == "delta"]
    assert "".join(e.text for e in deltas) == REPLY
    assert {e.sub_task_id is not None for e in deltas} == {True}
    assert {e.agent for e in deltas} == {fleet.name("writer")}


async def test_a_broken_stream_fails_after_the_text_that_came(fleet: Fleet, server: FakeLLMServer) -> None:
    await fleet.start("Writer", env=env(server, "openai"))
    server.inject("break_stream", after_chunks=20)
    watch = Watch(server)
    async with ProjectOrchestrator(fleet.bus) as orchestrator:
        result = await orchestrator.execute_task(
            AgentTask(topic=fleet.topic("write.story"), prompt=PROMPT, timeout_s=60), on_event=watch
        )
    assert result.status is ExecutionStatus.FAILURE
    text = "".join(e.text for e in watch.deltas())
    assert text
    assert REPLY.startswith(text)
    assert len(text) < len(REPLY)


async def test_a_caller_that_does_not_stream_gets_no_event(fleet: Fleet, server: FakeLLMServer) -> None:
    await fleet.start("Writer", env=env(server, "openai"))
    async with ReplyRouter(fleet.bus) as router:
        result = await router.request(AgentTask(topic=fleet.topic("write.story"), prompt=PROMPT), timeout=60)
        assert result.output == REPLY
        assert router.events_dropped == 0  # no event came to the reply queue at all
    assert server.streams == 0


async def test_a_lost_event_is_a_gap_and_the_result_still_comes(amqp_url: str, server: FakeLLMServer) -> None:
    class LosesTheSecondEvent:
        """The worker's bus, dropping the event with seq 2 as a broker might."""

        def __init__(self, inner: object) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

        async def publish(self, message: OutgoingMessage) -> None:
            if EVENT_HEADER in message.headers and str(message.message_id).endswith("-2"):
                return
            await self.inner.publish(message)  # type: ignore[attr-defined]

    config = ExecutorConfig(provider=ProviderConfig(kind="openai", base_url=server.openai_base_url))
    suffix = f"-lost-{time.monotonic_ns()}"
    writer = type(
        "LossyWriter", (sa.Writer,), {"name": sa.name("writer", suffix), "topics": (f"lossy{suffix}",)}
    )
    async with (
        await connect(amqp_url) as worker_bus,
        await connect(amqp_url) as caller_bus,
        TaskExecutor(config) as executor,
        AgentWorker(LosesTheSecondEvent(worker_bus), [writer()], executor=executor),  # type: ignore[arg-type]
        ProjectOrchestrator(caller_bus) as orchestrator,
    ):
        try:
            events = [e async for e in orchestrator.stream(AgentTask(topic=f"lossy{suffix}", prompt=PROMPT))]
        finally:
            await caller_bus.delete_queue(agent_queue_name(writer.name))
    result = events[-1].result
    assert result is not None
    assert result.output == REPLY  # the result is whole
    seqs = [e.seq for e in events]
    assert 2 not in seqs
    assert seqs[:2] == [1, 3]  # the loss shows as a gap


async def test_a_tool_agents_steps_and_its_delegated_writers_text_reach_the_caller(fleet: Fleet) -> None:
    async with FakeLLMServer(answers=loop_model) as server:
        await start_loop_fleet(fleet, openai_env(server))
        async with ProjectOrchestrator(fleet.bus) as orchestrator:
            task = AgentTask(topic=fleet.topic("tools"), prompt="parallel", timeout_s=60)
            events = [e async for e in orchestrator.stream(task)]
    result = events[-1].result
    assert result is not None
    assert result.ok, result.error
    assert [e.seq for e in events] == sorted({e.seq for e in events})  # in order, no copies
    calls = [e for e in events if e.kind == "tool_call"]
    answers = [e for e in events if e.kind == "tool_result"]
    assert sorted(e.text for e in calls) == ["lookup", "meet", "meet", "write"]
    assert [e.data["id"] for e in answers] == [e.data["id"] for e in calls]  # type: ignore[index]
    assert max(e.seq for e in calls) < min(e.seq for e in answers)
    writers = [e for e in events if e.kind == "delta" and e.sub_task_id is not None]
    assert "".join(e.text for e in writers) == "a fine sentence"  # the writer agent, in another process
    assert {e.agent for e in writers} == {fleet.name("writer")}
    own = [e for e in events if e.kind == "delta" and e.sub_task_id is None]
    assert "".join(e.text for e in own) == result.output


async def test_events_travel_on_the_callers_classic_events_queue_and_the_result_on_its_reply_queue(
    amqp_url: str, server: FakeLLMServer
) -> None:
    class Records:
        """The worker's bus, recording the queue each event and each result is sent to."""

        def __init__(self, inner: object) -> None:
            self.inner = inner
            self.events_to: set[str] = set()
            self.results_to: set[str] = set()

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

        async def publish(self, message: OutgoingMessage) -> None:
            if EVENT_HEADER in message.headers:
                self.events_to.add(message.routing_key)
            elif message.routing_key.startswith("relaybus.reply."):
                self.results_to.add(message.routing_key)
            await self.inner.publish(message)  # type: ignore[attr-defined]

    config = ExecutorConfig(provider=ProviderConfig(kind="openai", base_url=server.openai_base_url))
    suffix = f"-evq-{time.monotonic_ns()}"
    writer = type("QWriter", (sa.Writer,), {"name": sa.name("writer", suffix), "topics": (f"evq{suffix}",)})
    async with (
        await connect(amqp_url) as worker_bus,
        await connect(amqp_url) as caller_bus,
        TaskExecutor(config) as executor,
    ):
        recording = Records(worker_bus)
        async with (
            AgentWorker(recording, [writer()], executor=executor),  # type: ignore[arg-type]
            ProjectOrchestrator(caller_bus) as orchestrator,
        ):
            try:
                task = AgentTask(topic=f"evq{suffix}", prompt=PROMPT)
                events = [e async for e in orchestrator.stream(task)]
                (events_queue,) = recording.events_to
                declared = await broker_queue(amqp_url, events_queue)
            finally:
                await caller_bus.delete_queue(agent_queue_name(writer.name))
    result = events[-1].result
    assert result is not None
    assert result.output == REPLY
    assert "".join(e.text for e in events if e.kind == "delta") == REPLY
    assert events_queue.startswith("relaybus.events.")
    assert recording.results_to == {orchestrator.reply_queue}
    assert declared == {"durable": False, "exclusive": True, "type": "classic"}


async def broker_queue(amqp_url: str, name: str) -> dict[str, object]:
    """What ``rabbitmqctl list_queues`` says of queue ``name``: durable, exclusive, its type."""
    vhost = urllib.parse.unquote(urllib.parse.urlsplit(amqp_url).path.lstrip("/")) or "/"
    listing = await asyncio.create_subprocess_exec(
        *("rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "durable", "exclusive", "type"),
        *("--formatter", "json"),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(listing.communicate(), 60)
    (info,) = [queue for queue in json.loads(out) if queue["name"] == name]
    return {"durable": info["durable"], "exclusive": bool(info["exclusive"]), "type": info["type"]}
