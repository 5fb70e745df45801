"""The orchestrator on a real RabbitMQ with agents in separate ``relaybus worker`` processes."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import pytest

from relaybus import AgentTask, ExecutionStatus
from relaybus.bus.base import agent_queue_name, task_routing_key
from relaybus.bus.connect import connect
from relaybus.orchestrator import PlanProgress, ProjectOrchestrator, parse_plan

from . import plan_agents
from .broker_plans import SummerFleet, layered_plan, summer_fleet
from .conftest import eventually

pytestmark = pytest.mark.integration

__all__ = ["summer_fleet"]  # the fixture, imported for the tests below


async def test_a_20_task_plan_with_dependencies_runs_over_two_worker_processes(
    summer_fleet: SummerFleet,
) -> None:
    text, sums = layered_plan("twenty", summer_fleet.suffix, layers=4, width=5, sleep_s=0.4)
    plan = parse_plan(text, run_id=uuid.uuid4().hex)
    assert len(plan.tasks) == 20
    async with summer_fleet.processes(2, concurrency=3) as workers:
        await workers.wait_ready(summer_fleet.bus)
        async with ProjectOrchestrator(summer_fleet.bus) as orchestrator:
            result = await orchestrator.run_plan(plan)
    assert result.ok, [r.error for r in result.failed]
    assert {result.key_of(i): r.output["sum"] for i, r in result.results.items()} == sums  # type: ignore[index,call-overload]
    assert len({r.worker for r in result.results.values()}) == 2  # competing consumers both took part
    assert all(n == 1 for n in summer_fleet.runs.values())
    assert len(summer_fleet.runs) == 20
    # 4 layers of 5 tasks of 0.4 s on 6 slots: about 1.6 s instead of 8 s one after another
    assert result.speedup > 2.0


async def test_a_failed_task_cancels_its_dependents_on_rabbitmq(summer_fleet: SummerFleet) -> None:
    text, _ = layered_plan(
        "failing", summer_fleet.suffix, layers=3, width=3, sleep_s=0.0, fail=frozenset({"t0-1"})
    )
    plan = parse_plan(text, run_id=uuid.uuid4().hex)
    async with summer_fleet.processes(1) as workers:
        await workers.wait_ready(summer_fleet.bus)
        async with ProjectOrchestrator(summer_fleet.bus) as orchestrator:
            result = await orchestrator.run_plan(plan)
    statuses = {result.key_of(i): r.status for i, r in result.results.items()}
    assert statuses["t0-1"] is ExecutionStatus.FAILURE
    # t1-0 and t1-1 depend on t0-1; each task of layer 2 depends on t1-0 or t1-1
    assert statuses["t1-0"] is ExecutionStatus.CANCELLED
    assert statuses["t1-1"] is ExecutionStatus.CANCELLED
    assert statuses["t1-2"] is ExecutionStatus.SUCCESS
    assert {statuses[f"t2-{i}"] for i in range(3)} == {ExecutionStatus.CANCELLED}
    error = result.result("t1-0").error
    assert error is not None
    assert "dependency 't0-1' ended FAILURE: task t0-1 was told to fail" in error.message
    ran = set(summer_fleet.runs)
    cancelled_ids = {str(i) for i, r in result.results.items() if r.status is ExecutionStatus.CANCELLED}
    assert ran.isdisjoint(cancelled_ids)  # never published, so never run


async def test_a_named_orchestrator_restarted_mid_plan_finishes_it_with_nothing_lost(
    summer_fleet: SummerFleet,
) -> None:
    name = f"restart{summer_fleet.suffix}"
    slow = {f"t1-{i}": 2.0 for i in range(4)}
    text, sums = layered_plan("restart", summer_fleet.suffix, layers=3, width=4, sleep_s=0.05, slow=slow)
    run_id = uuid.uuid4().hex
    plan = parse_plan(text, run_id=run_id)
    slow_ids = {str(t.id) for t in plan.tasks if t.prompt in slow}
    async with summer_fleet.processes(2, concurrency=8) as workers:
        await workers.wait_ready(summer_fleet.bus)
        # The first orchestrator has its own connection, as its own process would; it dies while layer 1 runs.
        first_bus = await connect(summer_fleet.amqp_url)
        first = ProjectOrchestrator(first_bus, name=name)
        published: set[str] = set()

        def track(event: PlanProgress) -> None:
            if event.kind == "published":
                published.add(event.key)

        running = asyncio.create_task(first.run_plan(plan, on_progress=track))
        await eventually(lambda: set(slow) <= published, what="layer 1 published")
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await (
            first_bus.close()
        )  # no close() of the orchestrator: like a crash, the reply queue just loses its consumer
        # Layer 1 finishes while no orchestrator listens: its results wait in relaybus.reply.<name>.
        await eventually(lambda: slow_ids <= set(summer_fleet.runs), what="layer 1 running")
        await asyncio.sleep(2.5)

        second_bus = await connect(summer_fleet.amqp_url)
        try:
            async with ProjectOrchestrator(second_bus, name=name) as second:
                result = await asyncio.wait_for(second.run_plan(parse_plan(text, run_id=run_id)), 60)
        finally:
            await second_bus.delete_queue(f"relaybus.reply.{name}")
            await second_bus.close()
    assert result.ok, [r.error for r in result.failed]
    assert {result.key_of(i): r.output["sum"] for i, r in result.results.items()} == sums  # type: ignore[index,call-overload]
    assert len(summer_fleet.runs) == len(plan.tasks)  # every task ran ...
    assert set(summer_fleet.runs.values()) == {1}  # ... exactly once: collected or answered from the cache
    collected = [t for t in plan.tasks if t.prompt in slow and result.timings[t.id].published_s is None]
    assert len(collected) == len(slow)  # the slow results were taken from the reply queue, not asked again


async def test_a_thousand_tasks_are_in_flight_at_once_over_rabbitmq(summer_fleet: SummerFleet) -> None:
    topic = f"{plan_agents.prefix(summer_fleet.suffix)}.sum"
    tasks = [AgentTask(topic=topic, prompt=str(i), input={"value": i, "sleep_s": 1.0}) for i in range(1000)]
    async with summer_fleet.processes(1, concurrency=1000) as workers:
        await workers.wait_ready(summer_fleet.bus)
        async with ProjectOrchestrator(summer_fleet.bus, default_timeout_s=120) as orchestrator:
            started = time.monotonic()
            results = await orchestrator.execute_tasks(tasks)
            wall = time.monotonic() - started
    assert [r.output["sum"] for r in results] == list(range(1000))  # type: ignore[index,call-overload]
    # one after another this is 1,000 s; the bound is generous for 2 noisy cores
    assert wall < 60, wall
    print(f"1000 tasks of 1 s over RabbitMQ with one worker process: {wall:.2f}s")


async def test_a_task_whose_worker_is_down_times_out_by_its_deadline(summer_fleet: SummerFleet) -> None:
    # The agent's queue exists (a worker ran once) but nobody consumes it now.
    topic = f"{plan_agents.prefix(summer_fleet.suffix)}.sum"
    await summer_fleet.bus.declare_queue(
        agent_queue_name(f"summer{summer_fleet.suffix}"), bindings=[task_routing_key(topic)]
    )
    async with ProjectOrchestrator(summer_fleet.bus) as orchestrator:
        started = time.monotonic()
        result = await orchestrator.execute_task(AgentTask(topic=topic, timeout_s=0.5))
        waited = time.monotonic() - started
    assert result.status is ExecutionStatus.TIMEOUT
    assert waited < 5
