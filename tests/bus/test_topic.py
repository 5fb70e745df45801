"""Topic matching is RabbitMQ's: this table was read off RabbitMQ 3.10.8 and test_contract.py replays it
through real bindings on both buses."""

from __future__ import annotations

import pytest

from relaybus.bus.topic import topic_binding, topic_matches, topic_pattern_problem, validate_topic_pattern
from relaybus.exceptions import ConfigError

# (binding pattern, routing key, delivered?)
RABBITMQ_TOPIC_CASES: list[tuple[str, str, bool]] = [
    ("code.review", "code.review", True),
    ("code.review", "code.reviews", False),
    ("code.review", "Code.review", False),  # case-sensitive
    ("code.*", "code.review", True),
    ("code.*", "code", False),  # '*' is exactly one word
    ("code.*", "code.review.python", False),
    ("code.#", "code", True),  # '#' may be zero words
    ("code.#", "code.review.python", True),
    ("code.#", "codex.review", False),
    ("*.review", "code.review", True),
    ("*.*", "code.review", True),
    ("*.*", "code", False),
    ("#", "anything.at.all", True),
    ("#", "", True),
    ("#", ".", True),
    ("*", "", False),  # "" is zero words
    ("", "", True),
    ("", "a", False),
    ("#.#", "", True),
    ("#.a", "a", True),
    ("#.b", "b", True),
    ("#.a.#", "a", True),
    ("#.a.#", "x.a.y.z", True),
    ("#.a.#", "x.b.y", False),
    ("a.#.b", "a.b", True),
    ("a.#.b", "a.x.y.b", True),
    ("a.#.#.b", "a.b", True),
    ("a.*.b", "a..b", True),  # empty words are words
    ("a..b", "a..b", True),
    ("a.*", "a.", True),
    ("a.*", "a", False),
    ("*", ".", False),  # "." is two empty words
    ("*.*", ".", True),
    (".", ".", True),
    ("*.", "", False),
    ("*.", "a.", True),
    ("*.#", "", False),
    ("#.*", "", False),
    ("#.*", "a", True),
    ("*.#.*", "a", False),
    ("*.#.*", "a.b", True),
    ("*.*.*", "a..b", True),
    ("task.code.*", "task.code.review", True),
    ("agent.reviewer", "agent.reviewer2", False),
]


@pytest.mark.parametrize(("pattern", "key", "expected"), RABBITMQ_TOPIC_CASES)
def test_topic_matches_like_rabbitmq(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


def test_many_hashes_stay_fast() -> None:
    # A naive backtracking matcher is exponential here; the word-set matcher is not.
    pattern = ".".join(["#"] * 30 + ["x"])
    key = ".".join(["a"] * 200)
    assert topic_matches(pattern, key) is False
    assert topic_matches("#.a.#.a.#.a.#.a.#.z", key + ".z") is True


@pytest.mark.parametrize("pattern", ["code.review", "code.*", "docs.#", "#", "*", "a-b.c_d.*.#", "x"])
def test_valid_agent_patterns(pattern: str) -> None:
    assert topic_pattern_problem(pattern) is None
    assert validate_topic_pattern(pattern) == pattern
    assert topic_binding(pattern) == f"task.{pattern}"


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        ("", "empty"),
        ("code..review", "empty word"),
        (".code", "empty word"),
        ("code.", "empty word"),
        ("code*", "whole words"),
        ("code.rev#", "whole words"),
        ("code review", "letters, digits"),
        ("code/review", "letters, digits"),
        ("x" * 201, "limit is 200"),
    ],
)
def test_invalid_agent_patterns_say_what_to_fix(pattern: str, says: str) -> None:
    problem = topic_pattern_problem(pattern)
    assert problem is not None
    assert says in problem
    with pytest.raises(ConfigError, match=says):
        validate_topic_pattern(pattern)
    with pytest.raises(ConfigError):
        topic_binding(pattern)


def test_non_string_pattern_is_refused() -> None:
    assert "must be a string" in (topic_pattern_problem(42) or "")  # type: ignore[arg-type]
