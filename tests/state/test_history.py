"""Run history keeps each task's trace id, on SqliteStore and on PostgresStore (a real PostgreSQL): it round
trips, the latest given wins, bad ones are refused, and a store made before trace ids were kept migrates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from pydantic import ValidationError

from relaybus.exceptions import ConfigError
from relaybus.messages import ExecutionResult
from relaybus.state import LATEST_VERSION, StateStore, TaskState, TaskUpdate
from relaybus.state.migrations import MIGRATIONS, migrate

from .conftest import Backend

TRACE = "0af7651916cd43dd8448eb211c80319c"
LATER = "4bf92f3577b34da6a3ce929d0e0e4736"
BAD = [
    "0AF7651916CD43DD8448EB211C80319C",  # upper case: a traceparent's ids are lower case
    "0af7651916cd43dd8448eb211c80319",  # 31 digits
    "0af7651916cd43dd8448eb211c80319c0",  # 33
    "0" * 32,  # the invalid (all zeros) trace id
    "0af7651916cd43dd8448eb211c80319g",
    "",
]


async def test_a_tasks_trace_id_round_trips_and_the_latest_given_is_kept(store: StateStore) -> None:
    a, b = uuid4(), uuid4()
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    await store.record_run("r", "plan", [(a, "t", ()), (b, "t", (a,))], started_at=t0)
    await store.task_event("r", a, "published", t0, trace_id=TRACE)
    await store.task_event("r", a, "started", t0 + timedelta(seconds=1), worker="w", attempt=1)
    detail = await store.run("r")
    assert detail is not None
    assert [task.trace_id for task in detail.tasks] == [TRACE, None]
    assert detail.tasks[0].status is TaskState.RUNNING  # an event without a trace id keeps the one known
    # A resumed run republishes the task in a new trace: that one is what its message carries now.
    await store.task_events("r", [TaskUpdate(task_id=a, kind="published", trace_id=LATER)])
    await store.task_event("r", a, "finished", result=ExecutionResult.success(a, "x", worker="w"))
    detail = await store.run("r")
    assert detail is not None
    assert detail.tasks[0].trace_id == LATER
    assert detail.tasks[0].status is TaskState.SUCCESS
    assert detail.model_dump(mode="json")["tasks"][0]["trace_id"] == LATER


@pytest.mark.parametrize("bad", BAD)
async def test_a_bad_trace_id_is_refused_and_nothing_is_recorded(store: StateStore, bad: str) -> None:
    a = uuid4()
    await store.record_run("r", "plan", [(a, "t", ())])
    await store.task_event("r", a, "published", trace_id=TRACE)
    with pytest.raises(ConfigError, match=r"trace_id: .*32 lowercase hex digits, not all zeros"):
        await store.task_event("r", a, "started", worker="w", trace_id=bad)
    with pytest.raises(ValidationError, match="32 lowercase hex digits"):
        TaskUpdate(task_id=a, kind="published", trace_id=bad)
    detail = await store.run("r")
    assert detail is not None
    [task] = detail.tasks
    assert (task.trace_id, task.status, len(task.events)) == (TRACE, TaskState.PUBLISHED, 1)


async def test_a_bad_trace_id_written_by_hand_reads_as_none(store: StateStore, backend: Backend) -> None:
    a = uuid4()
    await store.record_run("r", "plan", [(a, "t", ())])
    await backend.sql("UPDATE relaybus_run_tasks SET trace_id = ?", "<script>")
    detail = await store.run("r")
    assert detail is not None
    assert detail.tasks[0].trace_id is None


async def test_a_store_made_before_trace_ids_were_kept_gets_the_column_and_keeps_its_runs(
    backend: Backend,
) -> None:
    previous = MIGRATIONS[:-1]
    assert previous[-1].version == LATEST_VERSION - 1
    old = backend.store()
    await old._connect()  # type: ignore[attr-defined]
    try:
        async with old._migration_session() as session:  # type: ignore[attr-defined]
            await migrate(session, old.url, previous)
    finally:
        await old._disconnect()  # type: ignore[attr-defined]
    a = uuid4()
    now = datetime.now(UTC).timestamp()
    await backend.sql("INSERT INTO relaybus_runs VALUES (?, ?, ?, ?)", "old", "plan", now, now)
    await backend.sql(
        "INSERT INTO relaybus_run_tasks (run_id, task_id, position, key, target, depends_on, status,"
        " attempts, published_at, prompt_tokens, completion_tokens, requests)"
        " VALUES (?, ?, 0, 'k', 't', '[]',"
        " 'published', 0, ?, 0, 0, 0)",
        "old",
        str(a),
        now,
    )
    version = await backend.sql("SELECT version FROM relaybus_schema_version")
    assert version == [{"version": LATEST_VERSION - 1}]
    async with backend.store() as store:
        detail = await store.run("old")
        assert detail is not None
        [task] = detail.tasks
        assert (task.key, task.status, task.trace_id) == ("k", TaskState.PUBLISHED, None)
        await store.task_event("old", a, "started", worker="w", trace_id=TRACE)
        detail = await store.run("old")
        assert detail is not None
        assert detail.tasks[0].trace_id == TRACE
    assert await backend.sql("SELECT version FROM relaybus_schema_version") == [{"version": LATEST_VERSION}]
    assert await backend.sql("SELECT trace_id FROM relaybus_run_tasks") == [{"trace_id": TRACE}]
