"""``relaybus status TASK_ID``: a task's stored status and result, from the state store.

Prints the task's status, agent, worker, times, usage, and its output or error (``--json``: the whole
``ExecutionResult``). Exit 0 when a result is stored; 1 when none is (a task unknown to the store, still
running, or pruned: results are kept for the store's retention, 7 days by default). The store is
``--state-url`` (or ``$RELAYBUS_STATE_URL``), the one the workers were given.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._common import CliError, run_async
from ._report import as_json_text
from ._state import add_state_url, required_store
from .cancel import _task_id

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "status",
        help="a task's stored status and result (from a state store)",
        description="Show the result a worker stored for a task in the state store: status, agent, worker, "
        "times, usage and output or error.",
    )
    parser.add_argument("task_id", type=_task_id, metavar="TASK_ID", help="the task's id (a UUID)")
    add_state_url(parser, "where the workers store results")
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON")
    parser.set_defaults(func=lambda args: run_async(lambda: _status(args)))


async def _status(args: argparse.Namespace) -> int:
    async with required_store(args) as store:
        result = await store.result(args.task_id)
    if result is None:
        raise CliError(
            f"no result of task {args.task_id} is stored in {store.url}: it is unknown to this store, still "
            f"running, or older than the store's retention ({store.retention.days} days) and pruned",
            1,
        )
    if args.json:
        print(result.model_dump_json(indent=2))
        return 0
    duration = result.duration_s
    lines = [
        f"task {result.task_id}: {result.status.value}",
        f"agent {result.agent or '-'} on worker {result.worker or '-'}, attempts {result.attempts}",
        f"started {result.started_at or '-'}, finished {result.finished_at or '-'}"
        + ("" if duration is None else f" ({duration:.2f}s)"),
        f"tokens: {result.usage.prompt_tokens} in, {result.usage.completion_tokens} out, "
        f"{result.usage.requests} LLM requests",
    ]
    if result.error is not None:
        lines.append(f"error {result.error.type}: {result.error.message}")
    else:
        lines.append(f"output: {as_json_text(result.output)}")
    print("\n".join(lines))
    return 0
