"""What the llm mode sends: system prompt as the system message, prompt + input JSON as the user message."""

from __future__ import annotations

from relaybus.executor import SystemMessage, UserMessage
from relaybus.executor.llm import build_request, task_messages, user_message
from relaybus.messages import AgentTask


def test_prompt_alone_is_the_user_message() -> None:
    assert user_message(AgentTask(topic="t", prompt="Review this.")) == "Review this."


def test_input_follows_the_prompt_as_sorted_indented_json() -> None:
    task = AgentTask(topic="t", prompt="Review this.", input={"b": 1, "a": ["x", "é"]})
    assert user_message(task) == (
        'Review this.\n\nInput (JSON):\n{\n  "a": [\n    "x",\n    "é"\n  ],\n  "b": 1\n}'
    )


def test_input_without_prompt() -> None:
    assert user_message(AgentTask(topic="t", input={"k": True})) == 'Input (JSON):\n{\n  "k": true\n}'


def test_system_prompt_and_budget_go_into_the_request() -> None:
    request = build_request(
        AgentTask(topic="t", prompt="p"), "You review code.", max_tokens=50, temperature=0.2
    )
    assert (request.system, request.user, request.max_tokens, request.temperature) == (
        "You review code.",
        "p",
        50,
        0.2,
    )
    assert build_request(AgentTask(topic="t"), "", max_tokens=1, temperature=None).system is None


def test_token_estimate_grows_with_the_prompt_and_includes_the_completion_budget() -> None:
    small = build_request(AgentTask(topic="t", prompt="x"), None, max_tokens=100, temperature=None)
    big = build_request(AgentTask(topic="t", prompt="x" * 4000), None, max_tokens=100, temperature=None)
    assert small.estimated_tokens() >= 100
    assert big.estimated_tokens() >= small.estimated_tokens() + 999


def test_the_request_is_a_system_message_then_a_user_message() -> None:
    task = AgentTask(topic="t", prompt="p")
    request = build_request(task, "sys", max_tokens=5, temperature=None)
    assert request.messages == (SystemMessage("sys"), UserMessage("p"))
    assert request.tools == ()
    assert task_messages(task, None) == (UserMessage("p"),)
