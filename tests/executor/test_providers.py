"""LLM providers and the llm mode's retries and fallback, against httpx.MockTransport (no network)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from relaybus.exceptions import ConfigError, ProviderResponseError
from relaybus.executor import (
    AnthropicProvider,
    ChatRequest,
    EchoProvider,
    ExecutorConfig,
    OpenAIProvider,
    ProviderConfig,
    RetryPolicy,
    TaskExecutor,
)
from relaybus.messages import AgentTask, ExecutionStatus
from relaybus.secrets import Secret

from .mock_http import Recorder, openai_answer

KEY = "sk-mock-0123456789abcdef"


def openai_ok(text: str = "hi", prompt_tokens: int = 7, completion_tokens: int = 2) -> httpx.Response:
    return openai_answer({"content": text}, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


async def test_openai_request_shape_and_parsing() -> None:
    mock = Recorder(openai_ok("answer", 11, 3))
    async with mock.client() as client:
        provider = OpenAIProvider(client, model="gpt-x", base_url="http://llm.local/v1/", api_key=Secret(KEY))
        completion = await provider.complete(
            ChatRequest.from_prompt("u", system="s", max_tokens=9, temperature=0.1)
        )
    request = mock.requests[0]
    assert str(request.url) == "http://llm.local/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(request.content) == {
        "model": "gpt-x",
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
        "max_tokens": 9,
        "temperature": 0.1,
    }
    assert completion.text == "answer"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 3)
    assert completion.finish_reason == "stop"


async def test_openai_without_key_sends_no_authorization() -> None:
    mock = Recorder(openai_ok())
    async with mock.client() as client:
        await OpenAIProvider(client, model="m", base_url="http://ollama:11434/v1").complete(
            ChatRequest.from_prompt("u")
        )
    assert "authorization" not in mock.requests[0].headers
    assert "system" not in mock.requests[0].content.decode()


async def test_anthropic_request_shape_and_parsing() -> None:
    body = {
        "model": "claude",
        "content": [
            {"type": "text", "text": "a"},
            {"type": "tool_use", "id": "x", "name": "t", "input": {}},
            {"type": "text", "text": "b"},
        ],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 5, "output_tokens": 2},
    }
    mock = Recorder(httpx.Response(200, json=body))
    async with mock.client() as client:
        provider = AnthropicProvider(client, model="claude", base_url="http://a.local", api_key=Secret(KEY))
        completion = await provider.complete(ChatRequest.from_prompt("u", system="s", max_tokens=20))
    request = mock.requests[0]
    assert str(request.url) == "http://a.local/v1/messages"
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert json.loads(request.content) == {
        "model": "claude",
        "max_tokens": 20,
        "system": "s",
        "messages": [{"role": "user", "content": "u"}],
    }
    assert completion.text == "ab"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (5, 2)
    assert repr(provider).count(KEY) == 0


async def test_echo_answers_the_user_message_and_counts_words() -> None:
    completion = await EchoProvider(model="e").complete(
        ChatRequest.from_prompt("two words", system="be brief")
    )
    assert completion.text == "echo: two words"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (4, 3)
    assert completion.model == "e"


def test_echo_refuses_a_negative_latency_with_a_config_error() -> None:
    with pytest.raises(ConfigError, match="latency_s must not be negative"):
        EchoProvider(latency_s=-1)


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(200, text="<html>"), "not JSON"),
        (httpx.Response(200, json=[1]), "not an object"),
        (httpx.Response(200, json={"choices": []}), "choices"),
    ],
)
async def test_openai_malformed_answers_raise_provider_response_error(
    response: httpx.Response, message: str
) -> None:
    async with Recorder(response).client() as client:
        with pytest.raises(ProviderResponseError, match=message):
            await OpenAIProvider(client, model="m", base_url="http://x/v1").complete(
                ChatRequest.from_prompt("u")
            )


async def test_oversized_answer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("relaybus.executor.llm._http.MAX_RESPONSE_BYTES", 100)
    async with Recorder(openai_ok("x" * 500)).client() as client:
        with pytest.raises(ProviderResponseError, match="more than 100 bytes"):
            await OpenAIProvider(client, model="m", base_url="http://x/v1").complete(
                ChatRequest.from_prompt("u")
            )


def _executor(mock: Recorder, *, fallback: ProviderConfig | None = None, **cfg: Any) -> TaskExecutor:
    config = ExecutorConfig(
        provider=ProviderConfig(kind="openai", base_url="http://llm.local/v1", api_key=KEY),
        fallback=fallback,
        retry=RetryPolicy(max_attempts=3, base_delay_s=0.001, max_delay_s=0.01),
        **cfg,
    )
    return TaskExecutor(config, client=mock.client())


TASK = AgentTask(topic="t", prompt="p")


async def test_429_then_success_is_retried_and_counts_requests() -> None:
    mock = Recorder(httpx.Response(429, headers={"Retry-After": "0"}), openai_ok("fine", 4, 1))
    async with _executor(mock) as ex:
        result = await ex.execute(TASK)
    assert result.status is ExecutionStatus.SUCCESS
    assert result.output == "fine"
    assert result.attempts == 2
    assert (result.usage.requests, result.usage.prompt_tokens, result.usage.completion_tokens) == (2, 4, 1)


async def test_persistent_5xx_fails_retryable_after_all_attempts() -> None:
    mock = Recorder(httpx.Response(503, text="overloaded"))
    async with _executor(mock) as ex:
        result = await ex.execute(TASK)
    assert result.status is ExecutionStatus.FAILURE
    assert result.error is not None
    assert result.error.type == "ProviderServerError"
    assert result.error.retryable
    assert "503" in result.error.message
    assert "overloaded" in result.error.message
    assert result.attempts == 3
    assert len(mock.requests) == 3


async def test_bad_request_is_not_retried() -> None:
    mock = Recorder(httpx.Response(400, json={"error": {"message": "unknown model"}}))
    async with _executor(mock) as ex:
        result = await ex.execute(TASK)
    assert result.error is not None
    assert result.error.type == "ProviderRequestError"
    assert not result.error.retryable
    assert "unknown model" in result.error.message
    assert len(mock.requests) == 1


async def test_auth_failure_names_the_fix_and_never_shows_the_key() -> None:
    # A server that echoes the key back in its error body: the result must still not show it.
    mock = Recorder(httpx.Response(401, json={"error": {"message": f"Incorrect API key provided: {KEY}"}}))
    with capture_logs() as logs:
        async with _executor(mock) as ex:
            result = await ex.execute(TASK)
    assert result.error is not None
    assert result.error.type == "ProviderAuthError"
    assert "OPENAI_API_KEY" in result.error.message
    assert KEY not in result.error.message
    assert KEY not in result.model_dump_json()
    assert logs
    assert KEY not in repr(logs)


async def test_connection_error_is_retried() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    mock = Recorder(refuse, refuse, openai_ok())
    async with _executor(mock) as ex:
        result = await ex.execute(TASK)
    assert result.ok
    assert result.attempts == 3


async def test_retry_after_longer_than_allowed_ends_at_once() -> None:
    mock = Recorder(httpx.Response(429, headers={"Retry-After": "3600"}))
    async with _executor(mock) as ex:
        result = await ex.execute(TASK)
    assert result.error is not None
    assert result.error.type == "RateLimited"
    assert result.error.retryable
    assert "max_retry_after_s" in result.error.message
    assert len(mock.requests) == 1


async def test_fallback_answers_when_the_primary_keeps_failing() -> None:
    mock = Recorder(httpx.Response(500))
    async with _executor(mock, fallback=ProviderConfig(kind="echo"), fallback_after_failures=2) as ex:
        results = [await ex.execute(AgentTask(topic="t", prompt=f"p{i}")) for i in range(4)]
    assert [r.output for r in results] == [f"echo: p{i}" for i in range(4)]
    assert results[0].attempts == 4  # 3 on the primary, 1 on the fallback
    # after 2 tasks in a row failed on the primary, it is skipped for the cool-down
    assert len(mock.requests) == 6
    assert results[3].attempts == 1


async def test_without_fallback_the_failure_names_the_provider() -> None:
    mock = Recorder(httpx.Response(500))
    async with _executor(mock) as ex:
        result = await ex.execute(TASK)
    assert result.error is not None
    assert result.error.message.startswith("openai/gpt-4o-mini: HTTP 500")
