"""The relaybus side of the round-trip benchmarks.

    python -m bench.relaybus_side client --agent NAME --points '[[n, window], ...]'
    python -m bench.relaybus_side memory --points '[[n, window], ...]'

``client``: a ``ProjectOrchestrator`` on an ``AmqpBus`` sends tasks addressed to agent ``NAME``, which a
separate ``relaybus worker bench.agents:...`` process hosts. A point with ``window >= n`` sends all ``n``
tasks with one ``execute_tasks`` call (throughput, as users call it); a smaller window keeps at most
``window`` ``execute_task`` calls in flight and records each one's latency.

``memory``: the same with the in-process ``MemoryBus``, the worker in the same process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence

from bench.agents import NoopAgent
from bench.common import CpuMeter, RunResult, amqp_url, emit_result, run_measured, timed
from relaybus.agents.worker import AgentWorker
from relaybus.bus.base import Bus
from relaybus.bus.connect import connect
from relaybus.bus.memory import MemoryBus
from relaybus.log import configure_logging
from relaybus.messages import AgentTask
from relaybus.orchestrator.orchestrator import ProjectOrchestrator

TOPIC = "bench.roundtrip"


async def run_point(
    orchestrator: ProjectOrchestrator, agent: str | Sequence[str], n: int, window: int, prompt: str
) -> RunResult:
    """``n`` tasks to ``agent`` (several names: spread evenly, in turn): one ``execute_tasks`` call if
    ``window >= n``, else ``window`` in flight."""
    names = [agent] if isinstance(agent, str) else list(agent)
    tasks = [AgentTask(topic=TOPIC, agent=names[i % len(names)], prompt=prompt) for i in range(n)]
    if window >= n:
        start = time.perf_counter()
        results = await orchestrator.execute_tasks(tasks)
        wall = time.perf_counter() - start
        return RunResult(n, wall, [], errors=sum(1 for r in results if not r.ok))
    gate = asyncio.Semaphore(window)
    latencies: list[float] = []
    errors = 0

    async def one(task: AgentTask) -> None:
        nonlocal errors
        async with gate:
            begin = time.perf_counter()
            result = await orchestrator.execute_task(task)
            latencies.append(time.perf_counter() - begin)
            errors += not result.ok

    start = time.perf_counter()
    await asyncio.gather(*(one(t) for t in tasks))
    return RunResult(n, time.perf_counter() - start, latencies, errors)


async def run_points(
    bus: Bus, agent: str | Sequence[str], points: list[list[int]], prompt: str, meter: CpuMeter
) -> list[dict[str, object]]:
    # Tasks take milliseconds (or one LLM call): a minute bounds a batch whose results a broker restart lost.
    async with ProjectOrchestrator(bus, default_timeout_s=60) as orchestrator:
        await run_point(orchestrator, agent, min(50, points[0][0]), 10, prompt)  # warm-up
        return [
            (await timed(meter, run_point(orchestrator, agent, n, w, prompt))).summary() for n, w in points
        ]


async def client(
    agent: str | Sequence[str], points: list[list[int]], prompt: str, server_pid: int | None
) -> None:
    bus = await connect(amqp_url())
    try:
        emit_result(await run_points(bus, agent, points, prompt, CpuMeter(server_pid)))
    finally:
        await bus.close()


async def memory(points: list[list[int]], concurrency: int) -> None:
    """Orchestrator, bus and worker in one process: what ``relaybus demo`` and unit tests run on."""
    agent = NoopAgent()
    async with (
        MemoryBus() as bus,
        AgentWorker(bus, [agent], concurrency=concurrency, heartbeat_interval_s=60),
    ):
        emit_result(await run_points(bus, agent.name, points, "", CpuMeter(None)))


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.relaybus_side")
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("client")
    c.add_argument("--agent", required=True)
    c.add_argument("--points", required=True, help="JSON list of [n, window] pairs")
    c.add_argument("--prompt", default="hello")
    c.add_argument("--server-pid", type=int, help="also report this process's CPU per task")
    c.add_argument(
        "--agents", type=int, default=0, help="K > 0: spread the tasks over agents AGENT-0 .. AGENT-<K-1>"
    )
    m = sub.add_parser("memory")
    m.add_argument("--points", required=True)
    m.add_argument("--concurrency", type=int, default=1000)
    args = parser.parse_args()
    configure_logging(level="INFO", json=True)  # as the CLI does: log lines on stderr
    if args.cmd == "client":
        names = [f"{args.agent}-{i}" for i in range(args.agents)] if args.agents else args.agent
        run_measured(client(names, json.loads(args.points), args.prompt, args.server_pid))
    else:
        run_measured(memory(json.loads(args.points), args.concurrency))


if __name__ == "__main__":
    main()
