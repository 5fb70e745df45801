"""WorkerMetrics on a MemoryBus worker: what a scrape of the registry shows after tasks of each outcome."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from relaybus.agents import AgentWorker
from relaybus.bus.base import OutgoingMessage, agent_routing_key
from relaybus.bus.memory import MemoryBus
from relaybus.executor import TaskExecutor
from relaybus.executor.config import ExecutorConfig, ProviderConfig
from relaybus.executor.retry import RetryPolicy
from relaybus.messages import AgentTask, ExecutionStatus, Usage
from relaybus.telemetry import DEAD_LETTER_REASONS, WorkerMetrics
from relaybus.telemetry.metrics import llm_succeeded
from relaybus.testing.agents import AgentTestHarness
from relaybus.testing.fake_llm import FakeLLMServer

from ..agents import sample_agents as sa
from .scrape import sample


async def test_tasks_are_counted_by_agent_and_status_and_their_durations_observed() -> None:
    metrics = WorkerMetrics()
    async with AgentTestHarness([sa.Echo(), sa.Failing()], metrics=metrics) as h:
        for n in range(3):
            assert (await h.run(AgentTask(topic=sa.topic("echo"), prompt=f"p{n}"))).ok
        for _ in range(2):
            failed = await h.run(AgentTask(topic=sa.topic("fail"), prompt="x"))
            assert failed.status is ExecutionStatus.FAILURE
        late = await h.run(AgentTask(topic=sa.topic("echo"), input={"sleep_s": 5}, timeout_s=0.05))
        assert late.status is ExecutionStatus.TIMEOUT
    text = metrics.render()
    echo, failing = sa.name("echo"), sa.name("failing")
    assert sample(text, "relaybus_tasks_total", agent=echo, status="success") == 3
    assert sample(text, "relaybus_tasks_total", agent=echo, status="timeout") == 1
    assert sample(text, "relaybus_tasks_total", agent=failing, status="failure") == 2
    assert sample(text, "relaybus_task_duration_seconds_count", agent=echo) == 4
    assert sample(text, "relaybus_task_duration_seconds_count", agent=failing) == 2
    # The timed-out run lasted at least its 0.05 s budget; the echoes much less than the 10 min bucket.
    assert sample(text, "relaybus_task_duration_seconds_sum", agent=echo) >= 0.05
    assert sample(text, "relaybus_task_duration_seconds_bucket", agent=echo, le="600.0") == 4
    assert sample(text, "relaybus_tasks_in_flight", agent=echo) == 0


async def test_a_running_task_is_in_flight_until_it_ends() -> None:
    metrics = WorkerMetrics()
    async with AgentTestHarness([sa.Echo()], metrics=metrics) as h:
        running = asyncio.ensure_future(h.run(AgentTask(topic=sa.topic("echo"), input={"sleep_s": 0.3})))
        async with asyncio.timeout(5):
            while sample(metrics.render(), "relaybus_tasks_in_flight", agent=sa.name("echo")) != 1:
                await asyncio.sleep(0.01)
        assert (await running).ok
    assert sample(metrics.render(), "relaybus_tasks_in_flight", agent=sa.name("echo")) == 0


async def test_two_workers_in_one_process_count_in_their_own_registries() -> None:
    first, second = WorkerMetrics(), WorkerMetrics()
    async with MemoryBus() as bus:
        async with AgentTestHarness([sa.Echo()], bus=bus, metrics=first) as h:
            await h.run(AgentTask(topic=sa.topic("echo")))
        async with AgentTestHarness([sa.Echo()], bus=bus, metrics=second) as h:
            await h.run(AgentTask(topic=sa.topic("echo")))
            await h.run(AgentTask(topic=sa.topic("echo")))
    assert sample(first.render(), "relaybus_tasks_total", status="success") == 1
    assert sample(second.render(), "relaybus_tasks_total", status="success") == 2


async def test_an_invalid_delivery_counts_as_a_dead_letter_of_kind_invalid_task_not_its_free_text() -> None:
    metrics = WorkerMetrics()
    async with AgentTestHarness([sa.Echo()], metrics=metrics) as h:
        await h.bus.publish(
            OutgoingMessage(routing_key=agent_routing_key(sa.name("echo")), body=b"{not json")
        )
        async with asyncio.timeout(5):
            while sample(metrics.render(), "relaybus_dead_letters_total", reason="invalid_task") != 1:
                await asyncio.sleep(0.01)
    text = metrics.render().decode()
    assert sample(text, "relaybus_dead_letters_total", reason="reply_queue_gone") == 0
    reasons = {
        line.split('reason="')[1].split('"')[0] for line in text.splitlines() if "dead_letters_total{" in line
    }
    assert reasons == set(DEAD_LETTER_REASONS)


async def test_delegated_tasks_are_counted_by_the_agent_that_delegated_and_the_one_that_got_them() -> None:
    metrics = WorkerMetrics()
    async with AgentTestHarness([sa.ChainA(), sa.ChainB(), sa.ChainC()], metrics=metrics) as h:
        assert (await h.run(AgentTask(topic=sa.topic("chain.a"), prompt="go"))).ok
    text = metrics.render()
    a, b, c = sa.name("chain-a"), sa.name("chain-b"), sa.name("chain-c")
    assert sample(text, "relaybus_delegations_total", from_agent=a, agent=b) == 1
    assert sample(text, "relaybus_delegations_total", from_agent=b, agent=c) == 1
    assert sample(text, "relaybus_delegations_total", agent=a) == 0
    assert sample(text, "relaybus_tasks_total", status="success") == 3


@contextlib.asynccontextmanager
async def writer_on(
    server: FakeLLMServer, metrics: WorkerMetrics, *, attempts: int
) -> AsyncIterator[AgentTestHarness]:
    """The Writer agent on a worker with ``metrics``, its executor calling ``server`` as model m1."""
    config = ExecutorConfig(
        provider=ProviderConfig(kind="openai", model="m1", base_url=server.openai_base_url),
        retry=RetryPolicy(max_attempts=attempts, base_delay_s=0.01),
    )
    async with (
        TaskExecutor(config) as executor,
        AgentTestHarness([sa.Writer()], executor=executor, metrics=metrics) as h,
    ):
        yield h


async def test_llm_requests_retries_and_tokens_match_what_the_provider_answered() -> None:
    metrics = WorkerMetrics()
    async with FakeLLMServer() as server:
        server.inject("rate_limit", times=1, retry_after=0.01)
        async with writer_on(server, metrics, attempts=3) as h:
            results = [await h.run(AgentTask(topic=sa.topic("write.x"), prompt=f"w {n}")) for n in range(3)]
        assert server.requests == 4
    assert all(r.ok for r in results)
    text = metrics.render()
    assert sample(text, "relaybus_llm_requests_total", provider="openai", outcome="ok") == 3
    assert sample(text, "relaybus_llm_requests_total", provider="openai", outcome="retried") == 1
    assert sample(text, "relaybus_llm_requests_total", provider="openai", outcome="failed") == 0
    assert sample(text, "relaybus_llm_retries_total", provider="openai", error_type="RateLimited") == 1
    prompt = sum(r.usage.prompt_tokens for r in results if r.usage)
    completion = sum(r.usage.completion_tokens for r in results if r.usage)
    assert prompt > 0
    assert completion > 0
    assert sample(text, "relaybus_llm_tokens_total", provider="openai", model="m1", kind="prompt") == prompt
    assert (
        sample(text, "relaybus_llm_tokens_total", provider="openai", model="m1", kind="completion")
        == completion
    )


async def test_a_provider_that_keeps_failing_counts_the_last_request_as_failed() -> None:
    metrics = WorkerMetrics()
    async with FakeLLMServer() as server:
        server.inject("server_error", times=None)
        async with writer_on(server, metrics, attempts=2) as h:
            result = await h.run(AgentTask(topic=sa.topic("write.x"), prompt="w"))
    assert result.status is ExecutionStatus.FAILURE
    text = metrics.render()
    assert sample(text, "relaybus_llm_requests_total", provider="openai", outcome="retried") == 1
    assert sample(text, "relaybus_llm_requests_total", provider="openai", outcome="failed") == 1
    assert sample(text, "relaybus_tasks_total", agent=sa.name("writer"), status="failure") == 1


def test_llm_calls_outside_a_task_of_a_worker_with_metrics_are_not_counted_anywhere() -> None:
    metrics = WorkerMetrics()
    llm_succeeded("openai/m", "m", Usage(prompt_tokens=5, completion_tokens=5))  # nothing bound here
    assert sample(metrics.render(), "relaybus_llm_requests_total") == 0


async def test_a_worker_without_metrics_runs_tasks_as_before() -> None:
    async with MemoryBus() as bus, AgentTestHarness([sa.Echo()], bus=bus) as h:
        assert isinstance(h.worker, AgentWorker)
        assert (await h.run(AgentTask(topic=sa.topic("echo")))).ok
