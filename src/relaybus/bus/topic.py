"""Topic matching exactly as RabbitMQ's topic exchange does it, and checks for agents' topic patterns.

Routing keys and binding patterns are split on ``.`` into words; an empty string is zero words, and empty
words are kept (``"a..b"`` is three words, the middle one empty). In a pattern, ``*`` matches exactly one
word (which may be empty) and ``#`` matches zero or more words. Matching is case-sensitive. These rules were
checked against RabbitMQ 3.10 (``tests/bus/test_contract.py`` runs the same table through real bindings).
"""

from __future__ import annotations

import re
from functools import lru_cache

from relaybus.exceptions import ConfigError
from relaybus.messages import MAX_TOPIC_LEN

__all__ = [
    "topic_binding",
    "topic_matches",
    "topic_pattern_problem",
    "validate_topic_pattern",
]

_WORD_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def _words(text: str) -> tuple[str, ...]:
    # RabbitMQ splits "" into zero words, but "a." into ("a", "").
    return tuple(text.split(".")) if text else ()


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> tuple[str, ...]:
    # Consecutive '#' words match the same as one; collapsing them keeps the matcher linear in practice.
    out: list[str] = []
    for word in _words(pattern):
        if word == "#" and out and out[-1] == "#":
            continue
        out.append(word)
    return tuple(out)


def topic_matches(pattern: str, routing_key: str) -> bool:
    """True when a queue bound with ``pattern`` receives a message published with ``routing_key``."""
    pat = _compile(pattern)
    key = _words(routing_key)
    # reachable[j]: the pattern words seen so far can consume exactly the first j key words.
    reachable = [False] * (len(key) + 1)
    reachable[0] = True
    for word in pat:
        nxt = [False] * (len(key) + 1)
        if word == "#":
            seen = False
            for j in range(len(key) + 1):
                seen = seen or reachable[j]
                nxt[j] = seen
        else:
            for j in range(len(key)):
                if reachable[j] and (word == "*" or word == key[j]):
                    nxt[j + 1] = True
        reachable = nxt
        if not any(reachable):
            return False
    return reachable[len(key)]


def topic_pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a valid agent topic pattern, or None when it is.

    Valid: dot-separated words of letters, digits, ``_`` or ``-``, where a word may also be exactly ``*``
    (one word) or ``#`` (zero or more words): ``code.review``, ``code.*``, ``docs.#``, ``#``.
    """
    if not isinstance(pattern, str):
        return f"topic pattern must be a string, got {type(pattern).__name__}"
    if not pattern:
        return "topic pattern is empty; use words like 'code.review', or '#' for every topic"
    if len(pattern) > MAX_TOPIC_LEN:
        return f"topic pattern is {len(pattern)} characters long; the limit is {MAX_TOPIC_LEN}"
    for index, word in enumerate(pattern.split("."), start=1):
        if word in ("*", "#"):
            continue
        if not word:
            return (
                f"topic pattern {pattern!r} has an empty word (at word {index}); "
                "remove the leading, trailing or doubled '.'"
            )
        if "*" in word or "#" in word:
            return (
                f"topic pattern {pattern!r}: '*' and '#' must be whole words, not part of {word!r}; "
                "write e.g. 'code.*' (one word) or 'code.#' (any number of words)"
            )
        if not _WORD_RE.match(word):
            return (
                f"topic pattern {pattern!r}: word {word!r} may only contain letters, digits, '_' or '-' "
                "(words are separated by '.')"
            )
    return None


def validate_topic_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is a valid agent topic pattern; otherwise raise :class:`ConfigError`."""
    problem = topic_pattern_problem(pattern)
    if problem is not None:
        raise ConfigError(problem)
    return pattern


def topic_binding(pattern: str) -> str:
    """The binding key on the ``relaybus`` exchange for an agent topic pattern (``task.<pattern>``)."""
    return f"task.{validate_topic_pattern(pattern)}"
