"""``eventually()`` returns once a condition holds, and fails after its timeout saying what it awaited."""

from __future__ import annotations

import asyncio

import pytest

from tests.eventually import eventually


async def test_returns_the_first_truthy_value_once_another_task_makes_it_true() -> None:
    box: list[str] = []

    async def fill() -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        box.append("ready")

    filler = asyncio.create_task(fill())
    assert await eventually(lambda: box and box[0]) == "ready"
    await filler


async def test_an_async_predicate_is_awaited() -> None:
    calls = 0

    async def third_time() -> bool:
        nonlocal calls
        calls += 1
        return calls >= 3

    assert await eventually(third_time) is True
    assert calls == 3


async def test_an_assertion_in_the_predicate_means_not_yet() -> None:
    calls = 0

    def check() -> bool:
        nonlocal calls
        calls += 1
        assert calls >= 2, "first call"
        return True

    assert await eventually(check)
    assert calls == 2


async def test_a_condition_that_never_holds_fails_naming_it_and_its_last_value() -> None:
    with pytest.raises(AssertionError, match=r"not true within 0\.05s .*never_true.* \(last value: 0\)"):
        await eventually(lambda: 0, timeout=0.05, what="never_true")


async def test_a_failing_assertion_is_reported_with_its_own_message() -> None:
    def check() -> None:
        assert 1 == 2, "the counter stayed at 1"

    with pytest.raises(AssertionError, match="the counter stayed at 1"):
        await eventually(check, timeout=0.05)


async def test_the_default_description_is_the_predicate_source() -> None:
    door_open = False
    with pytest.raises(AssertionError, match=r"eventually\(lambda: door_open, timeout=0\.01\)"):
        await eventually(lambda: door_open, timeout=0.01)


async def test_other_tasks_run_between_polls() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    running = asyncio.create_task(ticker())
    try:
        await eventually(lambda: ticks >= 50)
    finally:
        running.cancel()
