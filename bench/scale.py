"""How the orchestrator's cost grows with the tasks it has in flight (issue 18): memory and CPU per task.

    python -m bench.scale [--sizes 1000,10000,50000] [--json]

For each size N, in a fresh process of its own (so that one size's memory does not hide the next one's): a
``relaybus worker bench.agents:NoopAgent`` process declares the agent's queue and is stopped; a
``ProjectOrchestrator`` sends N tasks with one ``execute_tasks`` call and waits until all N are in the queue
(so all N are in flight at once, none answered); its resident memory then, over its memory before, is the
cost of holding them. Then the worker is started again and drains them: the throughput from its first
consumer to the last result, and the orchestrator's CPU per task over the whole call. Flat CPU per task and
throughput across sizes mean the cost per task does not grow with the tasks in flight.

Beside it, at each size, the raw aio-pika pair drains as many tasks queued the same way (same quorum
queue, same prefetch): how the broker's own cost moves with the depth of its queue, so that
``drain_vs_raw`` (relaybus over raw at the same size) shows what of a fall is relaybus's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from bench import broker
from bench.common import BIN, ROOT, amqp_url, run_measured, unique
from bench.raw_amqp import RawClient, declare_task_queue
from relaybus.bus.connect import connect
from relaybus.messages import AgentTask
from relaybus.orchestrator.orchestrator import ProjectOrchestrator

KiB = 1024
WORKER_CONCURRENCY = 1000  # the relaybus worker's concurrency, so its prefetch; the raw server's prefetch


async def start_worker(agent: str, *, wait: bool = True) -> asyncio.subprocess.Process:
    """The worker process; with ``wait``, once it consumes the agent's queue. Its log goes to a file (a
    broker restart makes it warn once per unsettled task: a thousand lines), named on stderr."""
    log_path = Path(tempfile.gettempdir()) / f"{agent}.log"
    with log_path.open("ab") as log_file:  # the child has its own copy of the descriptor
        worker = await asyncio.create_subprocess_exec(
            str(BIN / "relaybus"),
            "--log-level",
            "WARNING",
            "worker",
            "bench.agents:NoopAgent",
            "--amqp-url",
            amqp_url(),
            "--concurrency",
            str(WORKER_CONCURRENCY),
            env={**os.environ, "RELAYBUS_BENCH_AGENT_NAME": agent},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    log(f"worker {worker.pid} logs to {log_path}")
    if wait:
        await broker.wait_for_consumer(f"relaybus.agent.{agent}", timeout=60)
    return worker


async def first_result(
    orchestrator: ProjectOrchestrator, n: int, call: asyncio.Future[Any], worker: asyncio.subprocess.Process
) -> tuple[float, float]:
    """When the first of the ``n`` tasks in flight got its result: (``perf_counter()``, the worker's CPU
    seconds then). The drain is timed from there: from the worker's start it would count its imports, and
    from its consumer showing up (a poll) it would miss the whole drain of a small size."""
    cpu = psutil.Process(worker.pid)
    while orchestrator.in_flight >= n and not call.done():
        if worker.returncode is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode} before answering a task")
        await asyncio.sleep(0.005)
    times = cpu.cpu_times()
    return time.perf_counter(), times.user + times.system


async def stop(worker: asyncio.subprocess.Process) -> None:
    if worker.returncode is None:
        worker.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(worker.wait(), 30)
    except TimeoutError:
        worker.kill()
        await worker.wait()


STALL_S = 60.0  # the queue not growing for this long, the call not over: something holds the publishes


async def wait_queued(queue: str, n: int, call: asyncio.Future[Any], in_flight: Callable[[], int]) -> None:
    """Until ``queue`` holds ``n`` messages (or ``call`` ended): one connection, opened before the flood.

    Raises RuntimeError, saying what it saw, when the count has not grown for ``STALL_S`` seconds: without
    this a publish that never reached the queue (refused, held back by an alarm) would leave the run waiting
    for the tasks' whole deadline with no worker to answer them.
    """
    import aio_pika

    count, grown_at = -1, time.monotonic()
    async with await aio_pika.connect(amqp_url()) as connection:
        channel = await connection.channel()
        while not call.done():
            declared = await channel.declare_queue(queue, passive=True)
            now = int(declared.declaration_result.message_count or 0)
            if now >= n:
                return
            if now > count:
                count, grown_at = now, time.monotonic()
            elif time.monotonic() - grown_at > STALL_S:
                raise RuntimeError(
                    f"{queue} stuck at {now:,} of {n:,} messages for {STALL_S:g} s; the caller has "
                    f"{in_flight():,} in flight"
                )
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
                [AgentTask(topic="bench.scale", agent=agent) for _ in range(min(200, n))]
            )
            assert all(r.ok for r in warm), warm[:3]
            await stop(worker)
            tasks = [AgentTask(topic="bench.scale", agent=agent) for _ in range(n)]
            rss_before = me.memory_info().rss
            cpu_before = time.process_time()
            publish_start = time.perf_counter()
            call = asyncio.ensure_future(orchestrator.execute_tasks(tasks))
            await wait_queued(queue, n, call, lambda: orchestrator.in_flight)
            publish_s = time.perf_counter() - publish_start
            rss = me.memory_info().rss
            held = rss - rss_before
            log(f"{n:,} queued in {publish_s:.1f} s, {held / n / KiB:.2f} KiB per task; draining")
            worker = await start_worker(agent, wait=False)
            drain_start, worker_cpu_start = await first_result(orchestrator, n, call, worker)
            results = await call
            drain_s = time.perf_counter() - drain_start
            cpu_s = time.process_time() - cpu_before
            times = psutil.Process(worker.pid).cpu_times()
            worker_cpu_s = times.user + times.system - worker_cpu_start
    finally:
        await stop(worker)
        await bus.close()
        await broker.delete_queues([queue])
    raw_drain_tasks_per_s = await raw_drain(n)
    return {
        "n": n,
        "errors": sum(1 for r in results if not r.ok),
        "held_kib_per_task": held / n / KiB,
        "rss_mib": rss / KiB / KiB,
        "publish_s": publish_s,
        "drain_s": drain_s,
        "drain_tasks_per_s": n / drain_s,
        "orchestrator_cpu_us_per_task": cpu_s / n * 1e6,
        "worker_cpu_us_per_task": worker_cpu_s / n * 1e6,
        "raw_drain_tasks_per_s": raw_drain_tasks_per_s,
        "drain_vs_raw": n / drain_s / raw_drain_tasks_per_s,
    }


async def raw_drain(n: int) -> float:
    """Tasks per second of the same drain by the raw aio-pika pair (``bench/raw_amqp.py``): ``n`` tasks
    queued with no consumer, then a raw server with the worker's prefetch started, timed from the first reply
    to the last. What the broker costs with ``n`` messages in its queue, beside relaybus's drain."""
    queue = unique("bench-scale-raw")
    try:
        async with RawClient(queue) as rpc:
            await declare_task_queue(rpc.channel, queue)
            calls = [asyncio.ensure_future(rpc.call()) for _ in range(n)]
            everything = asyncio.gather(*calls)
            await wait_queued(queue, n, everything, lambda: sum(1 for c in calls if not c.done()))
            server = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.raw_amqp",
                "serve",
                "--queue",
                queue,
                "--prefetch",
                str(WORKER_CONCURRENCY),
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
            try:
                await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
                began = time.perf_counter()
                await asyncio.wait_for(everything, timeout_for(n))
                drain_s = time.perf_counter() - began
            finally:
                await stop(server)
    finally:
        await broker.delete_queues([queue])
    return n / drain_s


async def one_size_until_term(n: int) -> dict[str, Any]:
    """:func:`one_size`, cancelled by SIGTERM: its ``finally`` stops the worker and deletes the queue (an
    exception raised from a signal handler would land in whichever callback runs, e.g. aiormq's reader)."""
    main = asyncio.current_task()
    assert main is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    return await one_size(n)


def log(text: str) -> None:
    print(f"bench.scale: {text}", file=sys.stderr, flush=True)


def timeout_for(n: int) -> float:
    """How long one size may take in all: generous (a loaded machine runs ~200 round trips/s) yet bounded."""
    return 120.0 + n / 100


def measure(sizes: list[int]) -> list[dict[str, Any]]:
    """Each size in a fresh process (``python -m bench.scale one``), one row each, in order."""
    rows: list[dict[str, Any]] = []
    for n in sizes:
        log(f"{n:,} tasks in flight ...")
        # Its progress lines (stderr) go straight to ours; its one result line comes on stdout.
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.scale", "one", "--n", str(n)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))),
            },
        )
        try:
            stdout, _ = child.communicate(timeout=timeout_for(n))
        except subprocess.TimeoutExpired:
            child.terminate()  # SIGTERM unwinds it: its worker stopped, its queue deleted
            try:
                child.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.communicate()
            raise RuntimeError(f"bench.scale: size {n} did not finish within {timeout_for(n):g} s") from None
        if child.returncode != 0:
            raise RuntimeError(f"bench.scale: size {n} failed with exit code {child.returncode}")
        rows.append(json.loads(stdout.strip().splitlines()[-1]))
    return rows


RATIO_KEYS = (  # what a sweep over sizes compares with its first size (bench/sweep.py)
    "held_kib_per_task",
    "drain_tasks_per_s",
    "orchestrator_cpu_us_per_task",
    "worker_cpu_us_per_task",
    "raw_drain_tasks_per_s",
    "drain_vs_raw",
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.scale", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd")
    one = sub.add_parser("one")
    one.add_argument("--n", type=int, required=True)
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.cmd == "one":
        try:
            print(json.dumps(run_measured(one_size_until_term(args.n))))
        except asyncio.CancelledError:
            raise SystemExit(128 + signal.SIGTERM) from None
        return
    rows = measure([int(size) for size in args.sizes.split(",")])
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(
        "| tasks in flight | held per task (KiB) | RSS (MiB) | publish (s) | drain (tasks/s) | raw aio-pika "
        "drain (tasks/s) | vs raw | orchestrator CPU/task (us) | worker CPU/task (us) | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['n']:,} | {row['held_kib_per_task']:.2f} | {row['rss_mib']:.0f} "
            f"| {row['publish_s']:.1f} | {row['drain_tasks_per_s']:,.0f} "
            f"| {row['raw_drain_tasks_per_s']:,.0f} | {row['drain_vs_raw']:.2f}x "
            f"| {row['orchestrator_cpu_us_per_task']:,.0f} "
            f"| {row['worker_cpu_us_per_task']:,.0f} | {row['errors']} |"
        )


if __name__ == "__main__":
    main()
