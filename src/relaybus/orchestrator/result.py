"""``PlanResult``: what a finished plan returns, with its statuses, timings, token usage and cost aggregated.

Times: ``wall_s`` is the plan's wall-clock time, from its first publish to its last result, as the
orchestrator saw it. A task's *duration* is the time its worker spent on it (``ExecutionResult.started_at``
to ``finished_at``), or, when the result carries no times (a timeout or rejection decided by the
orchestrator), the time from its publish to its result; a task that never ran (cancelled because a
dependency failed) counts 0. ``sequential_s`` is the sum of the durations, what running the tasks one after
another would have taken, and ``speedup`` is ``sequential_s / wall_s``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from uuid import UUID

from pydantic import JsonValue

from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus, Usage

from .pricing import Prices, model_of, price_of

__all__ = ["PlanResult", "TaskTiming"]


@dataclass(frozen=True, slots=True)
class TaskTiming:
    """When the orchestrator published a task and got its result, in seconds since the plan started.

    ``published_s`` is None for a task that was never published (cancelled, or its result was already
    waiting in a named orchestrator's reply queue when the plan was resumed).
    """

    published_s: float | None
    finished_s: float

    @property
    def wall_s(self) -> float:
        return 0.0 if self.published_s is None else max(0.0, self.finished_s - self.published_s)


@dataclass(frozen=True)
class PlanResult:
    """The outcome of :meth:`ProjectOrchestrator.run_plan`. Mappings keep the order of the plan's tasks."""

    name: str
    tasks: Mapping[UUID, AgentTask]
    """Each task as it was published (a dependent's ``input["dependencies"]`` filled in)."""
    results: Mapping[UUID, ExecutionResult]
    timings: Mapping[UUID, TaskTiming]
    wall_s: float
    keys: Mapping[UUID, str] = field(default_factory=dict)
    """Task id -> the plan file's key for the task (empty for a plan given as a list of tasks)."""
    prices: Prices = field(default_factory=dict)
    default_model: str | None = None

    # -- statuses and outputs ---------------------------------------------------------------------------
    @property
    def ok(self) -> bool:
        """True when every task succeeded."""
        return all(result.ok for result in self.results.values())

    @property
    def statuses(self) -> dict[ExecutionStatus, int]:
        """How many tasks ended in each status (every status present, zeros included)."""
        counts = dict.fromkeys(ExecutionStatus, 0)
        for result in self.results.values():
            counts[result.status] += 1
        return counts

    @property
    def failed(self) -> list[ExecutionResult]:
        """The results that are not SUCCESS, in plan order."""
        return [result for result in self.results.values() if not result.ok]

    @property
    def outputs(self) -> dict[UUID, JsonValue]:
        return {task_id: result.output for task_id, result in self.results.items()}

    def key_of(self, task_id: UUID) -> str:
        """The task's plan key, or its id when the plan had no keys."""
        return self.keys.get(task_id, str(task_id))

    def result(self, key_or_id: str | UUID) -> ExecutionResult:
        """The result of the task with this plan key or id; ``KeyError`` if no such task."""
        if isinstance(key_or_id, UUID):
            return self.results[key_or_id]
        for task_id, key in self.keys.items():
            if key == key_or_id:
                return self.results[task_id]
        return self.results[UUID(key_or_id)]

    def agent_of(self, task_id: UUID) -> str:
        """The agent that answered, else the agent the task addressed, else its topic."""
        result = self.results.get(task_id)
        task = self.tasks[task_id]
        return (result.agent if result else None) or task.agent or task.topic

    # -- time -----------------------------------------------------------------------------------------
    def duration_s(self, task_id: UUID) -> float:
        """The task's duration by the rule in the module docstring."""
        result = self.results[task_id]
        worker_time = result.duration_s
        if worker_time is not None:
            return max(0.0, worker_time)
        timing = self.timings.get(task_id)
        return timing.wall_s if timing else 0.0

    @property
    def sequential_s(self) -> float:
        """The sum of the tasks' durations: the time to run them one after another."""
        return sum(self.duration_s(task_id) for task_id in self.results)

    @property
    def speedup(self) -> float:
        """``sequential_s / wall_s``: how much running independent tasks in parallel saved (1.0 = nothing)."""
        if self.wall_s <= 0:
            return 1.0
        return self.sequential_s / self.wall_s

    # -- usage and cost -------------------------------------------------------------------------------
    @property
    def usage(self) -> Usage:
        """Token usage summed over every task of the plan."""
        total = Usage()
        for result in self.results.values():
            total = total + result.usage
        return total

    @property
    def usage_by_agent(self) -> dict[str, Usage]:
        out: dict[str, Usage] = {}
        for task_id, result in self.results.items():
            agent = self.agent_of(task_id)
            out[agent] = out.get(agent, Usage()) + result.usage
        return out

    def model_of(self, task_id: UUID) -> str | None:
        """The model the task ran on (see :mod:`relaybus.orchestrator.pricing`)."""
        return model_of(self.tasks[task_id], self.results[task_id].output, self.default_model)

    def cost(self, task_id: UUID) -> float | None:
        """The task's cost from the configured prices; None when its model has no price."""
        price = price_of(self.prices, self.model_of(task_id))
        return None if price is None else price.cost(self.results[task_id].usage)

    @property
    def cost_by_agent(self) -> dict[str, float]:
        """Cost per agent, over the tasks whose model has a price."""
        out: dict[str, float] = {}
        for task_id in self.results:
            cost = self.cost(task_id)
            if cost is not None:
                agent = self.agent_of(task_id)
                out[agent] = out.get(agent, 0.0) + cost
        return out

    @property
    def total_cost(self) -> float | None:
        """The plan's cost over the tasks whose model has a price; None when no task had one."""
        costs = [c for c in (self.cost(task_id) for task_id in self.results) if c is not None]
        return sum(costs) if costs else None
