"""Anthropic Messages: the body sent for a conversation with tools, structured output, every answer shape."""

from __future__ import annotations

from typing import Any

import pytest

from relaybus.exceptions import ProviderResponseError
from relaybus.executor import (
    AssistantMessage,
    ChatRequest,
    FinishReason,
    NamedToolChoice,
    ResponseSchema,
    SystemMessage,
    ToolCall,
    ToolResultMessage,
    UserMessage,
)
from relaybus.executor.llm.anthropic import anthropic_body, parse_anthropic_message
from relaybus.tools.spec import ToolSpec

ADD = ToolSpec("add", "Add two integers.", {"type": "object", "properties": {"a": {"type": "integer"}}})
ANSWER = ResponseSchema("answer", {"type": "object", "properties": {"value": {"type": "integer"}}})
CALLS = (ToolCall("toolu_1", "add", '{"a": 1}'), ToolCall("toolu_2", "add", "not json"))
CONVERSATION = (
    SystemMessage("Use tools."),
    UserMessage("1 + 2?"),
    AssistantMessage("Adding.", CALLS),
    ToolResultMessage("toolu_1", "1"),
    ToolResultMessage("toolu_2", "bad arguments", is_error=True),
    UserMessage("and then?"),
    SystemMessage("Be brief."),
)


def test_a_conversation_with_tool_use_and_tool_results() -> None:
    body = anthropic_body("claude", ChatRequest(CONVERSATION, (ADD,), max_tokens=64))
    assert body == {
        "model": "claude",
        "max_tokens": 64,
        "system": "Use tools.\n\nBe brief.",
        "messages": [
            {"role": "user", "content": "1 + 2?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Adding."},
                    {"type": "tool_use", "id": "toolu_1", "name": "add", "input": {"a": 1}},
                    {"type": "tool_use", "id": "toolu_2", "name": "add", "input": {}},  # not a JSON object
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "1"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": "bad arguments",
                        "is_error": True,
                    },
                    {"type": "text", "text": "and then?"},
                ],
            },
        ],
        "tools": [{"name": "add", "description": "Add two integers.", "input_schema": dict(ADD.parameters)}],
    }


def test_an_assistant_turn_with_only_tool_calls_has_no_empty_text_block() -> None:
    body = anthropic_body("c", ChatRequest((UserMessage("x"), AssistantMessage("", CALLS[:1])), (ADD,)))
    assert [block["type"] for block in body["messages"][1]["content"]] == ["tool_use"]


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        (NamedToolChoice("add"), {"type": "tool", "name": "add"}),
    ],
)
def test_tool_choice(choice: Any, wire: Any) -> None:
    assert anthropic_body("c", ChatRequest((UserMessage("x"),), (ADD,), choice))["tool_choice"] == wire
    assert "tool_choice" not in anthropic_body("c", ChatRequest((UserMessage("x"),), (ADD,)))


def test_structured_output_without_tools_forces_the_answer_tool() -> None:
    body = anthropic_body("c", ChatRequest((UserMessage("x"),), response_schema=ANSWER))
    assert body["tools"] == [
        {
            "name": "answer",
            "description": body["tools"][0]["description"],
            "input_schema": dict(ANSWER.schema),
        }
    ]
    assert body["tools"][0]["description"]  # Anthropic wants a description; a default one is given
    assert body["tool_choice"] == {"type": "tool", "name": "answer"}


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("auto", {"type": "any"}),  # a real tool, or the answer
        ("required", {"type": "any"}),
        ("none", {"type": "tool", "name": "answer"}),
        (NamedToolChoice("add"), {"type": "tool", "name": "add"}),
    ],
)
def test_structured_output_with_tools(choice: Any, wire: Any) -> None:
    body = anthropic_body("c", ChatRequest((UserMessage("x"),), (ADD,), choice, response_schema=ANSWER))
    assert [tool["name"] for tool in body["tools"]] == ["add", "answer"]
    assert body["tool_choice"] == wire


def parse(
    content: list[dict[str, Any]], stop: str | None = "end_turn", output_tool: str | None = None
) -> Any:
    data = {"content": content, "stop_reason": stop, "usage": {"input_tokens": 3, "output_tokens": 4}}
    return parse_anthropic_message(data, provider="anthropic/c", model="c", output_tool=output_tool)


def test_tool_use_blocks_become_tool_calls_in_order() -> None:
    completion = parse(
        [
            {"type": "text", "text": "I'll add "},
            {"type": "tool_use", "id": "toolu_b", "name": "add", "input": {"a": 2}},
            {"type": "text", "text": "twice."},
            {"type": "tool_use", "id": "toolu_a", "name": "add", "input": {"a": "é"}},
        ],
        "tool_use",
    )
    assert completion.text == "I'll add twice."
    assert completion.tool_calls == (
        ToolCall("toolu_b", "add", '{"a": 2}'),
        ToolCall("toolu_a", "add", '{"a": "é"}'),
    )
    assert completion.finish_reason is FinishReason.TOOL_CALLS
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 4)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("end_turn", FinishReason.STOP),
        ("stop_sequence", FinishReason.STOP),
        (None, FinishReason.STOP),
        ("max_tokens", FinishReason.LENGTH),
        ("model_context_window_exceeded", FinishReason.LENGTH),
        ("refusal", FinishReason.REFUSAL),
        ("pause_turn", FinishReason.OTHER),
    ],
)
def test_stop_reasons_are_normalized(raw: str | None, reason: FinishReason) -> None:
    completion = parse([{"type": "text", "text": "some text"}], raw)
    assert completion.finish_reason is reason
    assert completion.provider_finish_reason == raw
    assert completion.refusal == ("some text" if reason is FinishReason.REFUSAL else None)


def test_the_answer_tool_call_is_the_structured_text() -> None:
    block = {"type": "tool_use", "id": "toolu_1", "name": "answer", "input": {"value": 3}}
    completion = parse([block], "tool_use", output_tool="answer")
    assert completion.text == '{"value": 3}'
    assert completion.tool_calls == ()
    assert completion.finish_reason is FinishReason.STOP


def test_real_tool_calls_beside_an_early_answer_are_the_answer() -> None:
    blocks = [
        {"type": "tool_use", "id": "toolu_1", "name": "add", "input": {"a": 1}},
        {"type": "tool_use", "id": "toolu_2", "name": "answer", "input": {"value": 3}},
    ]
    completion = parse(blocks, "tool_use", output_tool="answer")
    assert [call.name for call in completion.tool_calls] == ["add"]
    assert completion.finish_reason is FinishReason.TOOL_CALLS


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"content": "text"}, "without a content list"),
        ({"content": [{"type": "tool_use", "name": "add", "input": {}}]}, "without id or name"),
    ],
)
def test_malformed_answers_raise(data: dict[str, Any], problem: str) -> None:
    with pytest.raises(ProviderResponseError, match=problem):
        parse_anthropic_message(data, provider="anthropic/c", model="c")
