"""The console under load, and its screenshots.

    python -m bench.console [--runs 10000] [--workers 100] [--repeat 5] [--json]
    python -m bench.console --screenshots docs/console

Measure (the default): on a RabbitMQ vhost and a PostgreSQL database of its own (``RELAYBUS_BENCH_AMQP_URL``,
``RELAYBUS_BENCH_POSTGRES_URL``; both removed at the end), it records ``--runs`` plan runs of three tasks
with the store's own API (as orchestrators record them), publishes heartbeats of ``--workers`` fake workers
(10 agents, each with its queue), starts a console and times each view ``--repeat`` times: the HTTP answer
(httpx, whole body) and the page load in headless Debian chromium (navigation start to the load event, the
live stream's first fragment included), median and worst, after one request that compiles the templates.

``--screenshots DIR``: a smaller, lifelike stack (two real workers, a few fake ones, an hour of runs, a real
plan run, dead letters, one with ``<script>`` in its prompt) and a PNG of each view into DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from relaybus import AgentTask, ProjectOrchestrator
from relaybus.agents import Agent, AgentContext, AgentWorker
from relaybus.bus.base import Bus, OutgoingMessage, agent_queue_name
from relaybus.bus.codec import SCHEMA_HEADER, encode_heartbeat
from relaybus.bus.connect import connect
from relaybus.console import AmqpQueueProbe, Console, ConsoleConfig
from relaybus.log import configure_logging
from relaybus.messages import ExecutionResult, ExecutionStatus, Usage, WorkerHeartbeat
from relaybus.secrets import Secret
from relaybus.state import PlannedTask, StateStore, TaskEventKind, TaskUpdate, store_from_url

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TOKEN = "bench-operator-token-0123456789"
AGENTS = (
    "planner",
    "researcher",
    "writer",
    "reviewer",
    "editor",
    "coder",
    "tester",
    "translator",
    "summarizer",
    "critic",
)
PLANS = ("nightly-report", "code-review", "docs-refresh", "triage", "release-notes")
STATUS_WEIGHTS = {
    ExecutionStatus.SUCCESS: 90,
    ExecutionStatus.FAILURE: 5,
    ExecutionStatus.TIMEOUT: 2,
    ExecutionStatus.CANCELLED: 2,
    ExecutionStatus.REJECTED: 1,
}


class Echo(Agent):
    name = "writer"
    topics = ("bench.console.write",)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        await asyncio.sleep(0.05)
        return {"text": f"{task.prompt}: done"}


# -- places of our own ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def vhost(url: str) -> Any:
    name = f"relaybus-bench-console-{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", name], check=True, capture_output=True)
    try:
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
            check=True,
            capture_output=True,
        )
        parts = urlsplit(url)
        yield urlunsplit((parts.scheme, parts.netloc, "/" + name, "", ""))
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], check=False, capture_output=True)


@contextlib.asynccontextmanager
async def database(url: str) -> AsyncIterator[str]:
    import asyncpg

    name = f"relaybus_bench_console_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        parts = urlsplit(url)
        yield urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@contextlib.asynccontextmanager
async def places() -> AsyncIterator[tuple[str, StateStore]]:
    """A vhost URL and an open store on a database, both of this run's own and removed at the end."""
    amqp = os.environ.get("RELAYBUS_BENCH_AMQP_URL", DEFAULT_AMQP_URL)
    postgres = os.environ.get("RELAYBUS_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    with vhost(amqp) as amqp_url:
        async with database(postgres) as pg_url, store_from_url(pg_url) as store:
            yield amqp_url, store


# -- what the console shows ----------------------------------------------------------------------------------
async def record_history(store: StateStore, runs: int, *, spread: timedelta, rng: random.Random) -> None:
    """``runs`` finished plan runs of three tasks (draft, review, edit) started over the last ``spread``."""
    now = datetime.now(UTC)
    gate = asyncio.Semaphore(16)

    async def one(n: int) -> None:
        async with gate:
            started = now - spread * rng.random() - timedelta(seconds=60)
            ids = [uuid.uuid4() for _ in range(3)]
            targets = rng.sample(AGENTS, 3)
            planned = [
                PlannedTask(ids[i], targets[i], tuple(ids[:i]), ("draft", "review", "edit")[i])
                for i in range(3)
            ]
            run_id = f"{rng.choice(PLANS)}-{n:05}"
            await store.record_run(run_id, run_id.rsplit("-", 1)[0], planned, started_at=started)
            updates: list[TaskUpdate] = []
            at = started
            for i, task_id in enumerate(ids):
                status = rng.choices(list(STATUS_WEIGHTS), weights=list(STATUS_WEIGHTS.values()))[0]
                worker = f"host-{rng.randrange(10)}:{1000 + rng.randrange(100)}"
                updates.append(TaskUpdate(task_id=task_id, kind=TaskEventKind.PUBLISHED, at=at))
                began = at + timedelta(milliseconds=rng.randrange(5, 200))
                ended = began + timedelta(seconds=rng.lognormvariate(0.5, 0.8))
                result = ExecutionResult(
                    task_id=task_id,
                    status=status,
                    output={"text": f"{targets[i]} output {n}.{i}"}
                    if status is ExecutionStatus.SUCCESS
                    else None,
                    worker=worker,
                    agent=targets[i],
                    started_at=began,
                    finished_at=ended,
                    usage=Usage(
                        prompt_tokens=rng.randrange(200, 2000),
                        completion_tokens=rng.randrange(50, 800),
                        requests=1,
                    ),
                )
                updates.append(
                    TaskUpdate(
                        task_id=task_id, kind=TaskEventKind.STARTED, at=began, worker=worker, attempt=1
                    )
                )
                updates.append(
                    TaskUpdate(
                        task_id=task_id, kind=TaskEventKind.FINISHED, at=ended, result=result, cost=0.0004
                    )
                )
                at = ended
            await store.task_events(run_id, updates)

    await asyncio.gather(*(one(n) for n in range(runs)))


def fake_beats(count: int, rng: random.Random) -> list[WorkerHeartbeat]:
    return [
        WorkerHeartbeat(
            worker=f"host-{n % 10}:{1000 + n}",
            host=f"host-{n % 10}",
            pid=1000 + n,
            agents=(AGENTS[n % len(AGENTS)],),
            in_flight=rng.randrange(0, 17),
            capacity=16,
            processed=rng.randrange(100, 5000),
            interval_s=30.0,
        )
        for n in range(count)
    ]


async def keep_beating(bus: Bus, beats: list[WorkerHeartbeat], every_s: float = 10.0) -> None:
    """Publish each fake worker's heartbeat every ``every_s``, its ``processed`` grown by its load."""
    while True:
        for n, beat in enumerate(beats):
            beats[n] = beat = beat.model_copy(
                update={"timestamp": datetime.now(UTC), "processed": beat.processed + beat.in_flight * 3}
            )
            await bus.publish(encode_heartbeat(beat))
        await asyncio.sleep(every_s)


async def dead_letter(bus: Bus, agent: str, topic: str, prompt: Any) -> None:
    task_id = str(uuid.uuid4())
    body = {
        "id": task_id,
        "topic": topic,
        "agent": agent,
        "prompt": prompt,
        "created_at": datetime.now(UTC).isoformat(),
    }
    await bus.publish(
        OutgoingMessage(
            body=json.dumps(body).encode(),
            routing_key=f"agent.{agent}",
            message_id=task_id,
            headers={SCHEMA_HEADER: "1"},
            mandatory=True,
        )
    )


@contextlib.asynccontextmanager
async def console_on(amqp_url: str, store: StateStore, **config: Any) -> AsyncIterator[tuple[Console, Bus]]:
    bus = await connect(amqp_url)
    try:
        settings = ConsoleConfig(port=0, operator_token=Secret(TOKEN), **config)
        async with Console(bus, settings, store=store, probe=AmqpQueueProbe(amqp_url)) as console:
            yield console, bus
    finally:
        await bus.close()


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium",
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield await browser.new_page(viewport={"width": 1400, "height": 900})
        finally:
            await browser.close()


# -- measure -------------------------------------------------------------------------------------------------
async def time_views(console: Console, paths: dict[str, str], repeat: int) -> dict[str, dict[str, float]]:
    figures: dict[str, dict[str, float]] = {}
    async with httpx.AsyncClient(timeout=60) as client, chromium() as page:
        for view, path in paths.items():
            http_ms, load_ms = [], []
            size = 0
            (await client.get(console.url + path)).raise_for_status()  # warm up: templates compile once
            for _ in range(repeat):
                began = time.perf_counter()
                response = await client.get(console.url + path)
                http_ms.append((time.perf_counter() - began) * 1000)
                response.raise_for_status()
                size = len(response.content)
                await page.goto(console.url + path, wait_until="load")
                load_ms.append(
                    await page.evaluate(
                        "() => { const n = performance.getEntriesByType('navigation')[0];"
                        " return n.loadEventEnd - n.startTime; }"
                    )
                )
            figures[view] = {
                "http_median_ms": statistics.median(http_ms),
                "http_max_ms": max(http_ms),
                "load_median_ms": statistics.median(load_ms),
                "load_max_ms": max(load_ms),
                "bytes": size,
            }
    return figures


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(7)
    async with places() as (amqp_url, store):
        began = time.perf_counter()
        await record_history(store, args.runs, spread=timedelta(days=3), rng=rng)
        record_s = time.perf_counter() - began
        async with console_on(amqp_url, store) as (console, bus):
            for agent in AGENTS:
                await bus.declare_queue(agent_queue_name(agent), bindings=(f"agent.{agent}",))
            beats = fake_beats(args.workers, rng)
            beating = asyncio.create_task(keep_beating(bus, beats))
            try:
                await asyncio.sleep(1)
                shown = len(console.context.directory.workers())
                newest = (await store.runs(1))[0].run_id
                last_page = (args.runs - 1) // console.config.page_size
                paths = {
                    "fleet": "/fleet",
                    "work (newest runs)": "/work",
                    f"work (page {last_page + 1}, oldest)": f"/work?page={last_page}",
                    "one run": f"/runs/{newest}",
                    "dead letters": "/dead",
                }
                figures = await time_views(console, paths, args.repeat)
            finally:
                beating.cancel()
    return {
        "runs": args.runs,
        "workers": args.workers,
        "workers_shown": shown,
        "record_s": record_s,
        "views": figures,
    }


# -- screenshots ---------------------------------------------------------------------------------------------
async def screenshots(out: Path) -> list[Path]:
    rng = random.Random(3)
    out.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []
    async with places() as (amqp_url, store):
        await record_history(store, 400, spread=timedelta(minutes=58), rng=rng)
        buses = [await connect(amqp_url) for _ in range(2)]
        workers = [
            AgentWorker(b, [Echo()], heartbeat_interval_s=2, worker_id=f"ops-{n + 1}:{4100 + n}")
            for n, b in enumerate(buses)
        ]
        try:
            async with workers[0], workers[1], console_on(amqp_url, store, sample_runs=500) as (console, bus):
                beating = asyncio.create_task(keep_beating(bus, fake_beats(6, rng), every_s=1.0))
                for agent in AGENTS:
                    await bus.declare_queue(agent_queue_name(agent), bindings=(f"agent.{agent}",))
                tasks = [AgentTask(topic=Echo.topics[0], prompt="outline")]
                tasks += [
                    AgentTask(topic=Echo.topics[0], prompt=f"chapter {n}", depends_on=[tasks[0].id])
                    for n in (1, 2, 3)
                ]
                tasks.append(
                    AgentTask(topic=Echo.topics[0], prompt="edit", depends_on=[t.id for t in tasks[1:]])
                )
                run_id = "book-draft-live"
                await store.record_run(run_id, "book-draft", [PlannedTask.of(t) for t in tasks])
                async with ProjectOrchestrator(bus) as orchestrator:
                    result = await orchestrator.run_plan(tasks)
                for task_id, outcome in result.results.items():
                    await store.task_events(
                        run_id,
                        [
                            TaskUpdate(
                                task_id=task_id,
                                kind=TaskEventKind.PUBLISHED,
                                at=outcome.started_at,
                            ),
                            TaskUpdate(
                                task_id=task_id,
                                kind=TaskEventKind.STARTED,
                                at=outcome.started_at,
                                worker=outcome.worker,
                                attempt=1,
                            ),
                            TaskUpdate(
                                task_id=task_id,
                                kind=TaskEventKind.FINISHED,
                                at=outcome.finished_at,
                                result=outcome,
                                cost=0.0002,
                            ),
                        ],
                    )
                await dead_letter(bus, "writer", Echo.topics[0], {"text": "<script>alert('hi')</script>"})
                await dead_letter(bus, "writer", Echo.topics[0], 42)
                await asyncio.sleep(12)  # a few heartbeats for the fleet's tasks per second
                assert console.sampler is not None
                await console.sampler.sample()
                async with chromium() as page:
                    for name, path in (
                        ("fleet", "/fleet"),
                        ("work", "/work"),
                        ("run", f"/runs/{run_id}"),
                        ("dead-letters", "/dead"),
                    ):
                        await page.goto(console.url + path, wait_until="load")
                        await asyncio.sleep(0.5)
                        shot = out / f"{name}.png"
                        await page.screenshot(path=str(shot), full_page=False)
                        shots.append(shot)
                beating.cancel()
        finally:
            for b in buses:
                await b.close()
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--screenshots", type=Path, default=None, metavar="DIR")
    args = parser.parse_args(argv)
    configure_logging(level="WARNING")
    if args.screenshots is not None:
        for shot in asyncio.run(screenshots(args.screenshots)):
            print(shot)
        return 0
    report = asyncio.run(measure(args))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{report['runs']} stored runs (recorded in {report['record_s']:.1f} s), {report['workers']} workers "
        f"({report['workers_shown']} shown)"
    )
    print(f"{'view':32} {'HTTP median':>12} {'HTTP max':>9} {'load median':>12} {'load max':>9} {'bytes':>8}")
    for view, f in report["views"].items():
        print(
            f"{view:32} {f['http_median_ms']:10.1f}ms {f['http_max_ms']:7.1f}ms "
            f"{f['load_median_ms']:10.1f}ms {f['load_max_ms']:7.1f}ms {f['bytes']:8.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
