"""A forged result for a pending task, against a real RabbitMQ: refused under per-agent users or signing.

The attacker may publish on the bus (it knows the caller's reply queue: it is in every task's
``reply_to``). While the real task runs (its agent sleeps 1.5 s), it writes a SUCCESS for the task's id,
naming the real agent, into the caller's reply queue. Without authentication that forged result would win
and the real one would be dropped as a duplicate. Here:

- per-agent RabbitMQ users (created for the test on a vhost of its own, deleted afterwards): the caller
  maps agent ``victim`` to the user its worker logs in as; the forged result, published by the attacker's
  user, is dead-lettered with the reason and the real one is taken. The attacker cannot claim the victim's
  user either: RabbitMQ closes a channel that publishes with another ``user_id``.
- signing (``SignedBus``, a key shared by caller and worker): a forged result without a signature, or
  signed with another key, is refused, the real one taken; a worker that requires signed tasks refuses an
  unsigned task without running it.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from typing import Any

import aio_pika
import pytest

from relaybus.agents import Agent, AgentContext, AgentWorker
from relaybus.bus.amqp import AmqpBus
from relaybus.bus.base import ERROR_HEADER, Bus, OutgoingMessage
from relaybus.bus.codec import encode_result, encode_task
from relaybus.bus.signing import SIGNATURE_HEADER, SignedBus, SigningKey
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus
from relaybus.orchestrator import ProjectOrchestrator
from relaybus.testing import FakeExecutor
from tests.bus.amqp_support import take_dead_letters
from tests.eventually import eventually
from tests.reliability.users import Users, users

pytestmark = [pytest.mark.integration]
__all__ = ["users"]  # the fixture


class Slow(Agent):
    """Agent ``victim``: answers ``{"ran": "victim"}`` after 1.5 s; keeps the ids it ran."""

    name = "victim"
    topics = ("forge.victim",)

    def __init__(self) -> None:
        self.ran: list[uuid.UUID] = []

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        self.ran.append(task.id)
        await asyncio.sleep(1.5)
        return {"ran": "victim"}


def forged(task: AgentTask, reply_queue: str) -> OutgoingMessage:
    """The attacker's SUCCESS for ``task``, naming the real agent, as relaybus would encode it."""
    result = ExecutionResult.success(task.id, {"ran": "attacker"}, agent="victim")
    return encode_result(result, reply_to=reply_queue)


async def run_with_forgery(
    caller: ProjectOrchestrator, victim: Slow, attacker: Bus, task: AgentTask
) -> ExecutionResult:
    """Start ``task``; once the victim runs it, publish the forged result; return what the caller gets."""
    call = asyncio.ensure_future(caller.execute_task(task))
    await eventually(lambda: task.id in victim.ran, timeout=20)
    await attacker.publish(forged(task, caller.reply_queue))
    return await asyncio.wait_for(call, 20)


async def test_a_forged_result_from_another_user_is_refused_and_the_real_one_taken(users: Users) -> None:
    victim = Slow()
    async with (
        AmqpBus(users.worker) as worker_bus,
        AmqpBus(users.caller) as caller_bus,
        AmqpBus(users.attacker) as attacker_bus,
    ):
        async with (
            AgentWorker(worker_bus, [victim], executor=FakeExecutor(), heartbeat_interval_s=60),
            ProjectOrchestrator(caller_bus, result_publishers={"victim": users.worker_user}) as caller,
        ):
            task = AgentTask(topic="forge.victim", prompt="real work")
            result = await run_with_forgery(caller, victim, attacker_bus, task)
            assert result.status is ExecutionStatus.SUCCESS
            assert result.output == {"ran": "victim"}
            assert caller._router.refused == 1
            dead = await take_dead_letters(caller_bus, [f"result-{task.id}"], timeout=10)
        reason = str(dead[f"result-{task.id}"].headers[ERROR_HEADER])
        assert "published by user 'relaybus-wt-sec-attacker-" in reason
        assert users.worker_user in reason


async def test_results_of_an_agent_not_in_the_map_are_refused(users: Users) -> None:
    victim = Slow()
    publishers = {"someone-else": users.worker_user}
    async with (
        AmqpBus(users.worker) as worker_bus,
        AmqpBus(users.caller) as caller_bus,
        AgentWorker(worker_bus, [victim], executor=FakeExecutor(), heartbeat_interval_s=60),
        ProjectOrchestrator(caller_bus, result_publishers=publishers) as caller,
    ):
        task = AgentTask(topic="forge.victim", prompt="real work", timeout_s=4)
        result = await caller.execute_task(task)
    assert result.status is ExecutionStatus.TIMEOUT  # the only result came from an unmapped agent
    assert victim.ran == [task.id]


async def test_rabbitmq_refuses_a_user_id_that_is_not_the_publishers_login(users: Users) -> None:
    connection = await aio_pika.connect(users.attacker)
    try:
        channel = await connection.channel(publisher_confirms=True)
        with pytest.raises(aio_pika.exceptions.ChannelClosed, match="user_id"):
            await channel.default_exchange.publish(
                aio_pika.Message(b"{}", user_id=users.worker_user), routing_key="relaybus.reply.anything"
            )
    finally:
        await connection.close()


@pytest.fixture
def key() -> SigningKey:
    return SigningKey(secrets.token_bytes(32))


@pytest.mark.parametrize("attacker_key", [None, "another key of 32 bytes, not ours"])
async def test_a_forged_result_without_the_key_is_refused_and_the_real_one_taken(
    amqp_vhost_url: str, key: SigningKey, attacker_key: str | None
) -> None:
    victim = Slow()
    async with AmqpBus(amqp_vhost_url) as raw:
        worker_bus, caller_bus = SignedBus(raw, key), SignedBus(raw, key)
        attacker: Bus = raw if attacker_key is None else SignedBus(raw, SigningKey(attacker_key))
        async with (
            AgentWorker(worker_bus, [victim], executor=FakeExecutor(), heartbeat_interval_s=60),
            ProjectOrchestrator(caller_bus) as caller,
        ):
            task = AgentTask(topic="forge.victim", prompt="real work")
            result = await run_with_forgery(caller, victim, attacker, task)
        assert result.status is ExecutionStatus.SUCCESS
        assert result.output == {"ran": "victim"}
        dead = await take_dead_letters(raw, [f"result-{task.id}"], timeout=10)
    reason = str(dead[f"result-{task.id}"].headers[ERROR_HEADER])
    assert ("no relaybus-signature" if attacker_key is None else "does not match its content") in reason
    assert caller_bus.refused == 1


async def test_a_worker_that_requires_signed_tasks_refuses_an_unsigned_one(
    amqp_vhost_url: str, key: SigningKey
) -> None:
    victim = Slow()
    async with (
        AmqpBus(amqp_vhost_url) as raw,
        AgentWorker(SignedBus(raw, key), [victim], executor=FakeExecutor(), heartbeat_interval_s=60),
    ):
        unsigned = AgentTask(topic="forge.victim", prompt="unsigned")
        await raw.publish(encode_task(unsigned, reply_to=None))
        dead = await take_dead_letters(raw, [str(unsigned.id)], timeout=10)
        async with ProjectOrchestrator(SignedBus(raw, key)) as caller:
            signed = await caller.execute_task(AgentTask(topic="forge.victim", prompt="signed"))
    assert SIGNATURE_HEADER in str(dead[str(unsigned.id)].headers[ERROR_HEADER])
    assert signed.status is ExecutionStatus.SUCCESS
    assert victim.ran == [signed.task_id]  # the unsigned task never ran


async def test_a_worker_with_verify_off_takes_unsigned_tasks_and_signs_its_results(
    amqp_vhost_url: str, key: SigningKey
) -> None:
    victim = Slow()
    async with (
        AmqpBus(amqp_vhost_url) as raw,
        AgentWorker(
            SignedBus(raw, key, verify=False), [victim], executor=FakeExecutor(), heartbeat_interval_s=60
        ),
        ProjectOrchestrator(SignedBus(raw, key)) as caller,
    ):
        task = AgentTask(topic="forge.victim", prompt="from an unsigned caller")
        await raw.publish(encode_task(task, reply_to=caller.reply_queue))
        result = await asyncio.wait_for(caller._router.expect(task.id), 20)
    assert result.status is ExecutionStatus.SUCCESS  # the signed result was accepted by the checking caller
