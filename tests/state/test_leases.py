"""claim_or_wait waits out HELD and an unavailable store; LeaseKeeper keeps a lease and reports its loss."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID, uuid4

import pytest

from relaybus.exceptions import ConfigError
from relaybus.state import (
    Claim,
    ClaimOutcome,
    LeaseKeeper,
    StateStore,
    StoreUnavailable,
    claim_or_wait,
)
from relaybus.state import leases as leases_module
from tests.cancellation import finishes, lose_the_cancellation


class ScriptedStore:
    """Answers claim() and renew() from scripts (an exception in a script is raised); counts calls."""

    def __init__(self, claims: Sequence[Any] = (), renewals: Sequence[Any] = ()) -> None:
        self.claims = list(claims)
        self.renewals = list(renewals)
        self.claim_calls = 0
        self.renew_calls = 0

    async def claim(self, task_id: UUID, *, worker: str, lease_s: float, digest: str) -> Claim:
        self.claim_calls += 1
        return self._next(self.claims, task_id)

    async def renew(self, task_id: UUID, worker: str, lease_s: float) -> bool:
        self.renew_calls += 1
        return self._next(self.renewals, task_id) if self.renewals else True

    @staticmethod
    def _next(script: list[Any], task_id: UUID) -> Any:
        answer = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, ClaimOutcome):
            return Claim(task_id=task_id, outcome=answer, holder="other")
        return answer


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays claim_or_wait sleeps, recorded instead of slept."""
    recorded: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float) -> None:
        recorded.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(leases_module.asyncio, "sleep", fake_sleep)
    return recorded


async def claim(store: object, **options: Any) -> Claim:
    return await claim_or_wait(store, uuid4(), worker="w", lease_s=30, digest="d", **options)  # type: ignore[arg-type]


async def test_claim_or_wait_polls_while_held_and_returns_the_acquired_claim(sleeps: list[float]) -> None:
    store = ScriptedStore([ClaimOutcome.HELD, ClaimOutcome.HELD, ClaimOutcome.ACQUIRED])
    assert (await claim(store, poll_s=0.25)).outcome is ClaimOutcome.ACQUIRED
    assert store.claim_calls == 3
    assert sleeps == [0.25, 0.25]


@pytest.mark.parametrize("outcome", [ClaimOutcome.DONE, ClaimOutcome.MISMATCH, ClaimOutcome.ACQUIRED])
async def test_claim_or_wait_returns_any_other_answer_at_once(
    outcome: ClaimOutcome, sleeps: list[float]
) -> None:
    assert (await claim(ScriptedStore([outcome]))).outcome is outcome
    assert sleeps == []


async def test_a_store_that_is_down_is_retried_with_doubling_backoff_capped(sleeps: list[float]) -> None:
    down = StoreUnavailable("down")
    store = ScriptedStore([down] * 7 + [ClaimOutcome.HELD, ClaimOutcome.ACQUIRED])
    assert (await claim(store, poll_s=0.5)).acquired
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 0.5], "backoff, then the poll interval again"


async def test_after_the_timeout_the_held_claim_is_returned_or_the_outage_raised() -> None:
    held = await claim(ScriptedStore([ClaimOutcome.HELD]), poll_s=0.01, timeout_s=0.1)
    assert held.outcome is ClaimOutcome.HELD
    with pytest.raises(StoreUnavailable):
        await claim(ScriptedStore([StoreUnavailable("down")]), poll_s=0.01, timeout_s=0.1)
    with pytest.raises(ConfigError):
        await claim(ScriptedStore([ClaimOutcome.HELD]), poll_s=0)


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    for _ in range(int(timeout / 0.01)):
        if check():
            return True
        await asyncio.sleep(0.01)
    return check()


async def test_a_lease_keeper_renews_until_its_block_ends() -> None:
    store = ScriptedStore(renewals=[True])
    async with LeaseKeeper(store, uuid4(), worker="w", lease_s=0.06) as keeper:  # type: ignore[arg-type]
        assert keeper.interval_s == pytest.approx(0.02)
        assert await _until(lambda: keeper.renewals >= 3)
    calls = store.renew_calls
    await asyncio.sleep(0.1)
    assert store.renew_calls == calls, "no renewal after the block"
    assert not keeper.is_lost


async def test_a_lease_keeper_reports_a_lost_lease_and_rides_out_an_outage() -> None:
    store = ScriptedStore(renewals=[StoreUnavailable("down"), True, False])
    async with LeaseKeeper(store, uuid4(), worker="w", lease_s=0.03) as keeper:  # type: ignore[arg-type]
        await asyncio.wait_for(keeper.lost.wait(), timeout=10)
    assert keeper.is_lost
    assert (store.renew_calls, keeper.renewals) == (3, 1)


async def test_a_lease_keeper_keeps_a_short_lease_held_on_a_real_store(store: StateStore) -> None:
    task_id = uuid4()
    await store.claim(task_id, worker="w1", lease_s=0.3, digest="d")
    async with LeaseKeeper(store, task_id, worker="w1", lease_s=0.3) as keeper:
        for _ in range(5):  # 1 s, three times the lease
            await asyncio.sleep(0.2)
            other = await store.claim(task_id, worker="w2", lease_s=30, digest="d")
            assert other.outcome is ClaimOutcome.HELD
        assert keeper.renewals >= 2
    assert not keeper.is_lost


async def test_a_lease_keeper_stops_though_a_renewal_lost_its_cancellation() -> None:
    class LosesACancellation:
        """Its second renewal waits, and takes the first cancellation it gets for the store being away."""

        def __init__(self) -> None:
            self.renew_calls = 0
            self.lost = 0

        async def renew(self, task_id: object, worker: str, lease_s: float) -> bool:
            self.renew_calls += 1
            if self.renew_calls == 2:
                self.lost += 1
                await lose_the_cancellation(StoreUnavailable("the connection went away"))
            return True

    store = LosesACancellation()
    keeper = LeaseKeeper(store, uuid4(), worker="w", lease_s=0.03)  # type: ignore[arg-type]
    await keeper.__aenter__()
    assert await _until(lambda: store.renew_calls == 2)
    assert await finishes(keeper.__aexit__(None, None, None))  # before: it waited for the renewals for ever
    assert (store.lost, store.renew_calls) == (1, 2)  # the renewal that lost it was the last
