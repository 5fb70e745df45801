"""A stand-in worker for orchestrator tests: answers tasks on a bus with a chosen delay and outcome.

It speaks the wire format directly (decode the task, publish the result to ``reply_to``), so these tests pin
the orchestrator's behaviour without depending on how ``AgentWorker`` schedules work.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

from relaybus import AgentTask, ExecutionResult, NoRouteError
from relaybus.bus.base import Bus, Delivery, agent_queue_name, agent_routing_key, task_routing_key
from relaybus.bus.codec import decode_delivery, encode_result

Behaviour = Callable[[AgentTask], ExecutionResult | None]


def echo(task: AgentTask) -> ExecutionResult:
    return ExecutionResult.success(task.id, {"prompt": task.prompt, "input": task.input}, agent="echo")


@dataclass
class Seen:
    task: AgentTask
    headers: dict[str, object]
    start: float
    end: float | None = None


@dataclass
class Responder:
    """Consumes ``relaybus.agent.<name>``; each task sleeps ``delay(task)`` then gets ``behave(task)``.

    ``behave`` returning None means: never answer (the delivery is acked, no result is sent).
    """

    bus: Bus
    name: str = "echo"
    topics: tuple[str, ...] = ("work.#",)
    delay: Callable[[AgentTask], float] = lambda _task: 0.0
    behave: Behaviour = echo
    prefetch: int = 10_000
    seen: list[Seen] = field(default_factory=list)
    running: int = 0
    max_running: int = 0

    async def start(self) -> None:
        bindings = [task_routing_key(t) for t in self.topics] + [agent_routing_key(self.name)]
        await self.bus.declare_queue(agent_queue_name(self.name), bindings=bindings)
        await self.bus.consume(agent_queue_name(self.name), self._handle, prefetch=self.prefetch)

    def ids(self) -> list[UUID]:
        return [s.task.id for s in self.seen]

    def by_id(self, task_id: UUID) -> Seen:
        return next(s for s in self.seen if s.task.id == task_id)

    async def _handle(self, delivery: Delivery) -> None:
        task = await decode_delivery(delivery, AgentTask)
        assert task is not None
        seen = Seen(task, dict(delivery.headers), time.monotonic())
        self.seen.append(seen)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        started = datetime.now(UTC)
        try:
            await asyncio.sleep(self.delay(task))
        finally:
            self.running -= 1
        seen.end = time.monotonic()
        result = self.behave(task)
        if result is not None and delivery.reply_to:
            if result.started_at is None:
                result = result.model_copy(update={"started_at": started, "finished_at": datetime.now(UTC)})
            with contextlib.suppress(NoRouteError):  # the caller is gone (its private reply queue too)
                await self.bus.publish(encode_result(result, reply_to=delivery.reply_to))
        await delivery.ack()
