"""Plans and worker processes for the orchestrator's tests on a real RabbitMQ (``plan_agents.Summer``)."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from relaybus.bus.base import Bus, Delivery, agent_queue_name
from relaybus.bus.connect import connect
from relaybus.demo.runner import WorkerProcesses

from . import plan_agents
from .conftest import eventually

REPO_ROOT = Path(__file__).resolve().parents[2]


def layered_plan(
    name: str,
    suffix: str,
    *,
    layers: int = 4,
    width: int = 5,
    sleep_s: float = 0.3,
    slow: dict[str, float] | None = None,
    fail: frozenset[str] = frozenset(),
) -> tuple[str, dict[str, int]]:
    """A plan file's text: ``layers`` x ``width`` Summer tasks, each depending on two of the layer before.

    Returns the YAML and the sum each task must answer; ``fail`` tasks raise, ``slow`` ones sleep longer.
    """
    slow = slow or {}
    tasks = []
    sums: dict[str, int] = {}
    for layer in range(layers):
        for i in range(width):
            key = f"t{layer}-{i}"
            deps = [f"t{layer - 1}-{i}", f"t{layer - 1}-{(i + 1) % width}"] if layer else []
            value = layer * 10 + i
            sums[key] = value + sum(sums[d] for d in deps)
            tasks.append(
                {
                    "key": key,
                    "prompt": key,
                    "input": {"value": value, "sleep_s": slow.get(key, sleep_s), "fail": key in fail},
                    "depends_on": deps,
                }
            )
    text = yaml.safe_dump(
        {
            "name": name,
            "defaults": {"topic": f"{plan_agents.prefix(suffix)}.sum", "timeout_s": 60},
            "tasks": tasks,
        },
        sort_keys=False,
    )
    return text, sums


@dataclass
class SummerFleet:
    """``relaybus worker`` processes hosting Summer, and a count of the runs they announce."""

    amqp_url: str
    suffix: str
    bus: Bus
    runs: Counter[str] = field(default_factory=Counter)
    workers_seen: set[str] = field(default_factory=set)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RELAYBUS_AMQP_URL": self.amqp_url,
            "RELAYBUS_TEST_AGENT_SUFFIX": self.suffix,
            "PYTHONPATH": str(REPO_ROOT),
        }

    def processes(self, count: int, concurrency: int = 8) -> WorkerProcesses:
        spec = "tests.orchestrator.plan_agents:Summer"
        return WorkerProcesses([[spec]] * count, env=self.env(), concurrency=concurrency, log_level="WARNING")

    async def on_ran(self, delivery: Delivery) -> None:
        payload = json.loads(delivery.body)
        self.runs[payload["task_id"]] += 1
        self.workers_seen.add(payload["worker"])
        await delivery.ack()


@pytest.fixture
async def summer_fleet(amqp_url: str) -> AsyncIterator[SummerFleet]:
    suffix = f"-{uuid.uuid4().hex[:8]}"
    bus = await connect(amqp_url)
    fleet = SummerFleet(amqp_url, suffix, bus)
    watch = f"relaybus.test.plan-runs{suffix}"
    try:
        await bus.declare_queue(watch, bindings=[f"event.{plan_agents.prefix(suffix)}.ran"], durable=False)
        await bus.consume(watch, fleet.on_ran, prefetch=500)
        yield fleet
    finally:
        with contextlib.suppress(Exception):
            await bus.delete_queue(agent_queue_name(f"summer{suffix}"))
            await bus.delete_queue(watch)
        await bus.close()


wait_until = eventually  # the name the CLI tests import
