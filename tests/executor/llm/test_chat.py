"""The chat types: what a ChatRequest accepts, how a Completion normalizes, tool call arguments."""

from __future__ import annotations

import subprocess
import sys

import pytest

from relaybus.exceptions import ConfigError
from relaybus.executor import (
    AssistantMessage,
    ChatRequest,
    Completion,
    FinishReason,
    NamedToolChoice,
    ResponseSchema,
    SystemMessage,
    ToolCall,
    ToolResultMessage,
    UserMessage,
)
from relaybus.messages import Usage
from relaybus.tools.spec import ToolSpec

ADD = ToolSpec("add", "Add two integers.", {"type": "object", "properties": {"a": {"type": "integer"}}})
HI = (UserMessage("hi"),)


def test_from_prompt_is_a_system_and_a_user_message() -> None:
    request = ChatRequest.from_prompt("u", "s", max_tokens=5)
    assert request.messages == (SystemMessage("s"), UserMessage("u"))
    assert (request.system, request.user, request.max_tokens) == ("s", "u", 5)
    assert ChatRequest.from_prompt("u").messages == (UserMessage("u"),)


def test_system_joins_every_system_message_and_user_is_the_last_user_message() -> None:
    request = ChatRequest((SystemMessage("a"), UserMessage("one"), SystemMessage("b"), UserMessage("two")))
    assert request.system == "a\n\nb"
    assert request.user == "two"


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"messages": ()}, "at least one message"),
        ({"tool_choice": "required"}, "needs at least one tool"),
        ({"tool_choice": NamedToolChoice("sub")}, "'sub', which is not among the tools"),
        ({"tools": (ADD, ADD)}, "unique"),
        ({"tools": (ADD,), "response_schema": ResponseSchema("add", {"type": "object"})}, "also a tool"),
        ({"tool_choice": "sometimes"}, "tool_choice must be"),
        ({"max_tokens": 0}, "max_tokens"),
    ],
)
def test_bad_requests_are_refused_at_construction(fields: dict[str, object], problem: str) -> None:
    arguments: dict[str, object] = {"messages": HI, **fields}
    with pytest.raises(ConfigError, match=problem):
        ChatRequest(**arguments)  # type: ignore[arg-type]


def test_response_schema_needs_an_object_schema_and_a_tool_like_name() -> None:
    with pytest.raises(ConfigError, match="type"):
        ResponseSchema("answer", {"type": "string"})
    with pytest.raises(ConfigError, match="letters"):
        ResponseSchema("an answer", {"type": "object"})


def test_estimate_counts_history_tools_and_schema() -> None:
    bare = ChatRequest(HI, max_tokens=10)
    call = ToolCall("c1", "add", '{"a": 1}' + " " * 400)
    longer = ChatRequest(
        (*HI, AssistantMessage("", (call,)), ToolResultMessage("c1", "x" * 400)),
        (ADD,),
        response_schema=ResponseSchema("answer", {"type": "object", "description": "y" * 400}),
        max_tokens=10,
    )
    assert bare.estimated_tokens() >= 10
    assert longer.estimated_tokens() >= bare.estimated_tokens() + 300


@pytest.mark.parametrize(
    ("arguments", "parsed"),
    [('{"a": 1}', {"a": 1}), ("", {}), ("  ", {}), ("[1]", None), ('{"a": ', None)],
)
def test_tool_call_arguments_object(arguments: str, parsed: object) -> None:
    assert ToolCall("c", "t", arguments).arguments_object() == parsed


def test_completion_takes_a_plain_string_finish_reason_from_a_custom_provider() -> None:
    usage = Usage()
    assert Completion("t", usage, "m", finish_reason="length").finish_reason is FinishReason.LENGTH  # type: ignore[arg-type]
    assert Completion("t", usage, "m", finish_reason="paused").finish_reason is FinishReason.OTHER  # type: ignore[arg-type]
    assert Completion("t", usage, "m", finish_reason=None).finish_reason is FinishReason.STOP  # type: ignore[arg-type]
    assert Completion("t", usage, "m").finish_reason == "stop"


def test_completion_as_history() -> None:
    call = ToolCall("c1", "add", "{}")
    completion = Completion("thinking", Usage(), "m", FinishReason.TOOL_CALLS, tool_calls=[call])  # type: ignore[arg-type]
    assert completion.message == AssistantMessage("thinking", (call,))
    assert completion.tool_calls == (call,)


def test_the_chat_types_load_without_the_http_stack() -> None:
    # the agent loop runs in workers, which load httpx only when a provider is used
    code = (
        "import sys; from relaybus.executor.llm import ChatRequest, ToolCall, FinishReason; "
        "print('httpx' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_every_name_of_the_llm_package_imports() -> None:
    import relaybus.executor.llm as llm

    assert [name for name in llm.__all__ if getattr(llm, name, None) is None] == []
