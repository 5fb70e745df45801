"""Results authenticated by their AMQP ``user_id``: the map of agent -> user and the reasons for a refusal."""

from __future__ import annotations

import uuid

import pytest

from relaybus.bus.amqp_connection import AmqpLink
from relaybus.bus.result_auth import check_publishers, publisher_mismatch
from relaybus.exceptions import ConfigError
from relaybus.log import get_logger
from relaybus.messages import ExecutionResult

PUBLISHERS = {"reviewer": "relaybus-reviewer"}


def result(agent: str | None) -> ExecutionResult:
    return ExecutionResult.success(uuid.uuid4(), "ok", agent=agent)


def test_a_result_of_a_mapped_agent_from_its_user_is_taken() -> None:
    assert publisher_mismatch(PUBLISHERS, "relaybus-reviewer", result("reviewer")) is None


@pytest.mark.parametrize(
    ("user", "agent", "words"),
    [
        ("attacker", "reviewer", "published by user 'attacker'"),
        (None, "reviewer", "published by user None"),
        ("relaybus-reviewer", "writer", "not in this caller's result_publishers"),
        ("relaybus-reviewer", None, "names agent None"),
    ],
)
def test_any_other_result_is_refused_with_the_reason(user: str | None, agent: str | None, words: str) -> None:
    reason = publisher_mismatch(PUBLISHERS, user, result(agent))
    assert reason is not None
    assert words in reason


@pytest.mark.parametrize("bad", [{"bad name!": "u"}, {"reviewer": ""}, {"reviewer": 3}])
def test_a_bad_map_is_a_config_error(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="result_publishers"):
        check_publishers(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "login"),
    [
        ("amqp://worker%2Da:pw@host/vh", "worker-a"),
        ("amqp://host/", "guest"),
        ("amqps://host/?auth=EXTERNAL", None),
    ],
)
def test_the_bus_stamps_the_login_of_its_url(url: str, login: str | None) -> None:
    link = AmqpLink(
        url,
        ssl_context=None,
        ca_file=None,
        cert_file=None,
        key_file=None,
        connection_name="t",
        log=get_logger("t"),
    )
    assert link.login == login
