"""The SSE decoder reads events from a body split anywhere, with any line ending."""

from __future__ import annotations

import pytest

from relaybus.executor.llm.sse import SseDecoder, SseEvent

BODY = (
    b": keep-alive comment\n"
    b"event: message_start\n"
    b'data: {"type": "message_start"}\n'
    b"\n"
    b"data: first line\n"
    b"data: second line\n"
    b"id: 7\n"
    b"retry: 1000\n"
    b"\n"
    b"event: lonely\n"
    b"\n"
    b"data:no space\n"
    b"\n"
)
EVENTS = [
    SseEvent("message_start", '{"type": "message_start"}'),
    SseEvent("message", "first line\nsecond line"),
    SseEvent("message", "no space"),
]


def decode(chunks: list[bytes]) -> list[SseEvent]:
    decoder = SseDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.close()


def test_events_names_and_multiline_data_and_ignored_fields() -> None:
    assert decode([BODY]) == EVENTS


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_a_body_split_at_every_byte_gives_the_same_events_with_any_line_ending(ending: bytes) -> None:
    body = BODY.replace(b"\n", ending)
    assert decode([body[i : i + 1] for i in range(len(body))]) == EVENTS
    assert decode([body]) == EVENTS


def test_an_event_is_given_only_once_its_blank_line_arrives() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: [DONE]\n") == []
    assert decoder.feed(b"\n") == [SseEvent("message", "[DONE]")]


def test_close_gives_the_last_event_a_body_ended_without_its_blank_line() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: a\n\ndata: [DONE]") == [SseEvent("message", "a")]
    assert decoder.close() == [SseEvent("message", "[DONE]")]
    assert decoder.close() == []


def test_utf8_split_inside_a_character_is_decoded_whole() -> None:
    body = "data: héllo ✓\n\n".encode()
    assert decode([body[:8], body[8:9], body[9:]]) == [SseEvent("message", "héllo ✓")]
