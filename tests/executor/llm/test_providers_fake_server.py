"""The relaybus providers against FakeLLMServer over real HTTP: conversations with tools round-trip."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from relaybus.executor import (
    AnthropicProvider,
    AssistantMessage,
    ChatRequest,
    Completion,
    ExecutorConfig,
    FinishReason,
    OpenAIProvider,
    ProviderConfig,
    ResponseSchema,
    SystemMessage,
    TaskExecutor,
    ToolCall,
    ToolResultMessage,
    UserMessage,
)
from relaybus.executor.llm.base import LLMProvider
from relaybus.messages import AgentTask
from relaybus.secrets import Secret
from relaybus.testing import FakeLLMServer, ScriptedAnswer, ScriptedToolCall, SeenRequest
from relaybus.tools.spec import ToolSpec

KEY = "fake-key-0123456789"
WEATHER = ToolSpec(
    "weather", "The weather in a city.", {"type": "object", "properties": {"city": {"type": "string"}}}
)
TWO_CALLS = ScriptedAnswer(
    "Checking.",
    tool_calls=[
        ScriptedToolCall("weather", {"city": "Paris"}),
        ScriptedToolCall("weather", {"city": "Oslo"}),
    ],
)


@pytest.fixture
async def server() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer(api_key=KEY) as srv:
        yield srv


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


def provider(kind: str, server: FakeLLMServer, client: httpx.AsyncClient) -> LLMProvider:
    if kind == "openai":
        return OpenAIProvider(client, model="gpt-fake", base_url=server.openai_base_url, api_key=Secret(KEY))
    return AnthropicProvider(client, model="claude-fake", base_url=server.base_url, api_key=Secret(KEY))


async def two_turns(
    kind: str, server: FakeLLMServer, client: httpx.AsyncClient
) -> tuple[Completion, Completion]:
    """Ask, get two tool calls, send both results back (one an error), get the final answer."""
    llm = provider(kind, server, client)
    history: tuple[Any, ...] = (SystemMessage("Use tools."), UserMessage("Weather in Paris and Oslo?"))
    first = await llm.complete(ChatRequest(history, (WEATHER,), max_tokens=100))
    results = (
        ToolResultMessage(first.tool_calls[0].id, "sunny"),
        ToolResultMessage(first.tool_calls[1].id, "no such city", is_error=True),
    )
    second = await llm.complete(ChatRequest((*history, first.message, *results), (WEATHER,), max_tokens=100))
    return first, second


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_several_tool_calls_come_back_in_order_and_the_results_go_back(
    kind: str, server: FakeLLMServer, client: httpx.AsyncClient
) -> None:
    server.set_answers([TWO_CALLS, "Sunny in Paris."])
    first, second = await two_turns(kind, server, client)
    assert first.finish_reason is FinishReason.TOOL_CALLS
    assert [(c.name, c.arguments_object()) for c in first.tool_calls] == [
        ("weather", {"city": "Paris"}),
        ("weather", {"city": "Oslo"}),
    ]
    assert first.text == "Checking."
    assert (second.text, second.finish_reason) == ("Sunny in Paris.", FinishReason.STOP)
    seen = server.calls[1].request
    assert seen is not None  # the fake parsed the history back into the same messages
    assert seen.messages[2] == AssistantMessage("Checking.", first.tool_calls)
    assert [(r.content, r.is_error) for r in seen.tool_results] == [
        ("sunny", False),
        ("no such city", kind == "anthropic"),  # OpenAI has no error flag on tool messages
    ]


async def test_openai_wire_tool_results_are_tool_messages(
    server: FakeLLMServer, client: httpx.AsyncClient
) -> None:
    server.set_answers([TWO_CALLS, "done"])
    first, _ = await two_turns("openai", server, client)
    body = server.calls[1].body
    assert body["messages"][2] == {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": "weather", "arguments": c.arguments}}
            for c in first.tool_calls
        ],
    }
    assert body["messages"][3:] == [
        {"role": "tool", "tool_call_id": first.tool_calls[0].id, "content": "sunny"},
        {"role": "tool", "tool_call_id": first.tool_calls[1].id, "content": "no such city"},
    ]
    assert body["tools"][0] == {
        "type": "function",
        "function": {
            "name": "weather",
            "description": WEATHER.description,
            "parameters": dict(WEATHER.parameters),
        },
    }
    assert server.calls[1].headers["authorization"] == "Bearer [redacted]"


async def test_anthropic_wire_tool_results_are_tool_result_blocks(
    server: FakeLLMServer, client: httpx.AsyncClient
) -> None:
    server.set_answers([TWO_CALLS, "done"])
    first, _ = await two_turns("anthropic", server, client)
    body = server.calls[1].body
    assert body["system"] == "Use tools."
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Checking."},
            *(
                {"type": "tool_use", "id": c.id, "name": "weather", "input": c.arguments_object()}
                for c in first.tool_calls
            ),
        ],
    }
    assert body["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": first.tool_calls[0].id, "content": "sunny"},
            {
                "type": "tool_result",
                "tool_use_id": first.tool_calls[1].id,
                "content": "no such city",
                "is_error": True,
            },
        ],
    }
    assert server.calls[1].headers["x-api-key"] == "[redacted]"


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_content_parts_are_joined(kind: str, server: FakeLLMServer, client: httpx.AsyncClient) -> None:
    server.set_answers([ScriptedAnswer(["Hello, ", "wor", "ld"])])
    completion = await provider(kind, server, client).complete(ChatRequest.from_prompt("hi"))
    assert completion.text == "Hello, world"


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_length_and_refusal_are_reported(
    kind: str, server: FakeLLMServer, client: httpx.AsyncClient
) -> None:
    server.set_answers(
        [ScriptedAnswer("The answer is", finish_reason=FinishReason.LENGTH), ScriptedAnswer(refusal="No.")]
    )
    llm = provider(kind, server, client)
    cut = await llm.complete(ChatRequest.from_prompt("x"))
    refused = await llm.complete(ChatRequest.from_prompt("y"))
    assert (cut.finish_reason, cut.text) == (FinishReason.LENGTH, "The answer is")
    assert (refused.finish_reason, refused.refusal) == (FinishReason.REFUSAL, "No.")


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_structured_output_round_trips(
    kind: str, server: FakeLLMServer, client: httpx.AsyncClient
) -> None:
    schema = ResponseSchema("answer", {"type": "object", "properties": {"value": {"type": "integer"}}})
    server.set_answers(lambda seen: ScriptedAnswer(output={"value": len(seen.tools)}))
    llm = provider(kind, server, client)
    alone = await llm.complete(ChatRequest((UserMessage("x"),), response_schema=schema))
    with_tools = await llm.complete(ChatRequest((UserMessage("x"),), (WEATHER,), response_schema=schema))
    # Anthropic carries the schema as one more tool; OpenAI as response_format
    expected = (1, 2) if kind == "anthropic" else (0, 1)
    assert (alone.text, with_tools.text) == tuple(f'{{"value": {n}}}' for n in expected)
    assert alone.finish_reason is with_tools.finish_reason is FinishReason.STOP
    assert alone.tool_calls == with_tools.tool_calls == ()


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_the_llm_mode_reports_truncation_and_refusal(kind: str, server: FakeLLMServer) -> None:
    server.set_answers(
        [ScriptedAnswer("Once upon", finish_reason=FinishReason.LENGTH), ScriptedAnswer(refusal="No.")]
    )
    base_url = server.openai_base_url if kind == "openai" else server.base_url
    config = ExecutorConfig(provider=ProviderConfig(kind=kind, base_url=base_url, api_key=KEY), max_tokens=3)
    async with TaskExecutor(config) as executor:
        cut = await executor.execute(AgentTask(topic="t", prompt="a story"))
        refused = await executor.execute(AgentTask(topic="t", prompt="something bad"))
    assert cut.error is not None
    assert (cut.error.type, cut.output, cut.error.retryable) == ("OutputTruncated", "Once upon", False)
    assert "max_tokens=3" in cut.error.message
    assert refused.error is not None
    assert (refused.error.type, refused.output) == ("Refused", "No.")
    assert server.requests == 2  # neither was retried


async def test_one_script_function_drives_both_formats(
    server: FakeLLMServer, client: httpx.AsyncClient
) -> None:
    def model(seen: SeenRequest) -> ScriptedAnswer | str:
        if seen.tool_results:
            return f"{seen.api}: " + ", ".join(r.content for r in seen.tool_results)
        return ScriptedAnswer(tool_calls=[ScriptedToolCall("weather", {"city": "Rome"})])

    server.set_answers(model)
    answers = []
    for kind in ("openai", "anthropic"):
        llm = provider(kind, server, client)
        first = await llm.complete(ChatRequest((UserMessage("Rome?"),), (WEATHER,)))
        history = (UserMessage("Rome?"), first.message, ToolResultMessage(first.tool_calls[0].id, "warm"))
        answers.append((await llm.complete(ChatRequest(history, (WEATHER,)))).text)
    assert answers == ["openai: warm", "anthropic: warm"]
    assert [c.request.api for c in server.calls if c.request] == [
        "openai",
        "openai",
        "anthropic",
        "anthropic",
    ]
    assert (
        ToolCall("call_1_0", "weather", '{"city": "Rome"}') in server.calls[1].request.messages[1].tool_calls
    )  # type: ignore[union-attr]
