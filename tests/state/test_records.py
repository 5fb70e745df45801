"""The digest a task is claimed with, and the small behaviours of the records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from pydantic import ValidationError

from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus
from relaybus.state import (
    Journal,
    JournalEntry,
    PlannedTask,
    TaskEventKind,
    TaskState,
    TaskUpdate,
    task_digest,
)


def test_a_republished_task_has_the_same_digest_and_another_body_another() -> None:
    task = AgentTask(topic="code.review", prompt="review", input={"a": 1, "b": [1, 2]})
    later = task.model_copy(update={"created_at": task.created_at + timedelta(hours=1)})
    reordered = task.model_copy(update={"input": {"b": [1, 2], "a": 1}})
    assert task_digest(task) == task_digest(later) == task_digest(reordered)
    assert len(task_digest(task)) == 64
    for change in [
        {"prompt": "other"},
        {"input": {"a": 2, "b": [1, 2]}},
        {"topic": "code.fix"},
        {"id": uuid4()},
    ]:
        assert task_digest(task.model_copy(update=change)) != task_digest(task), change


def test_a_planned_task_of_an_agent_task_is_its_agent_else_its_topic() -> None:
    first = AgentTask(topic="plan")
    second = AgentTask(topic="code.write", agent="coder", depends_on=(first.id,))
    assert PlannedTask.of(first, "outline") == (first.id, "plan", (), "outline")
    assert PlannedTask.of(second) == (second.id, "coder", (first.id,), None)


def test_finished_task_states_are_the_execution_statuses() -> None:
    assert {state for state in TaskState if state.is_finished} == {
        TaskState(s.value) for s in ExecutionStatus
    }


def test_a_journal_is_a_list_that_also_reports_skipped_steps() -> None:
    task_id = uuid4()
    entry = JournalEntry(task_id=task_id, step=0, kind="model", data={"x": 1}, recorded_at=datetime.now(UTC))
    journal = Journal([entry], skipped=[1])
    assert journal == [entry]
    assert (journal.steps, journal.skipped) == ([0], (1,))


def test_a_task_update_is_checked_when_made() -> None:
    task_id = uuid4()
    update = TaskUpdate(task_id=task_id, kind="published")
    assert update.kind is TaskEventKind.PUBLISHED
    assert update.at.tzinfo is not None
    for bad in [
        {"kind": "exploded"},
        {"kind": "started", "attempt": 0},
        {"kind": "finished", "cost": -1.0},
        {"kind": "finished", "cost": float("nan")},
        {"kind": "started", "at": datetime(2030, 1, 1)},
        {"kind": "finished", "result": ExecutionResult.success(uuid4())},
    ]:
        with pytest.raises(ValidationError):
            TaskUpdate(task_id=task_id, **bad)
