"""The rules both buses share (``bus/core.py``) where the contract suite cannot reach them through a bus."""

from __future__ import annotations

import math
import time

import pytest

from relaybus.bus.base import (
    DEAD_AT_HEADER,
    ERROR_HEADER,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_QUEUE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    HeaderValue,
)
from relaybus.bus.core import (
    DELIVERY_COUNT_HEADER,
    FIRST_DEATH_EXCHANGE_HEADER,
    FIRST_DEATH_QUEUE_HEADER,
    FIRST_DEATH_REASON_HEADER,
    check_positive_options,
    check_queue_declaration,
    dead_letter_headers,
    fill_death_headers,
    truncate,
)
from relaybus.exceptions import ConfigError


def test_truncate_keeps_text_at_the_limit_and_marks_a_cut() -> None:
    assert truncate("abcde", 5) == "abcde"
    assert truncate("abcdef", 5) == "ab..."
    assert len(truncate("x" * 5000)) == 1000


def test_dead_letter_headers_keep_the_original_but_not_its_delivery_count() -> None:
    headers = dead_letter_headers(
        {"keep": 1, DELIVERY_COUNT_HEADER: 3},
        reason="login with pw Zebra-81 failed",
        queue="q",
        routing_key="task.x",
        exchange="relaybus",
        secrets=("Zebra-81",),
    )
    died_at = float(str(headers.pop(DEAD_AT_HEADER)))
    assert time.time() - 60 < died_at <= time.time() + 0.001  # when it died (ms): what relaybus dlq ages
    assert headers == {
        "keep": 1,
        ERROR_HEADER: "login with pw *** failed",
        ORIGINAL_QUEUE_HEADER: "q",
        ORIGINAL_ROUTING_KEY_HEADER: "task.x",
        ORIGINAL_EXCHANGE_HEADER: "relaybus",
    }


def test_death_headers_name_an_unknown_reason_as_it_is_and_never_overwrite() -> None:
    headers: dict[str, HeaderValue] = {
        FIRST_DEATH_REASON_HEADER: "something_new",
        FIRST_DEATH_QUEUE_HEADER: "q",
        FIRST_DEATH_EXCHANGE_HEADER: "relaybus",
        ORIGINAL_ROUTING_KEY_HEADER: "already.there",
    }
    fill_death_headers(headers, routing_key="task.x")
    assert headers[ERROR_HEADER] == "something_new (x-death reason 'something_new', queue 'q')"
    assert (headers[ORIGINAL_QUEUE_HEADER], headers[ORIGINAL_EXCHANGE_HEADER]) == ("q", "relaybus")
    assert headers[ORIGINAL_ROUTING_KEY_HEADER] == "already.there"
    plain: dict[str, HeaderValue] = {"k": "v"}
    fill_death_headers(plain, routing_key="task.x")
    assert plain == {"k": "v"}  # not dead-lettered by a broker: nothing derived


@pytest.mark.parametrize("value", [0, -1, True, math.nan, "10", None])
def test_an_option_must_be_a_number_above_zero(value: object) -> None:
    with pytest.raises(ConfigError, match="Bus option close_timeout must be > 0"):
        check_positive_options("Bus", {"max_body_bytes": 1, "close_timeout": value})


def test_a_queue_declaration_is_returned_checked() -> None:
    declaration = check_queue_declaration("q", ["task.a", "task.b"], True, 3, 60)
    assert (declaration.name, declaration.bindings, declaration.durable) == ("q", ("task.a", "task.b"), True)
    assert (declaration.delivery_limit, declaration.expires_s) == (3, 60)
    with pytest.raises(ConfigError, match="sequence of patterns, got int"):
        check_queue_declaration("q", 5, True, None, None)  # type: ignore[arg-type]
