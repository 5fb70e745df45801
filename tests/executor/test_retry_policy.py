"""RetryPolicy and parse_retry_after at their edges: defaults, bounds, and which header wins when."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from relaybus.executor import RetryPolicy
from relaybus.executor.retry import parse_retry_after

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


# -- parse_retry_after ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"RETRY-AFTER": " 7 "}, 7.0),  # any case, surrounding spaces
        ({"Retry-After-Ms": "1500"}, 1.5),
        ({"retry-after-ms": "0"}, 0.0),
        ({"retry-after-ms": "soon", "retry-after": "4"}, 4.0),  # unusable milliseconds: fall back
        ({"retry-after-ms": "-5", "retry-after": "4"}, 4.0),
        ({"retry-after-ms": "nan", "retry-after": "4"}, 4.0),
        ({"retry-after-ms": "soon"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "-inf"}, 0.0),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": ""}, None),
        ({"content-type": "application/json"}, None),
    ],
)
def test_which_header_is_used_and_what_is_refused(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


def test_a_date_without_a_zone_is_read_as_gmt() -> None:
    # "-0000" is RFC 5322's "zone unknown": parsedate_to_datetime returns a naive datetime for it
    assert parse_retry_after({"Retry-After": "Thu, 01 Jan 2026 12:00:45 -0000"}, now=NOW) == 45.0


def test_a_date_with_a_zone_is_converted() -> None:
    assert parse_retry_after({"Retry-After": "Thu, 01 Jan 2026 13:00:10 +0100"}, now=NOW) == 10.0


@pytest.mark.parametrize("text", ["Thu, 99 Foo 2026 12:00:00 GMT", "tomorrow", "1 2 3"])
def test_an_unreadable_date_says_nothing(text: str) -> None:
    assert parse_retry_after({"Retry-After": text}, now=NOW) is None


def test_without_now_a_date_is_measured_from_the_current_time() -> None:
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    waited = parse_retry_after({"Retry-After": soon})
    assert waited is not None
    assert 100 < waited <= 120


# -- RetryPolicy ---------------------------------------------------------------------------------------------


def test_the_defaults_are_four_attempts_from_half_a_second_up_to_twenty() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.base_delay_s, policy.max_delay_s) == (4, 0.5, 20.0)
    assert (policy.jitter, policy.max_retry_after_s) == (0.5, 60.0)


def test_without_jitter_the_delay_doubles_exactly_up_to_the_cap() -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=3.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_attempt_zero_or_below_waits_the_base_delay() -> None:
    policy = RetryPolicy(base_delay_s=0.5, jitter=0.0)
    assert policy.delay(0) == policy.delay(-3) == 0.5


def test_full_jitter_spreads_delays_down_to_zero() -> None:
    policy = RetryPolicy(base_delay_s=1.0, jitter=1.0, rng=random.Random(3))
    delays = [policy.delay(1) for _ in range(200)]
    assert all(0.0 <= d <= 1.0 for d in delays)
    assert min(delays) < 0.1  # the whole range [0, 1] is used, not just its upper half
    assert max(delays) > 0.9


def test_jitter_is_drawn_from_the_policy_rng() -> None:
    def delays(seed: int) -> list[float]:
        policy = RetryPolicy(rng=random.Random(seed))
        return [policy.delay(n) for n in range(1, 5)]

    assert delays(11) == delays(11)
    assert delays(11) != delays(12)
    expected = random.Random(11)
    assert delays(11)[0] == 0.5 * (1.0 - 0.5 * expected.random())


def test_a_retry_after_below_the_backoff_does_not_shorten_it() -> None:
    policy = RetryPolicy(base_delay_s=2.0, jitter=0.0)
    assert policy.delay(1, retry_after=0.5) == 2.0
    assert policy.delay(1, retry_after=None) == 2.0


def test_policies_compare_by_their_settings_not_their_rng() -> None:
    assert RetryPolicy(rng=random.Random(1)) == RetryPolicy(rng=random.Random(2))
    assert "rng" not in repr(RetryPolicy())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 1},
        {"base_delay_s": 0.0, "max_delay_s": 0.0, "max_retry_after_s": 0.0},
        {"jitter": 0.0},
        {"jitter": 1.0},
    ],
)
def test_the_edges_of_each_setting_are_accepted(kwargs: dict[str, float]) -> None:
    RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"base_delay_s": -0.1}, "delays must not be negative"),
        ({"max_delay_s": -0.1}, "delays must not be negative"),
        ({"max_retry_after_s": -0.1}, "delays must not be negative"),
        ({"jitter": -0.1}, "jitter must be between 0 and 1"),
        ({"jitter": 1.1}, "jitter must be between 0 and 1"),
    ],
)
def test_each_bad_setting_is_refused_with_its_reason(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
