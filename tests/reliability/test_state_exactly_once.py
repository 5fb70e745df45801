"""Exactly-once effects on RabbitMQ: workers on their own connections sharing a PostgreSQL store.

Every task is published twice (two copies, as a redelivery would bring them) and one worker is stopped at
once mid-run (its in-flight deliveries go back to the queue and are redelivered to the others): each task
id's ``handle`` still completes exactly once, counted by a side effect.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest

from relaybus.agents import Agent, AgentContext, AgentWorker
from relaybus.bus.base import agent_queue_name
from relaybus.bus.codec import encode_task
from relaybus.bus.connect import connect
from relaybus.messages import AgentTask
from relaybus.orchestrator import ProjectOrchestrator
from relaybus.state import store_from_url
from tests.eventually import eventually

from .support import figures

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]

TASKS = 500


def side_effect_agent(suffix: str, done: Counter[str], started: Counter[str]) -> type[Agent]:
    class Once(Agent):
        name = f"once{suffix}"
        topics = (f"once{suffix}.run",)

        async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
            started[task.prompt] += 1
            await asyncio.sleep(0.2)
            done[task.prompt] += 1  # the side effect: counted only when handle completes
            return {"n": task.prompt, "worker": ctx.worker}

    return Once


async def test_500_tasks_each_delivered_twice_with_a_worker_stopped_mid_run_complete_once_each(
    amqp_url: str, postgres_database_url: str
) -> None:
    suffix = f"-{uuid.uuid4().hex[:8]}"
    done: Counter[str] = Counter()
    started: Counter[str] = Counter()
    agent = side_effect_agent(suffix, done, started)
    buses = [await connect(amqp_url) for _ in range(4)]
    caller_bus, worker_buses = buses[0], buses[1:]

    def worker(n: int) -> AgentWorker:
        return AgentWorker(
            worker_buses[n],
            [agent()],
            state=store_from_url(postgres_database_url),
            worker_id=f"w{n}",
            concurrency=32,
            lease_s=5,
        )

    tasks = [AgentTask(topic=f"once{suffix}.run", prompt=str(i), timeout_s=120) for i in range(TASKS)]
    first, second, third = worker(0), worker(1), worker(2)
    try:
        await first.start()
        await second.start()
        async with ProjectOrchestrator(caller_bus) as orchestrator:
            running = asyncio.ensure_future(orchestrator.execute_tasks(tasks))
            copies = asyncio.gather(  # the second copy of each task, to the same caller
                *(caller_bus.publish(encode_task(task, reply_to=orchestrator.reply_queue)) for task in tasks)
            )
            # stopped while it holds work: the publisher sets the pace, so at moments a worker holds none
            await eventually(lambda: sum(done.values()) >= TASKS // 5 and first.in_flight > 0, timeout=120)
            returned = first.abort_in_flight()  # its deliveries go back to the queue, redelivered
            await first.stop(grace_s=0)
            await third.start()
            await copies
            results = await running
            # every second copy is answered too, from the stored result (or by waiting on the claim)
            await eventually(lambda: sum(w.processed for w in (first, second, third)) >= TASKS, timeout=60)
            await asyncio.sleep(1)
            duplicates = orchestrator.duplicates_dropped
    finally:
        for w in (first, second, third):
            await w.stop(grace_s=0)
        await caller_bus.delete_queue(agent_queue_name(f"once{suffix}"))
        for bus in buses:
            await bus.close()
    print(
        figures(
            "exactly-once with a PostgreSQL store",
            tasks=TASKS,
            copies=2 * TASKS,
            returned_by_the_stopped_worker=returned,
            handles_started=sum(started.values()),
            handles_completed=sum(done.values()),
            duplicate_results_dropped=duplicates,
        )
    )
    assert all(result.ok for result in results)
    assert returned > 0  # the stop did interrupt running tasks
    assert set(done) == {task.prompt for task in tasks}
    assert set(done.values()) == {1}  # 0 duplicate executions
    for result in results:
        assert isinstance(result.output, dict)
