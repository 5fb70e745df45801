"""``relaybus.dead`` on RabbitMQ: bounded in length and age, keeping the newest letters.

:class:`DeadLetterLimits` (``AmqpBus(dead_letter_limits=...)``; default 100,000 letters, 14 days) become the
queue's arguments ``x-max-length``, ``x-max-length-bytes`` (optional), ``x-message-ttl`` and
``x-overflow: drop-head``: when the queue is full the *oldest* letter goes, so the letters that explain what
just broke are kept, and dead-lettering never blocks (``reject-publish`` would stop every queue's
at-least-once dead-lettering instead).

**An existing queue** (a broker where relaybus.dead was declared before these limits, or with others):
RabbitMQ refuses to re-declare a queue with other arguments (``PRECONDITION_FAILED``). Then the bus goes on
with the queue as it is, logs ``dead_letter_queue_limits_not_applied`` once (at INFO) with the command that
applies the limits without deleting anything (a policy, which RabbitMQ applies to an existing queue)::

    rabbitmqctl set_policy -p VHOST relaybus-dead '^relaybus\\.dead$' \\
        '{"max-length":100000,"message-ttl":1209600000,"overflow":"drop-head"}' --apply-to queues

and :attr:`~relaybus.bus.amqp.AmqpBus.dead_letter_limited` is False.

**What is counted, honestly.** relaybus counts what *it* dead-letters
(``relaybus_dead_letters_total{reason}``), but letters the broker drops from ``relaybus.dead`` (too many, too
old) are dropped inside RabbitMQ: no client sees them. relaybus.dead has no dead-letter exchange of its own,
so RabbitMQ counts them in its global counters for queues without one:
``rabbitmq_global_messages_dead_lettered_maxlen_total`` and ``..._expired_total`` with
``dead_letter_strategy="disabled"`` (rabbitmq_prometheus plugin, per node and for all vhosts; in a relaybus
vhost every other queue has a dead-letter exchange, so there it is relaybus.dead's drops).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

from aio_pika.abc import AbstractRobustConnection
from aio_pika.exceptions import ChannelPreconditionFailed

from relaybus.exceptions import ConfigError
from relaybus.log import FilteringBoundLogger

from .base import DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE

__all__ = ["DEFAULT_DEAD_LETTER_LIMITS", "DeadLetterLimits", "declare_dead_letter_queue"]

_MAX_TTL_MS = 2**32 - 1  # x-message-ttl is an unsigned 32-bit number of milliseconds (about 49 days)


@dataclass(frozen=True)
class DeadLetterLimits:
    """How many letters (``max_length``), bytes (``max_bytes``, None: no limit) and seconds (``max_age_s``)
    ``relaybus.dead`` keeps; the oldest go first. ``DeadLetterLimits(None, None, None)`` keeps everything."""

    max_length: int | None = 100_000
    max_age_s: float | None = 14 * 24 * 3600.0
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_length", "max_bytes"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(
                    f"DeadLetterLimits {name} must be a positive integer or None, got {value!r}"
                )
        age = self.max_age_s
        if age is not None and not (0 < age * 1000 <= _MAX_TTL_MS):
            raise ConfigError(
                f"DeadLetterLimits max_age_s must be more than 0 and at most {_MAX_TTL_MS // 1000} seconds "
                f"(RabbitMQ's limit), or None; got {age!r}"
            )

    def _definition(self) -> dict[str, Any]:
        """The limits as policy keys (queue arguments are the same with ``x-`` in front)."""
        limits = {
            "max-length": self.max_length,
            "max-length-bytes": self.max_bytes,
            "message-ttl": None if self.max_age_s is None else max(1, round(self.max_age_s * 1000)),
        }
        definition = {key: value for key, value in limits.items() if value is not None}
        return {**definition, "overflow": "drop-head"} if definition else {}

    def arguments(self) -> dict[str, Any]:
        """The queue arguments of relaybus.dead under these limits."""
        return {"x-queue-type": "quorum", **{f"x-{key}": value for key, value in self._definition().items()}}

    def policy_command(self, vhost: str) -> str:
        """The ``rabbitmqctl set_policy`` command that applies these limits to an existing relaybus.dead."""
        definition = json.dumps(self._definition() or {"overflow": "drop-head"}, separators=(",", ":"))
        return (
            f"rabbitmqctl set_policy -p {vhost} relaybus-dead '^relaybus\\.dead$' '{definition}' "
            "--apply-to queues"
        )


DEFAULT_DEAD_LETTER_LIMITS = DeadLetterLimits()


async def declare_dead_letter_queue(
    conn: AbstractRobustConnection,
    limits: DeadLetterLimits,
    *,
    vhost: str,
    log: FilteringBoundLogger,
    extra_arguments: dict[str, Any] | None = None,
) -> bool:
    """Declare relaybus.dead with ``limits`` (and ``extra_arguments``, e.g. a cluster's quorum group size)
    and bind it to relaybus.dlx; True when the limits are the queue's. A queue that exists with other
    arguments is kept as it is (False, and the fix logged once).

    Runs on channels of its own (a refused declaration closes its channel) and not robust: the queue and
    its binding are durable, and a reconnect must not re-declare arguments the broker refuses."""
    limited = True
    channel = await conn.channel(publisher_confirms=False)
    try:
        try:
            queue = await channel.declare_queue(
                DEAD_LETTER_QUEUE,
                durable=True,
                arguments={**limits.arguments(), **(extra_arguments or {})},
                robust=False,
            )
        except ChannelPreconditionFailed:
            limited = False
            # INFO, not WARNING: every command of every upgraded deployment would print it (one-shot commands
            # show WARNING); a worker logs it at start, and the README's Dead letters section says what to do.
            log.info(
                "dead_letter_queue_limits_not_applied",
                queue=DEAD_LETTER_QUEUE,
                reason="the queue exists with other arguments (declared by an older relaybus or by hand)",
                fix=limits.policy_command(vhost),
            )
            channel = await conn.channel(publisher_confirms=False)
            queue = await channel.declare_queue(DEAD_LETTER_QUEUE, passive=True, robust=False)
        await queue.bind(DEAD_LETTER_EXCHANGE, routing_key="", robust=False)
    finally:
        with contextlib.suppress(Exception):
            await channel.close()
    return limited
