"""``relaybus agents [--listen S] [--json]``: the live workers, their agents, load and last heartbeat.

Listens on ``event.relaybus.worker.*`` for ``--listen`` seconds after asking every worker to announce itself
(a ping on ``event.relaybus.worker.ping``), then prints one row per worker that is not stopped. Exits 0 when
at least one live worker answered, 1 when none did (usable as a health check).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from relaybus.agents.heartbeat import PING_ROUTING_KEY, WORKER_EVENTS_PATTERN, WorkerHeartbeat
from relaybus.bus.base import Delivery
from relaybus.bus.codec import decode_heartbeat, encode_ping
from relaybus.exceptions import InvalidMessage

from ._common import CliError, add_amqp_url, open_bus, positive_float, run_async

__all__ = ["blocked_warning", "collect_heartbeats", "register", "render_table"]


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "agents",
        help="list live workers, their agents and load",
        description="Ask every worker to announce itself and list the live ones (exit 1 when none answers).",
    )
    parser.add_argument(
        "--listen",
        type=positive_float,
        default=2.0,
        metavar="SECONDS",
        help="how long to collect heartbeats (default 2)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON heartbeat per line instead")
    add_amqp_url(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_async(lambda: _list(args))


async def collect_heartbeats(bus: Any, listen_s: float) -> dict[str, WorkerHeartbeat]:
    """The latest heartbeat of each worker heard within ``listen_s`` seconds, stopped workers included."""
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
    blocked = False
    try:
        subscription = await bus.consume(queue, on_event, prefetch=256)
        try:
            async with asyncio.timeout(listen_s):
                await bus.publish(encode_ping())
        except TimeoutError:  # a broker alarm holds publishes back (and then reads nothing from us)
            blocked = True
            return latest  # the queue is exclusive: it goes with the connection
        await asyncio.sleep(listen_s)
        await subscription.cancel()
    finally:
        if not blocked:
            await bus.delete_queue(queue)
    return latest


def blocked_warning(bus: Any) -> str | None:
    """What to tell the operator when RabbitMQ blocks publishing (``connection.blocked``), else None."""
    reason = getattr(bus, "blocked", None)
    if not isinstance(reason, str):
        return None
    return (
        f"RabbitMQ blocks publishing ({reason}): a memory or disk alarm on the broker; workers cannot send "
        "results or heartbeats until it clears (rabbitmqctl status shows the alarm)"
    )


def render_table(beats: list[WorkerHeartbeat], now: datetime) -> Table:
    table = Table(title="relaybus workers")
    nodes = any(beat.broker for beat in beats)  # the broker node column, when workers report one
    for column in ("WORKER", "AGENTS", "LOAD", "PROCESSED", "STATUS", "LAST HEARTBEAT", *["NODE"] * nodes):
        table.add_column(column)
    for beat in sorted(beats, key=lambda b: b.worker):
        age = max(0.0, (now - beat.timestamp).total_seconds())
        table.add_row(
            beat.worker,
            ", ".join(beat.agents),
            f"{beat.in_flight}/{beat.capacity}",
            str(beat.processed),
            beat.status,
            f"{age:.1f}s ago",
            *[beat.broker or "-"] * nodes,
        )
    return table


async def _list(args: argparse.Namespace) -> int:
    bus = await open_bus(args.amqp_url)
    try:
        beats = await collect_heartbeats(bus, args.listen)
        blocked = blocked_warning(bus)
    finally:
        await bus.close()
    if blocked is not None:
        print(f"warning: {blocked}", file=sys.stderr)
    live = [b for b in beats.values() if b.status != "stopped"]
    if args.json:
        for beat in sorted(live, key=lambda b: b.worker):
            print(beat.model_dump_json())
    elif live:
        console = Console()
        if not console.is_terminal:
            console = Console(width=160)  # a pipe or a file: don't squeeze the table into 80 columns
        console.print(render_table(live, datetime.now(UTC)))
    if not live:
        raise CliError(f"no live worker answered within {args.listen:g}s on {bus.url}", 1)
    return 0
