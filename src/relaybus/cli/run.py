"""``relaybus run plan.yaml``: run a plan file on the broker, with a progress bar and a results table.

Exit codes: 0 every task succeeded; 1 a task did not (or the broker is unreachable); 2 the plan file or a flag
is wrong (one line naming the file, the task and the problem).

``--name NAME`` makes the orchestrator named: its results queue ``relaybus.reply.NAME`` is durable and its
task ids are derived from the plan and the name, so running the same command again after a crash collects
what finished meanwhile and runs only the rest. ``--run-id`` starts a fresh run under the same name.
"""

from __future__ import annotations

import argparse
import os
import uuid
from pathlib import Path
from typing import Any

from relaybus.exceptions import PlanError
from relaybus.log import configure_logging
from relaybus.orchestrator import PlanResult, ProjectOrchestrator, load_plan
from relaybus.orchestrator.orchestrator import DEFAULT_TIMEOUT_S

from ._common import CliError, add_amqp_url, open_bus, positive_float, positive_int, run_async
from ._render import PlanProgressBar, agents_table, make_console, results_table, summary_lines

__all__ = ["default_model_from_env", "print_results", "quiet_info_logs", "register"]


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run a plan file (a DAG of tasks) and show the results",
        description="Publish the tasks of a YAML or JSON plan file as their dependencies finish, show a "
        "progress bar and a results table. Exits 1 if any task did not succeed. The plan's agents must be "
        "running (relaybus worker module:Class ...). Schema: see examples/plans/.",
    )
    parser.add_argument("plan", type=Path, help="the plan file (.yaml, .yml or .json)")
    add_amqp_url(parser)
    parser.add_argument(
        "--name",
        help="name the orchestrator: a durable reply queue, so re-running after a crash resumes the plan",
    )
    parser.add_argument(
        "--run-id",
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
        "--max-in-flight", type=positive_int, metavar="N", help="tasks published and unanswered at once"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (results only)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    quiet_info_logs(args)
    return run_async(lambda: _run(args))


def quiet_info_logs(args: argparse.Namespace) -> None:
    """Keep the terminal for the progress bar and the tables: log warnings and errors only, unless the user
    asked for another level than the default INFO (``relaybus --log-level DEBUG run ...``)."""
    if str(args.log_level).upper() == "INFO":
        configure_logging(level="WARNING", json=args.log_json)


def default_model_from_env() -> str:
    """The model the CLI assumes for the cost columns when a task does not name one."""
    provider = os.environ.get("RELAYBUS_LLM_PROVIDER", "echo") or "echo"
    return os.environ.get("RELAYBUS_LLM_MODEL") or provider


def print_results(result: PlanResult) -> None:
    out = make_console()
    out.print(results_table(result))
    out.print(agents_table(result))
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
            if args.no_progress:
                result = await orchestrator.run_plan(plan, max_in_flight=args.max_in_flight)
            else:
                with PlanProgressBar(len(plan.tasks), title=plan.name) as bar:
                    result = await orchestrator.run_plan(
                        plan, on_progress=bar, max_in_flight=args.max_in_flight
                    )
    finally:
        await bus.close()
    print_results(result)
    return 0 if result.ok else 1
