"""Batcher: the calls of a loop turn run as one batch, bounded, a key once per batch, each its own answer."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from relaybus.exceptions import ConfigError
from relaybus.state.batch import Batcher, own_instance


class Recorder:
    """A batch runner that records its batches; an item ``"bad"`` gets its own exception."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate: asyncio.Event | None = None

    async def run(self, items: list[str]) -> list[str | Exception]:
        self.batches.append(items)
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)
        return [ValueError(item) if item == "bad" else item.upper() for item in items]


async def test_the_calls_of_one_loop_turn_are_one_batch_each_with_its_own_answer() -> None:
    recorder = Recorder()
    batcher: Batcher[str, str] = Batcher(recorder.run)
    answers = await asyncio.gather(*(batcher.submit(n, f"t{n}") for n in range(100)))
    assert answers == [f"T{n}" for n in range(100)]
    assert [len(batch) for batch in recorder.batches] == [100]
    assert batcher.batches == 1


async def test_a_batch_is_bounded_and_calls_made_while_one_runs_make_the_next() -> None:
    recorder = Recorder()
    batcher: Batcher[str, str] = Batcher(recorder.run, max_size=256)
    recorder.gate = asyncio.Event()
    first = [asyncio.ensure_future(batcher.submit(n, f"a{n}")) for n in range(600)]
    await asyncio.sleep(0.01)  # the first batch runs (held at the gate); these queue behind it
    second = [asyncio.ensure_future(batcher.submit(n, f"b{n}")) for n in range(10)]
    recorder.gate.set()
    answers = await asyncio.gather(*first, *second)
    assert answers == [f"A{n}" for n in range(600)] + [f"B{n}" for n in range(10)]
    # 256 and 256 of the first calls, then the last 88 together with the 10 made meanwhile (other keys).
    assert [len(batch) for batch in recorder.batches] == [256, 256, 88 + 10]


async def test_a_key_is_in_a_batch_once_and_its_next_call_waits_for_the_next_batch() -> None:
    recorder = Recorder()
    batcher: Batcher[str, str] = Batcher(recorder.run)
    answers = await asyncio.gather(
        batcher.submit("k", "x1"), batcher.submit("j", "y"), batcher.submit("k", "x2")
    )
    assert answers == ["X1", "Y", "X2"]
    assert recorder.batches == [["x1", "y"], ["x2"]]


async def test_an_item_s_exception_fails_only_its_caller() -> None:
    batcher: Batcher[str, str] = Batcher(Recorder().run)
    answers = await asyncio.gather(
        batcher.submit(1, "a"), batcher.submit(2, "bad"), batcher.submit(3, "c"), return_exceptions=True
    )
    assert answers[0] == "A"
    assert answers[2] == "C"
    assert isinstance(answers[1], ValueError)


async def test_a_failing_batch_fails_its_callers_only_and_the_next_batch_runs() -> None:
    gate = asyncio.Event()
    runs = 0

    async def run(items: list[str]) -> list[str | Exception]:
        nonlocal runs
        runs += 1
        if runs == 1:
            await gate.wait()
            raise ConnectionError("the database went away")
        return [item.upper() for item in items]

    batcher: Batcher[str, str] = Batcher(run)
    failing = [asyncio.ensure_future(batcher.submit(n, f"a{n}")) for n in range(5)]
    await asyncio.sleep(0.01)
    later = [asyncio.ensure_future(batcher.submit(n, f"b{n}")) for n in range(5)]
    gate.set()
    first = await asyncio.gather(*failing, return_exceptions=True)
    assert all(isinstance(answer, ConnectionError) for answer in first)
    assert [str(answer) for answer in first] == ["the database went away"] * 5
    assert len({id(answer) for answer in first}) == 5  # each caller its own, raised in its own traceback
    assert len({id(answer.__cause__) for answer in first}) == 1  # all caused by the batch's one failure
    assert await asyncio.gather(*later) == [f"B{n}" for n in range(5)]


async def test_a_caller_cancelled_before_its_batch_started_is_left_out() -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    batcher: Batcher[str, str] = Batcher(recorder.run)
    running = asyncio.ensure_future(batcher.submit(0, "first"))
    await asyncio.sleep(0.01)
    cancelled = asyncio.ensure_future(batcher.submit(1, "gone"))
    kept = asyncio.ensure_future(batcher.submit(2, "kept"))
    await asyncio.sleep(0)
    cancelled.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await cancelled
    recorder.gate.set()
    assert (await running, await kept) == ("FIRST", "KEPT")
    assert recorder.batches == [["first"], ["kept"]]
    await batcher.wait_idle()


async def test_wait_idle_returns_once_every_queued_batch_has_run() -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    batcher: Batcher[str, str] = Batcher(recorder.run, max_size=2)
    calls = [asyncio.ensure_future(batcher.submit(n, str(n))) for n in range(5)]
    await asyncio.sleep(0)
    idle = asyncio.ensure_future(batcher.wait_idle())
    await asyncio.sleep(0.01)
    assert not idle.done()
    recorder.gate.set()
    await idle
    assert all(call.done() for call in calls)
    assert len(recorder.batches) == 3


def test_a_batch_holds_at_least_one_call() -> None:
    with pytest.raises(ConfigError, match="max_size"):
        Batcher(Recorder().run, max_size=0)


class Renamed(Exception):
    """An exception whose constructor rewrites its argument: a copy would say something else."""

    def __init__(self, url: str) -> None:
        super().__init__(f"cannot reach {url}")


def test_an_exception_that_cannot_be_copied_faithfully_is_shared_as_it_is() -> None:
    shared = Renamed("db")
    assert own_instance(shared) is shared
    plain = ConnectionError("gone")
    mine = own_instance(plain)
    assert mine is not plain
    assert str(mine) == "gone"
    assert mine.__cause__ is plain
