"""Hostile input: 1,100 hypothesis-generated messages straight to the agent queue of a running worker.

Truncated JSON, wrong types, bodies over 1 MiB, deep nesting, pickle, wrong or missing schema versions,
invalid UTF-8, tasks without their own id, odd content types, and header values of every AMQP type (byte
arrays, tables, arrays, floats, 64-bit integers). Promise shown: each is dead-lettered with its reason, the
worker stays up, its memory does not grow, and a valid task after them succeeds.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import aio_pika
import psutil
import pytest

from relaybus.bus.base import (
    ERROR_HEADER,
    EXCHANGE,
    ORIGINAL_QUEUE_HEADER,
    agent_queue_name,
    agent_routing_key,
)
from relaybus.messages import AgentTask
from relaybus.orchestrator import ProjectOrchestrator
from tests.agents.processes import Fleet
from tests.bus.amqp_support import take_dead_letters

from .hostile import HostileMessage, expected_reason, generate
from .support import figures

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COUNT = 1100
WARM_UP = 100  # the first messages warm the worker up before its memory is measured
MAX_GROWTH_MIB = 64


async def _publish(
    channel: aio_pika.abc.AbstractChannel, routing_key: str, batch: list[tuple[str, HostileMessage]]
) -> None:
    exchange = await channel.get_exchange(EXCHANGE, ensure=False)
    await asyncio.gather(
        *(
            exchange.publish(
                aio_pika.Message(body=m.body, headers=m.headers, content_type=m.content_type, message_id=mid),
                routing_key=routing_key,
                mandatory=True,
            )
            for mid, m in batch
        )
    )


def _rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


async def test_a_thousand_hostile_messages_are_dead_lettered_and_the_worker_carries_on(fleet: Fleet) -> None:
    worker = await fleet.start("Echo", args=("--concurrency", "32"), log_level="WARNING")
    messages = generate(COUNT)
    run = uuid.uuid4().hex[:8]
    tagged = [(f"hostile-{run}-{i}", m) for i, m in enumerate(messages)]
    routing_key = agent_routing_key(fleet.name("echo"))
    connection = await aio_pika.connect(fleet.amqp_url)
    began = time.monotonic()
    try:
        channel = await connection.channel(publisher_confirms=True)
        await _publish(channel, routing_key, tagged[:WARM_UP])
        warm = await take_dead_letters(fleet.bus, [mid for mid, _ in tagged[:WARM_UP]], timeout=60)
        rss_before = _rss_mib(worker.pid)
        for start in range(WARM_UP, COUNT, 100):
            await _publish(channel, routing_key, tagged[start : start + 100])
        rest = await take_dead_letters(fleet.bus, [mid for mid, _ in tagged[WARM_UP:]], timeout=120)
    finally:
        await connection.close()
    dead = {**warm, **rest}
    async with ProjectOrchestrator(fleet.bus) as orchestrator:
        valid = await orchestrator.execute_task(AgentTask(topic=fleet.topic("echo"), prompt="still here"))
    rss_after = _rss_mib(worker.pid)

    wrong = {
        mid: (dead[mid].headers.get(ERROR_HEADER), expected_reason(m))
        for mid, m in tagged
        if mid in dead and not str(dead[mid].headers.get(ERROR_HEADER, "")).startswith(expected_reason(m))
    }
    line = figures(
        "hostile messages to a worker's queue",
        sent=len(tagged),
        kinds=len({m.kind for m in messages}),
        dead_lettered=len(dead),
        wrong_reason=len(wrong),
        worker_alive=worker.proc.returncode is None,
        rss_mib_before=round(rss_before, 1),
        rss_mib_after=round(rss_after, 1),
        wall_s=round(time.monotonic() - began, 1),
    )
    assert len(tagged) >= 1000
    assert set(dead) == {mid for mid, _ in tagged}, line  # every one dead-lettered, none run, none lost
    assert not wrong, f"{line}; first: {next(iter(wrong.values()))}"
    queue = agent_queue_name(fleet.name("echo"))
    assert {d.headers.get(ORIGINAL_QUEUE_HEADER) for d in dead.values()} == {queue}
    assert worker.proc.returncode is None, worker.log()[-3000:]
    assert valid.ok, valid.error
    assert valid.output == {"echo": "still here"}
    assert rss_after - rss_before < MAX_GROWTH_MIB, line
