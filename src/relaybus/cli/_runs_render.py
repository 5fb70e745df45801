"""The tables of ``relaybus runs list`` and ``relaybus runs show``, laid out for the terminal's width.

As for the results table: the columns a reader needs (a run's id, start and status counts; a task's key,
status, target and time) are never cut, the optional ones show while there is room (a caption names those
left out), and the last column (a run's plan name, a task's output or error) takes what is left.
``--json`` prints everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rich import box
from rich.table import Table
from rich.text import Text

from relaybus.state import RunDetail, RunSummary, RunTask, TaskState

from ._report import as_json_text

__all__ = ["run_header", "runs_table", "statuses_text", "tasks_table", "when"]

_PAD = 2  # a cell's padding (no vertical borders)
_LAST_MIN = 12
_STYLE = {
    TaskState.SUCCESS: "green",
    TaskState.FAILURE: "red",
    TaskState.TIMEOUT: "yellow",
    TaskState.CANCELLED: "magenta",
    TaskState.REJECTED: "red",
}


def when(moment: datetime | None) -> str:
    """A stored time in the local time zone, to the second; "-" when unknown."""
    return "-" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def statuses_text(statuses: dict[TaskState, int]) -> str:
    """``3 success, 1 failure``, in the order of :class:`TaskState`."""
    return ", ".join(f"{statuses[state]} {state.value}" for state in TaskState if statuses.get(state))


def _cost(value: float | None) -> str:
    return "-" if value is None else f"${value:.4f}"


def _fit(
    rows: Sequence[dict[str, str]],
    order: Sequence[str],
    essential: Sequence[str],
    optional: Sequence[str],
    width: int,
) -> tuple[list[str], int, list[str]]:
    """Which columns of ``order`` show at ``width``, the width left for the last one, the ones left out."""
    widths = {name: max([len(name), *(len(row[name]) for row in rows)]) for name in order}
    used = sum(widths[name] + _PAD for name in essential)
    shown = set(essential)
    for name in optional:
        if used + widths[name] + _PAD + _LAST_MIN + _PAD <= width:
            shown.add(name)
            used += widths[name] + _PAD
    return (
        [name for name in order if name in shown],
        max(width - used - _PAD, 1),
        [name for name in optional if name not in shown],
    )


def _table(title: str | None, columns: list[str], hidden: list[str], width: int, last: str) -> Table:
    caption = f"{', '.join(hidden)} left out at {width} columns; --json has everything" if hidden else None
    table = Table(
        title=title, title_justify="left", caption=caption, caption_justify="left", box=box.SIMPLE_HEAD
    )
    for name in columns:
        table.add_column(name, no_wrap=True, justify="right" if name in _RIGHT else "left")
    table.add_column(last, overflow="fold")
    return table


_RIGHT = frozenset({"time", "tokens", "cost", "tasks", "tries"})


def runs_table(runs: Sequence[RunSummary], *, width: int) -> Table:
    """One row per run, newest first: id, start, status counts, duration, tokens, cost, plan name."""
    rows = [
        {
            "run": run.run_id,
            "started": when(run.started_at),
            "tasks": str(run.task_count),
            "statuses": statuses_text(run.statuses) or "-",
            "time": seconds(run.duration_s) if run.is_finished else "running",
            "tokens": str(run.tokens),
            "cost": _cost(run.cost),
        }
        for run in runs
    ]
    order = ("run", "started", "statuses", "time", "tasks", "tokens", "cost")
    columns, _, hidden = _fit(rows, order, ("run", "started", "statuses", "time"), order[4:], width)
    table = _table(None, columns, hidden, width, "plan")
    for row, run in zip(rows, runs, strict=True):
        table.add_row(*(row[name] for name in columns), run.name)
    return table


def _trace_ids(run: RunDetail) -> set[str]:
    return {task.trace_id for task in run.tasks if task.trace_id is not None}


def run_header(run: RunDetail | RunSummary) -> list[str]:
    """Plain lines about one run: plan, times, statuses, tokens and cost; for a run whose tasks were all
    published in one trace, its id (tasks in several traces show theirs in :func:`tasks_table`)."""
    state = (
        f"finished {when(run.finished_at)} ({seconds(run.duration_s)})" if run.is_finished else "not finished"
    )
    lines = [
        f"run {run.run_id} of plan {run.name}: started {when(run.started_at)}, {state}",
        f"{run.task_count} tasks: {statuses_text(run.statuses) or 'none'}",
        f"tokens: {run.usage.prompt_tokens} in, {run.usage.completion_tokens} out, {run.usage.requests} LLM "
        f"requests; cost {_cost(run.cost)}",
    ]
    if isinstance(run, RunDetail) and len(traces := _trace_ids(run)) == 1:
        lines.append(f"trace_id: {traces.pop()}")
    return lines


def _note(task: RunTask, limit: int) -> Text:
    result = task.result
    if result is None:
        return Text("-")
    if result.ok:
        text = " ".join(as_json_text(result.output).split())
        return Text(text if len(text) <= limit else text[: limit - 1] + "…")
    message = " ".join((result.error.message if result.error else "").split())
    cap = limit * 3
    return Text(
        message if len(message) <= cap else message[: cap - 1] + "…", style=_STYLE.get(task.status, "")
    )


def tasks_table(run: RunDetail, *, width: int) -> Table:
    """One row per task of ``run``, in plan order: key, status, target, worker, attempts, time, tokens, and
    each task's trace id when they were published in more than one trace."""
    rows = [
        {
            "task": task.key or str(task.task_id),
            "status": task.status.value,
            "target": task.target,
            "worker": task.worker or "-",
            "tries": str(task.attempts),
            "time": seconds(task.duration_s),
            "tokens": f"{task.usage.prompt_tokens}/{task.usage.completion_tokens}",
            "trace": task.trace_id or "-",
        }
        for task in run.tasks
    ]
    traced = ("trace",) if len(_trace_ids(run)) > 1 else ()  # else the header names the one trace
    optional = ("worker", "tries", "tokens", *traced)
    order = ("task", "status", "target", "worker", "tries", "time", "tokens", *traced)
    columns, room, hidden = _fit(rows, order, ("task", "status", "target", "time"), optional, width)
    table = _table(f"tasks of run {run.run_id}", columns, hidden, width, "output / error")
    for row, task in zip(rows, run.tasks, strict=True):
        cells: list[str | Text] = [row[name] for name in columns]
        cells[columns.index("status")] = Text(row["status"], style=_STYLE.get(task.status, ""))
        table.add_row(*cells, _note(task, room))
    return table
