"""``relaybus run``'s rows of running tasks: under the plan's progress bar, one row per running task showing
its latest step (the last progress line, tool call or result, or the tail of the model's text), fed by the
task events of ``run_plan(..., on_event=...)``. A row appears with a task's first event and goes when the
task has its result."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from uuid import UUID

from rich.markup import escape
from rich.progress import Progress, TaskID

from relaybus.messages import TaskEvent
from relaybus.orchestrator.scheduler import PlanProgress, ProgressCallback

from ._render import PlanProgressBar

__all__ = ["StepRows", "latest_step", "streamed_progress"]

_WIDTH = 60


def latest_step(event: TaskEvent, text: str = "") -> tuple[str, str]:
    """What a task's row shows after ``event``, one line of at most 60 characters, and the model text seen so
    far (``text``: before ``event``; kept only its tail, and emptied by any other step)."""
    if event.kind == "delta":
        text = (text + event.text)[-4 * _WIDTH :]
        return "> " + " ".join(text.split())[-(_WIDTH - 2) :], text
    if event.kind == "tool_call":
        step = f"tool {event.text}"
    elif event.kind == "tool_result":
        data = event.data if isinstance(event.data, Mapping) else {}
        step = f"tool {event.text} {'failed' if data.get('is_error') else 'done'}"
    else:
        step = " ".join(event.text.split())
    if event.agent:
        step = f"{event.agent}: {step}"
    return step[:_WIDTH], ""


class StepRows:
    """Adds, updates and removes the running tasks' rows on ``progress``; ``key_of`` names a task's row
    (default: the plan keys seen by :meth:`learn`, else the event's agent)."""

    def __init__(self, progress: Progress, key_of: Callable[[UUID], str] | None = None) -> None:
        self._progress = progress
        self._keys: dict[UUID, str] = {}
        self._key_of = key_of
        self._rows: dict[UUID, tuple[TaskID, str]] = {}

    def learn(self, step: PlanProgress) -> None:
        """Note a task's plan key from ``run_plan``'s ``on_progress``, to name its row."""
        self._keys[step.task.id] = step.key

    def _label(self, event: TaskEvent) -> str:
        if self._key_of is not None:
            return self._key_of(event.task_id)
        return self._keys.get(event.task_id) or event.agent or str(event.task_id)[:8]

    def __call__(self, event: TaskEvent) -> None:
        if event.kind == "result":
            row = self._rows.pop(event.task_id, None)
            if row is not None:
                self._progress.remove_task(row[0])
            return
        current = self._rows.get(event.task_id)
        shown, text = latest_step(event, current[1] if current else "")
        if current is None:
            key = escape(self._label(event))
            row_id = self._progress.add_task(key, total=None, title=f"  {key}", running="", last="")
        else:
            row_id = current[0]
        self._rows[event.task_id] = (row_id, text)
        self._progress.update(row_id, last=escape(shown))


def streamed_progress(
    bar: PlanProgressBar | None,
) -> tuple[ProgressCallback | None, Callable[[TaskEvent], None] | None]:
    """``run_plan``'s ``on_progress`` and ``on_event`` for ``bar`` with a row per running task (both None
    without a bar: nothing is shown, nothing streamed)."""
    if bar is None:
        return None, None
    rows = StepRows(bar.progress)

    def on_progress(step: PlanProgress) -> None:
        rows.learn(step)
        bar(step)

    return on_progress, rows
