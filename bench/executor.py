"""Executor benchmark: the old design vs relaybus, and httpx's own pool vs the aiohttp transport.

Run ``.venv/bin/python bench/executor.py`` (or ``make bench``). Everything is measured in this one run against
FakeLLMServer instances in child processes (so their CPU is not counted), on 127.0.0.1:

1. the cost of one bare ``asyncio.run()`` and of one ``asyncio.run()`` that builds and closes an httpx client;
2. the old design (tasks one after another, each in its own ``asyncio.run()`` with a new httpx client) vs
   relaybus's ``TaskExecutor`` (one loop, one shared client, tasks concurrent) for 3 tasks x 2 s and
   200 tasks x 0.2 s;
3. the HTTP transport under the executor's httpx client: httpx's own pool vs httpx-aiohttp, for 200 calls of
   0.2 s with 100 and with up to 1,000 in flight, and 1,000 calls of 0.2 s all in flight (wall and CPU
   seconds of this process), next to a floor: bare aiohttp without executor or httpx, which shows what this
   machine (client and fake server sharing its cores) can do at best.

This file and the command line are the only places that call ``asyncio.run()``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import aiohttp
import httpx

from relaybus.executor import ExecutorConfig, ProviderConfig, RetryPolicy, TaskExecutor
from relaybus.executor.http import make_client
from relaybus.log import configure_logging
from relaybus.messages import AgentTask
from relaybus.testing.fake_llm import FakeLLMServer

BODY = {"model": "bench", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}


# -- the fake server, in a child process ---------------------------------------------------------------------
async def _serve(latency_s: float) -> None:
    async with FakeLLMServer(latency_s=latency_s, record_calls=False) as server:
        print(server.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(
            None, sys.stdin.read
        )  # until the parent closes stdin


@contextmanager
def fake_server(latency_s: float) -> Iterator[str]:
    """A FakeLLMServer in a child process; yields its OpenAI base URL."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(latency_s)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdin is not None
    try:
        port = int(child.stdout.readline())
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        child.stdin.close()
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


# -- measurements -------------------------------------------------------------------------------------------
@dataclass
class Row:
    section: str
    case: str
    wall_s: float
    cpu_s: float | None = None
    ideal_s: float | None = None
    note: str = ""


def measure(fn: Callable[[], Any]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


async def _noop() -> None:
    return None


async def _client_only() -> None:
    async with httpx.AsyncClient():
        pass


async def _old_design_call(url: str) -> str:
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(f"{url}/chat/completions", json=BODY)
        response.raise_for_status()
        return str(response.json()["choices"][0]["message"]["content"])


def old_design(url: str, n: int) -> None:
    """What relaybus replaces: each task in its own event loop with its own client, one after another."""
    for _ in range(n):
        asyncio.run(_old_design_call(url))


ClientFactory = Callable[[], httpx.AsyncClient]


def httpx_pool(connections: int, keepalive: int) -> ClientFactory:
    """httpx's own connection pool."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=keepalive)
    return lambda: httpx.AsyncClient(
        limits=limits, timeout=httpx.Timeout(10, read=None, write=None, pool=None)
    )


def aiohttp_transport(connections: int) -> ClientFactory:
    """httpx's API over httpx-aiohttp's transport: what TaskExecutor builds by default."""
    return lambda: make_client(transport="aiohttp", max_connections=connections)


async def _relaybus(url: str, n: int, concurrency: int, client_factory: ClientFactory | None) -> None:
    config = ExecutorConfig(
        provider=ProviderConfig(kind="openai", base_url=url, model="bench"),
        max_concurrency=concurrency,
        retry=RetryPolicy(max_attempts=1),
    )
    client = client_factory() if client_factory else None
    try:
        async with TaskExecutor(config, client=client) as executor:
            results = await asyncio.gather(
                *(executor.execute(AgentTask(topic="bench", prompt=f"task {i}")) for i in range(n))
            )
    finally:
        if client is not None:
            await client.aclose()
    failed = [r for r in results if not r.ok]
    if failed:
        raise SystemExit(f"{len(failed)} of {n} tasks failed, e.g. {failed[0].error}")


def relaybus(url: str, n: int, concurrency: int, client_factory: ClientFactory | None = None) -> None:
    """relaybus's TaskExecutor: one loop, one shared client, ``concurrency`` tasks in flight."""
    asyncio.run(_relaybus(url, n, concurrency, client_factory))


def raw_aiohttp(url: str, n: int, in_flight: int) -> None:
    """The floor on this machine: aiohttp alone, no executor and no httpx, ``in_flight`` at a time."""
    asyncio.run(_raw_aiohttp(url, n, in_flight))


async def _raw_aiohttp(url: str, n: int, in_flight: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight)) as session:

        async def one() -> None:
            async with session.post(f"{url}/chat/completions", json=BODY) as response:
                response.raise_for_status()
                await response.read()

        await asyncio.gather(*(one() for _ in range(n)))


def mean_cost(coro: Callable[[], Awaitable[None]], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        asyncio.run(coro())  # type: ignore[arg-type]
    return (time.perf_counter() - start) / repeat


def run() -> list[Row]:
    rows: list[Row] = []
    run_ms = mean_cost(_noop, 50) * 1000
    client_ms = mean_cost(_client_only, 20) * 1000
    rows.append(Row("startup", "one bare asyncio.run()", run_ms / 1000, note=f"{run_ms:.2f} ms"))
    rows.append(
        Row("startup", "asyncio.run() + new httpx client", client_ms / 1000, note=f"{client_ms:.2f} ms")
    )

    for n, latency in ((3, 2.0), (200, 0.2)):
        with fake_server(latency) as url:
            relaybus(url, 2, 2)  # warm up imports and the server
            old_wall, old_cpu = measure(partial(old_design, url, n))
            new_wall, new_cpu = measure(partial(relaybus, url, n, n))
        section = f"{n} tasks x {latency:g} s"
        rows.append(
            Row(section, "old: sequential asyncio.run() + new client", old_wall, old_cpu, n * latency)
        )
        rows.append(
            Row(
                section,
                "relaybus TaskExecutor",
                new_wall,
                new_cpu,
                latency,
                note=f"{old_wall / new_wall:.1f}x faster",
            )
        )

    cases = [
        (
            "200 calls x 0.2 s, 100 in flight",
            200,
            100,
            [
                ("httpx pool, defaults (100 conns, 20 keep-alive)", httpx_pool(100, 20)),
                ("httpx pool, 200 conns, 200 keep-alive", httpx_pool(200, 200)),
                ("httpx-aiohttp, 100 conns (relaybus default)", aiohttp_transport(100)),
            ],
        ),
        (
            "200 calls x 0.2 s, limit 1000 in flight",
            200,
            1000,
            [
                ("httpx pool, defaults (100 conns, 20 keep-alive)", httpx_pool(100, 20)),
                ("httpx pool, 1000 conns, 1000 keep-alive", httpx_pool(1000, 1000)),
                ("httpx-aiohttp, 1000 conns (relaybus default)", aiohttp_transport(1000)),
            ],
        ),
        (
            "1000 calls x 0.2 s, 1000 in flight",
            1000,
            1000,
            [
                ("httpx pool, 1000 conns, 20 keep-alive", httpx_pool(1000, 20)),
                ("httpx pool, 1000 conns, 1000 keep-alive", httpx_pool(1000, 1000)),
                ("httpx-aiohttp, 1000 conns (relaybus default)", aiohttp_transport(1000)),
            ],
        ),
    ]
    with fake_server(0.2) as url:
        relaybus(url, 2, 2)
        for section, n, in_flight, variants in cases:
            ideal = 0.2 * -(-n // in_flight)  # rounds of 0.2 s
            floor = [measure(partial(raw_aiohttp, url, n, in_flight)) for _ in range(3)]
            wall, cpu = statistics.median(s[0] for s in floor), statistics.median(s[1] for s in floor)
            rows.append(
                Row(
                    section,
                    "floor: bare aiohttp, no executor, no httpx",
                    wall,
                    cpu,
                    ideal,
                    f"{wall / ideal:.2f}x ideal",
                )
            )
            for label, factory in variants:
                one_run = partial(relaybus, url, n, in_flight, factory)
                samples = [measure(one_run)]
                if samples[0][0] < 5:  # the slow ones are slow enough to measure once
                    samples += [measure(one_run) for _ in range(2)]
                wall = statistics.median(s[0] for s in samples)
                cpu = statistics.median(s[1] for s in samples)
                rows.append(Row(section, label, wall, cpu, ideal, note=f"{wall / ideal:.2f}x ideal"))
    return rows


def print_table(rows: list[Row]) -> None:
    print(
        f"\nrelaybus executor benchmark - Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        "fake LLM server on 127.0.0.1 in a child process"
    )
    header = f"{'section':<40} {'case':<50} {'wall s':>8} {'CPU s':>7} {'ideal s':>8}  note"
    print(header)
    print("-" * len(header))
    for row in rows:
        cpu = f"{row.cpu_s:7.2f}" if row.cpu_s is not None else f"{'':>7}"
        ideal = f"{row.ideal_s:8.2f}" if row.ideal_s is not None else f"{'':>8}"
        wall = f"{row.wall_s:8.3f}" if row.wall_s < 1 else f"{row.wall_s:8.2f}"
        print(f"{row.section:<40} {row.case:<50} {wall} {cpu} {ideal}  {row.note}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--serve", type=float, metavar="LATENCY_S", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(_serve(args.serve))
        return 0
    configure_logging(level="WARNING")
    print_table(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
