"""The api mode: requests only to configured hosts, capped answers, clear refusals (real server)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from relaybus.executor import ExecutorConfig, TaskExecutor
from relaybus.messages import AgentTask, ExecutionStatus
from relaybus.testing.fake_llm import FakeLLMServer

CHAT = {"model": "m", "messages": [{"role": "user", "content": "ping"}]}


@pytest.fixture
async def server() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer() as srv:
        yield srv


def api_task(**spec: Any) -> AgentTask:
    return AgentTask(topic="test.api", mode="api", input=spec)


def executor(*hosts: str, **cfg: Any) -> TaskExecutor:
    return TaskExecutor(ExecutorConfig(api_allowed_hosts=frozenset(hosts), **cfg))


async def test_request_to_an_allowed_host_returns_status_headers_and_json(server: FakeLLMServer) -> None:
    async with executor("127.0.0.1") as ex:
        result = await ex.execute(
            api_task(
                method="post",
                url=f"{server.openai_base_url}/chat/completions",
                json=CHAT,
                headers={"X-A": "1"},
            )
        )
    assert result.status is ExecutionStatus.SUCCESS
    assert isinstance(result.output, dict)
    assert result.output["status"] == 200
    assert isinstance(result.output["headers"], dict)
    assert "application/json" in str(result.output["headers"]["content-type"])
    body = result.output["body"]
    assert isinstance(body, dict)
    assert body["choices"][0]["message"]["content"] == "fake reply: ping"  # type: ignore[call-overload,index]
    assert server.calls[0].headers["x-a"] == "1"


async def test_other_hosts_are_rejected_naming_the_host_and_the_option(server: FakeLLMServer) -> None:
    async with executor("api.example.com") as ex:
        result = await ex.execute(api_task(url=f"{server.base_url}/v1/chat/completions"))
    assert result.status is ExecutionStatus.REJECTED
    assert result.error is not None
    assert result.error.type == "HostNotAllowed"
    assert "'127.0.0.1'" in result.error.message
    assert "api_allowed_hosts" in result.error.message
    assert "RELAYBUS_API_ALLOWED_HOSTS" in result.error.message
    assert server.requests == 0


async def test_no_host_is_allowed_by_default(server: FakeLLMServer) -> None:
    async with TaskExecutor(ExecutorConfig()) as ex:
        result = await ex.execute(api_task(url=server.base_url))
    assert result.status is ExecutionStatus.REJECTED


async def test_host_with_port_allows_only_that_port(server: FakeLLMServer) -> None:
    url = f"{server.openai_base_url}/chat/completions"
    async with executor(f"127.0.0.1:{server.port}") as ex:
        assert (await ex.execute(api_task(method="POST", url=url, json=CHAT))).ok
    async with executor(f"127.0.0.1:{server.port + 1}") as ex:
        assert (
            await ex.execute(api_task(method="POST", url=url, json=CHAT))
        ).status is ExecutionStatus.REJECTED


async def test_error_answers_fail_with_their_output(server: FakeLLMServer) -> None:
    url = f"{server.openai_base_url}/chat/completions"
    server.inject("server_error", times=1, status=503)
    async with executor("127.0.0.1") as ex:
        unavailable = await ex.execute(api_task(method="POST", url=url, json=CHAT))
        bad = await ex.execute(api_task(method="POST", url=url, body="not json"))
    assert unavailable.status is ExecutionStatus.FAILURE
    assert unavailable.error is not None
    assert unavailable.error.retryable
    assert isinstance(unavailable.output, dict)
    assert unavailable.output["status"] == 503
    assert bad.error is not None
    assert bad.error.type == "HTTPError"
    assert not bad.error.retryable
    assert "400" in bad.error.message


async def test_answers_over_the_cap_fail(server: FakeLLMServer) -> None:
    server.reply = "x" * 5000
    async with executor("127.0.0.1", api_max_response_bytes=1000) as ex:
        result = await ex.execute(
            api_task(method="POST", url=f"{server.openai_base_url}/chat/completions", json=CHAT)
        )
    assert result.error is not None
    assert result.error.type == "ResponseTooLarge"
    assert "api_max_response_bytes" in result.error.message


async def test_connection_refused_is_a_retryable_failure() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with executor("127.0.0.1") as ex:
        result = await ex.execute(api_task(url=f"http://127.0.0.1:{port}/"))
    assert result.status is ExecutionStatus.FAILURE
    assert result.error is not None
    assert result.error.type == "ConnectionError"
    assert result.error.retryable


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({}, "needs 'url'"),
        ({"url": "ftp://127.0.0.1/x"}, "absolute http(s) URL"),
        ({"url": "http://127.0.0.1/", "method": "BREW"}, "method must be one of"),
        ({"url": "http://127.0.0.1/", "json": {}, "body": "x"}, "not both"),
        ({"url": "http://127.0.0.1/", "headers": {"n": 1}}, "headers"),
        ({"url": "http://127.0.0.1/", "params": {"n": [1]}}, "params"),
        ({"url": "http://127.0.0.1/", "body": 3}, "body must be a string"),
        ({"url": "http://127.0.0.1/", "verb": "GET"}, "unknown keys"),
    ],
)
async def test_malformed_descriptions_are_rejected(spec: dict[str, Any], problem: str) -> None:
    async with executor("127.0.0.1") as ex:
        result = await ex.execute(api_task(**spec))
    assert result.status is ExecutionStatus.REJECTED
    assert result.error is not None
    assert problem in result.error.message


async def test_a_task_supplied_host_and_hop_by_hop_headers_are_dropped(server: FakeLLMServer) -> None:
    async with executor("127.0.0.1") as ex:
        result = await ex.execute(
            api_task(
                method="post",
                url=f"{server.openai_base_url}/chat/completions",
                json=CHAT,
                headers={
                    "Host": "internal.example",
                    "Connection": "Upgrade",
                    "Upgrade": "h2c",
                    "Transfer-Encoding": "chunked",
                    "X-Kept": "yes",
                },
            )
        )
    assert result.status is ExecutionStatus.SUCCESS
    seen = server.calls[0].headers
    assert seen["host"].startswith("127.0.0.1")  # the URL's host, not the task's
    assert "upgrade" not in seen
    assert "transfer-encoding" not in seen
    assert seen["x-kept"] == "yes"
