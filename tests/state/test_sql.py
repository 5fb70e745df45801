"""SqlStore's group commit, on SQLite and PostgreSQL: concurrent claims (and completions) share statements,
and each caller still gets its own outcome; a batch that fails fails only its own callers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID, uuid4

import pytest

from relaybus.exceptions import UsageError
from relaybus.messages import ExecutionResult
from relaybus.state import ClaimOutcome, StateStore, StoreUnavailable
from relaybus.state.session import Session

from .conftest import Backend

LEASE = 30.0


class Counter:
    """Counts what ``store`` asks of its database: connections used (a transaction, or statements on
    their own) and statements."""

    def __init__(self, store: Any) -> None:
        self.sessions = 0
        self.statements = 0
        inner = store._session

        @asynccontextmanager
        async def counted(*, transaction: bool) -> AsyncIterator[Session]:
            self.sessions += 1
            async with inner(transaction=transaction) as session:
                yield _Counted(session, self)

        store._session = counted

    def reset(self) -> None:
        self.sessions = self.statements = 0


class _Counted:
    def __init__(self, session: Session, counter: Counter) -> None:
        self._session = session
        self._counter = counter

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._session, name)

        async def call(*args: Any) -> Any:
            self._counter.statements += 1
            return await method(*args)

        return call


def ok(task_id: UUID, output: object = "done") -> ExecutionResult:
    return ExecutionResult.success(task_id, output)


async def test_200_concurrent_first_claims_are_one_statement_each_acquired(store: StateStore) -> None:
    counter = Counter(store)
    ids = [uuid4() for _ in range(200)]
    claims = await asyncio.gather(*(store.claim(i, worker="w1", lease_s=LEASE, digest="d") for i in ids))
    assert [claim.task_id for claim in claims] == ids
    assert all(claim.outcome is ClaimOutcome.ACQUIRED and claim.attempt == 1 for claim in claims)
    assert all(claim.holder == "w1" and claim.expires_at is not None for claim in claims)
    assert (counter.sessions, counter.statements) == (1, 1)  # one at a time: 200 and 200
    again = await store.claim(ids[7], worker="w2", lease_s=LEASE, digest="d")
    assert again.outcome is ClaimOutcome.HELD
    assert again.holder == "w1"


async def test_more_concurrent_claims_than_a_batch_holds_take_a_statement_per_256(store: StateStore) -> None:
    counter = Counter(store)
    ids = [uuid4() for _ in range(600)]
    claims = await asyncio.gather(*(store.claim(i, worker="w1", lease_s=LEASE, digest="d") for i in ids))
    assert all(claim.acquired for claim in claims)
    assert counter.statements == 3


async def test_one_batch_of_claims_answers_each_its_own_acquired_done_held_mismatch_taken_over(
    store: StateStore, poll
) -> None:
    done, held, other_body, expired, new = (uuid4() for _ in range(5))
    await store.claim(done, worker="w0", lease_s=LEASE, digest="d")
    await store.complete(done, "w0", ok(done, "stored"))
    await store.claim(held, worker="w0", lease_s=LEASE, digest="d")
    await store.claim(other_body, worker="w0", lease_s=LEASE, digest="first body")
    await store.claim(expired, worker="dead", lease_s=0.2, digest="d")
    await asyncio.sleep(0.3)
    counter = Counter(store)
    claims = await asyncio.gather(
        *(
            store.claim(i, worker="w1", lease_s=LEASE, digest="d")
            for i in (done, held, other_body, expired, new)
        ),
        store.claim(new, worker="w2", lease_s=LEASE, digest="d"),  # the same id twice: the next batch
    )
    by_outcome = [(claim.task_id, claim.outcome, claim.holder, claim.attempt) for claim in claims]
    assert by_outcome == [
        (done, ClaimOutcome.DONE, None, 0),
        (held, ClaimOutcome.HELD, "w0", 1),
        (other_body, ClaimOutcome.MISMATCH, "w0", 0),
        (expired, ClaimOutcome.ACQUIRED, "w1", 2),
        (new, ClaimOutcome.ACQUIRED, "w1", 1),
        (new, ClaimOutcome.HELD, "w1", 1),
    ]
    assert claims[0].result is not None
    assert claims[0].result.output == "stored"
    # Each batch: one statement of first claims, then one transaction for the ids it found known (batch 1:
    # four of them; batch 2: the repeated id). One claim at a time: 11.
    assert counter.sessions == 4


async def test_200_concurrent_completions_are_one_transaction_each_stored(store: StateStore) -> None:
    ids = [uuid4() for _ in range(200)]
    await asyncio.gather(*(store.claim(i, worker="w1", lease_s=LEASE, digest="d") for i in ids))
    counter = Counter(store)
    completions = await asyncio.gather(*(store.complete(i, "w1", ok(i, str(i))) for i in ids))
    assert all(completion.stored for completion in completions)
    assert [completion.result.output for completion in completions] == [str(i) for i in ids]
    assert counter.sessions == 1
    stored = await asyncio.gather(*(store.result(i) for i in ids))
    assert [result.output for result in stored if result is not None] == [str(i) for i in ids]
    claims = await asyncio.gather(*(store.claim(i, worker="w2", lease_s=LEASE, digest="d") for i in ids))
    assert {claim.outcome for claim in claims} == {ClaimOutcome.DONE}


async def test_one_batch_of_completions_answers_each_its_own_stored_kept_lost_lease_never_claimed(
    store: StateStore,
) -> None:
    fresh, known, taken, unclaimed = (uuid4() for _ in range(4))
    for task_id in (fresh, known):
        await store.claim(task_id, worker="w1", lease_s=LEASE, digest="d")
    await store.complete(known, "w0", ok(known, "first"))
    await store.claim(taken, worker="w1", lease_s=0.2, digest="d")
    await asyncio.sleep(0.3)
    assert (await store.claim(taken, worker="w2", lease_s=LEASE, digest="d")).acquired
    answers = await asyncio.gather(
        store.complete(fresh, "w1", ok(fresh, "fresh")),
        store.complete(known, "w1", ok(known, "late")),
        store.complete(taken, "w1", ok(taken, "after losing the lease")),
        store.complete(unclaimed, "w1", ok(unclaimed)),
        return_exceptions=True,
    )
    assert (answers[0].stored, answers[0].result.output) == (True, "fresh")
    assert (answers[1].stored, answers[1].result.output) == (False, "first")
    assert (answers[2].stored, answers[2].result.output) == (True, "after losing the lease")
    assert isinstance(answers[3], UsageError)
    assert "never claimed" in str(answers[3])
    assert await store.result(unclaimed) is None
    assert not await store.renew(taken, "w2", LEASE), "the stored result ended the claim"


async def test_a_batch_that_fails_fails_only_its_callers(store: StateStore, monkeypatch) -> None:
    inner = store._first_claims
    entered = asyncio.Event()
    release = asyncio.Event()

    async def first_batch_fails(session: Session, rows: list[Any]) -> list[Any]:
        if not entered.is_set():
            entered.set()
            await release.wait()
            raise StoreUnavailable("the store went away")
        return await inner(session, rows)

    monkeypatch.setattr(store, "_first_claims", first_batch_fails)
    failing = [uuid4() for _ in range(10)]
    calls = [asyncio.ensure_future(store.claim(i, worker="w1", lease_s=LEASE, digest="d")) for i in failing]
    await entered.wait()
    later = [uuid4() for _ in range(10)]  # made while the first batch runs: the next batch
    more = [asyncio.ensure_future(store.claim(i, worker="w1", lease_s=LEASE, digest="d")) for i in later]
    release.set()
    first = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(answer, StoreUnavailable) for answer in first)
    assert all(claim.acquired for claim in await asyncio.gather(*more))
    retried = await store.claim(failing[0], worker="w1", lease_s=LEASE, digest="d")
    assert (retried.outcome, retried.attempt) == (ClaimOutcome.ACQUIRED, 1), "nothing of it was stored"


async def test_close_waits_for_the_batch_that_runs(backend: Backend) -> None:
    store = backend.store()
    await store.open()
    ids = [uuid4() for _ in range(50)]
    calls = [asyncio.ensure_future(store.claim(i, worker="w1", lease_s=LEASE, digest="d")) for i in ids]
    await asyncio.sleep(0)  # queued; the batch starts next
    await store.close()
    assert all(call.done() and call.result().acquired for call in calls)
    with pytest.raises(UsageError, match="not open"):
        await store.claim(uuid4(), worker="w1", lease_s=LEASE, digest="d")
