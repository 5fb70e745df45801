"""``relaybus.dead`` bounded in length and age (newest kept); an old-style queue does not break start.

Each test has a vhost of its own on the real RabbitMQ. What they show:

- a fresh broker gets relaybus.dead with ``x-max-length``, ``x-message-ttl`` and ``x-overflow: drop-head``;
- 8 letters into a queue of 5 leave the newest 5, and RabbitMQ counts the 3 it dropped in its global counter
  for queues without a dead-letter exchange (what an operator can graph; relaybus itself cannot see them);
- letters older than ``max_age_s`` are not delivered;
- a relaybus.dead declared before the limits (other arguments) does not stop ``connect``: the bus warns with
  the policy command, dead-lettering still works, and that command applies the limits.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import uuid
from urllib.parse import urlsplit

import aio_pika
import pytest
import structlog

from relaybus.bus.amqp import AmqpBus
from relaybus.bus.base import DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE, OutgoingMessage
from relaybus.bus.dead_letters import DeadLetterLimits
from relaybus.exceptions import ConfigError
from tests.bus.amqp_support import rabbitmqctl, take_dead_letters
from tests.eventually import eventually

pytestmark = [pytest.mark.integration]


async def dead_queue(vhost: str) -> dict[str, object]:
    out = await rabbitmqctl(
        "list_queues", "-p", vhost, "name", "messages", "arguments", "policy", "--formatter", "json"
    )
    for row in json.loads(out):
        if row["name"] == DEAD_LETTER_QUEUE:
            row["arguments"] = {key: value for key, _type, value in row["arguments"]}
            return dict(row)
    raise AssertionError(f"no {DEAD_LETTER_QUEUE} on vhost {vhost}")


def vhost_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


async def send_letters(bus: AmqpBus, count: int) -> list[str]:
    ids = [f"letter-{i}-{uuid.uuid4().hex[:6]}" for i in range(count)]
    for mid in ids:
        await bus.publish(
            OutgoingMessage(body=b"{}", routing_key="x", exchange=DEAD_LETTER_EXCHANGE, message_id=mid)
        )
    return ids


async def dropped_by_broker() -> int:
    """RabbitMQ's count of messages dropped for length by quorum queues without a dead-letter exchange."""
    out = await rabbitmqctl(
        "eval",
        "maps:get(messages_dead_lettered_maxlen_total, maps:get([{queue_type, rabbit_quorum_queue}, "
        "{dead_letter_strategy, disabled}], rabbit_global_counters:overview())).",
    )
    return int(out.strip())


async def test_a_fresh_broker_gets_a_bounded_dead_letter_queue(amqp_vhost_url: str) -> None:
    async with AmqpBus(amqp_vhost_url) as bus:
        assert bus.dead_letter_limited
    args = (await dead_queue(vhost_of(amqp_vhost_url)))["arguments"]
    assert args == {
        "x-queue-type": "quorum",
        "x-max-length": 100_000,
        "x-message-ttl": 14 * 24 * 3600 * 1000,
        "x-overflow": "drop-head",
    }


async def test_a_full_dead_letter_queue_keeps_the_newest_and_rabbitmq_counts_the_dropped(
    amqp_vhost_url: str,
) -> None:
    before = await dropped_by_broker()
    async with AmqpBus(amqp_vhost_url, dead_letter_limits=DeadLetterLimits(max_length=5)) as bus:
        ids = await send_letters(bus, 8)
        kept = await take_dead_letters(bus, ids, timeout=3)
    assert sorted(kept) == sorted(ids[3:])
    assert await dropped_by_broker() - before >= 3  # a node-wide counter: other vhosts may add to it


async def test_letters_older_than_the_age_limit_are_not_kept(amqp_vhost_url: str) -> None:
    limits = DeadLetterLimits(max_length=None, max_age_s=1.0)
    async with AmqpBus(amqp_vhost_url, dead_letter_limits=limits) as bus:
        ids = await send_letters(bus, 3)
        await asyncio.sleep(2.5)
        fresh = await send_letters(bus, 1)
        kept = await take_dead_letters(bus, [*ids, *fresh], timeout=3)
    assert sorted(kept) == fresh


async def test_an_old_style_dead_letter_queue_does_not_break_start(amqp_vhost_url: str) -> None:
    vhost = vhost_of(amqp_vhost_url)
    connection = await aio_pika.connect(amqp_vhost_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(DEAD_LETTER_QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    limits = DeadLetterLimits(max_length=5)
    with structlog.testing.capture_logs() as events:
        async with AmqpBus(amqp_vhost_url, dead_letter_limits=limits) as bus:
            assert not bus.dead_letter_limited
            ids = await send_letters(bus, 2)  # still bound to relaybus.dlx, and the bus still works
            assert sorted(await take_dead_letters(bus, ids, timeout=10)) == sorted(ids)
    warnings = [e for e in events if e["event"] == "dead_letter_queue_limits_not_applied"]
    assert len(warnings) == 1
    fix = str(warnings[0]["fix"])
    assert fix == limits.policy_command(vhost)
    assert (await dead_queue(vhost))["arguments"] == {"x-queue-type": "quorum"}  # untouched

    # The command the warning gives applies the limits to the queue as it is.
    program, *args = shlex.split(fix)
    assert program == "rabbitmqctl"
    await rabbitmqctl(*args)
    await eventually(lambda: _policy_applied(vhost), timeout=20)
    async with AmqpBus(amqp_vhost_url, dead_letter_limits=limits) as bus:
        ids = await send_letters(bus, 8)
        assert sorted(await take_dead_letters(bus, ids, timeout=3)) == sorted(ids[3:])


async def _policy_applied(vhost: str) -> bool:
    return (await dead_queue(vhost))["policy"] == "relaybus-dead"


@pytest.mark.parametrize(
    "kwargs", [{"max_length": 0}, {"max_bytes": -1}, {"max_age_s": 0}, {"max_age_s": 60 * 86400}]
)
def test_bad_limits_are_a_config_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="DeadLetterLimits"):
        DeadLetterLimits(**kwargs)  # type: ignore[arg-type]


def test_no_limits_leave_the_queue_as_before() -> None:
    assert DeadLetterLimits(None, None, None).arguments() == {"x-queue-type": "quorum"}
