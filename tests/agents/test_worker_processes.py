"""Agents deployed as separate ``relaybus worker`` processes on a real RabbitMQ.

Scale-out over two processes, delegation across processes, a worker SIGKILLed mid-task (nothing lost), and
SIGTERM draining the tasks in flight. The same agents run in memory in ``tests/agents/test_worker.py`` and
``tests/testing/test_agents_harness.py``.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import Callable

import pytest

from relaybus.bus.rpc import ReplyRouter
from relaybus.messages import AgentTask, ExecutionStatus

from . import processes
from .processes import Event, Fleet

pytestmark = [pytest.mark.integration, pytest.mark.slow]
fleet = processes.fleet


def started(fleet: Fleet, worker_id: str | None = None) -> Callable[[Event], bool]:
    key = f"event.{fleet.topic('started')}"

    def match(event: Event) -> bool:
        return event.routing_key == key and (worker_id is None or event.payload["worker"] == worker_id)

    return match


async def test_500_tasks_are_spread_over_two_worker_processes(fleet: Fleet) -> None:
    one = await fleet.start("Echo", args=("--concurrency", "8"))
    two = await fleet.start("Echo", args=("--concurrency", "8"))
    tasks = [
        AgentTask(topic=fleet.topic("echo"), prompt=f"task-{i}", input={"sleep_s": 0.01}) for i in range(500)
    ]
    async with ReplyRouter(fleet.bus) as router:
        results = await asyncio.gather(*(router.request(t, timeout=60) for t in tasks))
    assert [r.status for r in results] == [ExecutionStatus.SUCCESS] * 500
    assert [r.output for r in results] == [{"echo": f"task-{i}"} for i in range(500)]
    assert [r.task_id for r in results] == [t.id for t in tasks]
    by_worker = Counter(r.worker for r in results)
    assert set(by_worker) == {one.worker_id, two.worker_id}
    assert min(by_worker.values()) >= 50, by_worker  # both take a real share, not a token task


async def test_delegation_chain_a_b_c_across_processes(fleet: Fleet) -> None:
    first = await fleet.start("ChainA", "ChainC")
    await fleet.start("ChainB")
    async with ReplyRouter(fleet.bus) as router:
        result = await router.request(AgentTask(topic=fleet.topic("chain.a"), prompt="x"), timeout=30)
    assert result.ok, result.error
    assert result.output == {"text": "x>a>b>c<b<a", "chain": [fleet.name("chain-a"), fleet.name("chain-b")]}
    assert result.worker == first.worker_id
    assert result.agent == fleet.name("chain-a")


async def test_delegation_loop_across_processes_fails_with_a_clear_error(fleet: Fleet) -> None:
    await fleet.start("LoopA")
    await fleet.start("LoopB")
    async with ReplyRouter(fleet.bus) as router:
        result = await router.request(AgentTask(topic=fleet.topic("loop.a")), timeout=30)
    assert result.status is ExecutionStatus.FAILURE
    assert result.error is not None
    assert result.error.type == "DelegationError"
    assert "delegation loop" in result.error.message


async def test_worker_sigkilled_mid_task_loses_nothing(fleet: Fleet) -> None:
    doomed = await fleet.start("Echo")
    tasks = [
        AgentTask(topic=fleet.topic("echo"), prompt=f"survivor-{i}", input={"sleep_s": 2, "announce": True})
        for i in range(5)
    ]
    async with ReplyRouter(fleet.bus) as router:
        pending = [asyncio.ensure_future(router.request(t, timeout=60)) for t in tasks]
        await fleet.wait_for(
            started(fleet, doomed.worker_id), count=5, what="5 tasks running", process=doomed
        )
        doomed.signal(signal.SIGKILL)
        assert await doomed.wait() == -signal.SIGKILL
        rescuer = await fleet.start("Echo")
        results = await asyncio.gather(*pending)
    assert [r.status for r in results] == [ExecutionStatus.SUCCESS] * 5
    assert [r.output for r in results] == [{"echo": f"survivor-{i}"} for i in range(5)]
    assert {r.worker for r in results} == {rescuer.worker_id}


async def test_sigterm_drains_in_flight_tasks_and_exits_zero(fleet: Fleet) -> None:
    worker = await fleet.start("Echo", args=("--grace", "30"))
    tasks = [
        AgentTask(topic=fleet.topic("echo"), prompt=f"drain-{i}", input={"sleep_s": 1.5, "announce": True})
        for i in range(3)
    ]
    async with ReplyRouter(fleet.bus) as router:
        pending = [asyncio.ensure_future(router.request(t, timeout=60)) for t in tasks]
        await fleet.wait_for(
            started(fleet, worker.worker_id), count=3, what="3 tasks running", process=worker
        )
        worker.signal(signal.SIGTERM)
        assert await worker.wait() == 0, worker.log()
        results = await asyncio.gather(*pending)
    assert [r.status for r in results] == [ExecutionStatus.SUCCESS] * 3
    assert {r.worker for r in results} == {worker.worker_id}
    stopped = await fleet.wait_for(
        lambda e: (
            e.routing_key == "event.relaybus.worker.stopped" and e.payload["worker"] == worker.worker_id
        ),
        what="the stopped event",
    )
    assert stopped[0].payload["in_flight"] == 0
    assert stopped[0].payload["processed"] == 3
