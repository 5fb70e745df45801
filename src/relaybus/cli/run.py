"""``relaybus run plan.yaml``: run a plan file on the broker, with a progress bar and a results table.

``--json`` prints the whole ``PlanResult`` instead (every task's result, outputs and errors in full) as one
JSON document on stdout; the progress bar, unless ``--no-progress``, still goes to stderr. With the progress
bar, the tasks are streamed: each running task has a row under the bar with its latest step (see
:mod:`relaybus.cli._steps`).

Exit codes: 0 every task succeeded; 1 a task did not (or the broker is unreachable); 2 the plan file or a flag
is wrong (one line naming the file, the task and the problem).

``--metrics-port PORT`` serves the plan's Prometheus metrics (``relaybus_plan_*``: tasks by agent and
status, publish-to-result seconds, in flight, pending, tokens) at ``/metrics`` while it runs, and ``/healthz``
(200 while the broker connection is up). The plan runs in one trace (the caller's, else a new one), whose id
ends the summary (``trace_id: <32 hex>``, and ``"trace_id"`` in ``--json``) and is logged at the start
(``plan_started``, INFO): every task's spans and log lines carry it.

``--name NAME`` makes the orchestrator named: its results queue ``relaybus.reply.NAME`` is durable and its
task ids are derived from the plan and the name, so running the same command again after a crash collects
what finished meanwhile and runs only the rest. ``--run-id`` starts a fresh run under the same name.

Running a named run again after it finished (see :mod:`relaybus.cli.rerun`) runs nothing and says so: with
a state store (``--state-url`` / ``$RELAYBUS_STATE_URL``) the finished run is reported with its date and the
way to run it again, ``--new`` (a new run id, printed on stderr so that run can be resumed with
``--run-id``) or ``--run-id ID``; without a store the results the workers answered from their duplicate
caches are shown with a note saying so. With a store every run is recorded (``relaybus runs list``).
Ctrl-C (exit 130) publishes no more tasks. An anonymous run cancels the tasks it published and has no result
for, since nobody could read their results; a named run leaves them running (their results wait in its
queue) and says how to collect them (the same command again) or stop them (``relaybus cancel``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relaybus.agents.agent import Agent
from relaybus.exceptions import PlanError
from relaybus.log import get_logger
from relaybus.orchestrator import (
    Plan,
    PlanProgress,
    PlanResult,
    ProgressCallback,
    ProjectOrchestrator,
    load_plan,
)
from relaybus.orchestrator.orchestrator import DEFAULT_TIMEOUT_S
from relaybus.telemetry.health import bus_health
from relaybus.telemetry.plan_metrics import PlanMetrics
from relaybus.telemetry.tracing import start_trace

from ._common import BadUsage, CliError, add_amqp_url, open_bus, positive_float, positive_int, run_async
from ._interrupt import interrupted_run, taken_back
from ._metrics import add_metrics_options, serve_metrics
from ._render import PlanProgressBar, agents_table, make_console, results_table, summary_lines
from ._report import plan_document, task_agents
from ._state import add_state_url, optional_store
from ._steps import StepRows
from .rerun import finished_run, new_run_id, note_replayed, report_finished

if TYPE_CHECKING:
    from relaybus.state import StateStore

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
        "--new",
        action="store_true",
        help="with --name: start a new run (new task ids) even if a run of that name finished before",
    )
    add_state_url(parser, "record the run (relaybus runs list), resume it, and report a finished named run")
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
    add_metrics_options(parser)
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


def _both(first: ProgressCallback, second: ProgressCallback) -> ProgressCallback:
    def both(event: PlanProgress) -> None:
        first(event)
        second(event)

    return both


def default_model_from_env() -> str:
    """The model the CLI assumes for the cost columns when a task does not name one."""
    provider = os.environ.get("RELAYBUS_LLM_PROVIDER", "echo") or "echo"
    return os.environ.get("RELAYBUS_LLM_MODEL") or provider


def print_results(
    result: PlanResult,
    *,
    as_json: bool = False,
    known: Iterable[type[Agent]] = (),
    trace_id: str | None = None,
) -> None:
    """The results on stdout: the tables and the summary, or with ``as_json`` one JSON document.

    ``known``: agents the caller knows of, to name the agent of a task that never ran (see ``_report``);
    ``trace_id``: the run's trace, the summary's last line (a ``trace_id`` key in JSON)."""
    agents = task_agents(result, known)
    if as_json:
        document = plan_document(result, agents)
        if trace_id is not None:
            document["trace_id"] = trace_id
        print(json.dumps(document, indent=2, ensure_ascii=False))
        return
    out = make_console()
    out.print(results_table(result, width=out.width, agents=agents))
    out.print(agents_table(result, agents))
    for line in summary_lines(result):
        out.print(line)
    if trace_id is not None:
        out.print(f"trace_id: {trace_id}")


async def _run(args: argparse.Namespace) -> int:
    if args.new and args.run_id:
        raise BadUsage("--new and --run-id exclude each other: --new makes a new run id, --run-id names one")
    # Check the plan before connecting: a typo in the file should not wait for a broker.
    run_id = args.run_id or (None if args.new else args.name) or new_run_id()
    if args.new and args.name:
        print(f"run id {run_id}: resume this run with --name {args.name} --run-id {run_id}", file=sys.stderr)
    try:
        plan = load_plan(args.plan, run_id=run_id)
    except PlanError as exc:
        raise CliError(str(exc), 2) from None
    store = optional_store(args)
    if store is not None:
        await store.open()
    try:
        if store is not None and not args.new and (args.name or args.run_id):
            finished = await finished_run(store, run_id)
            if finished is not None:
                report_finished(finished, args, as_json=args.json)
                return 0
        started = datetime.now(UTC)
        outcome = await _run_plan(args, plan, run_id, store)
    finally:
        if store is not None:
            await store.close()
    if isinstance(outcome, int):  # interrupted (Ctrl-C): it said what it did; exit 130
        return outcome
    result, trace_id = outcome
    print_results(result, as_json=args.json, trace_id=trace_id)
    if args.name and not args.json:
        note_replayed(result, args, started)
    return 0 if result.ok else 1


async def _run_plan(
    args: argparse.Namespace, plan: Plan, run_id: str, store: StateStore | None
) -> tuple[PlanResult, str] | int:
    """The plan's result and trace id; an exit code instead when Ctrl-C interrupted it."""
    bus = await open_bus(args.amqp_url)
    metrics = None if args.metrics_port is None else PlanMetrics()
    try:
        async with contextlib.AsyncExitStack() as stack:
            if metrics is not None:
                server = await serve_metrics(args, metrics, lambda: bus_health(bus), "run")
                stack.push_async_callback(server.close)
            orchestrator = await stack.enter_async_context(
                ProjectOrchestrator(
                    bus,
                    name=args.name,
                    default_timeout_s=args.timeout,
                    default_model=default_model_from_env(),
                    state=store,
                )
            )
            trace_id = stack.enter_context(start_trace(f"run {plan.name}"))
            log = get_logger("relaybus.cli.run")
            log.info("plan_started", plan=plan.name, run_id=run_id, trace_id=trace_id)
            try:
                if args.no_progress:
                    result = await orchestrator.run_plan(
                        plan, on_progress=metrics, max_in_flight=args.max_in_flight, run_id=run_id
                    )
                    return result, trace_id
                bar = stack.enter_context(PlanProgressBar(len(plan.tasks), title=plan.name))
                progress = bar if metrics is None else _both(bar, metrics)
                steps = StepRows(bar.progress, lambda task_id: plan.keys.get(task_id, str(task_id)))
                result = await orchestrator.run_plan(
                    plan,
                    on_progress=progress,
                    max_in_flight=args.max_in_flight,
                    run_id=run_id,
                    on_event=steps,
                )
                return result, trace_id
            except asyncio.CancelledError:  # Ctrl-C
                taken_back()
                unfinished = orchestrator.waiting_ids
                return await interrupted_run(bus, unfinished, plan_file=args.plan, name=args.name)
    finally:
        await bus.close()
