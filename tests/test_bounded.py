"""``BoundedMap``: the one bounded cache the worker (results, cancel requests) and the reply router use."""

from __future__ import annotations

import pytest

from relaybus._bounded import BoundedMap
from relaybus.exceptions import ConfigError


def test_the_oldest_written_entry_goes_first_past_the_count() -> None:
    evicted: list[tuple[str, int]] = []
    cache: BoundedMap[str, int] = BoundedMap(2, on_evict=lambda k, v: evicted.append((k, v)))
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # reading does not make "a" newer
    cache.put("c", 3)
    assert evicted == [("a", 1)]
    assert ("a" in cache, "b" in cache, "c" in cache, len(cache)) == (False, True, True, 2)


def test_writing_a_key_again_makes_it_the_newest() -> None:
    cache: BoundedMap[str, int] = BoundedMap(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 10)
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (10, None, 3)


def test_the_byte_limit_drops_the_oldest_entries_first() -> None:
    cache: BoundedMap[str, bytes] = BoundedMap(100, max_bytes=10)
    cache.put("a", b"12345", 5)
    cache.put("b", b"12345", 5)
    assert (len(cache), cache.size) == (2, 10)
    cache.put("c", b"1", 1)
    assert ("a" in cache, cache.size) == (False, 6)
    cache.put("b", b"123", 3)  # replacing an entry counts its new size only
    assert cache.size == 4
    cache.put("huge", b"x" * 11, 11)  # more than the limit on its own: it goes too, after every older entry
    assert (len(cache), cache.size) == (0, 0)


def test_pop_removes_without_counting_as_an_eviction() -> None:
    evicted: list[str] = []
    cache: BoundedMap[str, bytes] = BoundedMap(5, max_bytes=100, on_evict=lambda k, v: evicted.append(k))
    cache.put("a", b"abc", 3)
    assert cache.pop("a") == b"abc"
    assert cache.pop("a") is None
    assert (len(cache), cache.size, evicted) == (0, 0, [])


def test_a_limit_of_zero_keeps_nothing() -> None:
    cache: BoundedMap[str, int] = BoundedMap(0)
    cache.put("a", 1)
    assert "a" not in cache


def test_none_values_are_kept_and_found() -> None:
    seen: BoundedMap[str, None] = BoundedMap(2)
    seen.put("a", None)
    assert "a" in seen
    assert seen.pop("a") is None
    assert "a" not in seen


@pytest.mark.parametrize(
    "kwargs",
    [{"max_items": -1}, {"max_items": 1, "max_bytes": -1}],
)
def test_bad_limits_are_config_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        BoundedMap(**kwargs)  # type: ignore[arg-type]
