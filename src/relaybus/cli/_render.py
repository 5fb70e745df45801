"""What ``relaybus run`` and ``relaybus demo`` show: a progress bar while a plan runs, then its results.

The progress bar goes to stderr (rich draws it live on a terminal and prints only its last state otherwise);
the tables and the summary go to stdout, so ``relaybus run plan.yaml > results.txt`` keeps the results.

The results table fits the console's width: task, status, agent and time are never cut; worker, tokens and
cost are shown while there is room for them; the output or error column takes what is left, an output cut
to one line and an error wrapped over up to three (``--json`` has everything).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from types import TracebackType
from typing import IO, Self
from uuid import UUID

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from relaybus.messages import ExecutionStatus, Usage
from relaybus.orchestrator import PlanProgress, PlanResult

from ._report import as_json_text, collected_earlier, speedup, tasks_word

__all__ = ["PlanProgressBar", "agents_table", "make_console", "results_table", "summary_lines"]

_STATUS_STYLE = {
    ExecutionStatus.SUCCESS: "green",
    ExecutionStatus.FAILURE: "red",
    ExecutionStatus.TIMEOUT: "yellow",
    ExecutionStatus.CANCELLED: "magenta",
    ExecutionStatus.REJECTED: "red",
}
_WIDTH_OFF_TERMINAL = 160  # rich would use 80 columns when writing to a pipe: too narrow for the table
_CELL_EXTRA = 3  # a cell's two spaces of padding and its right border
_NOTE_MIN = 24  # the output column keeps this much (or a quarter of the width) before an optional one shows
_ERROR_LINES = 3


def make_console(
    file: IO[str] | None = None, *, stderr: bool = False, width_off_terminal: int = 0
) -> Console:
    """A console on stdout (or stderr), as wide as the terminal, or ``$COLUMNS``, else ``width_off_terminal``
    (default 160) off a terminal."""
    target = file if file is not None else (sys.stderr if stderr else sys.stdout)
    console = Console(file=target, highlight=False)
    if not console.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        width = width_off_terminal or _WIDTH_OFF_TERMINAL
        console = Console(file=target, highlight=False, width=width)
    return console


class PlanProgressBar:
    """A progress bar fed by :meth:`ProjectOrchestrator.run_plan`'s ``on_progress``; use ``with``.

    Leaving the block normally shows the bar complete (every task done, none running), whatever events the
    plan sent on its way there."""

    def __init__(self, total: int, *, console: Console | None = None, title: str = "plan") -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.fields[title]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("running {task.fields[running]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[last]}"),
            console=console or make_console(stderr=True),
            transient=False,
        )
        self._total = total
        self._title = title
        self._task: TaskID | None = None
        self._running: set[UUID] = set()

    def __call__(self, event: PlanProgress) -> None:
        if self._task is None:
            return
        if event.kind == "published":
            self._running.add(event.task.id)
            self._progress.update(self._task, running=len(self._running))
            return
        if event.result is None:
            return
        self._running.discard(event.task.id)
        status = event.result.status
        style = _STATUS_STYLE[status]
        self._progress.update(
            self._task,
            completed=event.done,
            running=len(self._running),
            last=f"[{style}]{event.key} {status.value}[/]",
        )

    @property
    def progress(self) -> Progress:
        """The rich progress display the bar is a row of (others may add rows: the running tasks' steps)."""
        return self._progress

    def __enter__(self) -> Self:
        # The clock starts here, not when the bar is built (a demo first waits for its workers).
        self._task = self._progress.add_task(
            self._title, total=self._total, title=self._title, running=0, last=""
        )
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and self._task is not None:  # the plan returned: every task has its result
            self._running.clear()
            self._progress.update(self._task, completed=self._total, running=0)
        self._progress.stop()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def _cost(value: float | None) -> str:
    if value is None:
        return "-"
    return f"${value:.4f}" if value < 100 else f"${value:,.2f}"


_ESSENTIAL = ("task", "status", "agent", "time")
_OPTIONAL = ("worker", "tokens in/out", "cost")  # in the order they get room
_ORDER = ("task", "status", "agent", "worker", "time", "tokens in/out", "cost")
_RIGHT = frozenset({"time", "tokens in/out", "cost"})
_NOTE = "output / error"


def results_table(result: PlanResult, *, width: int, agents: Mapping[UUID, str | None]) -> Table:
    """One row per task, in plan order, laid out for ``width`` columns (see the module docstring)."""
    rows = []
    for task_id, res in result.results.items():
        rows.append(
            {
                "task": result.key_of(task_id),
                "status": res.status.value,
                "agent": agents.get(task_id) or "-",
                "worker": res.worker or "-",
                "time": f"{result.duration_s(task_id):.2f}s",
                "tokens in/out": f"{res.usage.prompt_tokens}/{res.usage.completion_tokens}",
                "cost": _cost(result.cost(task_id)),
            }
        )
    widths = {name: max([len(name), *(len(row[name]) for row in rows)]) for name in _ORDER}
    used = 1 + sum(widths[name] + _CELL_EXTRA for name in _ESSENTIAL)  # 1: the table's left border
    shown = set(_ESSENTIAL)
    keep = max(_NOTE_MIN, width // 4) + _CELL_EXTRA
    for name in _OPTIONAL:
        if used + widths[name] + _CELL_EXTRA + keep <= width:
            shown.add(name)
            used += widths[name] + _CELL_EXTRA
    note_width = max(width - used - _CELL_EXTRA, 1)
    hidden = [name for name in _OPTIONAL if name not in shown]
    caption = f"{', '.join(hidden)} left out at {width} columns; --json has everything" if hidden else None
    table = Table(title=f"plan {result.name}", title_justify="left", caption=caption, caption_justify="left")
    columns = [name for name in _ORDER if name in shown]
    for name in columns:
        table.add_column(
            name, justify="right" if name in _RIGHT else "left", no_wrap=True, min_width=widths[name]
        )
    table.add_column(_NOTE, overflow="fold")
    for row, res in zip(rows, result.results.values(), strict=True):
        style = _STATUS_STYLE[res.status]
        if res.ok:
            note = Text(_cut(_one_line(as_json_text(res.output)), note_width))
        else:
            message = _one_line(res.error.message) if res.error else ""
            note = Text(_cut(message, note_width * _ERROR_LINES), style=style)
        cells: list[str | Text] = [row[name] for name in columns]
        cells[columns.index("status")] = Text(row["status"], style=style)
        table.add_row(*cells, note)
    return table


def agents_table(result: PlanResult, agents: Mapping[UUID, str | None]) -> Table:
    """Tasks, requests, tokens and cost summed per agent ("-": tasks no agent is known for)."""
    table = Table(title="usage per agent", title_justify="left")
    table.add_column("agent", no_wrap=True)
    for name in ("tasks", "requests", "tokens in/out", "cost"):
        table.add_column(name, justify="right", no_wrap=True)
    counts: dict[str, int] = {}
    usage: dict[str, Usage] = {}
    costs: dict[str, float | None] = {}
    for task_id, res in result.results.items():
        agent = agents.get(task_id) or "-"
        counts[agent] = counts.get(agent, 0) + 1
        usage[agent] = usage[agent] + res.usage if agent in usage else res.usage
        cost = result.cost(task_id)
        if cost is not None:
            costs[agent] = (costs.get(agent) or 0.0) + cost
    for agent, total in usage.items():
        table.add_row(
            agent,
            str(counts[agent]),
            str(total.requests),
            f"{total.prompt_tokens}/{total.completion_tokens}",
            _cost(costs.get(agent)),
        )
    return table


def summary_lines(result: PlanResult) -> list[str]:
    """Plain lines: the status counts, the times (with a speed-up only where it means something), the tokens
    and cost of the whole plan."""
    counts = ", ".join(f"{n} {status.value}" for status, n in result.statuses.items() if n)
    usage = result.usage
    total = len(result.results)
    gain = speedup(result)
    earlier = collected_earlier(result)
    if gain is not None:
        times = (
            f"wall time {result.wall_s:.2f}s; the tasks' own times add up to {result.sequential_s:.2f}s; "
            f"speed-up {gain:.1f}x over running them one after another"
        )
    elif earlier:
        times = (
            f"wall time {result.wall_s:.2f}s for this run, which collected the results of "
            f"{tasks_word(earlier)} from an earlier run (so no speed-up figure)"
        )
    elif total > 1 and not result.ok:
        times = f"wall time {result.wall_s:.2f}s (no speed-up figure: not every task succeeded)"
    else:
        times = f"wall time {result.wall_s:.2f}s"
    return [
        f"{tasks_word(total)}: {counts}",
        times,
        f"tokens: {usage.prompt_tokens} in, {usage.completion_tokens} out, {usage.requests} LLM requests; "
        f"cost {_cost(result.total_cost)}",
    ]
