"""A task that runs longer than RabbitMQ's ``consumer_timeout`` (issue: LLM chains hit it in production).

RabbitMQ 3.10 closes a channel whose oldest unacked delivery is older than ``consumer_timeout`` with
PRECONDITION_FAILED; every delivery unacked on that channel goes back to its queue, and that return counts
against the queue's ``x-delivery-limit``. It checks on each channel tick (``channel_tick_interval``, 60 s by
default) and reads ``consumer_timeout`` once per channel, when the channel opens (both read from the 3.10.8
``rabbit_channel`` code). So the test lowers both, opens the worker's channels, then restores
``consumer_timeout`` at once (channels opened later, by other test runs on this shared broker and by the
worker's recovery, get the normal value back); ``channel_tick_interval`` is restored when the test ends.

Promise shown: the orchestrator gets exactly one result, the task runs once (the redelivered copy joins the
run still going in the same process), and the worker's channel recovers by itself.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator

import pytest

from relaybus.messages import AgentTask
from relaybus.orchestrator import ProjectOrchestrator
from tests.agents.processes import Fleet
from tests.bus.amqp_support import rabbitmqctl

from .support import figures

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONSUMER_TIMEOUT_MS = 5000
TICK_MS = 500
TASK_S = 8.0


async def _get_env(key: str) -> str | None:
    """The broker's current ``rabbit`` application setting as Erlang text, or None when it is not set."""
    out = (await rabbitmqctl("eval", f"application:get_env(rabbit, {key}).")).strip()
    match = re.fullmatch(r"\{ok,(.+)\}", out)
    return match.group(1) if match else None


async def _set_env(key: str, value: str | None) -> None:
    if value is None:
        await rabbitmqctl("eval", f"application:unset_env(rabbit, {key}).")
    else:
        await rabbitmqctl("eval", f"application:set_env(rabbit, {key}, {value}).")


class BrokerSettings:
    """Changes ``rabbit`` application settings and puts every changed one back (also on failure)."""

    def __init__(self) -> None:
        self.saved: dict[str, str | None] = {}

    async def set(self, key: str, value: str) -> None:
        if key not in self.saved:
            self.saved[key] = await _get_env(key)
        await _set_env(key, value)

    async def restore(self, key: str) -> None:
        if key in self.saved:
            await _set_env(key, self.saved.pop(key))

    async def restore_all(self) -> None:
        for key in list(self.saved):
            await self.restore(key)


@pytest.fixture
async def broker_settings() -> AsyncIterator[BrokerSettings]:
    settings = BrokerSettings()
    try:
        yield settings
    finally:
        await settings.restore_all()


async def test_a_task_longer_than_the_consumer_timeout_gives_one_result_and_runs_once(
    fleet: Fleet, broker_settings: BrokerSettings
) -> None:
    await broker_settings.set("channel_tick_interval", str(TICK_MS))
    await broker_settings.set("consumer_timeout", str(CONSUMER_TIMEOUT_MS))
    try:
        worker = await fleet.start("Echo", args=("--concurrency", "4"))  # its channels get the 5 s timeout
    finally:
        await broker_settings.restore("consumer_timeout")
    started_key = f"event.{fleet.topic('started')}"
    task = AgentTask(
        topic=fleet.topic("echo"), prompt="long", input={"sleep_s": TASK_S, "announce": True}, timeout_s=60
    )
    began = time.monotonic()
    async with ProjectOrchestrator(fleet.bus) as orchestrator:
        result = await orchestrator.execute_task(task)
        took = time.monotonic() - began
        # The channel came back: the next task is taken and answered by the same worker.
        after = await orchestrator.execute_task(AgentTask(topic=fleet.topic("echo"), prompt="after"))
        duplicates = orchestrator.duplicates_dropped
    runs = [e for e in fleet.events if e.routing_key == started_key and e.payload["task_id"] == str(task.id)]
    log = worker.log()
    line = figures(
        "task of 8 s, consumer_timeout 5 s",
        status=result.status.value,
        results_seen=1,
        duplicate_results_dropped=duplicates,
        runs=len(runs),
        joined_redelivery=log.count("duplicate_task_joins_run"),
        acks_lost_with_the_closed_channel=log.count("settle_failed_channel_closed"),
        took_s=round(took, 1),
    )
    assert result.ok, result.error
    assert result.output == {"echo": "long"}
    assert len(runs) == 1, line  # the redelivered copy did not start a second run
    assert log.count("duplicate_task_joins_run") == 1, line  # the broker did close the channel and redeliver
    assert log.count("settle_failed_channel_closed") >= 1, line  # the first copy's ack died with its channel
    assert after.ok, after.error
    assert after.worker == worker.worker_id
    assert worker.proc.returncode is None
