"""How the orchestrator's cost grows with the tasks it has in flight (issue 18): memory and CPU per task.

    python -m bench.scale [--sizes 1000,10000,50000] [--json]

For each size N, in a fresh process of its own (so that one size's memory does not hide the next one's): a
``relaybus worker bench.agents:NoopAgent`` process declares the agent's queue and is stopped; a
``ProjectOrchestrator`` sends N tasks with one ``execute_tasks`` call and waits until all N are in the queue
(so all N are in flight at once, none answered); its resident memory then, over its memory before, is the
cost of holding them. Then the worker is started again and drains them: the throughput from its first
consumer to the last result, and the orchestrator's CPU per task over the whole call. Flat CPU per task and
throughput across sizes mean the cost per task does not grow with the tasks in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import psutil

from bench import broker
from bench.common import BIN, amqp_url, run_measured, unique
from relaybus.bus.connect import connect
from relaybus.messages import AgentTask
from relaybus.orchestrator.orchestrator import ProjectOrchestrator

KiB = 1024


async def start_worker(agent: str) -> asyncio.subprocess.Process:
    worker = await asyncio.create_subprocess_exec(
        str(BIN / "relaybus"),
        "--log-level",
        "WARNING",
        "worker",
        "bench.agents:NoopAgent",
        "--amqp-url",
        amqp_url(),
        "--concurrency",
        "1000",
        env={**os.environ, "RELAYBUS_BENCH_AGENT_NAME": agent},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    await broker.wait_for_consumer(f"relaybus.agent.{agent}", timeout=60)
    return worker


async def stop(worker: asyncio.subprocess.Process) -> None:
    if worker.returncode is None:
        worker.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(worker.wait(), 30)
    except TimeoutError:
        worker.kill()
        await worker.wait()


async def wait_queued(queue: str, n: int, call: asyncio.Future[Any]) -> None:
    """Until ``queue`` holds ``n`` messages (or ``call`` ended): one connection, opened before the flood."""
    import aio_pika

    async with await aio_pika.connect(amqp_url()) as connection:
        channel = await connection.channel()
        while not call.done():
            declared = await channel.declare_queue(queue, passive=True)
            if int(declared.declaration_result.message_count or 0) >= n:
                return
            await asyncio.sleep(0.2)


async def one_size(n: int) -> dict[str, Any]:
    agent = unique("bench-scale")
    queue = f"relaybus.agent.{agent}"
    me = psutil.Process()
    bus = await connect(amqp_url())
    worker = await start_worker(agent)
    try:
        async with ProjectOrchestrator(bus, default_timeout_s=600) as orchestrator:
            warm = await orchestrator.execute_tasks(
                [AgentTask(topic="bench.scale", agent=agent) for _ in range(200)]
            )
            assert all(r.ok for r in warm), warm[:3]
            await stop(worker)
            tasks = [AgentTask(topic="bench.scale", agent=agent) for _ in range(n)]
            rss_before = me.memory_info().rss
            cpu_before = time.process_time()
            call = asyncio.ensure_future(orchestrator.execute_tasks(tasks))
            await wait_queued(queue, n, call)
            held = me.memory_info().rss - rss_before
            worker = await start_worker(agent)
            drain_start = time.perf_counter()
            results = await call
            drain_s = time.perf_counter() - drain_start
            cpu_s = time.process_time() - cpu_before
    finally:
        await stop(worker)
        await bus.close()
        await broker.delete_queues([queue])
    return {
        "n": n,
        "errors": sum(1 for r in results if not r.ok),
        "held_kib_per_task": held / n / KiB,
        "drain_tasks_per_s": n / drain_s,
        "orchestrator_cpu_us_per_task": cpu_s / n * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.scale", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd")
    one = sub.add_parser("one")
    one.add_argument("--n", type=int, required=True)
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.cmd == "one":
        print(json.dumps(run_measured(one_size(args.n))))
        return
    rows = []
    for n in (int(size) for size in args.sizes.split(",")):
        done = subprocess.run(
            [sys.executable, "-m", "bench.scale", "one", "--n", str(n)],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"size {n} failed: {done.stderr[-2000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print("| tasks in flight | held per task (KiB) | drain (tasks/s) | orchestrator CPU/task (us) | errors |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['n']:,} | {row['held_kib_per_task']:.2f} | {row['drain_tasks_per_s']:,.0f} "
            f"| {row['orchestrator_cpu_us_per_task']:,.0f} | {row['errors']} |"
        )


if __name__ == "__main__":
    main()
