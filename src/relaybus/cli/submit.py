"""``relaybus submit --topic T --prompt P [--agent NAME] [--input JSON] [--wait] [--timeout S]``.

Without ``--wait``: publishes the task (confirmed by the broker), prints
``{"task_id": ..., "routing_key": ...}`` and exits 0; nobody receives its result. With ``--wait``: waits for
the result, prints it as JSON on stdout and exits 0 when it succeeded, 1 otherwise (FAILURE, TIMEOUT, ...).
A task no agent subscribes to fails at once with one line naming the routing key (exit 1).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from pydantic import ValidationError

from relaybus.bus.base import DEADLINE_HEADER, HeaderValue
from relaybus.bus.codec import encode_task
from relaybus.bus.rpc import ReplyRouter
from relaybus.exceptions import NoRouteError
from relaybus.messages import AgentTask

from ._common import CliError, add_amqp_url, open_bus, positive_float, run_async

__all__ = ["DEFAULT_WAIT_S", "register"]

DEFAULT_WAIT_S = 300.0
_REPLY_MARGIN_S = 2.0


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "submit",
        help="publish one task (and wait for its result with --wait)",
        description="Publish one task to the agents subscribed to its topic (or to one agent by name).",
    )
    parser.add_argument("--topic", required=True, help="dot-separated topic, e.g. code.review")
    parser.add_argument("--prompt", default="", help="the task's prompt")
    parser.add_argument("--agent", default=None, metavar="NAME", help="address one agent by name instead")
    parser.add_argument("--mode", default=None, help="execution mode (llm, api, script, ...)")
    parser.add_argument(
        "--input", default=None, metavar="JSON", help='a JSON object, e.g. \'{"lang": "py"}\''
    )
    parser.add_argument("--wait", action="store_true", help="wait for the result and print it as JSON")
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help=f"deadline for the task, sent to the worker (with --wait default {DEFAULT_WAIT_S:g})",
    )
    add_amqp_url(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_async(lambda: _submit(args))


def build_task(args: argparse.Namespace) -> AgentTask:
    """The task the flags describe; CliError (exit 2) naming the flag that is wrong."""
    payload: Any = {}
    if args.input is not None:
        try:
            payload = json.loads(args.input)
        except ValueError as exc:
            raise CliError(
                f'--input is not valid JSON ({exc}); give an object such as \'{{"lang": "py"}}\''
            ) from None
        if not isinstance(payload, dict):
            raise CliError(f"--input must be a JSON object, got {type(payload).__name__}")
    try:
        return AgentTask(
            topic=args.topic, prompt=args.prompt, input=payload, agent=args.agent, mode=args.mode
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise CliError(problems) from None


async def _submit(args: argparse.Namespace) -> int:
    task = build_task(args)
    wait_s: float = args.timeout or DEFAULT_WAIT_S
    headers: dict[str, HeaderValue] = {}
    if args.wait or args.timeout is not None:
        headers[DEADLINE_HEADER] = f"{time.time() + wait_s:.3f}"
    bus = await open_bus(args.amqp_url)
    try:
        if not args.wait:
            await bus.publish(encode_task(task, reply_to=None, headers=headers))
            print(json.dumps({"task_id": str(task.id), "routing_key": task.routing_key}))
            return 0
        async with ReplyRouter(bus) as router:
            # A little longer than the deadline, so the worker's own TIMEOUT result (which says what it
            # stopped) arrives before the router gives up.
            result = await router.request(task, timeout=wait_s + _REPLY_MARGIN_S, headers=headers)
        print(result.model_dump_json(indent=2))
        return 0 if result.ok else 1
    except NoRouteError as exc:
        raise CliError(str(exc), 1) from None
    finally:
        await bus.close()
