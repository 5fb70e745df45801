"""``relaybus run plan.yaml``: run a plan file on the broker, with a progress bar and a results table.

``--json`` prints the whole ``PlanResult`` instead (every task's result, outputs and errors in full) as one
JSON document on stdout; the progress bar, unless ``--no-progress``, still goes to stderr.

Exit codes: 0 every task succeeded; 1 a task did not (or the broker is unreachable); 2 the plan file or a flag
is wrong (one line naming the file, the task and the problem).

``--name NAME`` makes the orchestrator named: its results queue ``relaybus.reply.NAME`` is durable and its
task ids are derived from the plan and the name, so running the same command again after a crash collects
what finished meanwhile and runs only the rest. ``--run-id`` starts a fresh run under the same name.

Ctrl-C (exit 130) publishes no more tasks. An anonymous run cancels the tasks it published and has no result
for, since nobody could read their results; a named run leaves them running (their results wait in its
queue) and says how to collect them (the same command again) or stop them (``relaybus cancel``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from relaybus.agents.agent import Agent
from relaybus.exceptions import PlanError
from relaybus.orchestrator import PlanResult, ProjectOrchestrator, load_plan
from relaybus.orchestrator.orchestrator import DEFAULT_TIMEOUT_S

from ._common import CliError, add_amqp_url, open_bus, positive_float, positive_int, run_async
from ._interrupt import interrupted_run, taken_back
from ._render import PlanProgressBar, agents_table, make_console, results_table, summary_lines
from ._report import plan_document, task_agents

__all__ = ["add_output_options", "default_model_from_env", "print_results", "register"]


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run a plan file (a DAG of tasks) and show the results",
        description="Publish the tasks of a YAML or JSON plan file as their dependencies finish, show a "
        "progress bar and a results table (or, with --json, the whole result as JSON). Exits 1 if any task "
        "did not succeed. The plan's agents must be running (relaybus worker module:Class ...). Schema: see "
        "examples/plans/.",
    )
    parser.add_argument("plan", type=Path, metavar="PLAN_FILE", help="the plan file (.yaml, .yml or .json)")
    add_amqp_url(parser)
    parser.add_argument(
        "--name",
        metavar="NAME",
        help="name the orchestrator: a durable reply queue, so re-running after a crash resumes the plan",
    )
    parser.add_argument(
        "--run-id",
        metavar="ID",
        help="the run whose task ids to use (default: the --name, else a new run each time)",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"deadline of a task whose plan gives no timeout_s (default {DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--max-in-flight",
        type=positive_int,
        metavar="N",
        help="tasks published and unanswered at once (default no limit)",
    )
    add_output_options(parser)
    parser.set_defaults(func=run)


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """``--no-progress`` and ``--json``, shared with ``relaybus demo``."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (results only)")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the whole result (every task's output and error in full) as one JSON document instead "
        "of the tables",
    )


def run(args: argparse.Namespace) -> int:
    return run_async(lambda: _run(args))


def default_model_from_env() -> str:
    """The model the CLI assumes for the cost columns when a task does not name one."""
    provider = os.environ.get("RELAYBUS_LLM_PROVIDER", "echo") or "echo"
    return os.environ.get("RELAYBUS_LLM_MODEL") or provider


def print_results(result: PlanResult, *, as_json: bool = False, known: Iterable[type[Agent]] = ()) -> None:
    """The results on stdout: the tables and the summary, or with ``as_json`` one JSON document.

    ``known``: agents the caller knows of, to name the agent of a task that never ran (see ``_report``)."""
    agents = task_agents(result, known)
    if as_json:
        print(json.dumps(plan_document(result, agents), indent=2, ensure_ascii=False))
        return
    out = make_console()
    out.print(results_table(result, width=out.width, agents=agents))
    out.print(agents_table(result, agents))
    for line in summary_lines(result):
        out.print(line)


async def _run(args: argparse.Namespace) -> int:
    # Check the plan before connecting: a typo in the file should not wait for a broker.
    run_id = args.run_id or args.name or uuid.uuid4().hex
    try:
        plan = load_plan(args.plan, run_id=run_id)
    except PlanError as exc:
        raise CliError(str(exc), 2) from None
    bus = await open_bus(args.amqp_url)
    try:
        async with ProjectOrchestrator(
            bus, name=args.name, default_timeout_s=args.timeout, default_model=default_model_from_env()
        ) as orchestrator:
            try:
                if args.no_progress:
                    result = await orchestrator.run_plan(plan, max_in_flight=args.max_in_flight)
                else:
                    with PlanProgressBar(len(plan.tasks), title=plan.name) as bar:
                        result = await orchestrator.run_plan(
                            plan, on_progress=bar, max_in_flight=args.max_in_flight
                        )
            except asyncio.CancelledError:  # Ctrl-C
                taken_back()
                unfinished = orchestrator.waiting_ids
                return await interrupted_run(bus, unfinished, plan_file=args.plan, name=args.name)
    finally:
        await bus.close()
    print_results(result, as_json=args.json)
    return 0 if result.ok else 1
