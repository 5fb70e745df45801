"""Attacks by a hostile user of the bus (one who may publish tasks) against a real RabbitMQ, each refused.

Every test runs on a vhost of its own, with an in-process worker hosting two agents, ``victim`` and
``other``, and publishes as the attacker would: raw messages on the bus, with the ids, ``reply_to`` and
headers it chooses. What each shows:

- ``reply_to`` naming another agent's task queue or ``relaybus.dead`` is dead-lettered with the reason, not
  run, and nothing lands in the named queue.
- A ``relaybus-deadline`` of ``1e300`` or ``2**62`` is capped at 7 days; ``inf`` or ``nan`` leave the
  task's ``timeout_s`` in force.
- A task addressed to ``other`` published into ``victim``'s queue is refused (REJECTED), run by neither.
- 16 tasks whose (named) reply queue is gone, each delivered twice, leave 16 dead letters, not 32.
- A task id used first by an attacker (another body) does not answer the real task, and a finished task
  resubmitted by another RabbitMQ user with another ``reply_to`` does not hand its output over: both are
  REJECTED and dead-lettered. The same user's copy from another reply queue is answered from the cache.
- A second orchestrator with a name in use (another connection, the same one, or a ``MemoryBus``) is
  refused at start, and the name is free again once the first closes.
- 200 bogus 1 MiB results for unknown ids sent to an orchestrator's reply queue leave at most 64 MiB kept;
  unclaimed results also age out.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from relaybus.agents import Agent, AgentContext, AgentWorker
from relaybus.agents.admission import MAX_TASK_S
from relaybus.bus.amqp import AmqpBus
from relaybus.bus.base import (
    DEAD_LETTER_QUEUE,
    DEADLINE_HEADER,
    ERROR_HEADER,
    Delivery,
    OutgoingMessage,
    agent_routing_key,
)
from relaybus.bus.codec import encode_result, encode_task
from relaybus.bus.memory import MemoryBus
from relaybus.bus.rpc import DEFAULT_MAX_UNCLAIMED_BYTES, ReplyRouter
from relaybus.exceptions import ConfigError
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus
from relaybus.orchestrator import ProjectOrchestrator
from relaybus.state import store_from_url
from relaybus.testing import FakeExecutor
from tests.bus.amqp_support import take_dead_letters
from tests.reliability.users import Users, users

pytestmark = [pytest.mark.integration]
__all__ = ["users"]  # the fixture


class Counting(Agent):
    """Answers ``{"ran": name}`` after ``input["sleep_s"]``; keeps the ids and deadlines of what it ran."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.topics = (f"attack.{name}",)
        self.ran: list[uuid.UUID] = []
        self.deadlines: list[float | None] = []

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        self.ran.append(task.id)
        self.deadlines.append(ctx.deadline)
        await asyncio.sleep(float(task.input.get("sleep_s", 0)))  # type: ignore[arg-type]
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


async def request_raw(bus: AmqpBus, message: OutgoingMessage, task_id: uuid.UUID) -> ExecutionResult:
    """Publish ``message`` (reply_to = a fresh router's queue) and wait for the result of ``task_id``."""
    async with ReplyRouter(bus) as router:
        future = router.expect(task_id)
        await bus.publish(dataclasses.replace(message, reply_to=router.queue))
        return await asyncio.wait_for(future, 20)


@pytest.mark.parametrize("header", ["inf", "nan"])
async def test_an_infinite_deadline_header_does_not_lift_the_tasks_timeout(
    deployment: Deployment, header: str
) -> None:
    task = AgentTask(topic="attack.victim", prompt="forever", timeout_s=1, input={"sleep_s": 30})
    message = encode_task(task, reply_to=None, headers={DEADLINE_HEADER: header})
    result = await request_raw(deployment.bus, message, task.id)
    assert result.status is ExecutionStatus.TIMEOUT  # ended by the 1 s limit, not after 30 s
    assert deployment.victim.ran == [task.id]


@pytest.mark.parametrize("header", ["1e300", 2**62, "inf"])
async def test_a_far_deadline_header_is_capped_at_seven_days(
    deployment: Deployment, header: str | int
) -> None:
    task = AgentTask(topic="attack.victim", prompt="forever")
    message = encode_task(task, reply_to=None, headers={DEADLINE_HEADER: header})
    result = await request_raw(deployment.bus, message, task.id)
    assert result.status is ExecutionStatus.SUCCESS
    deadline = deployment.victim.deadlines[0]
    assert deadline is not None
    assert deadline <= time.time() + MAX_TASK_S


async def test_a_task_addressed_to_another_agent_in_this_agents_queue_is_refused(
    deployment: Deployment,
) -> None:
    task = AgentTask(topic="attack.victim", agent="other", prompt="run me as victim")
    message = dataclasses.replace(encode_task(task, reply_to=None), routing_key=agent_routing_key("victim"))
    result = await request_raw(deployment.bus, message, task.id)
    assert result.status is ExecutionStatus.REJECTED
    assert result.error is not None
    assert result.error.type == "WrongAgent"
    assert "addressed to agent 'other'" in result.error.message
    assert (deployment.victim.ran, deployment.other.ran) == ([], [])


async def count_dead_letters(bus: AmqpBus, ids: set[str], *, settle_s: float = 2.0) -> Counter[str]:
    """How many letters with each message id of ``ids`` reach ``relaybus.dead`` (this test's vhost's)."""
    seen: Counter[str] = Counter()
    all_in = asyncio.Event()

    async def handler(delivery: Delivery) -> None:
        if delivery.message_id in ids:
            seen[delivery.message_id] += 1
            if set(seen) == ids:
                all_in.set()
        await delivery.ack()

    sub = await bus.consume(DEAD_LETTER_QUEUE, handler)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_in.wait(), 20)
    await asyncio.sleep(settle_s)  # and any letter added by a redelivery
    await sub.cancel()
    return seen


async def test_a_result_whose_reply_queue_is_gone_is_dead_lettered_once_per_task(
    deployment: Deployment,
) -> None:
    gone = f"relaybus.reply.named-{uuid.uuid4().hex[:8]}"  # a named caller's: its queue comes back
    tasks = [AgentTask(topic="attack.victim", prompt=f"t{i}") for i in range(16)]
    for task in tasks:
        message = encode_task(task, reply_to=gone)
        await deployment.bus.publish(message)
        await deployment.bus.publish(message)  # delivered again, as after a lost ack
    seen = await count_dead_letters(deployment.bus, {f"result-{t.id}" for t in tasks})
    assert sum(seen.values()) == 16, seen
    assert set(seen.values()) == {1}


async def test_a_planted_task_id_does_not_answer_the_real_task(deployment: Deployment) -> None:
    real = AgentTask(topic="attack.victim", prompt="the real work")
    planted = real.model_copy(update={"prompt": "the attacker's answer"})  # same id, another body
    first = await request_raw(deployment.bus, encode_task(planted, reply_to=None), planted.id)
    assert first.status is ExecutionStatus.SUCCESS  # the attacker got there first: its task ran
    result = await request_raw(deployment.bus, encode_task(real, reply_to=None), real.id)
    assert result.status is ExecutionStatus.REJECTED  # not the planted output
    assert result.output is None
    assert result.error is not None
    assert result.error.type == "TaskIdReused"
    assert "different body" in result.error.message
    dead = await take_dead_letters(deployment.bus, [str(real.id)], timeout=10)
    assert "different body" in str(dead[str(real.id)].headers.get(ERROR_HEADER))
    assert deployment.victim.ran == [real.id]  # once: the planted copy; the real one was refused, not run


async def test_a_finished_task_resubmitted_by_another_user_does_not_get_its_result(users: Users) -> None:
    victim = Counting("victim")
    async with (
        AmqpBus(users.caller) as bus,
        AmqpBus(users.attacker) as attacker,
        AgentWorker(bus, [victim], executor=FakeExecutor(), heartbeat_interval_s=60),
    ):
        task = AgentTask(topic="attack.victim", prompt="secret output")
        mine = await request_raw(bus, encode_task(task, reply_to=None), task.id)
        assert mine.output == {"ran": "victim", "prompt": "secret output"}
        stolen = await request_raw(attacker, encode_task(task, reply_to=None), task.id)  # its own queue
    assert stolen.status is ExecutionStatus.REJECTED
    assert stolen.output is None
    assert stolen.error is not None
    assert "another reply queue of another publisher" in stolen.error.message
    assert victim.ran == [task.id]


async def test_with_a_store_another_users_copy_of_a_stored_task_is_refused_and_the_same_users_answered(
    users: Users, tmp_path: Path
) -> None:
    # A worker that never saw the task (its cache is empty) answers from the store: only to the same user.
    task = AgentTask(topic="attack.victim", prompt="secret output")
    first, second = Counting("victim"), Counting("victim")
    async with (
        store_from_url(f"sqlite:///{tmp_path / 'state.db'}") as store,
        AmqpBus(users.caller) as bus,
        AmqpBus(users.attacker) as attacker,
    ):
        async with AgentWorker(bus, [first], executor=FakeExecutor(), heartbeat_interval_s=60, state=store):
            mine = await request_raw(bus, encode_task(task, reply_to=None), task.id)
        async with AgentWorker(bus, [second], executor=FakeExecutor(), heartbeat_interval_s=60, state=store):
            stolen = await request_raw(attacker, encode_task(task, reply_to=None), task.id)
            again = await request_raw(bus, encode_task(task, reply_to=None), task.id)  # a new reply queue
    assert mine.output == again.output == {"ran": "victim", "prompt": "secret output"}
    assert stolen.status is ExecutionStatus.REJECTED
    assert stolen.output is None
    assert stolen.error is not None
    assert "from another publisher" in stolen.error.message
    assert (first.ran, second.ran) == ([task.id], [])  # run once, answered from the store after


async def test_the_same_publisher_from_another_reply_queue_is_answered_from_the_cache_not_run_again(
    deployment: Deployment,
) -> None:
    # A caller that restarted with a new reply queue, or an agent loop resumed on another worker sending its
    # delegated call again under the same id: the same login, so the result is its own.
    task = AgentTask(topic="attack.victim", prompt="mine twice")
    first = await request_raw(deployment.bus, encode_task(task, reply_to=None), task.id)
    again = await request_raw(deployment.bus, encode_task(task, reply_to=None), task.id)  # a new queue
    assert first.status is again.status is ExecutionStatus.SUCCESS
    assert again.output == first.output
    assert deployment.victim.ran == [task.id]


async def test_a_redelivery_of_the_same_task_is_still_answered_from_the_cache(deployment: Deployment) -> None:
    task = AgentTask(topic="attack.victim", prompt="once")
    async with ReplyRouter(deployment.bus) as router:
        first = router.expect(task.id)
        await deployment.bus.publish(encode_task(task, reply_to=router.queue))
        assert (await asyncio.wait_for(first, 20)).status is ExecutionStatus.SUCCESS
        again = router.expect(task.id)
        await deployment.bus.publish(encode_task(task, reply_to=router.queue))
        assert (await asyncio.wait_for(again, 20)).status is ExecutionStatus.SUCCESS
    assert deployment.victim.ran == [task.id]


async def test_a_second_orchestrator_with_the_same_name_is_refused_at_start(amqp_vhost_url: str) -> None:
    name = f"nightly-{uuid.uuid4().hex[:6]}"
    async with AmqpBus(amqp_vhost_url) as first_bus, AmqpBus(amqp_vhost_url) as second_bus:
        async with ProjectOrchestrator(first_bus, name=name):
            with pytest.raises(ConfigError, match="held by another connection"):
                await ProjectOrchestrator(second_bus, name=name).start()  # another process, as it were
            with pytest.raises(ConfigError, match=f"held by the reply router of relaybus.reply.{name}"):
                await ProjectOrchestrator(first_bus, name=name).start()  # the same connection
        async with ProjectOrchestrator(second_bus, name=name) as after:  # freed by close
            assert after.reply_queue == f"relaybus.reply.{name}"


async def test_on_a_memory_bus_a_second_orchestrator_with_the_same_name_is_refused() -> None:
    async with MemoryBus() as bus, ProjectOrchestrator(bus, name="nightly"):
        with pytest.raises(ConfigError, match="'nightly' is held by"):
            await ProjectOrchestrator(bus, name="nightly").start()


async def test_200_bogus_one_mib_results_leave_an_orchestrators_kept_bytes_bounded(
    amqp_vhost_url: str,
) -> None:
    filler = "x" * (1_000_000 - 200)  # each result body just under the 1 MiB limit
    async with AmqpBus(amqp_vhost_url) as bus, ProjectOrchestrator(bus, name="victim") as victim:
        router = victim._router  # only to wait for a marker behind the bogus results (the queue is FIFO)
        for _ in range(200):  # results for ids nobody asked for, straight into its reply queue
            bogus = ExecutionResult.success(uuid.uuid4(), filler)
            await bus.publish(encode_result(bogus, reply_to=victim.reply_queue))
        marker = ExecutionResult.success(uuid.uuid4(), "last")
        waiting = router.expect(marker.task_id)
        await bus.publish(encode_result(marker, reply_to=victim.reply_queue))
        await asyncio.wait_for(waiting, 120)  # the queue is FIFO: every bogus result was taken before it
        assert 0 < victim.unclaimed_bytes <= DEFAULT_MAX_UNCLAIMED_BYTES
        assert router.unclaimed < 200  # the oldest were dropped
        await bus.delete_queue(victim.reply_queue)


async def test_unclaimed_results_older_than_the_age_limit_are_dropped() -> None:
    async with MemoryBus() as bus, ReplyRouter(bus, max_unclaimed_age_s=0.2) as router:
        old = ExecutionResult.success(uuid.uuid4(), "old")
        await bus.publish(encode_result(old, reply_to=router.queue))
        await bus.join(router.queue)
        assert router.unclaimed == 1
        await asyncio.sleep(0.3)
        new = ExecutionResult.success(uuid.uuid4(), "new")
        await bus.publish(encode_result(new, reply_to=router.queue))
        await bus.join(router.queue)
        assert router.unclaimed == 1  # the old one aged out when the new one came
        assert router.expect(new.task_id).done()
        assert not router.expect(old.task_id).done()
