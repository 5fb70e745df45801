"""The llm mode streams when asked (on_delta): retries before the first delta, a clear FAILURE after it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from relaybus.executor import (
    ChatRequest,
    Completion,
    ExecutorConfig,
    ProviderConfig,
    RetryPolicy,
    StreamDelta,
    TaskExecutor,
    TextDelta,
)
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus, Usage
from relaybus.testing import FakeLLMServer, ScriptedProvider

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay_s=0.001, max_delay_s=0.01)
LONG = "one two three four five six seven eight nine ten eleven twelve"
TASK = AgentTask(topic="t", prompt="p")


@pytest.fixture
async def server() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer(chunk_size=4, answers=lambda seen: LONG) as srv:
        yield srv


def config(kind: str, server: FakeLLMServer, **fields: Any) -> ExecutorConfig:
    url = server.openai_base_url if kind == "openai" else server.base_url
    fields.setdefault("retry", FAST_RETRY)
    return ExecutorConfig(provider=ProviderConfig(kind=kind, base_url=url), **fields)


async def run_streamed(
    cfg: ExecutorConfig, task: AgentTask = TASK
) -> tuple[ExecutionResult, list[StreamDelta]]:
    deltas: list[StreamDelta] = []
    async with TaskExecutor(cfg) as executor:
        result = await executor.execute(task, on_delta=deltas.append)
    return result, deltas


def text_of(deltas: list[StreamDelta]) -> str:
    return "".join(d.text for d in deltas if isinstance(d, TextDelta))


KINDS = pytest.mark.parametrize("kind", ["openai", "anthropic"])


@KINDS
async def test_the_deltas_joined_are_the_output_and_usage_is_reported(
    kind: str, server: FakeLLMServer
) -> None:
    result, deltas = await run_streamed(config(kind, server))
    assert result.ok
    assert result.output == text_of(deltas) == LONG
    assert len(deltas) == -(-len(LONG) // 4)
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.requests) == (1, 12, 1)
    assert server.streams == 1


@KINDS
async def test_a_slow_stream_hands_on_its_first_delta_long_before_its_end(
    kind: str, server: FakeLLMServer
) -> None:
    server.chunk_delay_s = 0.02
    progress: list[int] = []
    async with TaskExecutor(config(kind, server)) as executor:
        result = await executor.execute(TASK, on_delta=lambda delta: progress.append(server.chunks_sent))
    assert result.ok
    assert server.streams_open == 0
    assert progress[0] <= server.chunks_sent / 3  # the server had most of its chunks still to send
    assert progress == sorted(progress)
    assert len(set(progress)) > len(progress) / 2  # deltas came as their chunks arrived, not all at the end


async def test_non_streaming_requests_are_unchanged(server: FakeLLMServer) -> None:
    async with TaskExecutor(config("openai", server)) as executor:
        result = await executor.execute(TASK)
    assert result.output == LONG
    assert server.streams == 0
    assert "stream" not in server.calls[0].body


@KINDS
@pytest.mark.parametrize(
    ("fault", "options"),
    [
        ("rate_limit", {"times": 2, "retry_after": 0}),
        ("server_error", {"times": 2, "status": 503}),
        ("drop", {"times": 1}),
        ("break_stream", {"times": 2, "after_chunks": 1}),  # nothing of the answer had arrived yet
        ("stream_error", {"times": 1, "after_chunks": 1}),
    ],
)
async def test_failures_before_the_first_delta_are_retried(
    kind: str, fault: Any, options: dict[str, Any], server: FakeLLMServer
) -> None:
    server.inject(fault, **options)
    result, deltas = await run_streamed(config(kind, server))
    assert result.ok, result.error
    assert result.output == text_of(deltas) == LONG  # no delta seen twice
    assert result.attempts == server.requests == options["times"] + 1


@KINDS
async def test_a_stream_broken_after_its_first_delta_fails_with_the_partial_text_and_no_retry(
    kind: str, server: FakeLLMServer
) -> None:
    server.inject("break_stream", times=1, after_chunks=6)
    async with FakeLLMServer() as fallback_server:
        fallback = ProviderConfig(kind="openai", base_url=fallback_server.openai_base_url)
        result, deltas = await run_streamed(config(kind, server, fallback=fallback))
    assert result.status is ExecutionStatus.FAILURE
    assert result.error is not None
    assert result.error.type == "StreamBroken"
    assert result.error.retryable  # a dropped connection: running the task again may work
    assert "the stream broke after" in result.error.message
    assert deltas
    assert result.output == text_of(deltas)
    assert LONG.startswith(text_of(deltas))
    assert text_of(deltas) != LONG
    assert server.requests == result.attempts == 1
    assert fallback_server.requests == 0
    assert result.usage.requests == 1


@pytest.mark.parametrize(
    ("fault", "retryable", "in_message"),
    [("stream_error", True, "overloaded_error"), ("malformed_chunk", False, "not a JSON object")],
)
async def test_an_error_or_garbage_in_the_stream_after_deltas_is_a_broken_stream(
    fault: Any, retryable: bool, in_message: str, server: FakeLLMServer
) -> None:
    server.inject(fault, times=1, after_chunks=5)
    result, deltas = await run_streamed(config("anthropic", server))
    assert result.error is not None
    assert (result.error.type, result.error.retryable) == ("StreamBroken", retryable)
    assert in_message in result.error.message
    assert result.output == text_of(deltas)
    assert result.output
    assert server.requests == 1


async def test_an_error_before_the_stream_is_classified_as_without_streaming() -> None:
    async with FakeLLMServer(api_key="right-key") as server:
        cfg = ExecutorConfig(
            provider=ProviderConfig(kind="anthropic", base_url=server.base_url, api_key="wrong-key"),
            retry=FAST_RETRY,
        )
        result, deltas = await run_streamed(cfg)
    assert result.error is not None
    assert result.error.type == "ProviderAuthError"
    assert "invalid API key" in result.error.message
    assert "wrong-key" not in result.error.message
    assert deltas == []
    assert server.requests == 1


async def test_an_exception_of_the_callback_ends_the_task_without_retry(server: FakeLLMServer) -> None:
    def refuse(delta: StreamDelta) -> None:
        raise LookupError("the caller went away")

    async with TaskExecutor(config("openai", server)) as executor:
        result = await executor.execute(TASK, on_delta=refuse)
    assert result.error is not None
    assert result.error.type == "LookupError"
    assert "the caller went away" in result.error.message
    assert server.requests == 1


async def test_the_echo_provider_streams_word_by_word_with_its_latency_spread_over_the_words() -> None:
    task = AgentTask(topic="t", prompt="hello streaming world")
    cfg = ExecutorConfig(provider=ProviderConfig(kind="echo", echo_latency_s=0.4))
    arrivals: list[float] = []
    deltas: list[StreamDelta] = []

    def note(delta: StreamDelta) -> None:
        arrivals.append(time.monotonic())
        deltas.append(delta)

    async with TaskExecutor(cfg) as executor:
        started = time.monotonic()
        result = await executor.execute(task, on_delta=note)
        ended = time.monotonic()
    assert deltas == [TextDelta("echo:"), TextDelta(" hello"), TextDelta(" streaming"), TextDelta(" world")]
    assert result.output == text_of(deltas)
    assert (arrivals[0] - started) < 0.7 * (ended - started)  # a quarter of the latency, then the rest


class WholeAnswers:
    """A custom provider without ``stream``."""

    name = "custom/whole"

    async def complete(self, request: ChatRequest) -> Completion:
        return Completion("the whole answer", Usage(completion_tokens=3, requests=1), "whole")


async def test_a_provider_without_stream_gives_its_answer_as_one_delta() -> None:
    deltas: list[StreamDelta] = []
    async with TaskExecutor(provider=WholeAnswers()) as executor:
        result = await executor.execute(TASK, on_delta=deltas.append)
    assert deltas == [TextDelta("the whole answer")]
    assert result.output == "the whole answer"


async def test_the_scripted_provider_streams_words() -> None:
    deltas: list[StreamDelta] = []
    async with TaskExecutor(provider=ScriptedProvider(["the whole answer"])) as executor:
        result = await executor.execute(TASK, on_delta=deltas.append)
    assert deltas == [TextDelta("the"), TextDelta(" whole"), TextDelta(" answer")]
    assert result.output == "the whole answer"


async def test_a_stream_that_outlives_the_task_timeout_ends_in_timeout(server: FakeLLMServer) -> None:
    server.chunk_delay_s = 5
    result, deltas = await run_streamed(
        config("openai", server), AgentTask(topic="t", prompt="p", timeout_s=0.5)
    )
    assert result.status is ExecutionStatus.TIMEOUT
    assert deltas == []
    assert server.chunks_sent == 1  # the role chunk; the task did not wait for the rest
