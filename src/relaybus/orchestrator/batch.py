"""Many tasks in flight at the cost of one future each: what ``ProjectOrchestrator.execute_tasks`` runs on.

One asyncio Task, two coroutines and a timer per task (``execute_task``'s way) cost about 7 KiB per task in
flight; 50,000 tasks at once held 350 MiB. Here a fixed number of publisher coroutines take the tasks in
turn (so the broker's confirms still overlap), each published task is a router future with a done
callback, and one sweeper wakes at the earliest deadline. The promises are those of ``execute_task``: the
first result wins; a task past its deadline ends as TIMEOUT and its worker is told to stop; a refused publish
ends as REJECTED or FAILURE; ``cancel()`` ends one wait at once (it resolves the router's future).
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import time
from collections.abc import Awaitable, Callable, Sequence
from uuid import UUID

from relaybus.bus.rpc import ReplyRouter, timeout_result
from relaybus.messages import AgentTask, ExecutionResult

__all__ = ["PUBLISHERS", "execute_batch"]

PUBLISHERS = 256  # publishes awaiting their confirm at once: enough to keep the broker busy, few Tasks

Publish = Callable[[AgentTask, float], Awaitable[ExecutionResult | None]]
CancelRemote = Callable[[UUID, str], Awaitable[None]]


async def execute_batch(
    tasks: Sequence[AgentTask],
    *,
    router: ReplyRouter,
    publish: Publish,
    cancel_remote: CancelRemote,
    waiting: set[UUID],
    default_timeout_s: float,
) -> list[ExecutionResult]:
    """Publish ``tasks`` (distinct ids) and return their results in order; never raises for a task.

    ``publish(task, deadline)`` returns None once the bus has the task, else the task's result (refused);
    ``cancel_remote(task_id, reason)`` asks the worker to stop; ``waiting`` holds the ids published and not
    answered yet (what ``cancel()`` looks at).
    """
    loop = asyncio.get_running_loop()
    results: dict[UUID, ExecutionResult] = {}
    expiries: list[tuple[float, int, UUID]] = []  # (loop time, order, task id): a heap
    timeouts: dict[UUID, float] = {}
    all_in = loop.create_future()
    wake = asyncio.Event()
    by_id = {task.id: task for task in tasks}

    def finish(task_id: UUID, result: ExecutionResult) -> None:
        if task_id in results:
            return
        results[task_id] = result
        waiting.discard(task_id)
        if len(results) == len(by_id) and not all_in.done():
            all_in.set_result(None)

    def on_result(task_id: UUID, future: asyncio.Future[ExecutionResult]) -> None:
        if not future.cancelled():
            finish(task_id, future.result())
        elif task_id not in results:  # dropped elsewhere: no result will come, end it as a timeout now
            heapq.heappush(expiries, (loop.time(), -1, task_id))
            wake.set()

    queue = iter(enumerate(tasks))

    async def publisher() -> None:
        for order, task in queue:
            future = router.expect(task.id)
            if future.done() and not future.cancelled():
                finish(task.id, future.result())
                continue
            timeout = task.timeout_s or default_timeout_s
            deadline = time.time() + timeout
            waiting.add(task.id)
            refused = await publish(task, deadline)
            if refused is not None:
                router.discard(task.id)
                finish(task.id, refused)
                continue
            timeouts[task.id] = timeout
            heapq.heappush(expiries, (loop.time() + max(0.0, deadline - time.time()), order, task.id))
            future.add_done_callback(functools.partial(on_result, task.id))
            if expiries[0][2] == task.id:  # the earliest deadline now: the sweeper must wake sooner
                wake.set()

    async def sweeper() -> None:
        while not all_in.done():
            delay = expiries[0][0] - loop.time() if expiries else None
            if delay is None or delay > 0:
                wake.clear()
                woken = asyncio.ensure_future(wake.wait())
                await asyncio.wait((woken, all_in), timeout=delay, return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
                continue
            expired: list[tuple[UUID, float]] = []
            while expiries and expiries[0][0] <= loop.time():
                _, _, task_id = heapq.heappop(expiries)
                if task_id not in results:
                    timeout = timeouts.get(task_id, default_timeout_s)
                    router.discard(task_id)
                    finish(task_id, timeout_result(by_id[task_id], timeout))
                    expired.append((task_id, timeout))
            # Their results are final; the workers are told to stop before the batch returns, as one by one.
            await asyncio.gather(*(cancel_remote(i, f"no result within {t:g}s") for i, t in expired))

    publishers = [asyncio.ensure_future(publisher()) for _ in range(min(PUBLISHERS, len(tasks)))]
    watcher = asyncio.ensure_future(sweeper())
    try:
        await asyncio.gather(*publishers)
        if len(results) < len(by_id):
            await watcher
    finally:
        for job in (*publishers, watcher):
            job.cancel()
        for task_id in by_id.keys() - results.keys():  # cancelled from outside: stop waiting for the rest
            router.discard(task_id)
            waiting.discard(task_id)
    return [results[task.id] for task in tasks]
