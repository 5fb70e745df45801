"""``relaybus submit --topic TOPIC --prompt TEXT [--agent NAME] [--input JSON] [--priority N] [--wait]``.

Without ``--wait``: publishes the task (confirmed by the broker), prints one JSON line
``{"task_id": ..., "routing_key": ..., "trace_id": ...}`` and exits 0; nobody receives its result. With
``--wait``: waits for the result and prints it, an ``ExecutionResult``, as JSON on stdout in every outcome;
exits 0 when it succeeded, 1 otherwise. A task no agent subscribes to is a REJECTED result (type
``NoRouteError``, also said in one line on stderr); no result within ``--timeout`` seconds is a TIMEOUT
result (type ``ReplyTimeout``) whose message names that timeout. With ``--wait`` the trace id goes to stderr
(``relaybus: task <id> trace_id=<32 hex>``): every span and log line of the task carries it. ``--agent
NAME`` addresses one agent; ``--topic`` then defaults to the name.

``--stream`` (implies ``--wait``) prints the task's text as it arrives and its steps on stderr (see
:mod:`relaybus.cli._stream`), then nothing else on success; ``--stream --json`` prints every event as a JSON
line instead, the ``result`` event last. The exit status is the same as with ``--wait``.
Ctrl-C while waiting cancels the task (it says so on stderr), prints its CANCELLED result and exits 130.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from pydantic import ValidationError

from relaybus.bus.base import DEADLINE_HEADER, HeaderValue
from relaybus.bus.codec import encode_task
from relaybus.bus.rpc import ReplyRouter
from relaybus.exceptions import BusError, NoRouteError
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus
from relaybus.telemetry.tracing import start_trace

from ._common import BadUsage, add_amqp_url, open_bus, positive_float, run_async
from ._interrupt import INTERRUPTED, cancel_tasks, say, taken_back
from ._stream import EventPrinter, stream_task

__all__ = ["DEFAULT_WAIT_S", "build_task", "register"]

DEFAULT_WAIT_S = 300.0
_REPLY_MARGIN_S = 2.0


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f'not valid JSON ({exc}); give an object such as \'{{"lang": "py"}}\''
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {type(value).__name__}")
    return value


def _priority(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 9:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to 9, got {text!r}")
    return value


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "submit",
        help="publish one task (and wait for its result with --wait)",
        description="Publish one task to the agents subscribed to its topic (or to one agent by name). "
        "With --wait, print its result as JSON and exit 0 if it succeeded, 1 otherwise.",
    )
    parser.add_argument(
        "--topic", default=None, help="dot-separated topic, e.g. code.review (required unless --agent)"
    )
    parser.add_argument("--prompt", default="", metavar="TEXT", help="the task's prompt")
    parser.add_argument("--agent", default=None, metavar="NAME", help="address one agent by name instead")
    parser.add_argument("--mode", default=None, metavar="NAME", help="execution mode (llm, api, script, ...)")
    parser.add_argument(
        "--input",
        type=_json_object,
        default=None,
        metavar="JSON",
        help='a JSON object, e.g. \'{"lang": "py"}\'',
    )
    parser.add_argument(
        "--priority",
        type=_priority,
        default=0,
        metavar="N",
        help="0 (default) to 9, sent as the AMQP priority",
    )
    parser.add_argument("--wait", action="store_true", help="wait for the result and print it as JSON")
    parser.add_argument(
        "--stream",
        action="store_true",
        help="wait, printing the task's text as it arrives (its steps on stderr)",
    )
    parser.add_argument(
        "--json", action="store_true", help="with --stream: one JSON line per event, the result last"
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help=f"deadline for the task, sent to the worker (default with --wait {DEFAULT_WAIT_S:g}, else none)",
    )
    add_amqp_url(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    task = build_task(args)  # before connecting: a wrong flag should not wait for a broker
    return run_async(lambda: _submit(args, task))


def build_task(args: argparse.Namespace) -> AgentTask:
    """The task the flags describe; :class:`BadUsage` naming the flag that is wrong."""
    if args.topic is None and args.agent is None:
        raise BadUsage("give --topic TOPIC (or --agent NAME to address one agent)")
    # An agent's name is a valid topic once empty words are dropped ("a..b" -> "a.b").
    topic = args.topic if args.topic is not None else ".".join(w for w in args.agent.split(".") if w)
    try:
        return AgentTask(
            topic=topic,
            prompt=args.prompt,
            input=args.input or {},
            agent=args.agent,
            mode=args.mode,
            priority=args.priority,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise BadUsage(problems) from None


def _timed_out(task: AgentTask, wait_s: float, defaulted: bool) -> ExecutionResult:
    target = f"agent {task.agent!r}" if task.agent else f"topic {task.topic!r}"
    which = f"--timeout {wait_s:g}" + (", the default with --wait" if defaulted else "")
    return ExecutionResult.failed(
        task.id,
        ExecutionStatus.TIMEOUT,
        "ReplyTimeout",
        f"no result for task {task.id} within {wait_s:g}s ({which}); a worker for {target} may be slow, "
        "busy or not running: start one (relaybus agents lists them) or give a longer --timeout",
        retryable=True,
    )


async def _submit(args: argparse.Namespace, task: AgentTask) -> int:
    wait_s: float = args.timeout or DEFAULT_WAIT_S
    args.wait = args.wait or args.stream
    headers: dict[str, HeaderValue] = {}
    if args.wait or args.timeout is not None:
        headers[DEADLINE_HEADER] = f"{time.time() + wait_s:.3f}"
    bus = await open_bus(args.amqp_url)
    try:
        with start_trace(f"submit {task.routing_key}") as trace_id:
            if not args.wait:
                try:
                    await bus.publish(encode_task(task, reply_to=None, headers=headers))
                except NoRouteError as exc:
                    print(f"relaybus: error: {exc}", file=sys.stderr)
                    return 1
                sent = {"task_id": str(task.id), "routing_key": task.routing_key, "trace_id": trace_id}
                print(json.dumps(sent))
                return 0
            print(f"relaybus: task {task.id} trace_id={trace_id}", file=sys.stderr)
            try:
                result = await _wait_for(bus, task, wait_s, headers, stream=args.stream, as_json=args.json)
            except asyncio.CancelledError:  # Ctrl-C: nobody will read the result, so stop the task
                taken_back()
                return await _interrupted(bus, task)
    finally:
        await bus.close()
    if result.error is not None and result.error.type == "ReplyTimeout":
        result = _timed_out(task, wait_s, defaulted=args.timeout is None)
    if not args.stream:
        print(result.model_dump_json(indent=2))
    if result.ok:
        return 0
    why = f": {' '.join(result.error.message.split())[:300]}" if result.error else ""
    print(f"relaybus: error: task {task.id} ended {result.status.value}{why}", file=sys.stderr)
    return 1


async def _interrupted(bus: Any, task: AgentTask) -> int:
    """The wait was interrupted: cancel the task, print its CANCELLED result, exit 130."""
    reason = "the caller was interrupted (Ctrl-C on relaybus submit --wait)"
    failed = await cancel_tasks(bus, [task.id], reason)
    result = ExecutionResult.failed(task.id, ExecutionStatus.CANCELLED, "Interrupted", reason)
    print(result.model_dump_json(indent=2))
    if failed:
        say(f"interrupted: the cancel request for task {task.id} was not sent ({failed[task.id]})")
    else:
        say(f"interrupted: cancelled task {task.id}")
    return INTERRUPTED


async def _wait_for(
    bus: Any,
    task: AgentTask,
    wait_s: float,
    headers: dict[str, HeaderValue],
    *,
    stream: bool = False,
    as_json: bool = False,
) -> ExecutionResult:
    """The task's result (its events printed as they come with ``stream``); a publish the broker refuses
    becomes a REJECTED (no route) or FAILURE result."""
    # A little longer than the deadline, so the worker's own TIMEOUT result (which says what it stopped)
    # arrives before the router gives up.
    timeout = wait_s + _REPLY_MARGIN_S
    printer = EventPrinter(sys.stdout, sys.stderr, as_json=as_json) if stream else None
    try:
        if printer is not None:
            result = await stream_task(bus, task, timeout=timeout, headers=headers, printer=printer)
        else:
            async with ReplyRouter(bus) as router:
                result = await router.request(task, timeout=timeout, headers=headers)
    except NoRouteError as exc:
        result = ExecutionResult.failed(task.id, ExecutionStatus.REJECTED, "NoRouteError", str(exc))
    except BusError as exc:
        result = ExecutionResult.failed(
            task.id, ExecutionStatus.FAILURE, "BusError", str(exc), retryable=True
        )
    if printer is not None:
        printer.end(result)
    return result
