"""FakeLLMServer: both provider APIs, usage, auth, validation, faults (seeded fractions) and counters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import httpx
import pytest

from relaybus.testing.fake_llm import FakeLLMServer
from tests.eventually import eventually

CHAT = {
    "model": "m",
    "messages": [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi there"}],
}
MESSAGES = {
    "model": "c",
    "max_tokens": 10,
    "system": "be nice",
    "messages": [{"role": "user", "content": "hi there"}],
}


@pytest.fixture
async def server() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer() as srv:
        yield srv


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


async def test_listens_on_loopback_with_a_random_port() -> None:
    async with FakeLLMServer() as a, FakeLLMServer() as b:
        assert a.base_url.startswith("http://127.0.0.1:")
        assert a.port != b.port
        assert a.openai_base_url == a.base_url + "/v1"
    with pytest.raises(RuntimeError, match="not started"):
        _ = FakeLLMServer().base_url


async def test_openai_chat_completion_with_usage(server: FakeLLMServer, client: httpx.AsyncClient) -> None:
    response = await client.post(f"{server.openai_base_url}/chat/completions", json=CHAT)
    assert response.status_code == 200
    data = response.json()
    assert data["choices"][0]["message"] == {"role": "assistant", "content": "fake reply: hi there"}
    assert data["usage"] == {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}
    assert server.requests == 1
    assert server.calls[0].body == CHAT
    # base_url without /v1 works for OpenAI clients too
    assert (await client.post(f"{server.base_url}/chat/completions", json=CHAT)).status_code == 200


async def test_anthropic_message_with_usage(server: FakeLLMServer, client: httpx.AsyncClient) -> None:
    server.reply = str.upper
    response = await client.post(f"{server.base_url}/v1/messages", json=MESSAGES)
    data = response.json()
    assert data["content"] == [{"type": "text", "text": "HI THERE"}]
    assert data["usage"] == {"input_tokens": 4, "output_tokens": 2}
    assert data["type"] == "message"


async def test_api_key_is_checked_when_configured(client: httpx.AsyncClient) -> None:
    async with FakeLLMServer(api_key="k-123") as srv:
        bad = await client.post(f"{srv.openai_base_url}/chat/completions", json=CHAT)
        good = await client.post(
            f"{srv.openai_base_url}/chat/completions", json=CHAT, headers={"Authorization": "Bearer k-123"}
        )
        anthropic = await client.post(
            f"{srv.base_url}/v1/messages", json=MESSAGES, headers={"x-api-key": "k-123"}
        )
    assert (bad.status_code, good.status_code, anthropic.status_code) == (401, 200, 200)
    assert bad.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("path", "body", "problem"),
    [
        ("/v1/chat/completions", {"messages": []}, "model"),
        ("/v1/chat/completions", {"model": "m"}, "messages"),
        ("/v1/messages", {"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
    ],
)
async def test_malformed_requests_get_400(
    server: FakeLLMServer, client: httpx.AsyncClient, path: str, body: dict[str, object], problem: str
) -> None:
    response = await client.post(server.base_url + path, json=body)
    assert response.status_code == 400
    assert problem in response.text


async def test_rate_limit_fault_with_retry_after_then_normal(
    server: FakeLLMServer, client: httpx.AsyncClient
) -> None:
    server.inject("rate_limit", times=2, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    url = f"{server.openai_base_url}/chat/completions"
    first, second, third = [await client.post(url, json=CHAT) for _ in range(3)]
    assert (first.status_code, second.status_code, third.status_code) == (429, 429, 200)
    assert first.headers["Retry-After"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert server.faults["rate_limit"] == 2
    assert server.statuses == {429: 2, 200: 1}


async def test_server_error_fault_in_the_anthropic_format(
    server: FakeLLMServer, client: httpx.AsyncClient
) -> None:
    server.inject("server_error", status=529, times=1)
    response = await client.post(f"{server.base_url}/v1/messages", json=MESSAGES)
    assert response.status_code == 529
    assert response.json()["type"] == "error"


async def test_drop_fault_closes_the_connection_without_an_answer(
    server: FakeLLMServer, client: httpx.AsyncClient
) -> None:
    server.inject("drop", times=1)
    with pytest.raises(httpx.TransportError):
        await client.post(f"{server.openai_base_url}/chat/completions", json=CHAT)
    ok = await client.post(f"{server.openai_base_url}/chat/completions", json=CHAT)
    assert ok.status_code == 200


async def test_slow_fault_and_latency_delay_answers(server: FakeLLMServer, client: httpx.AsyncClient) -> None:
    server.inject("slow", delay_s=5, times=1)
    with pytest.raises(httpx.ReadTimeout):
        await client.post(f"{server.openai_base_url}/chat/completions", json=CHAT, timeout=0.3)
    await eventually(lambda: server.disconnects and not server.in_flight)
    assert server.disconnects == 1  # the server saw the client give up


async def test_fraction_faults_are_repeatable_with_a_seed(client: httpx.AsyncClient) -> None:
    async def statuses(seed: int) -> list[int]:
        async with FakeLLMServer(seed=seed) as srv:
            srv.inject("server_error", fraction=0.3)
            url = f"{srv.openai_base_url}/chat/completions"
            return [(await client.post(url, json=CHAT)).status_code for _ in range(40)]

    first, again, other = await statuses(7), await statuses(7), await statuses(8)
    assert first == again
    assert first != other
    assert 3 <= first.count(500) <= 25


def test_bad_fault_arguments_are_refused() -> None:
    server = FakeLLMServer()
    with pytest.raises(ValueError, match="unknown fault kind"):
        server.inject("meteor")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fraction"):
        server.inject("drop", fraction=2)
    with pytest.raises(ValueError, match="times"):
        server.inject("drop", times=0)


async def test_handles_1000_concurrent_requests() -> None:
    async with FakeLLMServer(latency_s=0.5, record_calls=False) as srv:
        url = f"{srv.openai_base_url}/chat/completions"
        connector = aiohttp.TCPConnector(limit=1000)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one() -> int:
                async with session.post(url, json=CHAT) as response:
                    await response.read()
                    return response.status

            statuses = await asyncio.gather(*(one() for _ in range(1000)))
    assert statuses == [200] * 1000
    assert srv.max_in_flight == 1000
    assert srv.requests == 1000
