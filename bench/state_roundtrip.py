"""Round trips with a state store against none: what exactly-once claims cost (issue 14).

    python -m bench.state_roundtrip [--tasks 6000] [--in-flight 2000] [--reps 3]
                                    [--stores none,postgres,sqlite] [--json]

Not part of ``make bench`` (it takes a few minutes): run it on its own. For each repetition the stores take
turns; each gets a fresh ``relaybus worker bench.agents:NoopAgent`` process (``--concurrency`` =
``--in-flight``) with ``RELAYBUS_STATE_URL`` set (none: unset), and this process's ``ProjectOrchestrator``
sends ``--tasks`` no-op tasks keeping ``--in-flight`` of them in flight, recording each one's latency. With
a store every task costs the worker a claim and a ``complete`` (two transactions on the store). PostgreSQL is
a database created on ``RELAYBUS_BENCH_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``)
and dropped at the end; SQLite a temporary file. It prints per store the median throughput, p50 and p99, the
worker's CPU per task and the throughput ratio to no store (paired per repetition), with the range.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench.common import Children, CpuMeter, amqp_url, timed, unique
from bench.relaybus_side import run_point
from bench.run import relaybus_worker
from relaybus.bus.connect import connect
from relaybus.log import configure_logging
from relaybus.orchestrator.orchestrator import ProjectOrchestrator
from relaybus.state import STATE_URL_ENV

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _sql(url: str, statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _point(agent: str, worker_pid: int, tasks: int, in_flight: int) -> dict[str, Any]:
    bus = await connect(amqp_url())
    try:
        async with ProjectOrchestrator(bus, default_timeout_s=120) as orchestrator:
            await run_point(orchestrator, agent, 200, 50, "")  # warm-up: connections, the store's pool
            result = await timed(CpuMeter(worker_pid), run_point(orchestrator, agent, tasks, in_flight, ""))
        await bus.delete_queue(f"relaybus.agent.{agent}")
    finally:
        await bus.close()
    summary: dict[str, Any] = result.summary()
    return summary


def one_run(children: Children, store_url: str | None, tasks: int, in_flight: int) -> dict[str, Any]:
    """One worker process (with the store, or none) and one timed point of ``tasks`` round trips."""
    agent = unique("bench-state")
    worker = relaybus_worker(children, agent, "NoopAgent", in_flight, {STATE_URL_ENV: store_url or ""})
    try:
        return asyncio.run(_point(agent, worker.pid, tasks, in_flight))
    finally:
        worker.stop()


def bench(args: argparse.Namespace) -> dict[str, Any]:
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    admin = os.environ.get("RELAYBUS_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    database = f"relaybus_bench_state_{uuid.uuid4().hex[:10]}"
    tmp = Path(tempfile.mkdtemp(prefix="relaybus-bench-state-"))
    urls: dict[str, str | None] = {"none": None, "sqlite": f"sqlite:///{tmp / 'state.db'}"}
    if "postgres" in stores:
        asyncio.run(_sql(admin, f'CREATE DATABASE "{database}"'))
        parts = urlsplit(admin)
        urls["postgres"] = urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))
    runs: dict[str, list[dict[str, Any]]] = {store: [] for store in stores}
    try:
        with Children(tmp / "logs") as children:
            for _ in range(args.reps):
                for store in stores:
                    runs[store].append(one_run(children, urls[store], args.tasks, args.in_flight))
    finally:
        if "postgres" in stores:
            asyncio.run(_sql(admin, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    report: dict[str, Any] = {
        "tasks": args.tasks,
        "in_flight": args.in_flight,
        "reps": args.reps,
        "stores": {},
    }
    for store, points in runs.items():
        entry = {
            key: statistics.median(p[key] for p in points)
            for key in ("throughput", "p50_ms", "p99_ms", "cpu_server_us")
        }
        entry["throughput_range"] = [
            min(p["throughput"] for p in points),
            max(p["throughput"] for p in points),
        ]
        entry["errors"] = sum(p["errors"] for p in points)
        if "none" in runs and store != "none":
            ratios = [
                p["throughput"] / base["throughput"] for p, base in zip(points, runs["none"], strict=True)
            ]
            entry["ratio_to_none"] = statistics.median(ratios)
            entry["ratio_range"] = [min(ratios), max(ratios)]
        report["stores"][store] = entry
    return report


def print_report(report: dict[str, Any]) -> None:
    print(
        f"round trips with a state store: {report['tasks']} no-op tasks, {report['in_flight']} in flight, "
        f"median of {report['reps']} (range)"
    )
    print(f"{'store':10} {'tasks/s':>18} {'p50 ms':>8} {'p99 ms':>8} {'worker CPU/task':>16} {'vs none':>16}")
    for store, e in report["stores"].items():
        low, high = e["throughput_range"]
        ratio = "-"
        if "ratio_to_none" in e:
            ratio = f"{e['ratio_to_none']:.2f}x ({e['ratio_range'][0]:.2f}-{e['ratio_range'][1]:.2f})"
        print(
            f"{store:10} {e['throughput']:>7.0f} ({low:.0f}-{high:.0f}) {e['p50_ms']:>8.0f} "
            f"{e['p99_ms']:>8.0f} {e['cpu_server_us']:>13.0f} us {ratio:>16}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.state_roundtrip", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=6000)
    parser.add_argument("--in-flight", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--stores", default="none,postgres,sqlite")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    configure_logging(level="WARNING", json=True)
    report = bench(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
