"""``relaybus cancel TASK_ID [TASK_ID ...]``: ask the workers to stop these tasks.

Publishes a ``CancelRequest`` per task on ``event.relaybus.cancel``, as ``ProjectOrchestrator.cancel`` does.
A worker running the task stops it and answers its caller CANCELLED; a running worker that receives the task
afterwards answers CANCELLED without running it. Nobody confirms: a task that already finished, or that no
worker holds, is not affected. Prints ``cancel requested for ID`` per task and exits 0; a request the broker
did not take is said on stderr with the id, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

from ._common import add_amqp_url, open_bus, run_async
from ._interrupt import cancel_tasks

__all__ = ["register"]

_DEFAULT_REASON = "cancelled from the command line"


def _task_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a task id (a UUID, as `relaybus submit` prints it)"
        ) from None


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "cancel",
        help="ask the workers to stop tasks (by task id)",
        description="Ask every worker to cancel these tasks: the one running a task stops it and its caller "
        "gets a CANCELLED result. Nothing confirms it; a finished task is not affected.",
    )
    parser.add_argument("task_ids", nargs="+", type=_task_id, metavar="TASK_ID", help="the tasks to cancel")
    parser.add_argument(
        "--reason", default=_DEFAULT_REASON, metavar="TEXT", help="why, as the CANCELLED result will say"
    )
    add_amqp_url(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_async(lambda: _cancel(args))


async def _cancel(args: argparse.Namespace) -> int:
    bus = await open_bus(args.amqp_url)
    try:
        failed = await cancel_tasks(bus, args.task_ids, args.reason)
    finally:
        await bus.close()
    for task_id in dict.fromkeys(args.task_ids):
        if task_id not in failed:
            print(f"cancel requested for {task_id}")
    for task_id, why in failed.items():
        print(f"relaybus: error: the cancel request for {task_id} was not sent: {why}", file=sys.stderr)
    return 1 if failed else 0
