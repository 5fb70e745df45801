"""CPU per task of a worker's telemetry: metrics on or off, and the cost of one ``task_done`` log line.

    python -m bench.telemetry [--n 5000] [--window 200] [--repeat 3]

One process, one MemoryBus: an AgentWorker hosting a no-op agent answers ``n`` tasks sent ``window`` at a
time through a ReplyRouter (both sides' CPU counted, as ``time.process_time``), logging not configured
(what a library user gets). Modes ``plain`` (no metrics) and ``metrics`` (a WorkerMetrics) run interleaved
``repeat`` times; the best of each is printed in microseconds of CPU per task. Then the direct costs: the
metrics calls a task makes, and one ``task_done`` line rendered as JSON / console to a file, or dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from relaybus.agents import Agent, AgentContext, AgentWorker
from relaybus.bus.memory import MemoryBus
from relaybus.bus.rpc import ReplyRouter
from relaybus.log import configure_logging, get_logger
from relaybus.messages import AgentTask, ExecutionResult
from relaybus.telemetry import WorkerMetrics

MODES = ("plain", "metrics")


class Noop(Agent):
    name = "bench-noop"
    topics = ("bench.noop",)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        return "ok"


async def cpu_per_task(n: int, window: int, metrics: WorkerMetrics | None) -> float:
    """Microseconds of CPU per task for ``n`` tasks through one worker."""
    async with MemoryBus() as bus:
        worker = AgentWorker(bus, [Noop()], concurrency=window, grace_s=0, metrics=metrics)
        async with worker, ReplyRouter(bus) as router:
            semaphore = asyncio.Semaphore(window)

            async def one() -> None:
                async with semaphore:
                    result = await router.request(AgentTask(topic="bench.noop"), timeout=60)
                    assert result.ok, result

            await asyncio.gather(*(one() for _ in range(200)))  # warm up
            start = time.process_time()
            await asyncio.gather(*(one() for _ in range(n)))
            return (time.process_time() - start) / n * 1e6


def run_mode(mode: str, n: int, window: int) -> float:
    metrics = WorkerMetrics() if mode == "metrics" else None
    return asyncio.run(cpu_per_task(n, window, metrics))


def direct_costs(n: int = 20000) -> dict[str, float]:
    """Microseconds of CPU per task of the telemetry calls alone, without the bus around them."""
    metrics = WorkerMetrics()
    now = datetime.now(UTC)
    result = ExecutionResult.success(uuid4(), "ok", agent="a", worker="w", started_at=now, finished_at=now)
    start = time.process_time()
    for _ in range(n):
        began = metrics.task_started("a", ())
        metrics.task_ended("a", result, began)
        metrics.task_answered(result)
    costs = {"metrics calls": (time.process_time() - start) / n * 1e6}
    log = get_logger("relaybus.bench", worker="host:1")
    task_id = str(uuid4())
    with tempfile.TemporaryFile("w") as sink:
        for name, json in (("task_done line, JSON", True), ("task_done line, console", False)):
            configure_logging(level="INFO", json=json, stream=sink)
            start = time.process_time()
            for _ in range(n):
                log.info("task_done", task_id=task_id, agent="a", status="success", duration_ms=1.2)
            costs[name] = (time.process_time() - start) / n * 1e6
        configure_logging(level="WARNING", json=True, stream=sink)
        start = time.process_time()
        for _ in range(n):
            log.debug("task_done", task_id=task_id, agent="a", status="success", duration_ms=1.2)
        costs["task_done at DEBUG, filtered"] = (time.process_time() - start) / n * 1e6
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--window", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    modes = args.modes.split(",")
    runs: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(args.repeat):  # interleaved, so a shared machine's load falls on every mode alike
        for mode in modes:
            runs[mode].append(run_mode(mode, args.n, args.window))
    results = {mode: min(values) for mode, values in runs.items()}
    plain = results.get("plain")
    print(f"{'mode':<10} {'CPU us/task':>12} {'vs plain':>10}")
    for mode, us in results.items():
        delta = "" if plain is None or mode == "plain" else f"{us - plain:+.1f} us"
        print(f"{mode:<10} {us:>12.1f} {delta:>10}")
    print("direct costs (CPU us per task):")
    for name, us in direct_costs().items():
        print(f"  {name:<30} {us:>6.1f}")


if __name__ == "__main__":
    main()
