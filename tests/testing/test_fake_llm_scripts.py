"""FakeLLMServer scripts: answers in order or from a function, both formats, requests parsed and recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from relaybus.executor import (
    AssistantMessage,
    ChatRequest,
    Completion,
    ExecutorConfig,
    FinishReason,
    NamedToolChoice,
    SystemMessage,
    TaskExecutor,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolResultMessage,
    UserMessage,
)
from relaybus.messages import AgentTask
from relaybus.testing import FakeLLMServer, ScriptedAnswer, ScriptedProvider, ScriptedToolCall, SeenRequest
from relaybus.tools.spec import ToolSpec

ADD_TOOL = {"type": "object", "properties": {"a": {"type": "integer"}}}
OPENAI_TOOLS = [
    {"type": "function", "function": {"name": "add", "description": "Add.", "parameters": ADD_TOOL}}
]
ANTHROPIC_TOOLS = [{"name": "add", "description": "Add.", "input_schema": ADD_TOOL}]
# The same conversation in each format: system, user, a tool call, its result.
OPENAI_BODY = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "add 1"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "1"},
    ],
    "tools": OPENAI_TOOLS,
}
ANTHROPIC_BODY = {
    "model": "m",
    "max_tokens": 10,
    "system": "sys",
    "messages": [
        {"role": "user", "content": "add 1"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "c1", "name": "add", "input": {"a": 1}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "1"}]},
    ],
    "tools": ANTHROPIC_TOOLS,
}
PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
BODIES = {"openai": OPENAI_BODY, "anthropic": ANTHROPIC_BODY}


@pytest.fixture
async def server() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer() as srv:
        yield srv


async def post(server: FakeLLMServer, api: str, body: dict[str, Any] | None = None) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(server.base_url + PATHS[api], json=body or BODIES[api])


def openai_message(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    message: dict[str, Any] = response.json()["choices"][0]["message"]
    return message


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_both_formats_parse_into_the_same_request(server: FakeLLMServer, api: str) -> None:
    seen: list[SeenRequest] = []
    server.set_answers(lambda request: seen.append(request) or "ok")
    assert (await post(server, api)).status_code == 200
    assert seen[0].messages == (
        SystemMessage("sys"),
        UserMessage("add 1"),
        AssistantMessage("", (ToolCall("c1", "add", '{"a": 1}'),)),
        ToolResultMessage("c1", "1"),
    )
    assert seen[0].tool_names == ("add",)
    assert seen[0].tool_results == (ToolResultMessage("c1", "1"),)
    assert (seen[0].api, seen[0].number, seen[0].model) == (api, 1, "m")
    assert server.calls[0].request == seen[0]
    assert server.calls[0].api == api


async def test_answers_are_given_in_order_and_a_fault_uses_none_up(server: FakeLLMServer) -> None:
    server.set_answers(["first", ScriptedAnswer("second")])
    server.inject("rate_limit", times=1, retry_after=0)
    statuses_and_texts = []
    for _ in range(4):
        response = await post(server, "openai")
        text = response.json()["choices"][0]["message"]["content"] if response.status_code == 200 else None
        statuses_and_texts.append((response.status_code, text))
    assert statuses_and_texts[:3] == [(429, None), (200, "first"), (200, "second")]
    assert statuses_and_texts[3][0] == 500
    assert server.answers_left == 0


async def test_an_exhausted_script_says_so(server: FakeLLMServer) -> None:
    server.set_answers([])
    response = await post(server, "anthropic")
    assert response.status_code == 500
    assert response.json()["error"]["message"] == (
        "FakeLLMServer script: the script has no answer left: 0 scripted, this is request 1"
    )


async def test_a_script_function_that_raises_gets_a_500_naming_it(server: FakeLLMServer) -> None:
    def broken(seen: SeenRequest) -> str:
        raise KeyError("oops")

    server.set_answers(broken)
    response = await post(server, "openai")
    assert response.status_code == 500
    assert "KeyError" in response.text


async def test_openai_tool_calls_parts_refusal_and_raw_finish_reason(server: FakeLLMServer) -> None:
    server.set_answers(
        [
            ScriptedAnswer(
                tool_calls=[ScriptedToolCall("add", {"a": 2}), ScriptedToolCall("add", "{bad", id="x")]
            ),
            ScriptedAnswer(["Hel", "lo"], usage=(11, 3)),
            ScriptedAnswer(refusal="No."),
            ScriptedAnswer("cut", finish_reason="length"),
        ]
    )
    calls = openai_message(await post(server, "openai"))
    assert calls["content"] is None
    assert calls["tool_calls"] == [
        {"id": "call_1_0", "type": "function", "function": {"name": "add", "arguments": '{"a": 2}'}},
        {"id": "x", "type": "function", "function": {"name": "add", "arguments": "{bad"}},
    ]
    parts = await post(server, "openai")
    assert openai_message(parts)["content"] == [
        {"type": "text", "text": "Hel"},
        {"type": "text", "text": "lo"},
    ]
    assert parts.json()["usage"] == {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    assert openai_message(await post(server, "openai")) == {
        "role": "assistant",
        "content": None,
        "refusal": "No.",
    }
    cut = await post(server, "openai")
    assert cut.json()["choices"][0]["finish_reason"] == "length"


async def test_anthropic_tool_use_refusal_and_stop_reasons(server: FakeLLMServer) -> None:
    server.set_answers(
        [
            ScriptedAnswer(
                "Adding.", tool_calls=[ScriptedToolCall("add", {"a": 2}), ScriptedToolCall("add", "{}")]
            ),
            ScriptedAnswer(refusal="No."),
            ScriptedAnswer("cut", finish_reason=FinishReason.LENGTH),
            ScriptedAnswer(tool_calls=[ScriptedToolCall("add", "[1]")]),
        ]
    )
    first = (await post(server, "anthropic")).json()
    assert first["content"] == [
        {"type": "text", "text": "Adding."},
        {"type": "tool_use", "id": "toolu_fake_1_0", "name": "add", "input": {"a": 2}},
        {"type": "tool_use", "id": "toolu_fake_1_1", "name": "add", "input": {}},
    ]
    assert first["stop_reason"] == "tool_use"
    refusal = (await post(server, "anthropic")).json()
    assert (refusal["stop_reason"], refusal["content"]) == ("refusal", [{"type": "text", "text": "No."}])
    assert (await post(server, "anthropic")).json()["stop_reason"] == "max_tokens"
    not_an_object = await post(server, "anthropic")
    assert not_an_object.status_code == 500
    assert "needs arguments as an object" in not_an_object.text


async def test_structured_output_in_each_format(server: FakeLLMServer) -> None:
    schema = {"type": "object", "properties": {"v": {"type": "integer"}}}
    server.set_answers(lambda seen: ScriptedAnswer(output={"v": 3}))
    openai_body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": True},
        },
    }
    assert openai_message(await post(server, "openai", openai_body))["content"] == '{"v": 3}'
    assert server.calls[0].request is not None
    assert server.calls[0].request.response_schema is not None
    assert server.calls[0].request.response_schema.name == "answer"
    forced = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}],
        "tools": [*ANTHROPIC_TOOLS, {"name": "answer", "description": "The answer.", "input_schema": schema}],
        "tool_choice": {"type": "any"},
    }
    answer = (await post(server, "anthropic", forced)).json()
    assert answer["content"] == [
        {"type": "tool_use", "id": "toolu_fake_2_out", "name": "answer", "input": {"v": 3}}
    ]
    assert answer["stop_reason"] == "tool_use"
    assert server.calls[1].request is not None
    assert server.calls[1].request.tool_choice == "required"


@pytest.mark.parametrize(
    ("api", "change", "problem"),
    [
        (
            "openai",
            {"messages": [{"role": "tool", "tool_call_id": "zz", "content": "1"}]},
            "'zz', which no earlier",
        ),
        ("openai", {"messages": [{"role": "wizard", "content": "1"}]}, "unknown role 'wizard'"),
        (
            "openai",
            {"tool_choice": {"type": "function", "function": {"name": "sub"}}},
            "'sub', which is not among",
        ),
        ("openai", {"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools[0]"),
        (
            "anthropic",
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "zz", "content": "1"}],
                    }
                ]
            },
            "'zz', which no earlier",
        ),
        ("anthropic", {"tool_choice": {"type": "tool", "name": "sub"}}, "'sub', which is not among"),
        ("anthropic", {"messages": [{"role": "system", "content": "x"}]}, "role must be user or assistant"),
    ],
)
async def test_requests_the_real_api_refuses_get_a_400(
    server: FakeLLMServer, api: str, change: dict[str, Any], problem: str
) -> None:
    server.set_answers(["unused"])
    response = await post(server, api, {**BODIES[api], **change})
    assert response.status_code == 400
    assert problem in response.text
    assert server.answers_left == 1
    assert server.calls[0].request is None
    assert server.calls[0].body["model"] == "m"


async def test_the_default_reply_still_answers_without_a_script(server: FakeLLMServer) -> None:
    server.reply = "fixed"
    assert openai_message(await post(server, "openai")) == {"role": "assistant", "content": "fixed"}
    server.set_answers(["scripted"])
    server.set_answers(None)
    assert openai_message(await post(server, "openai"))["content"] == "fixed"
    assert server.answers_left is None


async def test_scripted_provider_runs_a_script_in_process() -> None:
    provider = ScriptedProvider(
        ["plain text", ScriptedAnswer(tool_calls=[ScriptedToolCall("search", {"q": 1})])]
    )
    assert provider.answers_left == 2
    async with TaskExecutor(ExecutorConfig(), provider=provider) as executor:
        ok = await executor.execute(AgentTask(topic="t", prompt="first"), system_prompt="sys")
        called = await executor.execute(AgentTask(topic="t", prompt="find me"))
        exhausted = await executor.execute(AgentTask(topic="t", prompt="again"))
    assert ok.output == "plain text"
    assert (ok.usage.prompt_tokens, ok.usage.completion_tokens) == (2, 2)
    assert called.error is not None
    assert called.error.type == "UnexpectedToolCalls"  # a single call offers no tools
    assert exhausted.error is not None
    assert "no answer left" in exhausted.error.message
    assert [r.user for r in provider.requests] == ["first", "find me", "again"]
    assert repr(provider) == "ScriptedProvider(model='scripted', answers_left=0)"


async def test_scripted_provider_function_sees_tools_and_tool_choice() -> None:
    seen: list[SeenRequest] = []

    def answer(request: SeenRequest) -> ScriptedAnswer:
        seen.append(request)
        return ScriptedAnswer(tool_calls=[ScriptedToolCall("add", {"a": 1})])

    provider = ScriptedProvider(answer)
    request = ChatRequest((UserMessage("x"),), (ToolSpec("add", "Add."),), NamedToolChoice("add"))
    completion = await provider.complete(request)
    assert completion.tool_calls == (ToolCall("call_1_0", "add", '{"a": 1}'),)
    assert completion.finish_reason is FinishReason.TOOL_CALLS
    assert (seen[0].tool_choice, seen[0].tool_names, seen[0].api) == (
        NamedToolChoice("add"),
        ("add",),
        "scripted",
    )
    assert provider.answers_left is None


async def test_scripted_provider_streams_the_text_word_by_word_then_the_tool_calls() -> None:
    answer = ScriptedAnswer("Adding them now.", tool_calls=[ScriptedToolCall("add", {"a": 1})])
    provider = ScriptedProvider([answer])
    chunks = [chunk async for chunk in provider.stream(ChatRequest.from_prompt("1 + 1?"))]
    assert chunks[:-1] == [
        TextDelta("Adding"),
        TextDelta(" them"),
        TextDelta(" now."),
        ToolCallDelta(0, "call_1_0", "add", '{"a": 1}'),
    ]
    completion = chunks[-1]
    assert isinstance(completion, Completion)
    assert completion.text == "Adding them now."
    assert completion.tool_calls == (ToolCall("call_1_0", "add", '{"a": 1}'),)
