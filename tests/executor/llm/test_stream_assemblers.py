"""Streamed answers are assembled chunk by chunk into deltas and the Completion of the answer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from relaybus.exceptions import ProviderResponseError
from relaybus.executor import Completion, FinishReason, RefusalDelta, TextDelta, ToolCall, ToolCallDelta
from relaybus.executor.llm.anthropic_stream import AnthropicStream
from relaybus.executor.llm.openai_stream import OpenAIStream
from relaybus.executor.llm.stream import ProviderStreamError, StreamDelta


def openai_chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> str:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return json.dumps(
        {"id": "c", "object": "chat.completion.chunk", "model": "gpt-x", "choices": choices, **extra}
    )


def feed_openai(*payloads: str) -> tuple[list[StreamDelta], Completion]:
    stream = OpenAIStream(provider="openai/gpt", model="gpt")
    deltas = [delta for payload in payloads for delta in stream.feed(payload)]
    return deltas, stream.completion()


def anthropic_event(type_: str, **fields: Any) -> str:
    return json.dumps({"type": type_, **fields})


def text_block(index: int, *pieces: str) -> list[str]:
    start = anthropic_event("content_block_start", index=index, content_block={"type": "text", "text": ""})
    deltas = [
        anthropic_event("content_block_delta", index=index, delta={"type": "text_delta", "text": p})
        for p in pieces
    ]
    return [start, *deltas, anthropic_event("content_block_stop", index=index)]


def tool_block(index: int, call_id: str, name: str, *pieces: str) -> list[str]:
    block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
    start = anthropic_event("content_block_start", index=index, content_block=block)
    deltas = [
        anthropic_event(
            "content_block_delta", index=index, delta={"type": "input_json_delta", "partial_json": p}
        )
        for p in pieces
    ]
    return [start, *deltas, anthropic_event("content_block_stop", index=index)]


MESSAGE_START = anthropic_event(
    "message_start",
    message={
        "id": "m",
        "model": "claude-x",
        "content": [],
        "usage": {"input_tokens": 12, "output_tokens": 1},
    },
)


def message_end(stop_reason: str = "end_turn", output_tokens: int = 9) -> list[str]:
    delta = anthropic_event(
        "message_delta", delta={"stop_reason": stop_reason}, usage={"output_tokens": output_tokens}
    )
    return [delta, anthropic_event("message_stop")]


def feed_anthropic(*events: str, output_tool: str | None = None) -> tuple[list[StreamDelta], Completion]:
    stream = AnthropicStream(provider="anthropic/claude", model="claude", output_tool=output_tool)
    deltas = [delta for event in events for delta in stream.feed(event)]
    return deltas, stream.completion()


def joined(deltas: list[StreamDelta]) -> str:
    return "".join(d.text for d in deltas if isinstance(d, TextDelta))


# -- OpenAI -------------------------------------------------------------------------------------------------
def test_openai_text_deltas_join_to_the_text_and_usage_comes_from_the_last_chunk() -> None:
    deltas, completion = feed_openai(
        openai_chunk({"role": "assistant", "content": ""}),
        openai_chunk({"content": "Hel"}),
        openai_chunk({"content": "lo"}),
        openai_chunk({}, "stop"),
        openai_chunk(None, usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}),
        "[DONE]",
    )
    assert deltas == [TextDelta("Hel"), TextDelta("lo")]
    assert completion.text == joined(deltas) == "Hello"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (5, 2)
    assert completion.finish_reason is FinishReason.STOP
    assert completion.model == "gpt-x"


def test_openai_interleaved_tool_call_fragments_are_gathered_by_index() -> None:
    first = {"index": 0, "id": "call_a", "type": "function", "function": {"name": "add", "arguments": ""}}
    second = {
        "index": 1,
        "id": "call_b",
        "type": "function",
        "function": {"name": "mul", "arguments": '{"x"'},
    }
    deltas, completion = feed_openai(
        openai_chunk({"tool_calls": [first]}),
        openai_chunk({"tool_calls": [second]}),
        openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a": '}}]}),
        openai_chunk({"tool_calls": [{"index": 1, "function": {"arguments": ": 2}"}}]}),
        openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        openai_chunk({}, "tool_calls"),
        "[DONE]",
    )
    assert completion.tool_calls == (
        ToolCall("call_a", "add", '{"a": 1}'),
        ToolCall("call_b", "mul", '{"x": 2}'),
    )
    assert completion.finish_reason is FinishReason.TOOL_CALLS
    assert deltas[:2] == [ToolCallDelta(0, "call_a", "add", ""), ToolCallDelta(1, "call_b", "mul", '{"x"')]
    for index, call in enumerate(completion.tool_calls):
        assert "".join(d.arguments for d in deltas if isinstance(d, ToolCallDelta) and d.index == index) == (
            call.arguments
        )


def test_openai_whole_calls_without_an_index_are_separate_calls() -> None:
    call = {"id": "c1", "function": {"name": "f", "arguments": {"q": 1}}}
    _, completion = feed_openai(
        openai_chunk({"tool_calls": [call]}),
        openai_chunk({"tool_calls": [{**call, "id": "c2"}]}),
        openai_chunk({}, "stop"),
        "[DONE]",
    )
    assert completion.tool_calls == (ToolCall("c1", "f", '{"q": 1}'), ToolCall("c2", "f", '{"q": 1}'))


def test_openai_refusal_deltas_make_a_refusal() -> None:
    deltas, completion = feed_openai(
        openai_chunk({"content": None, "refusal": "I can't "}),
        openai_chunk({"refusal": "help."}),
        openai_chunk({}, "stop"),
        "[DONE]",
    )
    assert deltas == [RefusalDelta("I can't "), RefusalDelta("help.")]
    assert completion.refusal == "I can't help."
    assert completion.finish_reason is FinishReason.REFUSAL


def test_openai_chunks_after_done_are_ignored_and_a_missing_done_after_finish_is_tolerated() -> None:
    stream = OpenAIStream(provider="p", model="m")
    stream.feed(openai_chunk({"content": "a"}, "stop"))
    assert stream.completion().text == "a"  # some servers end without [DONE]
    stream.feed("[DONE]")
    assert stream.feed(openai_chunk({"content": "late"})) == []
    assert stream.completion().text == "a"


def test_openai_stream_cut_before_its_end_is_a_retryable_stream_error() -> None:
    stream = OpenAIStream(provider="openai/gpt", model="gpt")
    stream.feed(openai_chunk({"content": "Hel"}))
    with pytest.raises(ProviderStreamError, match="ended before") as caught:
        stream.completion()
    assert caught.value.retryable


@pytest.mark.parametrize(
    ("error", "kind", "retryable"),
    [
        ({"message": "boom", "type": "server_error"}, "server_error", True),
        ({"message": "bad", "type": "invalid_request_error", "code": 400}, "invalid_request_error", False),
        ({"message": "busy", "code": 503}, "503", True),
        ("plain text", "api_error", True),
    ],
)
def test_openai_error_in_the_stream(error: Any, kind: str, retryable: bool) -> None:
    stream = OpenAIStream(provider="openai/gpt", model="gpt")
    with pytest.raises(ProviderStreamError) as caught:
        stream.feed(json.dumps({"error": error}))
    assert (caught.value.kind, caught.value.retryable) == (kind, retryable)
    assert str(caught.value).startswith("openai/gpt: error in the stream")


@pytest.mark.parametrize("payload", ["{not json", "[1, 2]", json.dumps({"choices": "x"})])
def test_openai_malformed_chunks_raise(payload: str) -> None:
    with pytest.raises(ProviderResponseError) as caught:
        OpenAIStream(provider="p", model="m").feed(payload)
    assert not isinstance(caught.value, ProviderStreamError)


# -- Anthropic ----------------------------------------------------------------------------------------------
def test_anthropic_text_and_tool_use_blocks() -> None:
    deltas, completion = feed_anthropic(
        MESSAGE_START,
        anthropic_event("ping"),
        *text_block(0, "Let me ", "check."),
        *tool_block(1, "toolu_1", "weather", '{"city":', ' "Paris"}'),
        *message_end("tool_use", 30),
    )
    assert joined(deltas) == completion.text == "Let me check."
    assert completion.tool_calls == (ToolCall("toolu_1", "weather", '{"city": "Paris"}'),)
    assert completion.finish_reason is FinishReason.TOOL_CALLS
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (12, 30)
    assert completion.model == "claude-x"
    assert deltas[2:] == [
        ToolCallDelta(0, "toolu_1", "weather", ""),
        ToolCallDelta(0, arguments='{"city":'),
        ToolCallDelta(0, arguments=' "Paris"}'),
    ]


def test_anthropic_thinking_blocks_and_unknown_events_are_skipped() -> None:
    thinking = anthropic_event(
        "content_block_start", index=0, content_block={"type": "thinking", "thinking": ""}
    )
    thought = anthropic_event(
        "content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "hm"}
    )
    deltas, completion = feed_anthropic(
        MESSAGE_START,
        thinking,
        thought,
        anthropic_event("content_block_stop", index=0),
        anthropic_event("some_future_event", data=1),
        *text_block(1, "42"),
        *message_end(),
    )
    assert deltas == [TextDelta("42")]
    assert completion.text == "42"


def test_anthropic_response_schema_tool_streams_as_the_text() -> None:
    deltas, completion = feed_anthropic(
        MESSAGE_START,
        *tool_block(0, "toolu_out", "answer", '{"score":', "7}"),
        *message_end("tool_use"),
        output_tool="answer",
    )
    assert deltas == [TextDelta('{"score":'), TextDelta("7}")]
    assert completion.text == joined(deltas)
    assert json.loads(completion.text) == {"score": 7}
    assert completion.finish_reason is FinishReason.STOP
    assert completion.tool_calls == ()


@pytest.mark.parametrize(
    ("kind", "retryable"), [("overloaded_error", True), ("api_error", True), ("invalid_request_error", False)]
)
def test_anthropic_error_event(kind: str, retryable: bool) -> None:
    stream = AnthropicStream(provider="anthropic/claude", model="claude")
    stream.feed(MESSAGE_START)
    with pytest.raises(ProviderStreamError, match=kind) as caught:
        stream.feed(anthropic_event("error", error={"type": kind, "message": "Overloaded"}))
    assert (caught.value.kind, caught.value.retryable) == (kind, retryable)


def test_anthropic_stream_cut_before_message_delta_is_a_stream_error() -> None:
    stream = AnthropicStream(provider="anthropic/claude", model="claude")
    for event in [MESSAGE_START, *text_block(0, "Hel")]:
        stream.feed(event)
    with pytest.raises(ProviderStreamError, match="ended before"):
        stream.completion()


@pytest.mark.parametrize(
    "events",
    [
        ["{not json"],
        [anthropic_event("content_block_delta", index=3, delta={"type": "text_delta", "text": "x"})],
        [*tool_block(0, "t", "f", '{"a": '), *message_end()],
    ],
    ids=["not-json", "delta-without-start", "tool-input-not-json"],
)
def test_anthropic_malformed_streams_raise(events: list[str]) -> None:
    def read() -> Completion:
        stream = AnthropicStream(provider="anthropic/claude", model="claude")
        for event in events:
            stream.feed(event)
        return stream.completion()

    with pytest.raises(ProviderResponseError):
        read()
