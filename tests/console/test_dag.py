"""A run's DAG by dependency level: level 0 depends on nothing in the run, each task one level after its
deepest dependency; boxes in columns by level, one edge per dependency inside the run."""

from __future__ import annotations

from uuid import UUID, uuid4

from relaybus.console.dag import BOX_H, BOX_W, dependency_levels, layout
from relaybus.state import RunTask, TaskState


def task(deps: tuple[UUID, ...] = (), key: str | None = None) -> RunTask:
    return RunTask(task_id=uuid4(), key=key, target="t", depends_on=deps, status=TaskState.PENDING)


def test_levels_follow_the_deepest_dependency() -> None:
    a = task()
    b = task((a.task_id,))
    c = task()
    d = task((a.task_id, b.task_id, uuid4()))  # a dependency outside the run is ignored
    levels = dependency_levels([a, b, c, d])
    assert [[t.task_id for t in level] for level in levels] == [
        [a.task_id, c.task_id],
        [b.task_id],
        [d.task_id],
    ]


def test_a_cycle_does_not_loop_forever() -> None:
    a_id, b_id = uuid4(), uuid4()
    a = RunTask(task_id=a_id, key=None, target="t", depends_on=(b_id,), status=TaskState.PENDING)
    b = RunTask(task_id=b_id, key=None, target="t", depends_on=(a_id,), status=TaskState.PENDING)
    assert sum(len(level) for level in dependency_levels([a, b])) == 2


def test_the_layout_puts_levels_in_columns_and_draws_each_edge() -> None:
    a = task(key="draft")
    b = task((a.task_id,), key="review")
    c = task((a.task_id,))
    drawn = layout([a, b, c])
    boxes = {box.task_id: box for box in drawn.boxes}
    assert boxes[a.task_id].x < boxes[b.task_id].x == boxes[c.task_id].x
    assert boxes[b.task_id].y < boxes[c.task_id].y
    assert [box.label for box in drawn.boxes] == ["draft", "review", "t"]
    assert len(drawn.edges) == 2
    edge = drawn.edges[0]
    assert (edge.x1, edge.x2) == (boxes[a.task_id].x + BOX_W, boxes[b.task_id].x)
    assert edge.y2 == boxes[b.task_id].y + BOX_H // 2
    assert drawn.width >= boxes[b.task_id].x + BOX_W
    assert drawn.height >= boxes[c.task_id].y + BOX_H
