"""Checks that a set of tasks forms a DAG through ``depends_on``, before anything is published.

:func:`check_dag` refuses duplicate ids, dependencies on tasks outside the set and cycles with a
:class:`~relaybus.PlanError` that names the tasks involved (by their plan keys when there are some), and
returns the tasks in an order where every task comes after its dependencies.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from uuid import UUID

from relaybus.exceptions import PlanError
from relaybus.messages import AgentTask

__all__ = ["check_dag", "dependents_of"]


def _label(task_id: UUID, keys: Mapping[UUID, str]) -> str:
    key = keys.get(task_id)
    return f"{key!r}" if key is not None else str(task_id)


def dependents_of(tasks: Sequence[AgentTask]) -> dict[UUID, list[UUID]]:
    """Map each task id to the ids of the tasks that depend on it directly (in the order of ``tasks``)."""
    out: dict[UUID, list[UUID]] = {task.id: [] for task in tasks}
    for task in tasks:
        for dep in dict.fromkeys(task.depends_on):
            out.setdefault(dep, []).append(task.id)
    return out


def _find_cycle(remaining: Mapping[UUID, AgentTask]) -> list[UUID]:
    """A cycle among ``remaining`` (tasks Kahn's algorithm left), as ids with the first one repeated."""
    state: dict[UUID, int] = {}  # 1 = on the current path, 2 = done
    path: list[UUID] = []
    for start in remaining:
        if state.get(start):
            continue
        stack: list[tuple[UUID, int]] = [(start, 0)]
        while stack:
            node, index = stack.pop()
            if index == 0:
                state[node] = 1
                path.append(node)
            deps = [d for d in remaining[node].depends_on if d in remaining]
            if index < len(deps):
                stack.append((node, index + 1))
                nxt = deps[index]
                if state.get(nxt) == 1:
                    return [*path[path.index(nxt) :], nxt]
                if not state.get(nxt):
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                path.pop()
    raise AssertionError("no cycle among the remaining tasks")  # pragma: no cover - Kahn said there is one


def check_dag(tasks: Sequence[AgentTask], keys: Mapping[UUID, str] | None = None) -> list[AgentTask]:
    """Return ``tasks`` ordered so that dependencies come first; raise :class:`PlanError` if not a DAG.

    The order is stable: among tasks whose dependencies are met, the one listed first comes first.
    ``keys`` (task id -> plan key) only makes the error messages readable.
    """
    keys = keys or {}
    by_id: dict[UUID, AgentTask] = {}
    for task in tasks:
        if task.id in by_id:
            raise PlanError(
                f"task id {task.id} appears twice in the plan ({_label(task.id, keys)}): "
                "every task needs its own id; build each task with a fresh AgentTask(...)"
            )
        by_id[task.id] = task
    for task in tasks:
        for dep in task.depends_on:
            if dep not in by_id:
                raise PlanError(
                    f"task {_label(task.id, keys)} depends on {dep}, which is not in the plan: "
                    "add that task to the plan or remove it from depends_on"
                )
    missing = {task.id: len(set(task.depends_on)) for task in tasks}
    dependents = dependents_of(tasks)
    position = {task.id: i for i, task in enumerate(tasks)}
    ready = [(position[task.id], task.id) for task in tasks if missing[task.id] == 0]
    heapq.heapify(ready)
    order: list[AgentTask] = []
    while ready:
        _, current = heapq.heappop(ready)
        order.append(by_id[current])
        for child in dependents[current]:
            missing[child] -= 1
            if missing[child] == 0:
                heapq.heappush(ready, (position[child], child))
    if len(order) < len(tasks):
        placed = {task.id for task in order}
        cycle = _find_cycle({tid: t for tid, t in by_id.items() if tid not in placed})
        shown = " -> ".join(_label(tid, keys) for tid in cycle)
        raise PlanError(
            f"the plan has a dependency cycle: {shown} (each task waits for the next); "
            "remove one of these depends_on entries"
        )
    return order
