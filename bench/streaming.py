"""Streaming through relaybus against streaming from the provider directly, in the same run.

    python -m bench.streaming [--reps 30] [--tasks 100] [--tokens 500] [--json PATH]

Measures, each with a ``relaybus worker bench.agents:LlmAgent`` of its own (OpenAI format):

1. Time to first token at one in flight, alternating the two clients for ``--reps`` rounds after a warm-up:
   a direct streamed request with aiohttp (first ``data:`` chunk with text), and a task streamed through
   relaybus (caller -> RabbitMQ -> worker -> provider -> worker -> RabbitMQ -> caller,
   ``orchestrator.stream``, first ``delta`` event). Both call a :class:`~relaybus.testing.FakeLLMServer` in
   a process of its own (``bench.llm_server``), as a real provider is one network hop away from the direct
   caller and from the worker alike (a server in this process would spare the direct client every hop and
   every wake-up of another process). Prints the medians and p90 and what relaybus adds; and, measured
   after the same idle gap, the two broker trips such a task makes, with raw aio-pika
   (:mod:`bench.broker_trips`), which on a virtual machine cost several times what they cost back to back:
   what relaybus adds beyond them is its own code and its process hops.
2. ``--tasks`` concurrent tasks whose answer is ``--tokens`` chunks (one word each, 2 ms apart, a fast
   model), from a FakeLLMServer in this process (it counts the chunks it sends): once streamed and once
   not. Prints the broker messages per task (task + events + result, the events counted as the caller
   received them) and the worker's CPU per task (user + system) in both runs.

The machine's load shows in the latencies; the counts of messages do not depend on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import broker
from bench.broker_trips import BrokerTrips
from bench.common import READY, Child, Children, amqp_url, percentile, unique
from bench.llm_server import WORD, words_reply
from bench.run import relaybus_worker
from relaybus import AgentTask, TaskEvent
from relaybus.bus.connect import connect
from relaybus.orchestrator import ProjectOrchestrator
from relaybus.testing import FakeLLMServer


def _text_of(line: bytes) -> str:
    """The text an OpenAI stream chunk (``data: {...}``) carries, "" for none."""
    try:
        chunk = json.loads(line[5:])
        return str(chunk["choices"][0]["delta"].get("content") or "")
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


async def _direct_ttft(session: aiohttp.ClientSession, base_url: str) -> float:
    body = {"model": "fake", "messages": [{"role": "user", "content": "n=20"}], "stream": True}
    started = time.perf_counter()
    async with session.post(f"{base_url}/chat/completions", json=body) as response:
        async for line in response.content:
            if line.startswith(b"data:") and b"content" in line and _text_of(line):
                first = time.perf_counter() - started
                break
        else:
            raise RuntimeError("the fake server's stream carried no text")
        await response.read()
    return first


async def _relaybus_ttft(orchestrator: ProjectOrchestrator, agent: str) -> float:
    task = AgentTask(topic="bench.stream", agent=agent, prompt="n=20", timeout_s=60)
    started = time.perf_counter()
    first: float | None = None
    async for event in orchestrator.stream(task):
        if event.kind == "delta" and first is None:
            first = time.perf_counter() - started
        if event.kind == "result" and (event.result is None or not event.result.ok):
            raise RuntimeError(f"a streamed task failed: {event.result}")
    if first is None:
        raise RuntimeError("a streamed task gave no delta")
    return first


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": statistics.median(values) * 1000,
        "p90_ms": percentile(values, 90) * 1000,
        "n": len(values),
    }


async def _ttft(base_url: str, orchestrator: ProjectOrchestrator, agent: str, reps: int) -> dict[str, Any]:
    direct: list[float] = []
    through: list[float] = []
    trips: list[float] = []
    async with aiohttp.ClientSession() as session, BrokerTrips() as broker_trips:
        for _ in range(3):  # warm-up: connections, pools, the worker's first provider call
            await _direct_ttft(session, base_url)
            await _relaybus_ttft(orchestrator, agent)
            await broker_trips.measure()
        for _ in range(reps):
            # Each measurement follows a direct request (~45 ms in which the broker is idle), the same gap.
            direct.append(await _direct_ttft(session, base_url))
            through.append(await _relaybus_ttft(orchestrator, agent))
            direct.append(await _direct_ttft(session, base_url))
            trips.append(await broker_trips.measure())
    d, r, b = _spread(direct), _spread(through), _spread(trips)
    added = r["p50_ms"] - d["p50_ms"]
    return {
        "direct": d,
        "relaybus": r,
        "broker_trips": b,
        "added_p50_ms": added,
        "own_p50_ms": added - b["p50_ms"],
    }


async def _many(
    server: FakeLLMServer,
    orchestrator: ProjectOrchestrator,
    agent: str,
    worker: Child,
    tasks: int,
    tokens: int,
) -> dict[str, Any]:
    server.chunk_size, server.chunk_delay_s = len(WORD), 0.002  # one word per chunk
    figures: dict[str, Any] = {}
    for streamed in (False, True):
        batch = [
            AgentTask(topic="bench.stream", agent=agent, prompt=f"n={tokens}", timeout_s=300)
            for _ in range(tasks)
        ]
        events: list[TaskEvent] = []
        chunks_before = server.chunks_sent
        cpu_before = worker.cpu_s()
        started = time.perf_counter()
        if streamed:
            results = await asyncio.gather(
                *(orchestrator.execute_task(t, on_event=events.append) for t in batch)
            )
        else:
            results = await orchestrator.execute_tasks(batch)
        wall = time.perf_counter() - started
        cpu = worker.cpu_s() - cpu_before
        failed = [r for r in results if not r.ok]
        if failed:
            raise RuntimeError(f"{len(failed)} of {tasks} tasks failed, e.g. {failed[0].error}")
        received = sum(1 for e in events if e.kind != "result")
        figures["streamed" if streamed else "plain"] = {
            "tasks": tasks,
            "tokens": tokens,
            "provider_chunks_per_task": (server.chunks_sent - chunks_before) / tasks,
            "events_per_task": received / tasks,
            "broker_messages_per_task": 2 + received / tasks,
            "worker_cpu_ms_per_task": cpu / tasks * 1000,
            "wall_s": wall,
        }
    return figures


def _openai_env(base_url: str) -> dict[str, str]:
    return {"RELAYBUS_LLM_PROVIDER": "openai", "OPENAI_BASE_URL": base_url}


async def measure(children: Children, args: argparse.Namespace, agents: tuple[str, str]) -> dict[str, Any]:
    ttft_agent, many_agent = agents
    server_process = children.python(
        "fake-llm", "bench.llm_server", "--latency=0", "--chunk-size=4", "--chunk-delay=0.002", "--words"
    )
    (remote_url,) = (await asyncio.to_thread(server_process.wait_line, READY, 30))["urls"]
    await asyncio.to_thread(relaybus_worker, children, ttft_agent, "LlmAgent", 1, _openai_env(remote_url))
    async with FakeLLMServer(reply=words_reply) as server:
        worker = await asyncio.to_thread(
            relaybus_worker,
            children,
            many_agent,
            "LlmAgent",
            max(args.tasks, 1),
            _openai_env(server.openai_base_url),
        )
        async with await connect(amqp_url()) as bus, ProjectOrchestrator(bus) as orchestrator:
            ttft = await _ttft(remote_url, orchestrator, ttft_agent, args.reps)
            many = await _many(server, orchestrator, many_agent, worker, args.tasks, args.tokens)
    return {"ttft": ttft, "concurrent": many}


def report(figures: dict[str, Any]) -> str:
    ttft = figures["ttft"]
    lines = [
        "time to first token, one in flight | p50 ms | p90 ms | n",
        "---|---:|---:|---:",
    ]
    for name in ("direct", "relaybus"):
        f = ttft[name]
        lines.append(f"{name} | {f['p50_ms']:.2f} | {f['p90_ms']:.2f} | {f['n']}")
    lines.append(f"relaybus adds (p50) | {ttft['added_p50_ms']:+.2f} | | (target < 5 ms)")
    if "broker_trips" in ttft:
        f = ttft["broker_trips"]
        lines.append(
            f"of which two raw broker trips (quorum, then classic; aio-pika, same gap) | {f['p50_ms']:.2f} | "
            f"{f['p90_ms']:.2f} | {f['n']}"
        )
        lines.append(f"relaybus's own code and hops (p50) | {ttft['own_p50_ms']:+.2f} | |")
    lines += [
        "",
        "concurrent tasks | provider chunks/task | events/task | broker messages/task | worker CPU ms/task"
        " | wall s",
        "---|---:|---:|---:|---:|---:",
    ]
    for name, f in figures["concurrent"].items():
        lines.append(
            f"{f['tasks']} x {f['tokens']} tokens, {name} | {f['provider_chunks_per_task']:.0f} | "
            f"{f['events_per_task']:.1f} | {f['broker_messages_per_task']:.1f} | "
            f"{f['worker_cpu_ms_per_task']:.2f} | {f['wall_s']:.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=30, help="time-to-first-token rounds (default 30)")
    parser.add_argument("--tasks", type=int, default=100, help="concurrent streamed tasks (default 100)")
    parser.add_argument("--tokens", type=int, default=500, help="chunks in each answer (default 500)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    agents = (unique("bench-stream-ttft"), unique("bench-stream"))
    with Children(Path(tempfile.mkdtemp(prefix="relaybus-bench-stream-"))) as children:
        try:
            figures = asyncio.run(measure(children, args, agents))
        finally:
            children.stop_all()
            asyncio.run(broker.delete_queues([f"relaybus.agent.{agent}" for agent in agents]))
    print(report(figures))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
