"""CPU per task of a worker's telemetry: metrics and tracing on or off, and the cost of one log line.

    python -m bench.telemetry [--n 5000] [--window 200] [--repeat 3] [--modes untraced,plain,metrics,tracing]

One process, one MemoryBus: an AgentWorker hosting a no-op agent answers ``n`` tasks sent ``window`` at a
time through a ReplyRouter (both sides' CPU counted, as ``time.process_time``, the SDK's export thread
included), logging not configured (what a library user gets). Modes, run interleaved ``repeat`` times, the
best of each printed in microseconds of CPU per task:

- ``untraced``: the tracing hooks bypassed (what relaybus cost before trace context went on the wire);
- ``plain``: the default, no SDK set up: no spans, but the trace context is propagated on every message;
- ``metrics``: plain with a WorkerMetrics;
- ``tracing``: the OpenTelemetry SDK set up (a BatchSpanProcessor into an in-memory exporter): the spans of
  a task (the caller's publish, the worker's process, invoke_agent, the result's publish and the caller's
  process of it).

Then the direct costs: the metrics calls a task makes, and one ``task_done`` line rendered as JSON / console
to a file, or dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

from relaybus.agents import Agent, AgentContext, AgentWorker
from relaybus.bus.memory import MemoryBus
from relaybus.bus.rpc import ReplyRouter
from relaybus.log import configure_logging, get_logger
from relaybus.messages import AgentTask, ExecutionResult
from relaybus.telemetry import WorkerMetrics

MODES = ("untraced", "plain", "metrics", "tracing")
_PROVIDER: Any = None
EXPORTER: Any = None  # the tracing mode's spans


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


def _sdk() -> Any:
    """One SDK tracer provider for the whole run (OpenTelemetry lets a process set one once)."""
    global _PROVIDER, EXPORTER
    if _PROVIDER is None:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        EXPORTER = InMemorySpanExporter()
        _PROVIDER = TracerProvider()
        _PROVIDER.add_span_processor(BatchSpanProcessor(EXPORTER))
    return _PROVIDER


@contextlib.contextmanager
def tracing_as(mode: str) -> Iterator[None]:
    """The SDK set as the global provider (``tracing``), or the hooks bypassed (``untraced``), for a run."""
    from opentelemetry import trace

    from relaybus.telemetry import tracing

    saved = dict(vars(tracing))
    if mode == "tracing":
        trace._TRACER_PROVIDER = _sdk()
    if mode == "untraced":

        async def publish(fn: Any, bus: Any, message: Any) -> None:
            await fn(bus, message, None)

        async def invoke_agent(agent: Any, task: Any, ctx: Any) -> Any:
            return await agent.handle(task, ctx)

        tracing.publish = publish  # type: ignore[assignment]
        tracing.consumer = lambda queue, handler: handler  # type: ignore[assignment]
        tracing.invoke_agent = invoke_agent  # type: ignore[assignment]
    try:
        yield
    finally:
        trace._TRACER_PROVIDER = None
        vars(tracing).update(saved)


def run_mode(mode: str, n: int, window: int) -> float:
    metrics = WorkerMetrics() if mode == "metrics" else None
    with tracing_as(mode):
        us = asyncio.run(cpu_per_task(n, window, metrics))
        if mode == "tracing":
            _sdk().force_flush()  # the export thread's CPU belongs to these tasks
    return us


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--window", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    runs: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(args.repeat):  # interleaved, so a shared machine's load falls on every mode alike
        for mode in modes:
            runs[mode].append(run_mode(mode, args.n, args.window))
    results = {mode: min(values) for mode, values in runs.items()}
    plain = results.get("plain")
    print(f"{'mode':<10} {'CPU us/task':>12} {'vs plain':>10} {'ratio':>6}")
    for mode, us in results.items():
        delta = "" if plain is None or mode == "plain" else f"{us - plain:+.1f} us"
        ratio = "" if plain is None else f"{us / plain:.2f}"
        print(f"{mode:<10} {us:>12.1f} {delta:>10} {ratio:>6}")
    print("direct costs (CPU us per task):")
    direct = direct_costs()
    for name, us in direct.items():
        print(f"  {name:<30} {us:>6.1f}")
    if args.json is not None:
        figures = {"n": args.n, "repeat": args.repeat, "modes": results, "direct_us": direct}
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
