"""What one delivery costs on each way of consuming a queue (issue 18: the loop turns per message).

``python -m bench.consume_paths [--messages N] [--reps R] [--json]``: N messages are queued first (no
consumer), then consumed and acked one by one (prefetch 500) on each path in turn, in one process on the loop
the CLI would choose; the figure is the process's CPU per delivery while it drains the queue, median of R
rounds:

- ``aio-pika``: ``queue.consume`` (aiormq's task per delivery, then aio-pika's task and ``IncomingMessage``);
- ``aio-pika + own task``: the same with a task of the consumer's own per delivery, as relaybus's
  ``AmqpSubscription`` runs its handlers;
- ``aiormq``: ``basic_consume`` on the aiormq channel under aio-pika's robust one (one task per delivery);
- ``aiormq + own task``: the same with a task of the consumer's own;
- ``relaybus AmqpBus.consume``: the bus's own consumer with a handler that acks (``AmqpDelivery``, the settle
  watchdog, the consume hook).

The gap between the first and the third is what consuming below aio-pika's public API would save per delivery,
in the worker and again in a caller's reply consumer; the last row against the second is what relaybus's
delivery layer adds on top.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel
from aiormq.abc import DeliveredMessage

from bench.common import amqp_url, run_measured, unique
from relaybus.bus.base import Delivery
from relaybus.bus.connect import connect

PATHS = ("aio-pika", "aio-pika + own task", "aiormq", "aiormq + own task", "relaybus AmqpBus.consume")
PREFETCH = 500
BODY = b'{"prompt": "hello"}' * 8


class Drain:
    """Counts acked deliveries; ``done`` resolves at the ``n``-th."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.tasks: set[asyncio.Task[None]] = set()

    def acked(self) -> None:
        self.count += 1
        if self.count >= self.n and not self.done.done():
            self.done.set_result(None)

    def spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


async def fill(channel: AbstractChannel, queue: str, n: int) -> None:
    """Queue ``n`` messages and wait until the broker counts them all."""
    await channel.declare_queue(queue, durable=False)
    for start in range(0, n, 500):
        await asyncio.gather(
            *(
                channel.default_exchange.publish(aio_pika.Message(BODY), routing_key=queue)
                for _ in range(min(500, n - start))
            )
        )
    for _ in range(600):
        declared = await channel.declare_queue(queue, passive=True)
        if declared.declaration_result.message_count >= n:
            return
        await asyncio.sleep(0.05)
    raise SystemExit(f"bench.consume_paths: the broker did not count {n} messages in queue {queue!r}")


def acking(
    ack: Callable[[Any], Awaitable[object]], drain: Drain, *, own_task: bool
) -> Callable[[Any], Awaitable[None]]:
    """A consumer callback that acks each delivery with ``ack``, in a task of its own when ``own_task``."""

    async def settle(message: Any) -> None:
        await ack(message)
        drain.acked()

    async def on_message(message: Any) -> None:
        if own_task:
            drain.spawn(settle(message))
        else:
            await settle(message)

    return on_message


async def consume_below_relaybus(
    url: str, queue: str, drain: Drain, path: str
) -> Callable[[], Awaitable[None]]:
    """Consume ``queue`` on aio-pika's robust queue, or (``aiormq`` paths) on the aiormq channel under it."""
    connection = await aio_pika.connect_robust(url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=PREFETCH)
    own_task = path.endswith("own task")
    if path.startswith("aio-pika"):
        declared = await channel.declare_queue(queue, passive=True)
        await declared.consume(acking(lambda message: message.ack(), drain, own_task=own_task))
    else:
        underlay = await channel.get_underlay_channel()

        def ack_raw(message: DeliveredMessage) -> Awaitable[object]:
            return underlay.basic_ack(message.delivery.delivery_tag)

        await underlay.basic_consume(queue, acking(ack_raw, drain, own_task=own_task))
    return connection.close


async def consume_with_relaybus(url: str, queue: str, drain: Drain) -> Callable[[], Awaitable[None]]:
    bus = await connect(url)

    async def handler(delivery: Delivery) -> None:
        await delivery.ack()
        drain.acked()

    await bus.consume(queue, handler, prefetch=PREFETCH)
    return bus.close


async def one_path(url: str, path: str, n: int) -> dict[str, Any]:
    queue = unique("bench-consume")
    filler = await aio_pika.connect(url)
    try:
        channel = await filler.channel(publisher_confirms=False)
        await fill(channel, queue, n)
        drain = Drain(n)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if path == "relaybus AmqpBus.consume":
            close = await consume_with_relaybus(url, queue, drain)
        else:
            close = await consume_below_relaybus(url, queue, drain, path)
        try:
            await asyncio.wait_for(drain.done, 120)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        finally:
            await close()
        left = (await channel.declare_queue(queue, passive=True)).declaration_result.message_count
        await channel.queue_delete(queue)
    finally:
        await filler.close()
    return {"path": path, "acked": drain.count, "left": left, "cpu_us": cpu / n * 1e6, "per_s": n / wall}


async def main_async(n: int, reps: int) -> list[dict[str, Any]]:
    url = amqp_url()
    runs: dict[str, list[dict[str, Any]]] = {path: [] for path in PATHS}
    for _ in range(reps):  # the paths take turns, so a noisy moment spreads over all of them
        for path in PATHS:
            runs[path].append(await one_path(url, path, n))
    rows = []
    for path in PATHS:
        cpu = [r["cpu_us"] for r in runs[path]]
        rows.append(
            {
                "path": path,
                "messages": n,
                "acked": min(r["acked"] for r in runs[path]),
                "left_in_queue": max(r["left"] for r in runs[path]),
                "cpu_us_per_delivery": statistics.median(cpu),
                "cpu_us_min": min(cpu),
                "cpu_us_max": max(cpu),
                "deliveries_per_s": statistics.median(r["per_s"] for r in runs[path]),
            }
        )
    base = rows[0]["cpu_us_per_delivery"]
    for row in rows:
        row["vs_aio_pika"] = row["cpu_us_per_delivery"] / base
    return rows


def main() -> None:
    summary = (__doc__ or "").split("\n\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.consume_paths", description=summary)
    parser.add_argument("--messages", type=int, default=20_000, help="messages per path and round")
    parser.add_argument("--reps", type=int, default=3, help="rounds (median)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    if args.messages < 1 or args.reps < 1:
        parser.error("--messages and --reps must be at least 1")
    rows = run_measured(main_async(args.messages, args.reps))
    if args.json:
        print(json.dumps(rows))
        return
    print(f"{args.messages:,} messages queued, then consumed and acked one by one (prefetch {PREFETCH}):")
    print(f"{'path':28s} {'CPU us/delivery':>16s} {'range':>14s} {'vs aio-pika':>12s} {'deliveries/s':>13s}")
    for row in rows:
        spread = f"{row['cpu_us_min']:.0f}-{row['cpu_us_max']:.0f}"
        print(
            f"{row['path']:28s} {row['cpu_us_per_delivery']:16.1f} {spread:>14s} "
            f"{row['vs_aio_pika']:11.2f}x {row['deliveries_per_s']:13,.0f}"
        )


if __name__ == "__main__":
    main()
