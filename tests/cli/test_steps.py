"""The rows of `relaybus run`'s running tasks: each shows its latest step and goes with its result."""

from __future__ import annotations

import io
import uuid

from rich.console import Console
from rich.progress import Progress, TextColumn

from relaybus import ExecutionResult, TaskEvent
from relaybus.cli._steps import StepRows, latest_step

A, B = uuid.UUID(int=1), uuid.UUID(int=2)


def event(task_id: uuid.UUID, seq: int, kind: str, text: str = "", **fields: object) -> TaskEvent:
    return TaskEvent(task_id=task_id, seq=seq, kind=kind, text=text, **fields)  # type: ignore[arg-type]


def test_the_latest_step_of_each_kind() -> None:
    shown, text = latest_step(event(A, 1, "delta", "Hello "))
    shown, text = latest_step(event(A, 2, "delta", "world\n"), text)
    assert shown == "> Hello world"
    assert latest_step(event(A, 3, "progress", "reading  files", agent="rev"))[0] == "rev: reading files"
    assert latest_step(event(A, 4, "tool_call", "grep"))[0] == "tool grep"
    assert latest_step(event(A, 5, "tool_result", "grep", data={"is_error": True}))[0] == "tool grep failed"
    long, _ = latest_step(event(A, 6, "delta", "x" * 500))
    assert len(long) == 60


def test_rows_come_with_a_tasks_first_event_and_go_with_its_result() -> None:
    progress = Progress(
        TextColumn("{task.fields[title]}"),
        TextColumn("{task.fields[last]}"),
        console=Console(file=io.StringIO()),
    )
    rows = StepRows(progress, {A: "outline", B: "draft"}.__getitem__)
    rows(event(A, 1, "progress", "planning [bold]"))
    rows(event(B, 1, "delta", "Once"))
    rows(event(A, 2, "tool_call", "search"))
    fields = {t.fields["title"].strip(): t.fields["last"] for t in progress.tasks}
    assert fields == {"outline": "tool search", "draft": "> Once"}
    rows(event(A, 3, "result", result=ExecutionResult.success(A, "ok")))
    assert [t.fields["title"].strip() for t in progress.tasks] == ["draft"]
    rows(event(B, 2, "progress", "[red]x"))
    assert progress.tasks[0].fields["last"] == "\\[red]x"  # markup in a step is shown, not obeyed
