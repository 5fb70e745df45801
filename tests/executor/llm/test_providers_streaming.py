"""The providers stream from FakeLLMServer over real HTTP: deltas, then the Completion unstreamed gives."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from relaybus.exceptions import ProviderResponseError
from relaybus.executor import (
    AnthropicProvider,
    ChatRequest,
    Completion,
    OpenAIProvider,
    ResponseSchema,
    StreamChunk,
    StreamingProvider,
    TextDelta,
    ToolCallDelta,
    UserMessage,
)
from relaybus.executor.http import make_client
from relaybus.executor.llm import _http
from relaybus.executor.llm.stream import ProviderStreamError
from relaybus.testing import FakeLLMServer, ScriptedAnswer, ScriptedToolCall
from relaybus.tools.spec import ToolSpec

WEATHER = ToolSpec(
    "weather", "The weather in a city.", {"type": "object", "properties": {"city": {"type": "string"}}}
)
SCORE = ResponseSchema("score", {"type": "object", "properties": {"score": {"type": "integer"}}})
TEXT = ChatRequest.from_prompt("Tell me about the sky.")
WITH_TOOLS = ChatRequest.from_prompt("Weather in Paris and Oslo?", tools=[WEATHER])
STRUCTURED = ChatRequest((UserMessage("Rate it."),), response_schema=SCORE)
ANSWERS = {
    "text": (TEXT, ScriptedAnswer("The sky is blue because of Rayleigh scattering.")),
    "tool-calls": (
        WITH_TOOLS,
        ScriptedAnswer(
            "Checking both.",
            tool_calls=[
                ScriptedToolCall("weather", {"city": "Paris"}, id="call_paris"),
                ScriptedToolCall("weather", {"city": "Oslo"}, id="call_oslo"),
            ],
        ),
    ),
    "structured": (STRUCTURED, ScriptedAnswer(output={"score": 7})),
    "refusal": (TEXT, ScriptedAnswer(refusal="I will not rate that.")),
}


@pytest.fixture
async def server() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer(chunk_size=3) as srv:
        yield srv


@pytest.fixture(params=["aiohttp", "httpx"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(transport=request.param) as c:
        yield c


def provider(kind: str, server: FakeLLMServer, client: httpx.AsyncClient) -> StreamingProvider:
    if kind == "openai":
        return OpenAIProvider(client, model="gpt-fake", base_url=server.openai_base_url)
    return AnthropicProvider(client, model="claude-fake", base_url=server.base_url)


async def streamed(p: StreamingProvider, request: ChatRequest) -> tuple[list[StreamChunk], Completion]:
    chunks = [chunk async for chunk in p.stream(request)]
    final = chunks[-1]
    assert isinstance(final, Completion)
    assert not any(isinstance(chunk, Completion) for chunk in chunks[:-1])
    return chunks[:-1], final


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("case", list(ANSWERS))
async def test_streamed_completion_is_the_unstreamed_one_and_the_deltas_build_it(
    kind: str, case: str, server: FakeLLMServer, client: httpx.AsyncClient
) -> None:
    request, answer = ANSWERS[case]
    server.set_answers([answer, answer])
    p = provider(kind, server, client)
    deltas, completion = await streamed(p, request)
    assert completion == await p.complete(request)
    if case != "refusal" or kind == "openai":  # Anthropic says a refusal as text with stop_reason refusal
        assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == completion.text
    calls = [d for d in deltas if isinstance(d, ToolCallDelta)]
    for index, call in enumerate(completion.tool_calls):
        mine = [d for d in calls if d.index == index]
        assert (mine[0].id, mine[0].name) == (call.id, call.name)
        assert "".join(d.arguments for d in mine) == call.arguments
    assert len(deltas) > 2  # really cut in pieces
    assert server.calls[0].body["stream"] is True
    assert "stream" not in server.calls[1].body


async def test_openai_asks_for_usage_in_the_last_chunk(
    server: FakeLLMServer, client: httpx.AsyncClient
) -> None:
    _, completion = await streamed(provider("openai", server, client), TEXT)
    assert server.calls[0].body["stream_options"] == {"include_usage": True}
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (5, 7)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_first_delta_arrives_while_the_server_still_streams(
    kind: str, server: FakeLLMServer, client: httpx.AsyncClient
) -> None:
    server.chunk_delay_s = 0.02
    server.set_answers(["one two three four five six seven eight nine ten"])
    seen_at_first_delta: tuple[int, int] | None = None
    async for chunk in provider(kind, server, client).stream(TEXT):
        if seen_at_first_delta is None and isinstance(chunk, TextDelta):
            seen_at_first_delta = (server.streams_open, server.chunks_sent)
    assert seen_at_first_delta is not None
    still_open, sent = seen_at_first_delta
    assert still_open == 1
    assert sent <= server.chunks_sent / 3


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_connection_broken_mid_stream_raises_a_transport_error_after_the_deltas_so_far(
    kind: str, server: FakeLLMServer, client: httpx.AsyncClient
) -> None:
    server.inject("break_stream", times=1, after_chunks=5)
    deltas: list[StreamChunk] = []

    async def read() -> None:
        async for chunk in provider(kind, server, client).stream(TEXT):
            deltas.append(chunk)

    with pytest.raises(httpx.TransportError):
        await read()
    assert deltas
    assert all(isinstance(d, TextDelta) for d in deltas)


@pytest.mark.parametrize(("kind", "error"), [("openai", "server_error"), ("anthropic", "overloaded_error")])
async def test_an_error_event_in_the_stream_raises_a_stream_error(
    kind: str, error: str, server: FakeLLMServer, client: httpx.AsyncClient
) -> None:
    server.inject("stream_error", times=1, after_chunks=4)
    with pytest.raises(ProviderStreamError, match=error) as caught:
        _ = [chunk async for chunk in provider(kind, server, client).stream(TEXT)]
    assert caught.value.retryable


async def test_a_non_2xx_answer_raises_before_any_delta_with_its_body_read(
    server: FakeLLMServer, client: httpx.AsyncClient
) -> None:
    server.inject("rate_limit", times=1, retry_after=3)
    with pytest.raises(httpx.HTTPStatusError) as caught:
        _ = [chunk async for chunk in provider("anthropic", server, client).stream(TEXT)]
    assert caught.value.response.status_code == 429
    assert caught.value.response.headers["retry-after"] == "3"
    assert "rate limit exceeded" in caught.value.response.text


async def test_a_stream_longer_than_the_cap_is_refused(
    server: FakeLLMServer, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_http, "MAX_RESPONSE_BYTES", 2_000)
    server.set_answers(["word " * 200])
    with pytest.raises(ProviderResponseError, match="streamed more than 2000 bytes"):
        _ = [chunk async for chunk in provider("openai", server, client).stream(TEXT)]


async def test_tool_arguments_stream_in_pieces_that_join_to_json(
    server: FakeLLMServer, client: httpx.AsyncClient
) -> None:
    request, answer = ANSWERS["tool-calls"]
    server.set_answers([answer])
    deltas, completion = await streamed(provider("anthropic", server, client), request)
    pieces = [d.arguments for d in deltas if isinstance(d, ToolCallDelta) and d.index == 1 and d.arguments]
    assert len(pieces) > 1
    assert json.loads("".join(pieces)) == {"city": "Oslo"}
    assert completion.tool_calls[1].arguments_object() == {"city": "Oslo"}
