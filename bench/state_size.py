"""How much a state store grows per plan of 10,000 tasks: results, claims and run history.

    python -m bench.state_size [--tasks 10000] [--output-bytes 1000] [--stores sqlite,postgres] [--json]

For each store, on a fresh database (a temporary SQLite file; a PostgreSQL database created on
``RELAYBUS_BENCH_POSTGRES_URL``, default ``postgresql://postgres@127.0.0.1:5432/postgres``, and dropped at
the end), it records a plan run of ``--tasks`` tasks (a third depend on the one before), then for each task
does what a worker and an orchestrator with a store do: claim, complete with a result whose output is
``--output-bytes`` of prose-like text, and the ``published`` / ``started`` / ``finished`` events (the
finished one with the result, which is not stored twice). It prints the growth over the empty schema, per
table and per task, as written and after compaction (SQLite ``VACUUM``; PostgreSQL ``VACUUM FULL``: what
autovacuum tends to in steady state lies between), and how long the writes took (64 tasks at a time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from relaybus.log import configure_logging
from relaybus.messages import ExecutionResult, Usage
from relaybus.state import PlannedTask, StateStore, store_from_url

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CONCURRENCY = 64
TABLES = (
    "relaybus_results",
    "relaybus_claims",
    "relaybus_run_tasks",
    "relaybus_task_events",
    "relaybus_runs",
    "relaybus_journal",
)


_WORDS = (
    "the",
    "store",
    "keeps",
    "one",
    "result",
    "per",
    "task",
    "and",
    "worker",
    "claims",
    "each",
    "before",
    "it",
    "runs",
    "so",
    "that",
    "a",
    "copy",
    "delivered",
    "twice",
    "is",
    "answered",
    "from",
    "stored",
    "rather",
    "than",
    "run",
    "again",
    "while",
    "leases",
    "expire",
    "when",
    "workers",
    "die",
    "agents",
    "plan",
    "review",
    "write",
    "test",
    "deploy",
    "report",
    "summary",
    "answer",
    "model",
    "tool",
    "call",
    "step",
)


def text_of(size: int, seed: int) -> str:
    """``size`` characters of word salad: compresses about as well as an LLM's prose does."""
    words = random.Random(seed).choices(_WORDS, k=size // 4 + 1)
    return " ".join(words)[:size]


def result_of(task_id: uuid.UUID, output_bytes: int, worker: str) -> ExecutionResult:
    started = datetime.now(UTC)
    return ExecutionResult.success(
        task_id,
        {"text": text_of(output_bytes, task_id.int), "model": "gpt-4o-mini"},
        agent="writer",
        worker=worker,
        started_at=started,
        finished_at=started + timedelta(seconds=1.5),
        usage=Usage(prompt_tokens=800, completion_tokens=300, requests=1),
    )


async def fill(store: StateStore, tasks: int, output_bytes: int) -> dict[str, float]:
    """One plan run of ``tasks`` tasks through claims, results and history; seconds per phase."""
    ids = [uuid.uuid4() for _ in range(tasks)]
    planned = [
        PlannedTask(task_id, "docs.write", (ids[n - 1],) if n % 3 == 2 else (), f"task-{n}")
        for n, task_id in enumerate(ids)
    ]
    started = time.perf_counter()
    await store.record_run("bench-run", "bench-plan", planned)
    recorded = time.perf_counter()

    async def one(task_id: uuid.UUID) -> None:
        worker = f"host:{task_id.int % 4}"
        await store.task_event("bench-run", task_id, "published")
        claim = await store.claim(task_id, worker=worker, lease_s=60, digest="0" * 64)
        assert claim.acquired
        await store.task_event("bench-run", task_id, "started", worker=worker, attempt=claim.attempt)
        completion = await store.complete(task_id, worker, result_of(task_id, output_bytes, worker))
        await store.task_event("bench-run", task_id, "finished", result=completion.result, cost=0.0003)

    await in_batches([lambda task_id=task_id: one(task_id) for task_id in ids])
    done = time.perf_counter()
    return {"record_run_s": recorded - started, "tasks_s": done - recorded}


async def in_batches(jobs: list[Callable[[], Awaitable[None]]]) -> None:
    pending = iter(jobs)

    async def lane() -> None:
        for job in pending:
            await job()

    await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))


# -- SQLite ----------------------------------------------------------------------------------------------
def sqlite_sizes(path: Path, *, compact: bool = False) -> dict[str, int]:
    """Bytes per table (its indexes included), and of the file with its WAL."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if compact:
            connection.execute("VACUUM")
        rows = connection.execute(
            "SELECT m.tbl_name, SUM(d.pgsize) FROM dbstat d JOIN sqlite_master m ON m.name = d.name"
            " GROUP BY m.tbl_name"
        ).fetchall()
    finally:
        connection.close()
    sizes = {table: 0 for table in TABLES} | {name: size for name, size in rows if name in TABLES}
    wal = path.with_name(path.name + "-wal")
    sizes["file"] = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    return sizes


async def measure_sqlite(tasks: int, output_bytes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="relaybus-state-size-") as directory:
        path = Path(directory) / "state.db"
        async with store_from_url(f"sqlite:///{path}") as store:
            empty = await asyncio.to_thread(sqlite_sizes, path)
            times = await fill(store, tasks, output_bytes)
        written = await asyncio.to_thread(sqlite_sizes, path)
        compacted = await asyncio.to_thread(sqlite_sizes, path, compact=True)
    return {"store": "SqliteStore", "empty": empty, "written": written, "compacted": compacted, **times}


# -- PostgreSQL ------------------------------------------------------------------------------------------
async def postgres_sizes(url: str, *, compact: bool = False) -> dict[str, int]:
    """Bytes per table (its indexes and TOAST included), and of the whole database."""
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        if compact:
            await connection.execute("VACUUM FULL")
        sizes = {
            table: await connection.fetchval(
                "SELECT COALESCE(pg_total_relation_size(to_regclass($1)), 0)", table
            )
            for table in TABLES
        }
        sizes["file"] = await connection.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await connection.close()
    return sizes


async def measure_postgres(tasks: int, output_bytes: int) -> dict[str, Any]:
    import asyncpg

    admin_url = os.environ.get("RELAYBUS_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    host = urlsplit(admin_url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"this benchmark runs only against a PostgreSQL on this machine, not {host!r}")
    name = f"relaybus_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin_url)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))
    try:
        async with store_from_url(url) as store:
            empty = await postgres_sizes(url)
            times = await fill(store, tasks, output_bytes)
        written = await postgres_sizes(url)
        compacted = await postgres_sizes(url, compact=True)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return {"store": "PostgresStore", "empty": empty, "written": written, "compacted": compacted, **times}


# -- report ----------------------------------------------------------------------------------------------
def growth(report: dict[str, Any], state: str) -> dict[str, int]:
    grown = {key: report[state][key] - report["empty"][key] for key in report["empty"]}
    grown["tables"] = sum(grown[table] for table in TABLES)
    return grown


def table(reports: list[dict[str, Any]], tasks: int, output_bytes: int) -> str:
    result_json = len(result_of(uuid.uuid4(), output_bytes, "host:0").model_dump_json())
    lines = [
        f"State store growth for one plan of {tasks:,} tasks (result JSON about {result_json:,} B each, "
        f"output {output_bytes:,} B of prose-like text), in MiB; per task in bytes. Tables include their "
        "indexes (and TOAST); 'on disk' is the file with its WAL, or the whole database.",
        "",
        "| store | state | results | claims | run tasks | events | tables | per task | on disk | writes |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    mib = 1024 * 1024
    for report in reports:
        for state in ("written", "compacted"):
            grown = growth(report, state)
            cells = [f"{grown[t] / mib:.2f}" for t in TABLES[:4]]
            written = state == "written"
            timing = f"{report['tasks_s']:.1f} s ({report['tasks_s'] / tasks * 1000:.2f} ms/task)"
            lines.append(
                f"| {report['store']} | {state} | {' | '.join(cells)} | {grown['tables'] / mib:.2f} | "
                f"{grown['tables'] / tasks:,.0f} | {grown['file'] / mib if written else float('nan'):.2f} | "
                f"{timing if written else ''} |"
            )
    return "\n".join(lines).replace("| nan |", "|  |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--output-bytes", type=int, default=1000)
    parser.add_argument("--stores", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    args = parser.parse_args(argv)
    configure_logging(level="WARNING")
    measures = {"sqlite": measure_sqlite, "postgres": measure_postgres}
    kinds = [kind.strip() for kind in args.stores.split(",") if kind.strip()]
    unknown = [kind for kind in kinds if kind not in measures]
    if unknown:
        parser.error(f"unknown store {unknown[0]!r}: sqlite or postgres")

    async def run() -> list[dict[str, Any]]:
        return [await measures[kind](args.tasks, args.output_bytes) for kind in kinds]

    reports = asyncio.run(run())
    print(json.dumps(reports, indent=2) if args.json else table(reports, args.tasks, args.output_bytes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
