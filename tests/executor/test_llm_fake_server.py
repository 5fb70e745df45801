"""The llm mode against a real HTTP server on 127.0.0.1 (FakeLLMServer): parallelism, faults, cancellation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from relaybus.executor import ExecutorConfig, ProviderConfig, RetryPolicy, TaskExecutor
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus
from relaybus.testing.fake_llm import FakeLLMServer
from tests.eventually import eventually

FAST_RETRY = RetryPolicy(max_attempts=4, base_delay_s=0.01, max_delay_s=0.05)


@pytest.fixture
async def server() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer() as srv:
        yield srv


def make_executor(server: FakeLLMServer, kind: str = "openai", **cfg: Any) -> TaskExecutor:
    base_url = server.openai_base_url if kind == "openai" else server.base_url
    provider = cfg.pop("provider", None) or ProviderConfig(kind=kind, base_url=base_url, model="fake-1")
    cfg.setdefault("retry", FAST_RETRY)
    return TaskExecutor(ExecutorConfig(provider=provider, **cfg))


def task(prompt: str = "hello", **fields: Any) -> AgentTask:
    return AgentTask(topic="test.llm", prompt=prompt, **fields)


async def timed(*coros: Any) -> tuple[float, list[ExecutionResult]]:
    start = time.perf_counter()
    results = await asyncio.gather(*coros)
    return time.perf_counter() - start, list(results)


async def test_three_calls_overlap(server: FakeLLMServer) -> None:
    server.latency_s = 0.5  # long enough that the three are at the server together, even on a loaded machine
    async with make_executor(server) as ex:
        results = await asyncio.gather(*(ex.execute(task(f"t{i}")) for i in range(3)))
    assert all(r.ok for r in results)
    assert server.max_in_flight == 3


@pytest.mark.slow  # the wall-clock ratio README promises; the overlap itself is server.max_in_flight
async def test_hundred_calls_with_concurrency_100_finish_in_under_3x_one_call(server: FakeLLMServer) -> None:
    server.latency_s = 0.5
    async with make_executor(server, max_concurrency=100) as ex:
        one, _ = await timed(ex.execute(task("warm up")))
        hundred, results = await timed(*(ex.execute(task(f"t{i}")) for i in range(100)))
    assert [r.status for r in results] == [ExecutionStatus.SUCCESS] * 100
    assert hundred < 3 * one
    assert server.max_in_flight == 100


async def test_output_and_usage_come_from_the_openai_response(server: FakeLLMServer) -> None:
    async with make_executor(server) as ex:
        result = await ex.execute(task("two words", input={"k": 1}), agent="a", system_prompt="Be short.")
    assert result.output == 'fake reply: two words\n\nInput (JSON):\n{\n  "k": 1\n}'
    body = server.calls[0].body
    assert body["model"] == "fake-1"
    assert body["messages"][0] == {"role": "system", "content": "Be short."}
    user = body["messages"][1]["content"]
    # the fake server counts words: the usage is what the server reported, not an estimate
    assert result.usage.prompt_tokens == 2 + len(user.split()) == 10
    assert result.usage.completion_tokens == len(str(result.output).split()) == 10
    assert result.usage.requests == 1


async def test_anthropic_provider_against_the_fake_server(server: FakeLLMServer) -> None:
    async with make_executor(server, kind="anthropic") as ex:
        result = await ex.execute(task("hi"), system_prompt="sys")
    assert result.output == "fake reply: hi"
    assert server.calls[0].path == "/v1/messages"
    assert server.calls[0].body["system"] == "sys"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (2, 3)


async def test_429_waits_for_retry_after_in_seconds(server: FakeLLMServer) -> None:
    server.inject("rate_limit", times=1, retry_after=0.6)
    async with make_executor(server) as ex:
        result = await ex.execute(task())
    assert result.ok
    assert result.attempts == 2
    gap = server.calls[1].received_at - server.calls[0].received_at
    assert gap >= 0.6


async def test_429_waits_for_retry_after_as_an_http_date(server: FakeLLMServer) -> None:
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    server.inject("rate_limit", times=1, retry_after=format_datetime(when, usegmt=True))
    async with make_executor(server) as ex:
        result = await ex.execute(task())
    assert result.ok
    assert server.calls[1].received_at - server.calls[0].received_at >= 0.9


@pytest.mark.parametrize("kind", ["rate_limit", "server_error", "drop"])
async def test_transient_faults_are_retried_to_success(server: FakeLLMServer, kind: Any) -> None:
    server.inject(kind, times=2, retry_after=0)
    async with make_executor(server) as ex:
        result = await ex.execute(task())
    assert result.status is ExecutionStatus.SUCCESS
    assert result.attempts == 3
    assert result.usage.requests == 3


@pytest.mark.parametrize(
    ("kind", "error_type"),
    [
        ("rate_limit", "RateLimited"),
        ("server_error", "ProviderServerError"),
        ("drop", "ProviderConnectionError"),
    ],
)
async def test_persistent_faults_end_in_a_retryable_failure(
    server: FakeLLMServer, kind: Any, error_type: str
) -> None:
    server.inject(kind, retry_after=0)
    async with make_executor(server) as ex:
        result = await ex.execute(task())
    assert result.status is ExecutionStatus.FAILURE
    assert result.error is not None
    assert result.error.type == error_type
    assert result.error.retryable
    assert result.attempts == FAST_RETRY.max_attempts
    assert server.requests == FAST_RETRY.max_attempts


async def test_slow_answer_ends_in_timeout_and_the_request_is_dropped(server: FakeLLMServer) -> None:
    server.inject("slow", delay_s=10)
    async with make_executor(server) as ex:
        result = await ex.execute(task(timeout_s=0.3))
        await eventually(lambda: server.disconnects and not server.in_flight)
    assert result.status is ExecutionStatus.TIMEOUT
    assert server.disconnects == 1


async def test_outer_cancellation_cancels_the_http_request(server: FakeLLMServer) -> None:
    server.latency_s = 10
    async with make_executor(server) as ex:
        running = asyncio.create_task(ex.execute(task()))
        await eventually(lambda: server.in_flight)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        await eventually(lambda: server.disconnects and not server.in_flight)
    assert server.disconnects == 1


async def test_executor_cancel_gives_cancelled_and_drops_the_request(server: FakeLLMServer) -> None:
    server.latency_s = 10
    async with make_executor(server) as ex:
        t = task()
        running = asyncio.create_task(ex.execute(t, agent="x"))
        await eventually(lambda: server.in_flight)
        assert ex.cancel(t.id)
        result = await running
        await eventually(lambda: server.disconnects and not server.in_flight)
    assert result.status is ExecutionStatus.CANCELLED
    assert server.disconnects == 1


async def test_a_burst_against_a_flaky_server_all_succeeds(server: FakeLLMServer) -> None:
    server.latency_s = 0.05
    server.inject("server_error", fraction=0.3)
    server.inject("drop", fraction=0.1)
    async with make_executor(
        server, retry=RetryPolicy(max_attempts=8, base_delay_s=0.01, max_delay_s=0.1)
    ) as ex:
        results = await asyncio.gather(*(ex.execute(task(f"t{i}")) for i in range(50)))
    assert all(r.ok for r in results)
    assert server.faults["server_error"] > 0
    assert server.faults["drop"] > 0
    assert sum(r.attempts for r in results) == server.requests


async def test_a_429_holds_back_the_whole_burst_instead_of_failing_it(server: FakeLLMServer) -> None:
    server.inject("rate_limit", times=1, retry_after=0.5)
    with capture_logs() as logs:
        async with make_executor(server, retry=RetryPolicy(max_attempts=2, base_delay_s=0.01)) as ex:
            first = asyncio.create_task(ex.execute(task("first")))  # gets the 429: everyone waits 0.5 s
            await eventually(lambda: any(e["event"] == "llm_retry" for e in logs), what="the 429 was seen")
            burst = await asyncio.gather(*(ex.execute(task(f"t{i}")) for i in range(10)))  # sent meanwhile
            assert (await first).ok
    assert all(r.ok for r in burst)
    assert server.statuses[429] == 1
    rate_limited, *after = server.calls
    assert len(after) == 11
    # No request went out while the server's Retry-After ran: the burst waited instead of collecting 429s.
    assert min(call.received_at for call in after) >= rate_limited.received_at + 0.5


async def test_fallback_provider_takes_over_when_the_primary_keeps_failing(server: FakeLLMServer) -> None:
    server.inject("server_error")
    async with make_executor(server, fallback=ProviderConfig(kind="echo")) as ex:
        result = await ex.execute(task("x"))
    assert result.output == "echo: x"
    assert result.attempts == FAST_RETRY.max_attempts + 1


async def test_rate_limit_slows_a_burst_without_timing_tasks_out() -> None:
    provider = ProviderConfig(kind="echo", requests_per_minute=60)
    async with TaskExecutor(ExecutorConfig(provider=provider)) as ex:
        elapsed, results = await timed(*(ex.execute(task(f"t{i}", timeout_s=0.5)) for i in range(62)))
    assert all(r.ok for r in results)  # waiting for the limiter does not count against the 0.5 s timeout
    assert elapsed >= 1.9  # 60 in the burst, then one per second


async def test_keys_never_reach_logs_or_results() -> None:
    key = "sk-live-abcdefghijklmnop1234"
    shown: list[str] = []

    async def call(srv: FakeLLMServer) -> ExecutionResult:
        provider = ProviderConfig(kind="openai", base_url=srv.openai_base_url, api_key=key)
        async with TaskExecutor(ExecutorConfig(provider=provider, retry=FAST_RETRY)) as ex:
            result = await ex.execute(task())
            shown.extend((repr(ex), repr(ex.config), result.model_dump_json()))
        return result

    with capture_logs() as logs:
        async with FakeLLMServer(api_key="a-different-key") as wrong, FakeLLMServer(api_key=key) as right:
            refused, accepted = await call(wrong), await call(right)
    assert accepted.ok  # the key was sent...
    assert refused.error is not None
    assert refused.error.type == "ProviderAuthError"
    assert wrong.calls[0].headers["authorization"] == "Bearer [redacted]"  # ...the fake keeps no copy...
    assert logs
    for text in (*shown, repr(logs), repr(wrong.calls)):  # ...and it is shown nowhere
        assert key not in text
