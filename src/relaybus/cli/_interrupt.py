"""Ctrl-C on a command that waits for tasks (``submit --wait``, ``run``): stop what nobody will read.

``asyncio.run`` turns the first SIGINT into a cancellation of the command's main task. The command catches it
(:func:`taken_back`), asks the workers to cancel the tasks it published and has no result for
(:func:`cancel_tasks`, the path ``relaybus cancel`` takes), says so on stderr with the ids, and exits
:data:`INTERRUPTED` (130, as a shell reports a SIGINT). A second Ctrl-C stops at once.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from uuid import UUID

from relaybus.bus.base import Bus
from relaybus.exceptions import BusError

__all__ = ["INTERRUPTED", "cancel_tasks", "interrupted_run", "say", "taken_back"]

INTERRUPTED = 130


def taken_back() -> None:
    """Take back the cancellation of the current task that Ctrl-C caused, so it can still publish."""
    current = asyncio.current_task()
    if current is not None:
        current.uncancel()


async def cancel_tasks(bus: Bus, task_ids: Iterable[UUID], reason: str) -> dict[UUID, str]:
    """Publish a cancel request for each id (as ``ProjectOrchestrator.cancel`` does); the ids whose request
    could not be published, with why."""
    from relaybus.orchestrator import ProjectOrchestrator

    orchestrator = ProjectOrchestrator(bus)  # never started: it declares no reply queue, it only publishes
    failed: dict[UUID, str] = {}
    for task_id in dict.fromkeys(task_ids):
        try:
            await orchestrator.cancel(task_id, reason)
        except BusError as exc:
            failed[task_id] = str(exc)
    return failed


async def interrupted_run(bus: Bus, task_ids: Sequence[UUID], *, plan_file: Path, name: str | None) -> int:
    """``relaybus run`` was interrupted with ``task_ids`` published and unanswered; see ``cli/run.py``."""
    if name is not None:
        say(
            f"interrupted: {_count(task_ids)} left running{_listed(task_ids)}; their results wait in "
            f"relaybus.reply.{name}: run `relaybus run {plan_file} --name {name}` again to collect them and "
            "run the rest, or `relaybus cancel ID ...` to stop them"
        )
        return INTERRUPTED
    failed = await cancel_tasks(bus, task_ids, "the caller was interrupted (Ctrl-C on relaybus run)")
    done = [task_id for task_id in task_ids if task_id not in failed]
    say(f"interrupted: cancelled {_count(done)}{_listed(done)}")
    for task_id, why in failed.items():
        say(f"error: the cancel request for task {task_id} was not sent ({why})")
    return INTERRUPTED


def _count(task_ids: Sequence[UUID]) -> str:
    return f"{len(task_ids)} unfinished {'task' if len(task_ids) == 1 else 'tasks'}"


def _listed(task_ids: Sequence[UUID]) -> str:
    return ": " + " ".join(map(str, task_ids)) if task_ids else ""


def say(line: str) -> None:
    """One line on stderr, after the progress bar or the prompt's ``^C``."""
    print(f"relaybus: {line}", file=sys.stderr, flush=True)
