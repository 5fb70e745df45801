"""``relaybus agents [--listen S] [--json] [-v] [--watch]``: the live workers, their agents, load and backlog.

Listens on ``event.relaybus.worker.*`` for ``--listen`` seconds after asking every worker to announce itself
(a ping on ``event.relaybus.worker.ping``), then prints one row per worker that is not stopped: its agents,
the LLM its executor uses, its load, how many tasks wait in its agents' queues, and the age of its last
heartbeat; ``-v`` adds the ids of the tasks it runs. Exits 0 when at least one live worker answered, 1 when
none did (usable as a health check).

``--watch`` asks again every ``--listen`` seconds and prints the table afresh (``--count N`` stops after N
tables): a worker that stops answering keeps its row while its heartbeat ages, and is marked ``late`` past
three heartbeat intervals.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from relaybus.agents.heartbeat import PING_ROUTING_KEY, WORKER_EVENTS_PATTERN, WorkerHeartbeat
from relaybus.bus.base import Delivery, agent_queue_name
from relaybus.bus.codec import decode_heartbeat, encode_ping
from relaybus.exceptions import BusError, InvalidMessage

from ._common import CliError, add_amqp_url, open_bus, positive_float, positive_int, run_async
from ._render import make_console

__all__ = ["blocked_warning", "collect_heartbeats", "listening", "register", "render_table"]

_LATE_AFTER_INTERVALS = 3


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "agents",
        help="list live workers, their agents, load and backlog",
        description="Ask every worker to announce itself and list the live ones (exit 1 when none answers).",
    )
    parser.add_argument(
        "--listen",
        type=positive_float,
        default=2.0,
        metavar="SECONDS",
        help="how long to collect heartbeats (default 2); with --watch, the time between tables",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON heartbeat per line instead")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also list the ids of the tasks each worker runs"
    )
    parser.add_argument("--watch", action="store_true", help="keep asking and print the table afresh")
    parser.add_argument(
        "--count", type=positive_int, default=None, metavar="N", help="with --watch: stop after N tables"
    )
    add_amqp_url(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_async(lambda: _list(args))


@contextlib.asynccontextmanager
async def listening(bus: Any) -> AsyncIterator[dict[str, WorkerHeartbeat]]:
    """While the block runs, the latest heartbeat of each worker heard (stopped workers included), kept up
    to date; a private queue bound to the worker events, deleted at the end."""
    latest: dict[str, WorkerHeartbeat] = {}
    queue = f"relaybus.cli.agents.{uuid.uuid4().hex}"

    async def on_event(delivery: Delivery) -> None:
        if delivery.routing_key != PING_ROUTING_KEY:
            try:
                beat = decode_heartbeat(delivery.body, delivery.headers, content_type=delivery.content_type)
            except InvalidMessage:
                beat = None
            if beat is not None:
                known = latest.get(beat.worker)
                if known is None or known.timestamp <= beat.timestamp or beat.status == "stopped":
                    latest[beat.worker] = beat
        await delivery.ack()

    await bus.declare_queue(queue, bindings=(WORKER_EVENTS_PATTERN,), durable=False)
    held = False
    try:
        subscription = await bus.consume(queue, on_event, prefetch=256)
        try:
            yield latest
        except HeldBack:
            held = (
                True  # the broker reads nothing more from us: no cancel, no delete (the queue goes with us)
            )
        finally:
            if not held:
                await subscription.cancel()
    finally:
        if not held:
            await bus.delete_queue(queue)


class HeldBack(Exception):
    """The broker held our ping back for the whole listening time (an alarm blocks this connection)."""


async def _ping(bus: Any, listen_s: float) -> None:
    """Ask every worker for a heartbeat; :class:`HeldBack` when the broker does not take the ping in time
    (raised inside :func:`listening`, which then leaves the queue alone)."""
    try:
        async with asyncio.timeout(listen_s):
            await bus.publish(encode_ping())
    except TimeoutError:
        raise HeldBack from None


def blocked_warning(bus: Any) -> str | None:
    """What to tell the operator when RabbitMQ blocks publishing (``connection.blocked``), else None."""
    reason = getattr(bus, "blocked", None)
    if not isinstance(reason, str):
        return None
    return (
        f"RabbitMQ blocks publishing ({reason}): a memory or disk alarm on the broker; workers cannot send "
        "results or heartbeats until it clears (rabbitmqctl status shows the alarm)"
    )


async def collect_heartbeats(bus: Any, listen_s: float) -> dict[str, WorkerHeartbeat]:
    """The latest heartbeat of each worker heard within ``listen_s`` seconds, stopped workers included."""
    async with listening(bus) as latest:
        await _ping(bus, listen_s)
        await asyncio.sleep(listen_s)
    return latest


async def backlogs(bus: Any, beats: Iterable[WorkerHeartbeat]) -> dict[str, int]:
    """Agent name -> the messages waiting in its queue, for the agents of ``beats`` (where the bus says)."""
    count = getattr(bus, "queue_backlog", None)
    found: dict[str, int] = {}
    if count is None:
        return found
    for agent in sorted({agent for beat in beats for agent in beat.agents}):
        with contextlib.suppress(BusError):  # the queue went away meanwhile: no figure
            found[agent] = await count(agent_queue_name(agent))
    return found


def _status(beat: WorkerHeartbeat, age_s: float) -> str:
    return "late" if age_s > _LATE_AFTER_INTERVALS * beat.interval_s else beat.status


def render_table(
    beats: list[WorkerHeartbeat], now: datetime, backlog: Mapping[str, int] | None = None
) -> Table:
    """One row per worker: agents, LLM, load, tasks waiting in its agents' queues, status, heartbeat age."""
    backlog = backlog or {}
    table = Table(title="relaybus workers")
    # The broker node column when the workers are not all on one node (a cluster): else it is the URL given.
    nodes = len({beat.broker for beat in beats}) > 1
    for column in (
        "WORKER",
        "AGENTS",
        "LLM",
        "LOAD",
        "QUEUED",
        "DONE",
        "STATUS",
        "LAST HEARTBEAT",
        *["NODE"] * nodes,
    ):
        whole = column in ("LOAD", "QUEUED", "DONE", "STATUS", "LAST HEARTBEAT")  # never cut or wrapped
        table.add_column(column, no_wrap=whole, overflow="ellipsis" if whole else "fold")
    for beat in sorted(beats, key=lambda b: b.worker):
        age = max(0.0, (now - beat.timestamp).total_seconds())
        queued = [backlog[a] for a in beat.agents if a in backlog]
        table.add_row(
            beat.worker,
            ", ".join(beat.agents),
            beat.llm or "-",
            f"{beat.in_flight}/{beat.capacity}",
            str(sum(queued)) if queued else "-",
            str(beat.processed),
            _status(beat, age),
            f"{age:.1f}s ago",
            *[beat.broker or "-"] * nodes,
        )
    return table


def _running_lines(beats: list[WorkerHeartbeat]) -> list[str]:
    lines = []
    for beat in sorted(beats, key=lambda b: b.worker):
        ids = " ".join(str(task_id) for task_id in beat.running) or "none"
        more = beat.in_flight - len(beat.running)
        lines.append(f"{beat.worker} runs: {ids}" + (f" (and {more} more)" if more > 0 else ""))
    return lines


async def _list(args: argparse.Namespace) -> int:
    bus = await open_bus(args.amqp_url)
    shown = 0
    blocked: str | None = None
    live: list[WorkerHeartbeat] = []
    try:
        async with listening(bus) as latest:
            while True:
                try:
                    await _ping(bus, args.listen)
                except HeldBack:
                    blocked = (
                        blocked_warning(bus) or "RabbitMQ held the ping back for the whole --listen time"
                    )
                    raise
                await asyncio.sleep(args.listen)
                live = [b for b in latest.values() if b.status != "stopped"]
                await _show(args, bus, live, clear=args.watch and shown > 0)
                shown += 1
                if not args.watch or (args.count is not None and shown >= args.count):
                    break
    finally:
        await bus.close()
    if blocked is not None:
        print(f"warning: {blocked}", file=sys.stderr)
    if not live:
        raise CliError(f"no live worker answered within {args.listen:g}s on {bus.url}", 1)
    return 0


async def _show(args: argparse.Namespace, bus: Any, live: list[WorkerHeartbeat], *, clear: bool) -> None:
    if args.json:
        for beat in sorted(live, key=lambda b: b.worker):
            print(beat.model_dump_json(), flush=True)
        return
    if not live and not args.watch:
        return
    console = make_console()
    if clear and console.is_terminal:
        console.clear()
    console.print(render_table(live, datetime.now(UTC), await backlogs(bus, live)))
    if args.verbose:
        for line in _running_lines(live):
            console.print(line, soft_wrap=True)
