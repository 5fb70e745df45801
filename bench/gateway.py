"""What the HTTP gateway adds to a round trip: ``POST /tasks?wait`` through ``relaybus gateway`` against
``ProjectOrchestrator.execute_task`` in Python, on the same worker process, in the same run.

    python -m bench.gateway [--n 2000] [--rounds 3] [--concurrency 1 500]

Starts ``relaybus worker bench.agents:NoopAgent`` (answers at once) and ``relaybus gateway`` on 127.0.0.1,
then, for each concurrency, alternates the two clients (orchestrator, then HTTP through the gateway) for
``--rounds`` rounds of ``--n`` tasks with that many in flight. Prints requests per second and p50/p99
latency and the CPU one request costs (medians over the rounds), and what the gateway adds to the p50 and
the CPU. On a loaded machine the p50 mostly measures waiting for a core (the gateway is one more process on
the way); the CPU per request is the steadier figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench import broker
from bench.common import BIN, Children, RunResult, amqp_url, unique
from bench.run import relaybus_worker
from relaybus import AgentTask
from relaybus.bus.connect import connect
from relaybus.orchestrator import ProjectOrchestrator

Send = Callable[[AgentTask], Awaitable[bool]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_healthy(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gateway at {url} did not answer /healthz within {timeout:g}s")
        time.sleep(0.2)


async def _run(send: Send, agent: str, n: int, concurrency: int) -> RunResult:
    """``n`` tasks, ``concurrency`` in flight at once; per-task latency from send to result."""
    latencies: list[float] = []
    errors = 0
    queue = iter(range(n))

    async def lane() -> None:
        nonlocal errors
        for _ in queue:
            task = AgentTask(topic="bench.gateway", agent=agent)
            started = time.perf_counter()
            ok = await send(task)
            latencies.append(time.perf_counter() - started)
            errors += not ok

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return RunResult(n=n, wall_s=time.perf_counter() - started, latencies_s=latencies, errors=errors)


async def measure(
    url: str, agent: str, gateway_cpu_s: Callable[[], float], *, n: int, rounds: int, levels: list[int]
) -> dict[str, Any]:
    """The figures per concurrency and client. ``cpu_us`` is the CPU one request costs where the bus is
    used from: this process for the orchestrator, the gateway's process (HTTP and orchestrator) for HTTP."""
    bus = await connect(amqp_url())
    connector = aiohttp.TCPConnector(limit=max(levels) + 10)
    figures: dict[str, Any] = {}
    async with ProjectOrchestrator(bus) as orchestrator, aiohttp.ClientSession(connector=connector) as http:

        async def direct(task: AgentTask) -> bool:
            return (await orchestrator.execute_task(task)).ok

        async def through_gateway(task: AgentTask) -> bool:
            body = task.model_dump_json().encode()
            headers = {"Content-Type": "application/json"}
            async with http.post(f"{url}/tasks?wait=60", data=body, headers=headers) as response:
                view = await response.json()
                return response.status == 200 and view["result"]["status"] == "success"

        clients: dict[str, Send] = {"orchestrator": direct, "gateway": through_gateway}
        cpu_of: dict[str, Callable[[], float]] = {"orchestrator": time.process_time, "gateway": gateway_cpu_s}
        for send in clients.values():  # warm up both paths: connections, reply queues, JIT-free caches
            await _run(send, agent, min(n, 200), min(max(levels), 50))
        for level in levels:
            runs: dict[str, list[RunResult]] = {name: [] for name in clients}
            for _ in range(rounds):
                for name, send in clients.items():
                    cpu_before = cpu_of[name]()
                    result = await _run(send, agent, n, level)
                    result.cpu_server_s = cpu_of[name]() - cpu_before
                    runs[name].append(result)
            figures[str(level)] = {
                name: {
                    "req_per_s": statistics.median(r.throughput for r in results),
                    "p50_ms": statistics.median(r.p(0.5) * 1000 for r in results),
                    "p99_ms": statistics.median(r.p(0.99) * 1000 for r in results),
                    "cpu_us": statistics.median(r.cpu_server_s / r.n * 1e6 for r in results),
                    "errors": sum(r.errors for r in results),
                }
                for name, results in runs.items()
            }
    await bus.close()
    return figures


def report(figures: dict[str, Any]) -> str:
    lines = [
        "| in flight | client | req/s | p50 ms | p99 ms | CPU us/req | errors |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for level, by_client in figures.items():
        for name, f in by_client.items():
            lines.append(
                f"| {level} | {name} | {f['req_per_s']:,.0f} | {f['p50_ms']:.2f} | {f['p99_ms']:.2f} | "
                f"{f['cpu_us']:,.0f} | {f['errors']} |"
            )
        added = by_client["gateway"]["p50_ms"] - by_client["orchestrator"]["p50_ms"]
        cpu = by_client["gateway"]["cpu_us"] - by_client["orchestrator"]["cpu_us"]
        lines.append(f"| {level} | gateway adds | | {added:+.2f} | | {cpu:+,.0f} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000, help="tasks per round and client (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per concurrency (default 3)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 500], help="in flight (1 500)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    agent = unique("bench-gateway")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with Children(Path(tempfile.mkdtemp(prefix="relaybus-bench-gateway-"))) as children:
        try:
            relaybus_worker(children, agent, "NoopAgent", max(args.concurrency), {})
            gateway_argv = [str(BIN / "relaybus"), "--log-json", "--log-level", "WARNING", "gateway"]
            gateway_argv += ["--amqp-url", amqp_url(), "--port", str(port), "--max-in-flight", "100000"]
            gateway = children.start("gateway", gateway_argv)
            _wait_healthy(url)
            levels = sorted(set(args.concurrency))
            figures = asyncio.run(
                measure(url, agent, gateway.cpu_s, n=args.n, rounds=args.rounds, levels=levels)
            )
        finally:
            children.stop_all()
            asyncio.run(broker.delete_queues([f"relaybus.agent.{agent}"]))
    print(report(figures))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
