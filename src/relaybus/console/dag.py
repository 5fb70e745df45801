"""A run's DAG laid out for a server-side SVG: each task in the column of its dependency level.

Level 0 holds the tasks that depend on no task of the run; a task's level is one more than its deepest
dependency's. Rows follow plan order within a level. Boxes and edges are numbers and escaped labels' text
only; the template draws them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from relaybus.state import RunTask

__all__ = ["Box", "Edge", "Layout", "dependency_levels", "layout"]

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 180, 34, 50, 14, 8


@dataclass(frozen=True, slots=True)
class Box:
    task_id: UUID
    label: str
    status: str
    x: int
    y: int


@dataclass(frozen=True, slots=True)
class Edge:
    x1: int
    y1: int
    x2: int
    y2: int


@dataclass(frozen=True, slots=True)
class Layout:
    width: int
    height: int
    box_w: int
    box_h: int
    boxes: tuple[Box, ...]
    edges: tuple[Edge, ...]
    levels: tuple[tuple[UUID, ...], ...]


def dependency_levels(tasks: Sequence[RunTask]) -> list[list[RunTask]]:
    """The tasks by dependency level (see the module docstring); a dependency outside the run is ignored,
    and so is a cycle (its tasks are put after what they can be placed after)."""
    by_id = {task.task_id: task for task in tasks}
    level: dict[UUID, int] = {}

    def depth(task_id: UUID, trail: frozenset[UUID]) -> int:
        if task_id in level:
            return level[task_id]
        deps = [d for d in by_id[task_id].depends_on if d in by_id and d not in trail]
        found = 1 + max((depth(d, trail | {task_id}) for d in deps), default=-1)
        level[task_id] = found
        return found

    for task in tasks:
        depth(task.task_id, frozenset())
    levels: list[list[RunTask]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for task in tasks:
        levels[level[task.task_id]].append(task)
    return levels


def layout(tasks: Sequence[RunTask]) -> Layout:
    levels = dependency_levels(tasks)
    where: dict[UUID, tuple[int, int]] = {}
    boxes = []
    for column, members in enumerate(levels):
        for row, task in enumerate(members):
            x, y = PAD + column * (BOX_W + GAP_X), PAD + row * (BOX_H + GAP_Y)
            where[task.task_id] = (x, y)
            label = task.key or task.target
            boxes.append(Box(task.task_id, label[:24], task.status.value, x, y))
    edges = []
    for task in tasks:
        x2, y2 = where[task.task_id]
        for dep in task.depends_on:
            if dep in where:
                x1, y1 = where[dep]
                edges.append(Edge(x1 + BOX_W, y1 + BOX_H // 2, x2, y2 + BOX_H // 2))
    rows = max((len(members) for members in levels), default=0)
    return Layout(
        width=PAD * 2 + max(1, len(levels)) * (BOX_W + GAP_X) - GAP_X,
        height=PAD * 2 + max(1, rows) * (BOX_H + GAP_Y) - GAP_Y,
        box_w=BOX_W,
        box_h=BOX_H,
        boxes=tuple(boxes),
        edges=tuple(edges),
        levels=tuple(tuple(task.task_id for task in members) for members in levels),
    )
