"""The price of replication and the time to recover from a lost node, on private RabbitMQ nodes (needs root).

    python -m bench.cluster [--tasks 2000] [--rounds 2] [--json bench/cluster.json]

In one run, on this machine: one private node, and a private 3-node cluster (tests/rabbitmq_nodes.py; the
shared broker is not touched). Each round measures, on each in turn:

- **round trip**: ``--tasks`` no-op tasks sent at once with ``execute_tasks`` by a caller in this process to
  one ``relaybus worker bench.agents:NoopAgent`` process (concurrency 64). On the cluster the worker is
  connected to node 2 and the caller to node 1, and the agent's queue has three members (quorum queues,
  persistent messages, publisher confirms, as always).

Then, once, on the cluster: **failover**: ``--tasks`` tasks again, the node leading the agent's queue is
SIGKILLed after a third of the results; reported: seconds from the kill to the first result after it, the
longest pause between results after the kill, and that every task got a result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

from tests.rabbitmq_nodes import PrivateCluster, PrivateNode

from relaybus.bus.base import agent_queue_name
from relaybus.bus.connect import connect
from relaybus.messages import AgentTask
from relaybus.orchestrator import ProjectOrchestrator

ROOT = Path(__file__).resolve().parents[1]


async def _worker(url: str, agent: str, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "RELAYBUS_AMQP_URL": url, "RELAYBUS_BENCH_AGENT_NAME": agent}
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "relaybus", "--log-level", "WARNING", "worker", "bench.agents:NoopAgent",
            "--concurrency", "64", cwd=ROOT, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip


async def _ready(orchestrator: ProjectOrchestrator, agent: str) -> None:
    """Wait until the worker answers (before it declared its queue, a task is refused at once: no route)."""
    last = None
    for _ in range(120):
        result = await orchestrator.execute_task(AgentTask(topic="bench.cluster", agent=agent, timeout_s=5))
        if result.ok:
            return
        last = result.error
        await asyncio.sleep(0.5)
    raise SystemExit(f"the worker of {agent} never answered: {last}")


async def round_trip(caller_url: str, worker_url: str, tasks: int, log: Path) -> float:
    """Tasks/s of ``tasks`` no-op tasks sent at once."""
    agent = f"bench-cluster-{uuid.uuid4().hex[:8]}"
    worker = await _worker(worker_url, agent, log)
    bus = await connect(caller_url)
    try:
        async with ProjectOrchestrator(bus, default_timeout_s=120) as orchestrator:
            await _ready(orchestrator, agent)
            batch = [AgentTask(topic="bench.cluster", agent=agent) for _ in range(tasks)]
            began = time.perf_counter()
            results = await orchestrator.execute_tasks(batch)
            wall = time.perf_counter() - began
        failed = sum(1 for r in results if not r.ok)
        if failed:
            raise SystemExit(f"{failed} of {tasks} tasks failed on {caller_url.split('@')[-1]}")
        return tasks / wall
    finally:
        worker.kill()
        await worker.wait()
        await bus.delete_queue(agent_queue_name(agent))
        await bus.close()


async def failover(cluster: PrivateCluster, tasks: int, log: Path) -> dict[str, object]:
    """Kill the node leading the agent's queue after a third of the results."""
    agent = f"bench-cluster-{uuid.uuid4().hex[:8]}"
    urls = cluster.urls
    worker = await _worker(",".join(urls[1:] + urls[:1]), agent, log)
    bus = await connect(",".join(urls[2:] + urls[:2]), reconnect_timeout=120)
    times: list[float] = []
    killed: list[float] = []
    try:
        async with ProjectOrchestrator(bus, default_timeout_s=300) as orchestrator:
            await _ready(orchestrator, agent)
            leader = cluster.node_named(cluster.queue(agent_queue_name(agent))["leader"])

            async def one(task: AgentTask) -> bool:
                result = await orchestrator.execute_task(task)
                times.append(time.monotonic())
                if len(times) == tasks // 3:
                    killed.append(time.monotonic())
                    leader.kill()
                return result.ok

            oks = await asyncio.gather(
                *(one(AgentTask(topic="bench.cluster", agent=agent)) for _ in range(tasks))
            )
        after = [t for t in times if t > killed[0]]
        pauses = [b - a for a, b in zip([killed[0], *after], after, strict=False)]
        return {
            "tasks": tasks,
            "succeeded": sum(oks),
            "killed": leader.name,
            "first_result_after_kill_s": round(after[0] - killed[0], 3) if after else None,
            "longest_pause_after_kill_s": round(max(pauses), 3) if pauses else None,
        }
    finally:
        worker.kill()
        await worker.wait()
        await bus.delete_queue(agent_queue_name(agent))
        await bus.close()
        await asyncio.to_thread(cluster.ensure_running)


async def main(tasks: int, rounds: int, out: Path | None) -> None:
    logs = Path("/tmp") / f"relaybus-bench-cluster-{uuid.uuid4().hex[:6]}"
    logs.mkdir()
    one: dict[str, list[float]] = {"one node": [], "3-node cluster": []}
    with PrivateNode.create("rbbench") as node, PrivateCluster.create(3, "rbbenchc") as cluster:
        for i in range(rounds):
            one["one node"].append(await round_trip(node.url, node.url, tasks, logs / f"one-{i}.log"))
            caller = ",".join(cluster.urls)
            worker = ",".join(cluster.urls[1:] + cluster.urls[:1])
            one["3-node cluster"].append(await round_trip(caller, worker, tasks, logs / f"cluster-{i}.log"))
        lost_node = await failover(cluster, tasks, logs / "failover.log")
    ratios = [c / s for s, c in zip(one["one node"], one["3-node cluster"], strict=True)]
    report = {
        "tasks": tasks,
        "rounds": rounds,
        "tasks_per_s": {k: [round(v) for v in vs] for k, vs in one.items()},
        "median_tasks_per_s": {k: round(statistics.median(vs)) for k, vs in one.items()},
        "cluster_over_one_node": round(statistics.median(ratios), 2),
        "failover": lost_node,
        "load_average": os.getloadavg(),
    }
    print(json.dumps(report, indent=2))
    if out is not None:
        out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    asyncio.run(main(args.tasks, args.rounds, args.json))
