"""Run history: the statements that record plan runs and task timelines, and read them back as records.

A run's tasks live in ``relaybus_run_tasks`` (one row each: status, worker, attempts, timings, usage, cost),
their timelines in ``relaybus_task_events``; a task's result is the one row of ``relaybus_results``, never
copied here. How an event changes a task is :func:`apply` (plain Python, run in the caller's locking
transaction), so that statuses only move forward whatever order events arrive in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from relaybus.exceptions import ConfigError, UsageError
from relaybus.messages import AgentTask, Usage

from .codec import epoch, from_epoch, load_result, now_epoch
from .records import (
    PlannedTask,
    RunDetail,
    RunSummary,
    RunTask,
    TaskEvent,
    TaskEventKind,
    TaskState,
    TaskUpdate,
    is_trace_id,
)
from .session import Row, Session

__all__ = ["apply", "detail", "planned", "prune_runs", "record_run", "summaries", "task_event", "update_of"]

_TASK_COLUMNS = (
    "status",
    "worker",
    "attempts",
    "published_at",
    "started_at",
    "finished_at",
    "prompt_tokens",
    "completion_tokens",
    "requests",
    "cost",
    "trace_id",
)
# Statements built from the constant column names above only; every value is a parameter.
_SELECT_TASK = (
    f"SELECT {', '.join(_TASK_COLUMNS)} FROM relaybus_run_tasks"  # noqa: S608
    " WHERE run_id = ? AND task_id = ? {for_update}"
)
_UPDATE_TASK = (
    f"UPDATE relaybus_run_tasks SET {', '.join(f'{column} = ?' for column in _TASK_COLUMNS)}"  # noqa: S608
    " WHERE run_id = ? AND task_id = ?"
)
# A run's last activity is its last event (not kept on the run's row: every event of the run would then wait
# for that one row's lock) or, without events, when it was last recorded.
_OLD_RUNS = """
    SELECT run_id FROM relaybus_runs r WHERE r.updated_at < ?
    AND NOT EXISTS (SELECT 1 FROM relaybus_task_events e WHERE e.run_id = r.run_id AND e.at >= ?)"""


def planned(tasks: Iterable[PlannedTask | AgentTask | tuple[UUID, str, Sequence[UUID]]]) -> list[PlannedTask]:
    """Each of ``tasks`` as a :class:`PlannedTask`; ConfigError for a repeated id."""
    out: list[PlannedTask] = []
    for task in tasks:
        if isinstance(task, AgentTask):
            out.append(PlannedTask.of(task))
        elif isinstance(task, PlannedTask):
            out.append(task)
        else:
            task_id, target, depends_on = task
            out.append(PlannedTask(task_id, target, tuple(depends_on)))
    ids = [task.task_id for task in out]
    if len(set(ids)) != len(ids):
        raise ConfigError("a run's tasks must have distinct ids")
    return out


async def record_run(
    session: Session, run_id: str, name: str, tasks: list[PlannedTask], started_at: datetime | None, url: str
) -> bool:
    now = now_epoch()
    new = await session.execute(
        "INSERT INTO relaybus_runs (run_id, name, started_at, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (run_id) DO NOTHING",
        run_id,
        name,
        epoch(started_at),
        now,
    )
    if not new:
        row = await session.fetchone("SELECT name FROM relaybus_runs WHERE run_id = ? {for_update}", run_id)
        if row is not None and row["name"] != name:
            raise ConfigError(
                f"run {run_id!r} is recorded in {url} as a run of plan {row['name']!r}, not {name!r}: "
                "give this run another id"
            )
        await session.execute("UPDATE relaybus_runs SET updated_at = ? WHERE run_id = ?", now, run_id)
    known = await session.fetchone("SELECT COUNT(*) AS n FROM relaybus_run_tasks WHERE run_id = ?", run_id)
    first = int(known["n"]) if known else 0
    await session.executemany(
        "INSERT INTO relaybus_run_tasks (run_id, task_id, position, key, target, depends_on, status,"
        " attempts, prompt_tokens, completion_tokens, requests) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 0)"
        " ON CONFLICT (run_id, task_id) DO NOTHING",
        [
            (
                run_id,
                str(task.task_id),
                first + position,
                task.key,
                task.target,
                json.dumps([str(dep) for dep in task.depends_on]),
                TaskState.PENDING.value,
            )
            for position, task in enumerate(tasks)
        ],
    )
    return bool(new)


def update_of(task_id: UUID, kind: TaskEventKind | str, at: datetime | None, **fields: Any) -> TaskUpdate:
    """The :class:`TaskUpdate` of :meth:`StateStore.task_event` 's arguments; ConfigError when invalid."""
    try:
        values: dict[str, Any] = {"task_id": task_id, "kind": kind, **fields}
        if at is not None:
            values["at"] = at
        return TaskUpdate.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid event of task {task_id}: {problems}") from None


def apply(task: Row, event: TaskUpdate) -> Row:
    """The task row's columns after ``event``; statuses move forward only, first times are kept, the latest
    trace id given is kept (a resumed run's task republished is sent in a new trace)."""
    new = dict(task)
    new["trace_id"] = event.trace_id or task["trace_id"]
    at = event.at.timestamp()
    finished = TaskState(task["status"]).is_finished
    if event.kind is TaskEventKind.PUBLISHED:
        if task["status"] == TaskState.PENDING:
            new["status"] = TaskState.PUBLISHED.value
        new["published_at"] = task["published_at"] or at
    elif event.kind is TaskEventKind.STARTED:
        if not finished:
            new["status"] = TaskState.RUNNING.value
        new["started_at"] = task["started_at"] or at
        new["worker"] = event.worker or task["worker"]
        new["attempts"] = max(task["attempts"], event.attempt or task["attempts"] + 1)
    elif not finished:
        result = event.result
        assert result is not None  # task_event() looks the stored result up
        new["status"] = result.status.value
        new["finished_at"] = at
        if task["started_at"] is None and result.started_at is not None:
            new["started_at"] = result.started_at.timestamp()
        new["worker"] = event.worker or result.worker or task["worker"]
        new["attempts"] = max(task["attempts"], result.attempts, event.attempt or 0)
        new["prompt_tokens"] = result.usage.prompt_tokens
        new["completion_tokens"] = result.usage.completion_tokens
        new["requests"] = result.usage.requests
        new["cost"] = event.cost
    return new


async def task_event(session: Session, run_id: str, event: TaskUpdate) -> None:
    tid = str(event.task_id)
    task = await session.fetchone(_SELECT_TASK, run_id, tid)
    if task is None:
        raise UsageError(f"task {tid} is not part of recorded run {run_id!r}: record_run() it first")
    if event.kind is TaskEventKind.FINISHED:
        if event.result is None:
            stored = await session.fetchone("SELECT result FROM relaybus_results WHERE task_id = ?", tid)
            result = load_result(stored["result"] if stored else None, tid)
            if result is None:
                raise ConfigError(f"the finished event of task {tid} needs its result (none is stored)")
            event = event.model_copy(update={"result": result})
        else:
            await session.execute(
                "INSERT INTO relaybus_results (task_id, result, stored_at) VALUES (?, ?, ?)"
                " ON CONFLICT (task_id) DO NOTHING",
                tid,
                event.result.model_dump_json(),
                now_epoch(),
            )
    new = apply(task, event)
    await session.execute(_UPDATE_TASK, *(new[column] for column in _TASK_COLUMNS), run_id, tid)
    await session.execute(
        "INSERT INTO relaybus_task_events (run_id, task_id, seq, kind, at, worker, attempt)"
        " SELECT ?, ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ? FROM relaybus_task_events"
        " WHERE run_id = ? AND task_id = ?",
        run_id,
        tid,
        event.kind.value,
        event.at.timestamp(),
        event.worker,
        event.attempt,
        run_id,
        tid,
    )


def _summary_sql(where: str) -> str:
    """The summaries query of the runs ``where`` (a constant clause of this module) selects."""
    return f"""
        SELECT r.run_id, r.name, r.started_at, t.status, COUNT(t.task_id) AS n,
               MAX(t.finished_at) AS last_finished, SUM(t.prompt_tokens) AS prompt_tokens,
               SUM(t.completion_tokens) AS completion_tokens, SUM(t.requests) AS requests,
               SUM(t.cost) AS cost, COUNT(t.cost) AS costs
        FROM (SELECT run_id, name, started_at FROM relaybus_runs {where}
              ORDER BY started_at DESC, run_id DESC LIMIT ? OFFSET ?) r
        LEFT JOIN relaybus_run_tasks t ON t.run_id = r.run_id
        GROUP BY r.run_id, r.name, r.started_at, t.status"""  # noqa: S608


async def summaries(
    session: Session,
    *,
    limit: int,
    offset: int = 0,
    name: str | None = None,
    run_id: str | None = None,
) -> list[RunSummary]:
    """Newest first, skipping the ``offset`` newest; one query, grouped by run and status, folded here."""
    if run_id is not None:
        rows = await session.fetchall(_summary_sql("WHERE run_id = ?"), run_id, limit, offset)
    elif name is not None:
        rows = await session.fetchall(_summary_sql("WHERE name = ?"), name, limit, offset)
    else:
        rows = await session.fetchall(_summary_sql(""), limit, offset)
    runs: dict[str, dict[str, Any]] = {}
    for row in rows:
        run = runs.setdefault(
            row["run_id"],
            {"row": row, "statuses": {}, "unfinished": 0, "last": None, "usage": Usage(), "cost": None},
        )
        if row["status"] is None:  # a run without tasks
            continue
        state = TaskState(row["status"])
        run["statuses"][state] = int(row["n"])
        if not state.is_finished:
            run["unfinished"] += int(row["n"])
        if row["last_finished"] is not None:
            run["last"] = max(run["last"] or row["last_finished"], row["last_finished"])
        run["usage"] += Usage(
            prompt_tokens=row["prompt_tokens"] or 0,
            completion_tokens=row["completion_tokens"] or 0,
            requests=row["requests"] or 0,
        )
        if row["costs"]:
            run["cost"] = (run["cost"] or 0.0) + row["cost"]
    out = [
        RunSummary(
            run_id=run["row"]["run_id"],
            name=run["row"]["name"],
            started_at=from_epoch(run["row"]["started_at"]),
            finished_at=from_epoch(run["last"]) if run["statuses"] and not run["unfinished"] else None,
            task_count=sum(run["statuses"].values()),
            statuses=run["statuses"],
            usage=run["usage"],
            cost=run["cost"],
        )
        for run in runs.values()
    ]
    return sorted(out, key=lambda summary: (summary.started_at, summary.run_id), reverse=True)


async def detail(session: Session, run_id: str) -> RunDetail | None:
    found = await summaries(session, limit=1, run_id=run_id)
    if not found:
        return None
    rows = await session.fetchall(
        "SELECT t.*, r.result FROM relaybus_run_tasks t LEFT JOIN relaybus_results r ON r.task_id = t.task_id"
        " WHERE t.run_id = ? ORDER BY t.position",
        run_id,
    )
    events: dict[str, list[TaskEvent]] = {}
    for row in await session.fetchall(
        "SELECT task_id, kind, at, worker, attempt FROM relaybus_task_events WHERE run_id = ?"
        " ORDER BY task_id, seq",
        run_id,
    ):
        events.setdefault(row["task_id"], []).append(
            TaskEvent(
                kind=row["kind"], at=from_epoch(row["at"]), worker=row["worker"], attempt=row["attempt"]
            )
        )
    tasks = tuple(
        RunTask(
            task_id=UUID(row["task_id"]),
            key=row["key"],
            target=row["target"],
            depends_on=tuple(UUID(dep) for dep in json.loads(row["depends_on"])),
            status=row["status"],
            worker=row["worker"],
            attempts=row["attempts"],
            published_at=from_epoch(row["published_at"]),
            started_at=from_epoch(row["started_at"]),
            finished_at=from_epoch(row["finished_at"]),
            usage=Usage(
                prompt_tokens=row["prompt_tokens"],
                completion_tokens=row["completion_tokens"],
                requests=row["requests"],
            ),
            cost=row["cost"],
            trace_id=_stored_trace_id(row["trace_id"]),
            result=load_result(row["result"], row["task_id"]),
            events=tuple(events.get(row["task_id"], ())),
        )
        for row in rows
    )
    return RunDetail(**dict(found[0]), tasks=tasks)


def _stored_trace_id(value: str | None) -> str | None:
    """A stored trace id, None if it is not one (written by hand: a page must not fail on one bad row)."""
    return value if value is not None and is_trace_id(value) else None


async def prune_runs(session: Session, cutoff: float) -> int:
    """Remove the runs (tasks and timelines with them) recorded and last heard of before ``cutoff``."""
    old = [row["run_id"] for row in await session.fetchall(_OLD_RUNS, cutoff, cutoff)]
    for run_id in old:
        await session.execute("DELETE FROM relaybus_task_events WHERE run_id = ?", run_id)
        await session.execute("DELETE FROM relaybus_run_tasks WHERE run_id = ?", run_id)
        await session.execute("DELETE FROM relaybus_runs WHERE run_id = ?", run_id)
    return len(old)
