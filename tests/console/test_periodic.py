"""``Periodic`` runs its work every interval and goes on after a RelaybusError; ``QueueWatch`` keeps the
latest figures of the queues its names function gives, for pages to read without waiting."""

from __future__ import annotations

import asyncio

from relaybus.console.periodic import Periodic
from relaybus.console.queues import QueueStats, QueueWatch
from relaybus.exceptions import BusError
from tests.eventually import eventually


async def test_work_runs_again_after_a_relaybus_error_and_stops_when_closed() -> None:
    calls: list[int] = []

    async def work() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise BusError("the broker is away")

    loop = Periodic("test", work, 0.01)
    loop.start()
    await eventually(lambda: len(calls) >= 3, what="three rounds")
    await loop.close()
    seen = len(calls)
    await loop.close()  # idempotent
    assert len(calls) == seen


async def test_close_stops_a_loop_whose_work_lost_the_cancellation() -> None:
    # What a library may do with a cancellation (aiormq turns a closing channel's into an error of its own;
    # Python 3.11's wait_for drops one that comes with a result): the work ends normally and the loop goes on.
    calls: list[int] = []
    lost: list[int] = []

    async def loses_the_first_cancellation() -> None:
        calls.append(len(calls))
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if lost:
                raise
            lost.append(1)
            asyncio.current_task().uncancel()  # type: ignore[union-attr]

    loop = Periodic("losing", loses_the_first_cancellation, 0.01)
    loop.start()
    await eventually(lambda: bool(calls), what="the first round")
    await loop.close()  # before: waited on the next round, whose sleep(10) got no cancellation
    assert lost == [1]
    assert calls == [0]  # the round that lost its cancellation was the last
    await asyncio.sleep(0.05)
    assert calls == [0]


class FakeProbe:
    def __init__(self) -> None:
        self.asked: list[str] = []
        self.closed = False

    async def stats(self, queue: str) -> QueueStats | None:
        self.asked.append(queue)
        return None if queue == "gone" else QueueStats(messages=len(queue), consumers=1)

    async def close(self) -> None:
        self.closed = True


async def test_the_watch_keeps_the_latest_figures_of_the_queues_named() -> None:
    probe = FakeProbe()
    names = ["a.queue", "gone", "a.queue"]
    watch = QueueWatch(probe, lambda: names, interval_s=60)
    assert watch.stats("a.queue") is None  # nothing read yet: the page shows "-"
    await watch.refresh()
    assert probe.asked == ["a.queue", "gone"]  # each once
    assert watch.stats("a.queue") == QueueStats(messages=7, consumers=1)
    assert watch.stats("gone") is None
    names[:] = ["other"]
    await watch.refresh()
    assert watch.stats("a.queue") is None  # a queue no longer named is forgotten
    await watch.close()
    assert probe.closed
