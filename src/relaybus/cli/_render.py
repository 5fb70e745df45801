"""What ``relaybus run`` and ``relaybus demo`` show: a progress bar while a plan runs, then its results.

The progress bar goes to stderr (rich draws it live on a terminal and prints only its last state otherwise);
the tables and the summary go to stdout, so ``relaybus run plan.yaml > results.txt`` keeps the results.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import IO, Self
from uuid import UUID

from pydantic import JsonValue
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from relaybus.messages import ExecutionStatus
from relaybus.orchestrator import PlanProgress, PlanResult

__all__ = ["PlanProgressBar", "agents_table", "make_console", "results_table", "summary_lines"]

_STATUS_STYLE = {
    ExecutionStatus.SUCCESS: "green",
    ExecutionStatus.FAILURE: "red",
    ExecutionStatus.TIMEOUT: "yellow",
    ExecutionStatus.CANCELLED: "magenta",
    ExecutionStatus.REJECTED: "red",
}
_WIDTH_OFF_TERMINAL = 160  # rich would use 80 columns when writing to a pipe: too narrow for the table
_NOTE_WIDTH = 56


def make_console(file: IO[str] | None = None, *, stderr: bool = False) -> Console:
    target = file if file is not None else (sys.stderr if stderr else sys.stdout)
    console = Console(file=target, highlight=False)
    if not console.is_terminal:
        console = Console(file=target, highlight=False, width=_WIDTH_OFF_TERMINAL)
    return console


class PlanProgressBar:
    """A progress bar fed by :meth:`ProjectOrchestrator.run_plan`'s ``on_progress``; use ``with``."""

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
        self._progress.stop()


def _short(value: JsonValue, limit: int = 60) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        # Show the first text field of an agent's JSON output, which is what a person wants to glance at.
        text = next((v for v in value.values() if isinstance(v, str) and v), None)
        value = text if text is not None else str(value)
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cost(value: float | None) -> str:
    if value is None:
        return "-"
    return f"${value:.4f}" if value < 100 else f"${value:,.2f}"


def results_table(result: PlanResult) -> Table:
    """One row per task, in plan order: status, agent, worker, time, tokens, cost, and output or error."""
    table = Table(title=f"plan {result.name}", title_justify="left")
    for name in ("task", "status", "agent", "worker"):
        table.add_column(name, no_wrap=True)
    for name in ("time", "tokens in/out", "cost"):
        table.add_column(name, justify="right", no_wrap=True)
    # The last column takes what is left of the width; rich shortens it first on a narrow terminal.
    table.add_column("output / error", overflow="ellipsis", no_wrap=True, max_width=_NOTE_WIDTH)
    for task_id, res in result.results.items():
        style = _STATUS_STYLE[res.status]
        note = _short(res.output) if res.ok else (res.error.message if res.error else "")
        table.add_row(
            result.key_of(task_id),
            Text(res.status.value, style=style),
            result.agent_of(task_id),
            res.worker or "-",
            f"{result.duration_s(task_id):.2f}s",
            f"{res.usage.prompt_tokens}/{res.usage.completion_tokens}",
            _cost(result.cost(task_id)),
            Text(_short(note, _NOTE_WIDTH), style="" if res.ok else style),
        )
    return table


def agents_table(result: PlanResult) -> Table:
    """Token usage and cost summed per agent."""
    table = Table(title="usage per agent", title_justify="left")
    table.add_column("agent")
    table.add_column("tasks", justify="right")
    table.add_column("requests", justify="right")
    table.add_column("tokens in/out", justify="right")
    table.add_column("cost", justify="right")
    counts: dict[str, int] = {}
    for task_id in result.results:
        agent = result.agent_of(task_id)
        counts[agent] = counts.get(agent, 0) + 1
    costs = result.cost_by_agent
    for agent, usage in result.usage_by_agent.items():
        table.add_row(
            agent,
            str(counts[agent]),
            str(usage.requests),
            f"{usage.prompt_tokens}/{usage.completion_tokens}",
            _cost(costs.get(agent)),
        )
    return table


def summary_lines(result: PlanResult) -> list[str]:
    """Plain lines: the status counts, the times and speed-up, the tokens and cost of the whole plan."""
    counts = ", ".join(f"{n} {status.value}" for status, n in result.statuses.items() if n)
    usage = result.usage
    return [
        f"{len(result.results)} tasks: {counts}",
        f"wall time {result.wall_s:.2f}s; the tasks' own times add up to {result.sequential_s:.2f}s; "
        f"speed-up {result.speedup:.1f}x over running them one after another",
        f"tokens: {usage.prompt_tokens} in, {usage.completion_tokens} out, {usage.requests} LLM requests; "
        f"cost {_cost(result.total_cost)}",
    ]
