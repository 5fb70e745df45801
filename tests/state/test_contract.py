"""The state store contract: every test runs on SqliteStore and on PostgresStore (a real PostgreSQL).

Read top to bottom, this is what a worker, an agent loop and an orchestrator may rely on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from relaybus.exceptions import ConfigError, UsageError
from relaybus.messages import ExecutionResult, ExecutionStatus, Usage
from relaybus.state import (
    LATEST_VERSION,
    ClaimOutcome,
    PlannedTask,
    SchemaTooNew,
    StateStore,
    StoreUnavailable,
    TaskEventKind,
    TaskState,
    TaskUpdate,
    store_from_url,
)
from relaybus.state.migrations import MIGRATIONS, Migration, migrate

from .conftest import Backend

LEASE = 30.0


def ok(task_id: UUID, output: object = "done", **fields: object) -> ExecutionResult:
    return ExecutionResult.success(task_id, output, **fields)


# -- claims ----------------------------------------------------------------------------------------------
async def test_the_first_claim_of_an_id_is_acquired_with_attempt_1(store: StateStore) -> None:
    task_id = uuid4()
    claim = await store.claim(task_id, worker="w1", lease_s=LEASE, digest="d")
    assert claim.outcome is ClaimOutcome.ACQUIRED
    assert claim.acquired
    assert (claim.task_id, claim.holder, claim.attempt) == (task_id, "w1", 1)
    assert claim.expires_at is not None
    assert claim.result is None


async def test_a_claim_while_another_lease_is_live_is_held_and_names_the_holder(store: StateStore) -> None:
    task_id = uuid4()
    first = await store.claim(task_id, worker="w1", lease_s=LEASE, digest="d")
    held = await store.claim(task_id, worker="w2", lease_s=LEASE, digest="d")
    assert held.outcome is ClaimOutcome.HELD
    assert not held.acquired
    assert (held.holder, held.attempt, held.expires_at) == ("w1", 1, first.expires_at)


async def test_the_same_worker_name_claiming_again_waits_too(store: StateStore) -> None:
    # A second copy inside the same worker, or a restarted worker with the same name, must not run it twice.
    task_id = uuid4()
    await store.claim(task_id, worker="w1", lease_s=LEASE, digest="d")
    again = await store.claim(task_id, worker="w1", lease_s=LEASE, digest="d")
    assert (again.outcome, again.holder) == (ClaimOutcome.HELD, "w1")


async def test_a_known_id_with_another_digest_is_a_mismatch_running_or_done(store: StateStore) -> None:
    task_id = uuid4()
    await store.claim(task_id, worker="w1", lease_s=LEASE, digest="body-a")
    assert (
        await store.claim(task_id, worker="w2", lease_s=LEASE, digest="body-b")
    ).outcome is ClaimOutcome.MISMATCH
    await store.complete(task_id, "w1", ok(task_id))
    after = await store.claim(task_id, worker="w2", lease_s=LEASE, digest="body-b")
    assert after.outcome is ClaimOutcome.MISMATCH
    assert after.result is None


async def test_a_claim_after_complete_is_done_with_the_stored_result(store: StateStore) -> None:
    task_id = uuid4()
    await store.claim(task_id, worker="w1", lease_s=LEASE, digest="d")
    result = ok(task_id, {"answer": 42}, worker="w1", usage=Usage(prompt_tokens=3, completion_tokens=4))
    completion = await store.complete(task_id, "w1", result)
    assert completion.stored
    assert completion.result == result
    done = await store.claim(task_id, worker="w2", lease_s=LEASE, digest="d")
    assert done.outcome is ClaimOutcome.DONE
    assert done.result == result
    assert await store.result(task_id) == result


async def test_an_expired_lease_is_taken_over_with_the_next_attempt(store: StateStore, poll) -> None:
    task_id = uuid4()
    await store.claim(task_id, worker="dead", lease_s=0.2, digest="d")

    async def taken() -> object:
        claim = await store.claim(task_id, worker="w2", lease_s=LEASE, digest="d")
        return claim if claim.acquired else None

    claim = await poll(taken)
    assert claim is not None, "the lease never expired"
    assert (claim.holder, claim.attempt) == ("w2", 2)
    assert not await store.renew(task_id, "dead", LEASE), "the dead worker's lease is gone"
    assert (await store.claim(task_id, worker="w3", lease_s=LEASE, digest="d")).holder == "w2"


async def test_renew_keeps_a_lease_alive_and_is_false_once_it_is_lost(store: StateStore) -> None:
    task_id = uuid4()
    await store.claim(task_id, worker="w1", lease_s=0.5, digest="d")
    for _ in range(4):  # renewed for longer than the lease: never taken over
        assert await store.renew(task_id, "w1", 0.5)
        await asyncio.sleep(0.2)
        assert (
            await store.claim(task_id, worker="w2", lease_s=LEASE, digest="d")
        ).outcome is ClaimOutcome.HELD
    assert not await store.renew(task_id, "w2", LEASE), "only the holder renews"
    assert not await store.renew(uuid4(), "w1", LEASE), "nothing to renew for an unknown id"
    await store.complete(task_id, "w1", ok(task_id))
    assert not await store.renew(task_id, "w1", LEASE), "a completed task has no lease"


async def test_release_lets_the_next_claim_take_over_at_once(store: StateStore) -> None:
    task_id = uuid4()
    await store.claim(task_id, worker="w1", lease_s=LEASE, digest="d")
    assert not await store.release(task_id, "w2"), "only the holder releases"
    assert await store.release(task_id, "w1")
    assert not await store.release(task_id, "w1"), "released once"
    claim = await store.claim(task_id, worker="w2", lease_s=LEASE, digest="d")
    assert (claim.outcome, claim.attempt) == (ClaimOutcome.ACQUIRED, 2)
    assert await store.result(task_id) is None


async def test_the_first_stored_result_wins_even_from_a_worker_whose_lease_was_taken_over(
    store: StateStore, poll
) -> None:
    task_id = uuid4()
    await store.claim(task_id, worker="slow", lease_s=0.2, digest="d")
    assert await poll(lambda: _acquired(store, task_id, "second"))
    # The slow worker finishes first after all: its work is done, so its result is the one kept ...
    first = await store.complete(task_id, "slow", ok(task_id, "from slow"))
    assert first.stored
    # ... the second learns it lost the lease, and its own result is ignored in favour of the stored one.
    assert not await store.renew(task_id, "second", LEASE)
    late = await store.complete(task_id, "second", ok(task_id, "from second"))
    assert not late.stored
    assert late.result.output == "from slow"
    assert (await store.result(task_id)).output == "from slow"


async def _acquired(store: StateStore, task_id: UUID, worker: str) -> bool:
    return (await store.claim(task_id, worker=worker, lease_s=LEASE, digest="d")).acquired


async def test_complete_refuses_an_unclaimed_id_or_another_tasks_result(store: StateStore) -> None:
    task_id = uuid4()
    with pytest.raises(UsageError, match="never claimed"):
        await store.complete(task_id, "w1", ok(task_id))
    await store.claim(task_id, worker="w1", lease_s=LEASE, digest="d")
    with pytest.raises(ConfigError, match="result of task"):
        await store.complete(task_id, "w1", ok(uuid4()))
    assert await store.result(task_id) is None
    assert await store.result(uuid4()) is None


async def test_a_corrupt_stored_result_is_not_served_and_the_task_runs_again(
    store: StateStore, backend: Backend
) -> None:
    task_id = uuid4()
    await store.claim(task_id, worker="w1", lease_s=LEASE, digest="d")
    await store.complete(task_id, "w1", ok(task_id))
    await backend.sql(
        "UPDATE relaybus_results SET result = ? WHERE task_id = ?", '{"task_id": ', str(task_id)
    )
    assert await store.result(task_id) is None
    claim = await store.claim(task_id, worker="w2", lease_s=LEASE, digest="d")
    assert (claim.outcome, claim.attempt) == (ClaimOutcome.ACQUIRED, 2)
    assert (await store.complete(task_id, "w2", ok(task_id, "again"))).stored


async def test_a_lease_is_positive_and_at_most_a_week(store: StateStore) -> None:
    for lease_s in [0, -1, float("nan"), 8 * 24 * 3600]:
        with pytest.raises(ConfigError, match="lease_s"):
            await store.claim(uuid4(), worker="w1", lease_s=lease_s, digest="d")
        with pytest.raises(ConfigError, match="lease_s"):
            await store.renew(uuid4(), "w1", lease_s)


# -- concurrency -----------------------------------------------------------------------------------------
async def test_50_concurrent_claimers_on_10_connections_give_one_winner(backend: Backend) -> None:
    stores = [backend.store() for _ in range(10)]
    for opened in stores:
        await opened.open()
    task_id = uuid4()
    claims = await asyncio.gather(
        *(stores[i % 10].claim(task_id, worker=f"w{i}", lease_s=LEASE, digest="d") for i in range(50))
    )
    outcomes = [claim.outcome for claim in claims]
    assert outcomes.count(ClaimOutcome.ACQUIRED) == 1
    assert outcomes.count(ClaimOutcome.HELD) == 49
    winner = next(claim.holder for claim in claims if claim.acquired)
    assert {claim.holder for claim in claims} == {winner}


async def test_50_concurrent_claimers_of_an_expired_lease_give_one_takeover(backend: Backend, poll) -> None:
    stores = [backend.store() for _ in range(10)]
    for opened in stores:
        await opened.open()
    task_id = uuid4()
    await stores[0].claim(task_id, worker="dead", lease_s=0.2, digest="d")
    await poll(lambda: _lease_expired(backend, task_id))
    claims = await asyncio.gather(
        *(stores[i % 10].claim(task_id, worker=f"w{i}", lease_s=LEASE, digest="d") for i in range(50))
    )
    taken = [claim for claim in claims if claim.acquired]
    assert len(taken) == 1
    assert taken[0].attempt == 2
    assert {claim.holder for claim in claims} == {taken[0].holder}


async def _lease_expired(backend: Backend, task_id: UUID) -> bool:
    # Read outside the stores: a claim would take the lease over itself.
    [row] = await backend.sql("SELECT expires_at FROM relaybus_claims WHERE task_id = ?", str(task_id))
    return row["expires_at"] < datetime.now(UTC).timestamp() - 0.05


async def test_claims_from_4_processes_acquire_each_id_exactly_once(backend: Backend) -> None:
    ids = [str(uuid4()) for _ in range(40)]
    async with backend.store():  # the schema exists before the processes race
        pass
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.state.claimers", backend.url, f"p{n}", *ids],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    try:
        for process in processes:
            assert await asyncio.to_thread(process.stdout.readline) == "ready\n"
        for process in processes:  # released together
            process.stdin.write("go\n")
            process.stdin.flush()
        acquired = [json.loads(await asyncio.to_thread(process.stdout.readline)) for process in processes]
    finally:
        for process in processes:
            process.stdin.close()
            await asyncio.to_thread(process.wait, 60)
    assert sorted(task_id for won in acquired for task_id in won) == sorted(ids)
    assert all(process.returncode == 0 for process in processes)


async def test_concurrent_completes_store_one_result(backend: Backend) -> None:
    stores = [backend.store() for _ in range(5)]
    for opened in stores:
        await opened.open()
    task_id = uuid4()
    await stores[0].claim(task_id, worker="w0", lease_s=LEASE, digest="d")
    completions = await asyncio.gather(
        *(opened.complete(task_id, f"w{i}", ok(task_id, i)) for i, opened in enumerate(stores))
    )
    assert sum(completion.stored for completion in completions) == 1
    assert len({completion.result.output for completion in completions}) == 1
    assert len(await backend.sql("SELECT task_id FROM relaybus_results")) == 1


async def test_calls_cancelled_at_any_point_leave_the_store_consistent(store: StateStore) -> None:
    ids = [uuid4() for _ in range(40)]
    for task_id in ids:
        await store.claim(task_id, worker="w1", lease_s=0.01, digest="d")  # expired at once: takeovers
    await asyncio.sleep(0.05)
    for n, task_id in enumerate(ids):  # cancelled after 0, 0.1, 0.2, ... ms, at one await or another
        call = asyncio.create_task(store.claim(task_id, worker="w2", lease_s=LEASE, digest="d"))
        await asyncio.sleep(n * 0.0001)
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call
    for task_id in ids:  # each cancelled takeover happened wholly or not at all
        claim = await store.claim(task_id, worker="w3", lease_s=LEASE, digest="d")
        assert (claim.holder, claim.attempt) in {("w2", 2), ("w3", 2)}, claim
    assert (await store.claim(uuid4(), worker="w3", lease_s=LEASE, digest="d")).acquired


# -- journal ---------------------------------------------------------------------------------------------
async def test_the_journal_returns_steps_in_step_order_with_their_data(store: StateStore) -> None:
    task_id = uuid4()
    for step, kind in [(2, "tool"), (0, "model"), (1, "tool")]:
        assert await store.journal_append(task_id, step, kind, {"step": step, "items": [1, None, "x"]})
    journal = await store.journal(task_id)
    assert journal.steps == [0, 1, 2]
    assert journal.skipped == ()
    assert [entry.kind for entry in journal] == ["model", "tool", "tool"]
    assert journal[2].data == {"step": 2, "items": [1, None, "x"]}
    assert journal[2].task_id == task_id
    assert await store.journal(uuid4()) == []


async def test_a_second_write_of_the_same_step_is_ignored(store: StateStore) -> None:
    task_id = uuid4()
    assert await store.journal_append(task_id, 0, "model", {"text": "first"})
    assert not await store.journal_append(task_id, 0, "model", {"text": "second"})
    assert [entry.data for entry in await store.journal(task_id)] == [{"text": "first"}]


async def test_a_corrupt_journal_entry_is_skipped_reported_and_can_be_recorded_again(
    store: StateStore, backend: Backend
) -> None:
    task_id = uuid4()
    for step in range(3):
        await store.journal_append(task_id, step, "model", {"n": step})
    await backend.sql("UPDATE relaybus_journal SET data = ? WHERE step = 1", "{not json")
    journal = await store.journal(task_id)
    assert journal.steps == [0, 2]
    assert journal.skipped == (1,)
    assert await store.journal_append(task_id, 1, "model", {"n": "re-run"}), "the re-run step is recorded"
    assert [entry.data for entry in await store.journal(task_id)] == [{"n": 0}, {"n": "re-run"}, {"n": 2}]


async def test_journal_data_must_be_json_and_steps_non_negative(store: StateStore) -> None:
    with pytest.raises(ConfigError, match="JSON"):
        await store.journal_append(uuid4(), 0, "model", {"x": float("nan")})
    with pytest.raises(ConfigError, match="step"):
        await store.journal_append(uuid4(), -1, "model", None)
    with pytest.raises(ConfigError, match="kind"):
        await store.journal_append(uuid4(), 0, "", None)


# -- run history -----------------------------------------------------------------------------------------
async def test_a_run_round_trips_with_statuses_timings_usage_cost_and_results(store: StateStore) -> None:
    a, b, c = uuid4(), uuid4(), uuid4()
    t0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    assert await store.record_run(
        "run-1",
        "release",
        [PlannedTask(a, "plan", (), "outline"), (b, "write", (a,)), PlannedTask(c, "x", (a, b))],
        started_at=t0,
    )
    await store.task_event("run-1", a, TaskEventKind.PUBLISHED, t0)
    await store.task_event("run-1", a, "started", t0 + timedelta(seconds=1), worker="w1", attempt=1)
    result_a = ok(a, "outline", worker="w1", usage=Usage(prompt_tokens=10, completion_tokens=5, requests=1))
    await store.task_event("run-1", a, "finished", t0 + timedelta(seconds=3), result=result_a, cost=0.25)
    await store.task_event("run-1", b, "published", t0 + timedelta(seconds=3))
    await store.task_event("run-1", b, "started", t0 + timedelta(seconds=4), worker="w1", attempt=1)
    await store.task_event("run-1", b, "started", t0 + timedelta(seconds=6), worker="w2", attempt=2)

    detail = await store.run("run-1")
    assert detail is not None
    assert (detail.run_id, detail.name, detail.started_at) == ("run-1", "release", t0)
    assert [task.task_id for task in detail.tasks] == [a, b, c], "plan order"
    first, second, third = detail.tasks
    assert (first.key, first.target, first.status, first.worker, first.attempts) == (
        "outline",
        "plan",
        TaskState.SUCCESS,
        "w1",
        1,
    )
    assert (first.published_at, first.started_at, first.finished_at) == (
        t0,
        t0 + timedelta(seconds=1),
        t0 + timedelta(seconds=3),
    )
    assert first.duration_s == 2.0
    assert first.cost == 0.25
    assert first.usage.total_tokens == 15
    assert first.result == result_a
    assert [event.kind for event in first.events] == ["published", "started", "finished"]
    assert (second.status, second.worker, second.attempts, second.depends_on) == (
        TaskState.RUNNING,
        "w2",
        2,
        (a,),
    )
    assert [(event.worker, event.attempt) for event in second.events[1:]] == [("w1", 1), ("w2", 2)]
    assert (third.status, third.result, third.events, third.depends_on) == (
        TaskState.PENDING,
        None,
        (),
        (a, b),
    )
    assert detail.statuses == {TaskState.SUCCESS: 1, TaskState.RUNNING: 1, TaskState.PENDING: 1}
    assert detail.finished_at is None
    assert detail.duration_s is None
    assert not detail.is_finished

    await store.task_event(
        "run-1", b, "finished", t0 + timedelta(seconds=8), result=ok(b, usage=Usage(prompt_tokens=1))
    )
    failed = ExecutionResult.failed(c, ExecutionStatus.TIMEOUT, "Timeout", "no worker")
    await store.task_event("run-1", c, "finished", t0 + timedelta(seconds=9), result=failed, cost=0.5)
    [summary] = await store.runs()
    assert summary.statuses == {TaskState.SUCCESS: 2, TaskState.TIMEOUT: 1}
    assert summary.task_count == 3
    assert summary.finished_at == t0 + timedelta(seconds=9)
    assert summary.duration_s == 9.0
    assert (summary.tokens, summary.usage.requests, summary.cost) == (16, 1, 0.75)
    assert await store.run("no-such-run") is None


async def test_runs_are_listed_newest_first_limited_and_by_name(store: StateStore) -> None:
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    for n, name in enumerate(["a", "b", "a", "b"]):
        await store.record_run(f"run-{n}", name, [(uuid4(), "t", ())], started_at=t0 + timedelta(minutes=n))
    assert [run.run_id for run in await store.runs()] == ["run-3", "run-2", "run-1", "run-0"]
    assert [run.run_id for run in await store.runs(2)] == ["run-3", "run-2"]
    assert [run.run_id for run in await store.runs(2, offset=1)] == ["run-2", "run-1"]
    assert [run.run_id for run in await store.runs(2, offset=3)] == ["run-0"]
    assert [run.run_id for run in await store.runs(1, name="a", offset=1)] == ["run-0"]
    assert [run.run_id for run in await store.runs(name="a")] == ["run-2", "run-0"]
    assert all(run.statuses == {TaskState.PENDING: 1} and run.cost is None for run in await store.runs())
    with pytest.raises(ConfigError):
        await store.runs(0)
    with pytest.raises(ConfigError):
        await store.runs(1, offset=-1)


async def test_recording_a_run_again_resumes_it_and_keeps_what_happened(store: StateStore) -> None:
    a, b = uuid4(), uuid4()
    assert await store.record_run("r", "plan", [(a, "t", ())])
    await store.task_event("r", a, "published")
    assert not await store.record_run("r", "plan", [(a, "t", ()), (b, "t", (a,))]), "known: resumed"
    detail = await store.run("r")
    assert [(task.task_id, task.status) for task in detail.tasks] == [
        (a, TaskState.PUBLISHED),
        (b, TaskState.PENDING),
    ]
    with pytest.raises(ConfigError, match="another id"):
        await store.record_run("r", "another-plan", [])


async def test_a_task_status_never_goes_back(store: StateStore) -> None:
    a = uuid4()
    await store.record_run("r", "plan", [(a, "t", ())])
    await store.task_event("r", a, "finished", result=ok(a))
    await store.task_event("r", a, "started", worker="late")  # arrives after the result
    await store.task_event("r", a, "published")
    [task] = (await store.run("r")).tasks
    assert task.status is TaskState.SUCCESS
    assert len(task.events) == 3


async def test_a_finished_event_without_a_result_uses_the_stored_one_which_is_kept_once(
    store: StateStore, backend: Backend
) -> None:
    a, b = uuid4(), uuid4()
    await store.record_run("r", "plan", [(a, "t", ()), (b, "t", ())])
    await store.claim(a, worker="w1", lease_s=LEASE, digest="d")
    await store.complete(a, "w1", ok(a, "from the worker"))
    await store.task_event("r", a, "finished")
    await store.task_event("r", a, "finished", result=ok(a, "a copy"))
    [task, _] = (await store.run("r")).tasks
    assert task.result.output == "from the worker"
    assert len(await backend.sql("SELECT task_id FROM relaybus_results")) == 1, "results are stored once"
    with pytest.raises(ConfigError, match="needs its result"):
        await store.task_event("r", b, "finished")


async def test_a_batch_of_events_is_recorded_in_order_all_or_none(store: StateStore) -> None:
    a, b = uuid4(), uuid4()
    await store.record_run("r", "plan", [(a, "t", ()), (b, "t", ())])
    await store.task_events(
        "r",
        [
            TaskUpdate(task_id=a, kind="published"),
            TaskUpdate(task_id=b, kind="published"),
            TaskUpdate(task_id=a, kind="started", worker="w1", attempt=1),
            TaskUpdate(task_id=a, kind="finished", result=ok(a), cost=0.1),
        ],
    )
    first, second = (await store.run("r")).tasks
    assert (first.status, first.worker, first.cost) == (TaskState.SUCCESS, "w1", 0.1)
    assert [event.kind for event in first.events] == ["published", "started", "finished"]
    assert second.status is TaskState.PUBLISHED
    with pytest.raises(UsageError):
        await store.task_events(
            "r", [TaskUpdate(task_id=b, kind="started"), TaskUpdate(task_id=uuid4(), kind="started")]
        )
    assert (await store.run("r")).tasks[1].status is TaskState.PUBLISHED, "the whole batch was rolled back"
    await store.task_events("r", [])


async def test_events_of_unknown_tasks_or_kinds_are_refused(store: StateStore) -> None:
    a = uuid4()
    await store.record_run("r", "plan", [(a, "t", ())])
    with pytest.raises(UsageError, match="record_run"):
        await store.task_event("r", uuid4(), "published")
    with pytest.raises(ConfigError, match="kind"):
        await store.task_event("r", a, "exploded")
    with pytest.raises(ConfigError, match="timezone"):
        await store.task_event("r", a, "published", datetime(2030, 1, 1))
    with pytest.raises(ConfigError, match="distinct"):
        await store.record_run("r2", "plan", [(a, "t", ()), (a, "t", ())])


# -- retention -------------------------------------------------------------------------------------------
async def _age(backend: Backend, days: float) -> None:
    """Make every row look ``days`` older."""
    shift = days * 86400
    for table, column in [
        ("relaybus_results", "stored_at"),
        ("relaybus_claims", "updated_at"),
        ("relaybus_claims", "expires_at"),
        ("relaybus_journal", "recorded_at"),
        ("relaybus_runs", "updated_at"),
        ("relaybus_task_events", "at"),
    ]:
        await backend.sql(f"UPDATE {table} SET {column} = {column} - ?", shift)


async def _fill(store: StateStore) -> UUID:
    done = uuid4()
    await store.claim(done, worker="w", lease_s=LEASE, digest="d")
    await store.complete(done, "w", ok(done))
    await store.journal_append(done, 0, "model", {})
    await store.journal_append(done, 1, "model", {})
    await store.record_run("r", "plan", [(done, "t", ())])
    await store.task_event("r", done, "published")
    return done


async def test_prune_removes_what_is_older_than_the_retention_and_keeps_live_leases(
    store: StateStore, backend: Backend
) -> None:
    done = await _fill(store)
    nothing = await store.prune()
    assert nothing.total == 0
    await _age(backend, 8)
    live = uuid4()
    await store.claim(live, worker="w", lease_s=LEASE, digest="d")
    await backend.sql(
        "UPDATE relaybus_claims SET updated_at = updated_at - ? WHERE task_id = ?", 8 * 86400, str(live)
    )
    report = await store.prune()
    assert (report.results, report.claims, report.journal_entries, report.runs) == (1, 1, 2, 1)
    assert report.cutoff < datetime.now(UTC) - timedelta(days=6)
    assert await store.result(done) is None
    assert await store.journal(done) == []
    assert await store.runs() == []
    held = await store.claim(live, worker="other", lease_s=LEASE, digest="d")
    assert held.outcome is ClaimOutcome.HELD, "a live lease is never pruned"


async def test_prune_older_than_overrides_the_retention(store: StateStore, backend: Backend) -> None:
    await _fill(store)
    await _age(backend, 2)
    assert (await store.prune(timedelta(days=3))).total == 0
    assert (await store.prune(timedelta(days=1))).results == 1


async def test_a_store_with_a_shorter_retention_prunes_when_it_opens(backend: Backend) -> None:
    async with backend.store() as first:
        done = await _fill(first)
    await _age(backend, 2)
    async with backend.store(retention=timedelta(days=1)) as second:
        assert second.retention == timedelta(days=1)
        assert await second.result(done) is None
        assert await second.runs() == []


# -- schema, life cycle, faults --------------------------------------------------------------------------
async def test_an_empty_database_is_migrated_to_the_latest_version_and_reopened_as_is(
    backend: Backend,
) -> None:
    assert [migration.version for migration in MIGRATIONS] == list(range(1, LATEST_VERSION + 1))
    task_id = uuid4()
    async with backend.store() as first:
        await first.claim(task_id, worker="w1", lease_s=LEASE, digest="d")
        await first.complete(task_id, "w1", ok(task_id, "kept"))
    assert await backend.sql("SELECT version FROM relaybus_schema_version") == [{"version": LATEST_VERSION}]
    async with backend.store() as reopened:
        assert (await reopened.result(task_id)).output == "kept"
    assert await backend.sql("SELECT version FROM relaybus_schema_version") == [{"version": LATEST_VERSION}]


async def test_a_migration_applies_in_one_transaction_or_not_at_all(backend: Backend) -> None:
    async with backend.store() as store:
        after = LATEST_VERSION + 1
        half = ("CREATE TABLE relaybus_half (x INTEGER)", "NOT SQL")
        broken = (*MIGRATIONS, Migration(after, "broken", half))
        with pytest.raises(Exception, match=r"(?i)syntax"):
            async with store._migration_session() as session:  # type: ignore[attr-defined]
                await migrate(session, store.url, broken)
        fine = (*MIGRATIONS, Migration(after, "a table", ("CREATE TABLE relaybus_extra (x INTEGER)",)))
        async with store._migration_session() as session:  # type: ignore[attr-defined]
            assert await migrate(session, store.url, fine) == LATEST_VERSION
    assert await backend.sql("SELECT version FROM relaybus_schema_version") == [{"version": after}]
    assert await backend.sql("SELECT x FROM relaybus_extra") == []


async def test_a_store_written_by_a_newer_relaybus_is_refused(backend: Backend) -> None:
    async with backend.store():
        pass
    await backend.sql("UPDATE relaybus_schema_version SET version = ?", LATEST_VERSION + 1)
    store = backend.store()
    with pytest.raises(SchemaTooNew, match=f"version {LATEST_VERSION + 1}, newer .*upgrade relaybus"):
        await store.open()
    assert not store.is_open


async def test_a_store_that_is_down_at_start_names_the_url_masked_and_the_fix(backend: Backend) -> None:
    options = {"connect_timeout_s": 5} if backend.kind == "postgres" else {}
    store = store_from_url(backend.unreachable_url, **options)
    with pytest.raises(StoreUnavailable) as caught:
        await store.open()
    message = str(caught.value)
    assert "s3cret" not in message
    assert "s3cret" not in repr(store)
    if backend.kind == "postgres":
        assert "postgresql://relaybus:***@127.0.0.1:1/relaybus" in message
        assert "start PostgreSQL" in message
    else:
        assert backend.unreachable_url in message
        assert "no-such-dir" in message
        assert "exists" in message
    assert not store.is_open


async def test_a_store_is_used_only_while_open(backend: Backend) -> None:
    store = backend.store()
    with pytest.raises(UsageError, match="not open"):
        await store.result(uuid4())
    async with store:
        assert store.is_open
        with pytest.raises(UsageError, match="already open"):
            await store.open()
    assert not store.is_open
    await store.close()  # idempotent
    with pytest.raises(UsageError):
        await store.claim(uuid4(), worker="w", lease_s=LEASE, digest="d")


async def test_a_store_lost_mid_run_raises_store_unavailable_and_works_again_after(backend: Backend) -> None:
    task_id = uuid4()
    if backend.kind == "sqlite":
        async with backend.store(busy_timeout_s=0.2) as store:
            locker = sqlite3.connect(backend.url.removeprefix("sqlite:///"), isolation_level=None)
            locker.execute("BEGIN EXCLUSIVE")  # another process holding the write lock too long
            try:
                with pytest.raises(StoreUnavailable, match="write lock"):
                    await store.claim(task_id, worker="w1", lease_s=LEASE, digest="d")
            finally:
                locker.execute("ROLLBACK")
                locker.close()
            assert (await store.claim(task_id, worker="w1", lease_s=LEASE, digest="d")).acquired
        return
    database = backend.url.rsplit("/", 1)[1]
    async with backend.store() as store:
        await store.result(task_id)
        # The server drops the store's connections and takes no new ones (a restart, a network cut).
        await backend.sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false', admin=True)
        await backend.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ?", database, admin=True
        )
        try:
            with pytest.raises(StoreUnavailable, match=r"postgresql://postgres@.*" + database):
                await store.claim(task_id, worker="w1", lease_s=LEASE, digest="d")
        finally:
            await backend.sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true', admin=True)
        assert (await store.claim(task_id, worker="w1", lease_s=LEASE, digest="d")).acquired
