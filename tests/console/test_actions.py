"""A corrected body for a replay: empty or the same JSON means the dead body; otherwise JSON within the cap
and, for a task, a valid AgentTask, else a clear 400."""

from __future__ import annotations

import json
from uuid import uuid4

import pytest

from relaybus.console.actions import BadBody, corrected_body
from relaybus.dlq import DeadLetter


def letter(body: bytes, routing_key: str = "agent.echo") -> DeadLetter:
    return DeadLetter(
        message_id="m",
        reason="invalid task",
        queue="relaybus.agent.echo",
        exchange="relaybus",
        routing_key=routing_key,
        size=len(body),
        preview=body[:200].decode(),
        headers={},
        body=body,
    )


DEAD = json.dumps({"id": str(uuid4()), "topic": "echo", "prompt": 5}).encode()


def test_an_empty_or_unchanged_body_sends_the_dead_one() -> None:
    assert corrected_body(letter(DEAD), None, 1000) is None
    assert corrected_body(letter(DEAD), "  ", 1000) is None
    assert corrected_body(letter(DEAD), json.dumps(json.loads(DEAD), indent=2), 1000) is None


def test_a_valid_corrected_task_is_sent_as_given() -> None:
    fixed = json.dumps({**json.loads(DEAD), "prompt": "five"})
    assert corrected_body(letter(DEAD), fixed, 1000) == fixed.encode()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "not JSON"),
        (json.dumps({"id": "x", "topic": "echo", "prompt": "p"}), "not a valid task"),
        (json.dumps({"pad": "x" * 2000}), "limit"),
    ],
)
def test_a_bad_corrected_body_is_refused_with_the_reason(text: str, says: str) -> None:
    with pytest.raises(BadBody) as refused:
        corrected_body(letter(DEAD), text, 1000)
    assert says in refused.value.text


def test_a_body_that_is_not_a_task_is_only_checked_as_json() -> None:
    other = letter(b"raw bytes", routing_key="event.something")
    assert corrected_body(other, '{"any": 1}', 1000) == b'{"any": 1}'
