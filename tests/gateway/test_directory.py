"""AgentDirectory: the live agents, from heartbeats, forgotten when their workers stop or go quiet."""

from __future__ import annotations

import asyncio

from relaybus.agents import AgentWorker
from relaybus.bus.codec import encode_heartbeat
from relaybus.bus.connect import connect
from relaybus.gateway import AgentDirectory
from relaybus.messages import WorkerHeartbeat

from .conftest import EchoAgent
from .test_tasks import Clock


async def test_a_new_directory_knows_a_running_worker_at_once_and_forgets_it_when_it_stops() -> None:
    bus = await connect("memory://")
    agent = EchoAgent()
    worker = AgentWorker(bus, [agent], heartbeat_interval_s=60, worker_id="host:1")
    await worker.start()
    async with AgentDirectory(bus) as directory:
        # the worker beats only every 60 s: the directory's ping made it answer now
        assert await directory.wait_for_agent(agent.name, 5)
        [beat] = directory.agents()[agent.name]
        assert beat.worker == "host:1"
        await worker.stop()
        async with asyncio.timeout(5):
            while directory.agents():
                await asyncio.sleep(0.01)
    await bus.close()


async def test_a_worker_not_heard_from_for_three_intervals_is_presumed_dead() -> None:
    bus = await connect("memory://")
    clock = Clock()
    async with AgentDirectory(bus, clock=clock) as directory:
        beat = WorkerHeartbeat(
            worker="w:1", host="w", pid=1, agents=("a", "b"), in_flight=0, capacity=4, interval_s=5
        )
        await bus.publish(encode_heartbeat(beat))
        await bus.publish(encode_heartbeat(beat.model_copy(update={"worker": "w:2", "agents": ("b",)})))
        assert await directory.wait_for_agent("b", 5)
        async with asyncio.timeout(5):
            while len(directory.workers()) < 2:
                await asyncio.sleep(0.01)
        assert {name: [h.worker for h in hosts] for name, hosts in directory.agents().items()} == {
            "a": ["w:1"],
            "b": ["w:1", "w:2"],
        }
        clock.now += 15
        assert len(directory.workers()) == 2
        clock.now += 0.1
        assert directory.workers() == []
    await bus.close()


async def test_a_malformed_heartbeat_is_ignored() -> None:
    from relaybus.bus.base import OutgoingMessage
    from relaybus.bus.codec import HEARTBEAT_ROUTING_KEY

    bus = await connect("memory://")
    async with AgentDirectory(bus) as directory:
        await bus.publish(OutgoingMessage(body=b'{"worker": 1}', routing_key=HEARTBEAT_ROUTING_KEY))
        assert not await directory.wait_for_agent("a", 0.2)
        assert directory.workers() == []
    await bus.close()
