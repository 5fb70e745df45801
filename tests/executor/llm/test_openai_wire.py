"""OpenAI-compatible chat completions: the body sent for a conversation with tools, and every answer shape."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from relaybus.exceptions import ConfigError, ProviderResponseError
from relaybus.executor import (
    AssistantMessage,
    ChatRequest,
    ExecutorConfig,
    FinishReason,
    NamedToolChoice,
    OpenAIProvider,
    ResponseSchema,
    SystemMessage,
    ToolCall,
    ToolResultMessage,
    UserMessage,
)
from relaybus.executor.llm import build_provider
from relaybus.executor.llm.openai import openai_body, parse_openai_completion
from relaybus.tools.spec import ToolSpec

from ..mock_http import Recorder, openai_answer

ADD = ToolSpec("add", "Add two integers.", {"type": "object", "properties": {"a": {"type": "integer"}}})
ANSWER = ResponseSchema("answer", {"type": "object", "properties": {"value": {"type": "integer"}}})
CALLS = (ToolCall("call_1", "add", '{"a": 1}'), ToolCall("call_2", "add", '{"a": 2}'))
CONVERSATION = (
    SystemMessage("Use tools."),
    UserMessage("1 + 2?"),
    AssistantMessage("", CALLS),
    ToolResultMessage("call_1", "1"),
    ToolResultMessage("call_2", "boom", is_error=True),
)


def test_a_conversation_with_tool_calls_and_results() -> None:
    body = openai_body("gpt-x", ChatRequest(CONVERSATION, (ADD,), max_tokens=50, temperature=0))
    assert body == {
        "model": "gpt-x",
        "max_tokens": 50,
        "temperature": 0,
        "messages": [
            {"role": "system", "content": "Use tools."},
            {"role": "user", "content": "1 + 2?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "add", "arguments": '{"a": 1}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "add", "arguments": '{"a": 2}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "1"},
            {"role": "tool", "tool_call_id": "call_2", "content": "boom"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "add",
                    "description": "Add two integers.",
                    "parameters": dict(ADD.parameters),
                },
            }
        ],
    }


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("none", "none"),
        ("required", "required"),
        (NamedToolChoice("add"), {"type": "function", "function": {"name": "add"}}),
    ],
)
def test_tool_choice_is_sent_unless_auto(choice: Any, wire: Any) -> None:
    assert openai_body("m", ChatRequest((UserMessage("x"),), (ADD,), choice))["tool_choice"] == wire
    assert "tool_choice" not in openai_body("m", ChatRequest((UserMessage("x"),), (ADD,)))


def test_no_tools_means_no_tools_field() -> None:
    body = openai_body("m", ChatRequest.from_prompt("x"))
    assert "tools" not in body
    assert "tool_choice" not in body


def test_response_schema_is_a_strict_json_schema_response_format() -> None:
    schema = ResponseSchema("answer", ANSWER.schema, description="The result.")
    body = openai_body("m", ChatRequest((UserMessage("x"),), response_schema=schema))
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "schema": dict(ANSWER.schema),
            "strict": True,
            "description": "The result.",
        },
    }


def test_an_assistant_text_with_tool_calls_keeps_its_text() -> None:
    body = openai_body("m", ChatRequest((UserMessage("x"), AssistantMessage("let me add", CALLS[:1]))))
    assert body["messages"][1]["content"] == "let me add"
    assert body["messages"][1]["tool_calls"][0]["id"] == "call_1"


@pytest.mark.parametrize(
    ("base_url", "setting", "field"),
    [
        ("https://api.openai.com/v1", "auto", "max_completion_tokens"),
        ("http://localhost:11434/v1", "auto", "max_tokens"),
        ("http://localhost:11434/v1", "max_completion_tokens", "max_completion_tokens"),
        ("https://api.openai.com/v1", "max_tokens", "max_tokens"),
    ],
)
async def test_the_token_budget_field_follows_the_server(base_url: str, setting: Any, field: str) -> None:
    mock = Recorder(openai_answer({"content": "ok"}))
    async with mock.client() as client:
        provider = OpenAIProvider(client, model="m", base_url=base_url, max_tokens_field=setting)
        await provider.complete(ChatRequest.from_prompt("x", max_tokens=77))
    body = mock.body()
    assert body[field] == 77
    other = "max_tokens" if field == "max_completion_tokens" else "max_completion_tokens"
    assert other not in body


def parse(message: dict[str, Any], finish_reason: str | None = "stop") -> Any:
    data = {"choices": [{"message": {"role": "assistant", **message}, "finish_reason": finish_reason}]}
    return parse_openai_completion(data, provider="openai/m", model="m")


def test_content_parts_are_joined_as_text() -> None:
    completion = parse({"content": [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "world"}]})
    assert completion.text == "Hello, world"
    assert completion.finish_reason is FinishReason.STOP


def test_several_tool_calls_in_one_answer_keep_their_order() -> None:
    wire = [
        {"id": "call_b", "type": "function", "function": {"name": "second", "arguments": '{"x": 2}'}},
        {"id": "call_a", "type": "function", "function": {"name": "first", "arguments": '{"x": 1}'}},
    ]
    completion = parse({"content": None, "tool_calls": wire}, "tool_calls")
    assert completion.tool_calls == (
        ToolCall("call_b", "second", '{"x": 2}'),
        ToolCall("call_a", "first", '{"x": 1}'),
    )
    assert completion.finish_reason is FinishReason.TOOL_CALLS
    assert completion.text == ""


def test_tool_calls_from_lenient_local_servers() -> None:
    # Ollama-style: finish_reason "stop", arguments as an object; no id at all
    wire = [{"function": {"name": "add", "arguments": {"a": 1}}}, {"function": {"name": "add"}}]
    completion = parse({"content": "", "tool_calls": wire}, "stop")
    assert completion.tool_calls == (ToolCall("call_0", "add", '{"a": 1}'), ToolCall("call_1", "add", "{}"))
    assert completion.finish_reason is FinishReason.TOOL_CALLS


def test_message_refusal_is_reported() -> None:
    completion = parse({"content": None, "refusal": "I can't help with that."})
    assert completion.finish_reason is FinishReason.REFUSAL
    assert completion.refusal == "I can't help with that."
    assert completion.provider_finish_reason == "stop"


def test_refusal_content_part_is_reported() -> None:
    completion = parse({"content": [{"type": "refusal", "refusal": "No."}]})
    assert (completion.finish_reason, completion.refusal, completion.text) == (
        FinishReason.REFUSAL,
        "No.",
        "",
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("stop", FinishReason.STOP),
        (None, FinishReason.STOP),
        ("length", FinishReason.LENGTH),
        ("content_filter", FinishReason.CONTENT_FILTER),
        ("tool_calls", FinishReason.OTHER),  # says tool calls, has none
        ("eos_token", FinishReason.OTHER),
    ],
)
def test_finish_reasons_are_normalized(raw: str | None, reason: FinishReason) -> None:
    completion = parse({"content": "partial"}, raw)
    assert completion.finish_reason is reason
    assert completion.provider_finish_reason == raw
    assert completion.text == "partial"


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ({"content": 42}, "neither text nor a list"),
        ({"content": None, "tool_calls": {"id": "x"}}, "not a list"),
        ({"content": None, "tool_calls": [{"id": "x", "function": {"arguments": "{}"}}]}, r"tool_calls\[0\]"),
    ],
)
def test_malformed_messages_raise(message: dict[str, Any], problem: str) -> None:
    with pytest.raises(ProviderResponseError, match=problem):
        parse(message)


async def test_the_token_budget_field_from_the_environment() -> None:
    env = {"RELAYBUS_LLM_PROVIDER": "openai", "OPENAI_BASE_URL": "http://vllm:8000/v1"}
    config = ExecutorConfig.from_env({**env, "RELAYBUS_LLM_MAX_TOKENS_FIELD": "Max_Completion_Tokens"})
    assert config.provider.max_tokens_field == "max_completion_tokens"
    async with httpx.AsyncClient() as client:
        provider = build_provider(config.provider, client)
    assert isinstance(provider, OpenAIProvider)
    assert provider.max_tokens_field == "max_completion_tokens"
    assert ExecutorConfig.from_env(env).provider.max_tokens_field == "auto"
    with pytest.raises(ConfigError, match="RELAYBUS_LLM_MAX_TOKENS_FIELD"):
        ExecutorConfig.from_env({**env, "RELAYBUS_LLM_MAX_TOKENS_FIELD": "tokens"})
