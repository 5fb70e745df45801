"""Running a named run again: never a silent replay of old results.

A name reads as a job one repeats, but a named run's task ids come from the plan and the name, so running it
again after it finished would publish the same tasks, which the workers answer from their stored results
(or duplicate caches) without running anything. So:

- **With a state store** ``relaybus run plan.yaml --name nightly`` first looks the run up: when the run
  ``nightly`` finished, nothing is published; the run is reported as already complete, with its date, its
  status counts and how to run it again: ``--new`` (a new run, new task ids; its id is printed on stderr,
  so that an interrupted ``--new`` run can be resumed with ``--run-id ID``) or ``--run-id ID``. Exit 0
  (nothing failed; ``--json`` prints ``{"already_complete": true, "run": ...}``). An unfinished run (a crash,
  Ctrl-C) is resumed: only its unfinished tasks run.
- **Without a store** the CLI cannot know before publishing; after the run, results that finished before
  the run started (answered from the workers' duplicate caches) are counted and a note on stderr says so,
  with the same hint.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from datetime import datetime, timedelta

from relaybus.orchestrator import PlanResult
from relaybus.state import RunDetail, StateStore

from ._runs_render import statuses_text, when

__all__ = ["finished_run", "new_run_id", "note_replayed", "report_finished"]


def new_run_id() -> str:
    """A run id for a run that names none: 12 hex digits, short enough to type in ``runs show``."""
    return uuid.uuid4().hex[:12]


async def finished_run(store: StateStore, run_id: str) -> RunDetail | None:
    """The run ``run_id`` when it is recorded and every task of it finished, else None."""
    run = await store.run(run_id)
    return run if run is not None and run.is_finished else None


def _again(args: argparse.Namespace) -> str:
    name = f" --name {args.name}" if args.name else ""
    return (
        f"to run it again: relaybus run {args.plan}{name} --new (a new run with new task ids), "
        f"or --run-id ID to give that run an id"
    )


def report_finished(run: RunDetail, args: argparse.Namespace, *, as_json: bool) -> None:
    """Say that the named run finished already (stdout), with its date and how to run it again."""
    message = (
        f"run {run.run_id!r} of plan {run.name!r} already completed on {when(run.finished_at)} "
        f"({statuses_text(run.statuses)}); nothing was run again. {_again(args)}; "
        f"`relaybus runs show {run.run_id}` shows its results"
    )
    if as_json:
        document = {"already_complete": True, "message": message, "run": run.model_dump(mode="json")}
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(message)


def note_replayed(result: PlanResult, args: argparse.Namespace, started: datetime) -> None:
    """On stderr: how many results of this run, which began at ``started``, were produced before it (answered
    from the workers' duplicate caches); a second of slack for the clocks of other hosts."""
    before = started - timedelta(seconds=1)
    old = [
        r.finished_at
        for r in result.results.values()
        if r.worker is not None
        and r.started_at is not None
        and r.finished_at is not None
        and r.started_at < before
    ]
    if not old:
        return
    total = len(result.results)
    already = f"run {args.name!r} had already completed: " if len(old) == total else ""
    print(
        f"note: {already}{len(old)} of {total} results finished before this run started (the last on "
        f"{when(max(old))}): the workers answered them from their caches and did not run them again; "
        f"{_again(args)} (with --state-url a finished run is reported before anything is published)",
        file=sys.stderr,
    )
