"""``relaybus runs list | show RUN | prune``: the plan runs recorded in a state store.

``list`` shows the most recent runs, newest first: id, start, status counts, duration, tasks, tokens, cost and
the plan's name (``--name PLAN`` for one plan's runs, ``--limit N``). ``show RUN`` shows one run and a table
of its tasks (status, target, worker, attempts, time, tokens, output or error) and their trace ids (one
``trace_id:`` line when all were published in one trace, as by ``relaybus run``, else a column); exit 1 when
no such run is recorded. ``prune`` removes results, claims, journals and runs older than ``--older-than
DAYS`` (default the store's retention, 7 days). Each takes ``--json`` for the whole data. The store is
``--state-url`` (or ``$RELAYBUS_STATE_URL``): the one the workers and ``relaybus run`` were given.
"""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from typing import Any

from ._common import CliError, positive_float, positive_int, run_async
from ._render import make_console
from ._runs_render import run_header, runs_table, tasks_table
from ._state import add_state_url, required_store

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "runs",
        help="list, show and prune the plan runs recorded in a state store",
        description="The plan runs that `relaybus run --state-url URL` (or an orchestrator with a store) "
        "recorded: list them, show one with its tasks, or prune old ones.",
    )
    sub = parser.add_subparsers(dest="runs_command", metavar="list|show|prune", required=True)
    listing = sub.add_parser(
        "list",
        help="the most recent runs, newest first",
        description="The most recent plan runs, newest first, with their status counts, time and tokens.",
    )
    listing.add_argument(
        "--limit", type=positive_int, default=20, metavar="N", help="runs shown (default 20)"
    )
    listing.add_argument("--name", metavar="PLAN", help="only the runs of this plan")
    show = sub.add_parser(
        "show",
        help="one run and its tasks",
        description="One recorded run and a table "
        "of its tasks: status, target, worker, attempts, time, tokens, output or error.",
    )
    show.add_argument("run_id", metavar="RUN", help="the run's id, as `relaybus runs list` prints it")
    prune = sub.add_parser(
        "prune",
        help="remove old results, claims, journals and runs",
        description="Remove "
        "results, claims, journals and runs last touched before the cut-off; live leases "
        "are kept.",
    )
    prune.add_argument(
        "--older-than",
        type=_days,
        metavar="DAYS",
        help="remove what is older than this many days (default: the store's retention, 7 days)",
    )
    for command, func in ((listing, _list), (show, _show), (prune, _prune)):
        add_state_url(command, "where the runs are recorded")
        command.add_argument("--json", action="store_true", help="print the whole data as JSON")
        command.set_defaults(func=lambda args, f=func: run_async(lambda: f(args)))


def _days(text: str) -> float:
    """A number of days > 0 (a fraction is fine: 0.5 is twelve hours)."""
    return positive_float(text)


async def _list(args: argparse.Namespace) -> int:
    async with required_store(args) as store:
        runs = await store.runs(args.limit, name=args.name)
    if args.json:
        print(json.dumps([run.model_dump(mode="json") for run in runs], indent=2))
        return 0
    if not runs:
        which = f" of plan {args.name!r}" if args.name else ""
        print(f"no runs{which} recorded in {store.url}")
        return 0
    out = make_console()
    out.print(runs_table(runs, width=out.width))
    return 0


async def _show(args: argparse.Namespace) -> int:
    async with required_store(args) as store:
        run = await store.run(args.run_id)
    if run is None:
        raise CliError(
            f"no run {args.run_id!r} is recorded in {store.url} (pruned, or recorded in another store): "
            "`relaybus runs list` shows the runs it has",
            1,
        )
    if args.json:
        print(run.model_dump_json(indent=2))
        return 0
    out = make_console()
    for line in run_header(run):
        out.print(line)
    out.print(tasks_table(run, width=out.width))
    return 0


async def _prune(args: argparse.Namespace) -> int:
    older = None if args.older_than is None else timedelta(days=args.older_than)
    async with required_store(args) as store:
        report = await store.prune(older)
    if args.json:
        print(report.model_dump_json(indent=2))
        return 0
    print(
        f"removed {report.results} results, {report.claims} claims, {report.journal_entries} journal entries "
        f"and {report.runs} runs last touched before {report.cutoff.astimezone():%Y-%m-%d %H:%M:%S}"
    )
    return 0
