"""FakeLLMServer speaks the real formats: the official openai and anthropic SDKs talk to it unchanged."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anthropic
import openai
import pytest

from relaybus.executor import FinishReason, ToolResultMessage
from relaybus.testing import FakeLLMServer, ScriptedAnswer, ScriptedToolCall

WEATHER = {
    "name": "weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
TWO_CALLS = ScriptedAnswer(
    text="Checking both.",
    tool_calls=[
        ScriptedToolCall("weather", {"city": "Paris"}),
        ScriptedToolCall("weather", {"city": "Oslo"}),
    ],
)


@pytest.fixture
async def server() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer(api_key="dummy-key") as srv:
        yield srv


def openai_client(server: FakeLLMServer, max_retries: int = 0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="dummy-key", max_retries=max_retries)


def anthropic_client(server: FakeLLMServer, max_retries: int = 0, **auth: str) -> anthropic.AsyncAnthropic:
    auth = auth or {"api_key": "dummy-key"}
    return anthropic.AsyncAnthropic(base_url=server.base_url, max_retries=max_retries, **auth)


# -- openai ----------------------------------------------------------------------------------------------
async def test_openai_sdk_normal_call(server: FakeLLMServer) -> None:
    async with openai_client(server) as client:
        completion = await client.chat.completions.create(
            model="gpt-fake",
            messages=[{"role": "system", "content": "Be nice."}, {"role": "user", "content": "hi there"}],
        )
    assert completion.choices[0].message.content == "fake reply: hi there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (4, 4)
    assert completion.model == "gpt-fake"
    assert server.calls[0].headers["authorization"] == "Bearer [redacted]"


async def test_openai_sdk_parses_scripted_tool_calls_and_sends_the_results_back(
    server: FakeLLMServer,
) -> None:
    server.set_answers([TWO_CALLS, "Sunny in both."])
    messages: list[dict[str, object]] = [{"role": "user", "content": "Weather in Paris and Oslo?"}]
    async with openai_client(server) as client:
        first = await client.chat.completions.create(
            model="gpt-fake", messages=messages, tools=[{"type": "function", "function": WEATHER}]
        )
        message = first.choices[0].message
        assert first.choices[0].finish_reason == "tool_calls"
        assert message.tool_calls is not None
        calls = [(c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls]
        assert calls == [
            ("call_1_0", "weather", {"city": "Paris"}),
            ("call_1_1", "weather", {"city": "Oslo"}),
        ]
        messages.append(message.model_dump(exclude_none=True))
        messages += [{"role": "tool", "tool_call_id": c[0], "content": "sunny"} for c in calls]
        second = await client.chat.completions.create(model="gpt-fake", messages=messages)
    assert second.choices[0].message.content == "Sunny in both."
    seen = server.calls[1].request
    assert seen is not None
    assert seen.tool_results == (
        ToolResultMessage("call_1_0", "sunny"),
        ToolResultMessage("call_1_1", "sunny"),
    )


async def test_openai_sdk_sees_a_server_error(server: FakeLLMServer) -> None:
    server.inject("server_error", times=1)
    async with openai_client(server) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert isinstance(caught.value, openai.APIStatusError)
    assert caught.value.status_code == 500
    assert "injected fault" in caught.value.message


async def test_openai_sdk_sees_a_rate_limit_with_retry_after(server: FakeLLMServer) -> None:
    server.inject("rate_limit", times=1, retry_after=7)
    async with openai_client(server) as client:
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"


async def test_openai_sdk_retries_a_rate_limit_by_itself(server: FakeLLMServer) -> None:
    server.inject("rate_limit", times=1, retry_after=0)
    async with openai_client(server, max_retries=1) as client:
        completion = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
    assert completion.choices[0].message.content == "fake reply: x"
    assert server.statuses == {429: 1, 200: 1}


async def test_openai_sdk_with_a_wrong_key_gets_an_authentication_error(server: FakeLLMServer) -> None:
    async with openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="wrong", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])


# -- anthropic -------------------------------------------------------------------------------------------
async def test_anthropic_sdk_normal_call(server: FakeLLMServer) -> None:
    async with anthropic_client(server) as client:
        message = await client.messages.create(
            model="claude-fake",
            max_tokens=50,
            system="Be nice.",
            messages=[{"role": "user", "content": "hi there"}],
        )
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "fake reply: hi there"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (4, 4)
    headers = server.calls[0].headers
    assert headers["anthropic-version"]
    assert "[redacted]" in headers.get("x-api-key", headers.get("authorization", ""))


async def test_anthropic_sdk_with_bearer_auth(server: FakeLLMServer) -> None:
    async with anthropic_client(server, auth_token="dummy-key") as client:
        message = await client.messages.create(
            model="claude-fake", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        )
    assert message.content[0].text == "fake reply: hi"
    assert server.calls[0].headers["authorization"] == "Bearer [redacted]"
    assert "x-api-key" not in server.calls[0].headers


async def test_anthropic_sdk_parses_scripted_tool_use_and_sends_tool_results(server: FakeLLMServer) -> None:
    server.set_answers([TWO_CALLS, "Sunny in both."])
    tools = [
        {
            "name": WEATHER["name"],
            "description": WEATHER["description"],
            "input_schema": WEATHER["parameters"],
        }
    ]
    messages: list[dict[str, object]] = [{"role": "user", "content": "Weather in Paris and Oslo?"}]
    async with anthropic_client(server) as client:
        first = await client.messages.create(
            model="claude-fake", max_tokens=100, messages=messages, tools=tools
        )
        assert first.stop_reason == "tool_use"
        assert [block.type for block in first.content] == ["text", "tool_use", "tool_use"]
        uses = [block for block in first.content if block.type == "tool_use"]
        assert [(u.name, u.input) for u in uses] == [
            ("weather", {"city": "Paris"}),
            ("weather", {"city": "Oslo"}),
        ]
        messages.append({"role": "assistant", "content": [block.model_dump() for block in first.content]})
        results = [{"type": "tool_result", "tool_use_id": u.id, "content": "sunny"} for u in uses]
        messages.append({"role": "user", "content": results})
        second = await client.messages.create(
            model="claude-fake", max_tokens=100, messages=messages, tools=tools
        )
    assert second.content[0].text == "Sunny in both."
    seen = server.calls[1].request
    assert seen is not None
    assert [r.tool_call_id for r in seen.tool_results] == [u.id for u in uses]


async def test_anthropic_sdk_sees_a_server_error(server: FakeLLMServer) -> None:
    server.inject("server_error", times=1, status=529)
    async with anthropic_client(server) as client:
        with pytest.raises(anthropic.APIStatusError) as caught:
            await client.messages.create(model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 529
    assert "injected fault" in caught.value.message


async def test_anthropic_sdk_sees_a_500_as_internal_server_error(server: FakeLLMServer) -> None:
    server.inject("server_error", times=1)
    async with anthropic_client(server) as client:
        with pytest.raises(anthropic.InternalServerError):
            await client.messages.create(model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}])


async def test_anthropic_sdk_sees_a_rate_limit_with_retry_after(server: FakeLLMServer) -> None:
    server.inject("rate_limit", times=1, retry_after=3)
    async with anthropic_client(server) as client:
        with pytest.raises(anthropic.RateLimitError) as caught:
            await client.messages.create(model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "3"
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "rate_limit_error"


async def test_anthropic_sdk_reads_a_scripted_refusal_and_truncation(server: FakeLLMServer) -> None:
    server.set_answers(
        [
            ScriptedAnswer(refusal="I can't help with that."),
            ScriptedAnswer("The answer is", finish_reason=FinishReason.LENGTH),
        ]
    )
    async with anthropic_client(server) as client:
        refused = await client.messages.create(
            model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
        cut = await client.messages.create(
            model="c", max_tokens=5, messages=[{"role": "user", "content": "y"}]
        )
    assert refused.stop_reason == "refusal"
    assert refused.content[0].text == "I can't help with that."
    assert cut.stop_reason == "max_tokens"
