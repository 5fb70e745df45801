"""The worker's control side: its heartbeat loop stops when the worker does, even when a beat loses the
cancellation (a library that turns it into an error of its own, Python 3.11's wait_for with a result)."""

from __future__ import annotations

import asyncio

from relaybus.agents import AgentWorker
from relaybus.bus.base import OutgoingMessage
from relaybus.bus.codec import HEARTBEAT_ROUTING_KEY
from relaybus.bus.memory import MemoryBus
from relaybus.testing import FakeExecutor
from tests.agents import sample_agents as sa
from tests.cancellation import finishes, lose_the_cancellation
from tests.eventually import eventually


class LosesACancellation(MemoryBus):
    """Its second heartbeat publish waits, and takes the first cancellation it gets for an error."""

    def __init__(self) -> None:
        super().__init__()
        self.beats = 0
        self.lost = 0

    async def publish(self, message: OutgoingMessage) -> None:
        if message.routing_key == HEARTBEAT_ROUTING_KEY:
            self.beats += 1
            if self.beats == 2:
                self.lost += 1
                await lose_the_cancellation(RuntimeError("the channel closed"))
        await super().publish(message)


async def test_the_heartbeats_stop_with_the_worker_though_a_beat_lost_its_cancellation() -> None:
    async with LosesACancellation() as bus:
        worker = AgentWorker(bus, [sa.Echo()], executor=FakeExecutor(), heartbeat_interval_s=0.01)
        await worker.__aenter__()
        await eventually(lambda: bus.beats >= 2, what="the second heartbeat under way")
        assert await finishes(worker.__aexit__(None, None, None))  # before: it waited for its heartbeats
        assert bus.lost == 1
        assert bus.beats == 2  # the beat that lost its cancellation was the last (before: one every 10 ms)
        await asyncio.sleep(0.05)
        assert bus.beats == 2
