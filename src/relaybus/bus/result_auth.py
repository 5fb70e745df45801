"""Results authenticated by who published them: the AMQP ``user_id`` against a caller's map of agent -> user.

RabbitMQ refuses a message whose ``user_id`` is not the login of the connection publishing it, and
:class:`~relaybus.bus.amqp.AmqpBus` sets it on every message; so where each agent's workers log in as a user
of their own, a caller that knows the map (``ReplyRouter(result_publishers=...)``) can tell a result of that
agent from one written into its reply queue by anyone else.
"""

from __future__ import annotations

from collections.abc import Mapping

from relaybus.exceptions import ConfigError
from relaybus.messages import NAME_RE, ExecutionResult

__all__ = ["check_publishers", "publisher_mismatch"]


def check_publishers(publishers: Mapping[str, str] | None) -> dict[str, str] | None:
    """``publishers`` as a dict, checked; ``ConfigError`` for an entry that is not agent -> user."""
    if publishers is None:
        return None
    checked: dict[str, str] = {}
    for agent, user in dict(publishers).items():
        if not isinstance(agent, str) or not NAME_RE.match(agent) or not isinstance(user, str) or not user:
            raise ConfigError(
                f"result_publishers entry {agent!r}: {user!r} is invalid: map each agent name to the "
                'RabbitMQ user its workers log in as, e.g. {"reviewer": "relaybus-reviewer"}'
            )
        checked[agent] = user
    return checked


def publisher_mismatch(
    publishers: Mapping[str, str], user_id: str | None, result: ExecutionResult
) -> str | None:
    """Why ``result`` (published by ``user_id``) is refused under ``publishers``, or None to take it."""
    agent = result.agent
    if agent is None or agent not in publishers:
        return (
            f"result for task {result.task_id} names agent {agent!r}, which is not in this caller's "
            f"result_publishers ({', '.join(sorted(publishers)) or 'none'}): add the agent and "
            "the RabbitMQ user its workers log in as"
        )
    expected = publishers[agent]
    if user_id != expected:
        return (
            f"result for task {result.task_id} claims agent {agent!r}, whose workers log in as {expected!r}, "
            f"but was published by user {user_id!r}: a forged result, or a worker with the wrong login"
        )
    return None
