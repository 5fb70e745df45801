"""FakeLLMServer streams both formats (``stream: true``); the official SDKs' streaming APIs parse them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anthropic
import httpx
import openai
import pytest

from relaybus.testing import FakeLLMServer, ScriptedAnswer, ScriptedToolCall

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
CALL = ScriptedAnswer(text="Checking.", tool_calls=[ScriptedToolCall("weather", {"city": "Paris"})])
USER = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture
async def server() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer(api_key="dummy-key", chunk_size=3) as srv:
        yield srv


def openai_client(server: FakeLLMServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="dummy-key", max_retries=0)


def anthropic_client(server: FakeLLMServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=server.base_url, api_key="dummy-key", max_retries=0)


# -- openai --------------------------------------------------------------------------------------------------
async def test_openai_sdk_streams_text_in_chunks_with_usage_last_when_asked(server: FakeLLMServer) -> None:
    server.set_answers(["The sky is blue."])
    async with openai_client(server) as client:
        stream = await client.chat.completions.create(
            model="gpt-fake", messages=USER, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert pieces == ["The", " sk", "y i", "s b", "lue", "."]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (3, 4)
    assert all(c.usage is None for c in chunks[:-1])
    assert server.streams == 1
    assert server.streams_open == 0
    assert server.chunks_sent == len(chunks) + 1  # and [DONE]


async def test_openai_sdk_stream_without_include_usage_has_no_usage_chunk(server: FakeLLMServer) -> None:
    async with openai_client(server) as client:
        stream = await client.chat.completions.create(model="gpt-fake", messages=USER, stream=True)
        chunks = [chunk async for chunk in stream]
    assert all(c.choices and c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "fake reply: Weather in Paris?"


async def test_openai_sdk_stream_helper_assembles_a_streamed_tool_call(server: FakeLLMServer) -> None:
    server.set_answers([CALL])
    tools: list[openai.types.chat.ChatCompletionToolParam] = [
        {"type": "function", "function": {"name": "weather", "parameters": WEATHER}}
    ]
    async with (
        openai_client(server) as client,
        client.chat.completions.stream(model="gpt-fake", messages=USER, tools=tools) as stream,
    ):
        argument_pieces = [
            e.arguments_delta async for e in stream if e.type == "tool_calls.function.arguments.delta"
        ]
        final = await stream.get_final_completion()
    message = final.choices[0].message
    assert message.content == "Checking."
    assert message.tool_calls is not None
    assert len(message.tool_calls) == 1
    call = message.tool_calls[0]
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "call_1_0",
        "weather",
        {"city": "Paris"},
    )
    assert len(argument_pieces) > 1
    assert "".join(argument_pieces) == call.function.arguments
    assert final.choices[0].finish_reason == "tool_calls"


async def test_openai_sdk_sees_an_error_sent_in_the_stream(server: FakeLLMServer) -> None:
    server.inject("stream_error", times=1, after_chunks=2)
    async with openai_client(server) as client:
        stream = await client.chat.completions.create(model="gpt-fake", messages=USER, stream=True)
        with pytest.raises(openai.APIError, match="server_error"):
            async for _ in stream:
                pass
    assert server.chunks_sent == 2


# -- anthropic -----------------------------------------------------------------------------------------------
async def test_anthropic_sdk_streams_text_and_the_final_message(server: FakeLLMServer) -> None:
    server.set_answers(["The sky is blue."])
    async with (
        anthropic_client(server) as client,
        client.messages.stream(model="claude-fake", max_tokens=100, messages=USER) as stream,
    ):
        pieces = [text async for text in stream.text_stream]
        message = await stream.get_final_message()
    assert pieces == ["The", " sk", "y i", "s b", "lue", "."]
    assert message.content[0].type == "text"
    assert message.content[0].text == "The sky is blue."
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (3, 4)


async def test_anthropic_sdk_assembles_a_streamed_tool_use(server: FakeLLMServer) -> None:
    server.set_answers([CALL])
    tools: list[anthropic.types.ToolParam] = [{"name": "weather", "input_schema": WEATHER}]
    async with (
        anthropic_client(server) as client,
        client.messages.stream(model="claude-fake", max_tokens=100, messages=USER, tools=tools) as stream,
    ):
        kinds = [event.type async for event in stream]
        message = await stream.get_final_message()
    assert kinds.count("input_json") > 1
    tool_use = message.content[1]
    assert tool_use.type == "tool_use"
    assert (tool_use.id, tool_use.name, tool_use.input) == ("toolu_fake_1_0", "weather", {"city": "Paris"})
    assert message.stop_reason == "tool_use"


async def test_anthropic_sdk_sees_an_error_event(server: FakeLLMServer) -> None:
    server.inject("stream_error", times=1, after_chunks=3)
    async with anthropic_client(server) as client:
        stream = await client.messages.create(model="claude-fake", max_tokens=100, messages=USER, stream=True)
        with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
            async for _ in stream:
                pass


# -- behaviour -----------------------------------------------------------------------------------------------
async def test_break_stream_closes_the_connection_after_n_chunks(server: FakeLLMServer) -> None:
    server.inject("break_stream", times=1, after_chunks=3)
    body = {"model": "m", "messages": USER, "stream": True}
    received: list[bytes] = []

    async def read() -> None:
        async with (
            httpx.AsyncClient(headers={"Authorization": "Bearer dummy-key"}) as client,
            client.stream("POST", f"{server.openai_base_url}/chat/completions", json=body) as response,
        ):
            async for chunk in response.aiter_bytes():
                received.append(chunk)

    with pytest.raises(httpx.TransportError):
        await read()
    assert b"".join(received).count(b"data: ") == 3 == server.chunks_sent
    assert server.faults["break_stream"] == 1
    assert server.disconnects == 1
    assert server.streams_open == 0


async def test_stream_faults_wait_for_a_streamed_request_and_chunk_delay_paces_the_events(
    server: FakeLLMServer,
) -> None:
    server.inject("malformed_chunk", times=1, after_chunks=1)
    async with httpx.AsyncClient(headers={"Authorization": "Bearer dummy-key"}) as client:
        url = f"{server.openai_base_url}/chat/completions"
        plain = await client.post(url, json={"model": "m", "messages": USER})
        assert plain.json()["choices"][0]["message"]["content"] == "fake reply: Weather in Paris?"
        server.chunk_delay_s = 0.01
        streamed = await client.post(url, json={"model": "m", "messages": USER, "stream": True})
    assert server.faults["malformed_chunk"] == 1
    assert streamed.text.endswith("data: {this is not json\n\n")
    assert streamed.headers["content-type"].startswith("text/event-stream")


async def test_slow_stream_is_still_streaming_when_its_first_chunk_arrives(server: FakeLLMServer) -> None:
    server.chunk_delay_s = 0.05
    async with openai_client(server) as client:
        stream = await client.chat.completions.create(model="gpt-fake", messages=USER, stream=True)
        open_at_first_chunk = None
        async for _ in stream:
            if open_at_first_chunk is None:
                open_at_first_chunk = (server.streams_open, server.chunks_sent)
    total = server.chunks_sent
    assert open_at_first_chunk is not None
    assert open_at_first_chunk[0] == 1
    assert open_at_first_chunk[1] < total / 2


async def test_bad_stream_arguments_are_refused(server: FakeLLMServer) -> None:
    with pytest.raises(Exception, match="chunk_size"):
        FakeLLMServer(chunk_size=0)
    with pytest.raises(Exception, match="after_chunks"):
        server.inject("break_stream", after_chunks=-1)
    async with httpx.AsyncClient(headers={"Authorization": "Bearer dummy-key"}) as client:
        answer = await client.post(
            f"{server.openai_base_url}/chat/completions",
            json={"model": "m", "messages": USER, "stream": "yes"},
        )
    assert answer.status_code == 400
    assert "stream" in answer.text
