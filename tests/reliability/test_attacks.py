"""Attacks by a hostile user of the bus (one who may publish tasks) against a real RabbitMQ, each refused.

Every test runs on a vhost of its own, with an in-process worker hosting two agents, ``victim`` and
``other``, and publishes as the attacker would: raw messages on the bus, with the ids, ``reply_to`` and
headers it chooses. What each shows:

- ``reply_to`` naming another agent's task queue or ``relaybus.dead`` is dead-lettered with the reason, not
  run, and nothing lands in the named queue.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from relaybus.agents import Agent, AgentContext, AgentWorker
from relaybus.bus.amqp import AmqpBus
from relaybus.bus.base import DEAD_LETTER_QUEUE, ERROR_HEADER
from relaybus.bus.codec import encode_task
from relaybus.bus.rpc import ReplyRouter
from relaybus.messages import AgentTask, ExecutionStatus
from relaybus.testing import FakeExecutor
from tests.bus.amqp_support import take_dead_letters

pytestmark = [pytest.mark.integration]


class Counting(Agent):
    """Answers ``{"ran": name}`` and counts the tasks it ran."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.topics = (f"attack.{name}",)
        self.ran: list[uuid.UUID] = []

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        self.ran.append(task.id)
        return {"ran": self.name, "prompt": task.prompt}


@dataclass
class Deployment:
    bus: AmqpBus
    victim: Counting
    other: Counting
    worker: AgentWorker


@pytest.fixture
async def deployment(amqp_vhost_url: str) -> AsyncIterator[Deployment]:
    victim, other = Counting("victim"), Counting("other")
    async with AmqpBus(amqp_vhost_url) as bus:
        worker = AgentWorker(bus, [victim, other], executor=FakeExecutor(), heartbeat_interval_s=60)
        async with worker:
            yield Deployment(bus, victim, other, worker)


@pytest.mark.parametrize("target", ["relaybus.agent.other", DEAD_LETTER_QUEUE, "amq.gen-anything"])
async def test_a_reply_to_that_is_not_a_reply_queue_is_dead_lettered_and_not_run(
    deployment: Deployment, target: str
) -> None:
    task = AgentTask(topic="attack.victim", prompt="steal")
    await deployment.bus.publish(encode_task(task, reply_to=target))
    dead = await take_dead_letters(deployment.bus, [str(task.id)], timeout=10)
    assert set(dead) == {str(task.id)}
    reason = str(dead[str(task.id)].headers.get(ERROR_HEADER))
    assert "is not a reply queue" in reason
    assert target in reason
    assert deployment.victim.ran == []
    # No result was written anywhere: into relaybus.dead directly, or into the other agent's queue (whose
    # worker would dead-letter it as no task), or dead-lettered for want of the queue.
    assert await take_dead_letters(deployment.bus, [f"result-{task.id}"], timeout=2) == {}


async def test_real_callers_reply_queues_are_accepted(deployment: Deployment) -> None:
    async with ReplyRouter(deployment.bus) as router:
        result = await router.request(AgentTask(topic="attack.victim", prompt="hi"), timeout=10)
    async with ReplyRouter(deployment.bus, name=f"named-{uuid.uuid4().hex[:6]}") as named:
        named_result = await named.request(AgentTask(topic="attack.victim", prompt="hi"), timeout=10)
    assert (result.status, named_result.status) == (ExecutionStatus.SUCCESS, ExecutionStatus.SUCCESS)
    assert len(deployment.victim.ran) == 2
