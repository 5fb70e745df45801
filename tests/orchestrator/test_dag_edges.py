"""check_dag at its edges: the exact wording of each refusal, the cycle it names, and the order it returns."""

from __future__ import annotations

from collections.abc import Mapping
from uuid import UUID, uuid4

import pytest

from relaybus import AgentTask, PlanError
from relaybus.orchestrator.dag import check_dag, dependents_of


def task(*deps: AgentTask) -> AgentTask:
    return AgentTask(topic="t", depends_on=tuple(d.id for d in deps))


def depending(on: AgentTask, original: AgentTask) -> AgentTask:
    """``original`` (same id) made to depend on ``on`` as well: the way to close a cycle."""
    return original.model_copy(update={"depends_on": (*original.depends_on, on.id)})


def refusal(tasks: list[AgentTask], keys: Mapping[UUID, str] | None = None) -> str:
    with pytest.raises(PlanError) as info:
        check_dag(tasks, keys)
    return str(info.value)


def test_a_duplicate_is_named_by_key_or_else_by_id_with_the_fix() -> None:
    a = task()
    assert refusal([a, a], {a.id: "writer"}) == (
        f"task id {a.id} appears twice in the plan ('writer'): every task needs its own id; "
        "build each task with a fresh AgentTask(...)"
    )
    assert f"appears twice in the plan ({a.id})" in refusal([a, a])


def test_a_missing_dependency_without_keys_names_the_task_by_id() -> None:
    ghost = uuid4()
    t = AgentTask(topic="t", depends_on=(ghost,))
    assert refusal([t]) == (
        f"task {t.id} depends on {ghost}, which is not in the plan: "
        "add that task to the plan or remove it from depends_on"
    )


def test_the_cycle_is_named_in_dependency_order_starting_and_ending_with_the_same_task() -> None:
    a = task()
    b = task(a)
    c = task(b)
    a = depending(c, a)  # a -> c -> b -> a: each waits for the next
    keys = {a.id: "a", b.id: "b", c.id: "c"}
    assert refusal([a, b, c], keys) == (
        "the plan has a dependency cycle: 'a' -> 'c' -> 'b' -> 'a' (each task waits for the next); "
        "remove one of these depends_on entries"
    )


def test_tasks_that_only_wait_on_a_cycle_are_not_named_as_part_of_it() -> None:
    a = task()
    b = task(a)
    a = depending(b, a)
    downstream = task(a)  # blocked by the cycle, not in it; listed first so the search starts there
    further = task(downstream)
    keys = {a.id: "a", b.id: "b", downstream.id: "downstream", further.id: "further"}
    message = refusal([further, downstream, a, b], keys)
    assert "'a' -> 'b' -> 'a'" in message
    assert "downstream" not in message
    assert "further" not in message


def test_a_diamond_waiting_on_a_loop_is_not_named_as_part_of_it() -> None:
    # x waits on y and z; both wait on the loop p <-> q
    p = task()
    q = task(p)
    p = depending(q, p)
    y = task(p)
    z = task(p)
    x = task(y, z)
    keys = {p.id: "p", q.id: "q", x.id: "x", y.id: "y", z.id: "z"}
    message = refusal([x, y, z, p, q], keys)
    assert "'p' -> 'q' -> 'p'" in message
    for outside in ("'x'", "'y'", "'z'"):
        assert outside not in message


def test_ids_are_shown_when_a_cycle_has_no_keys() -> None:
    a = task()
    a = depending(a, a)
    assert f"cycle: {a.id} -> {a.id} (" in refusal([a])


def test_an_empty_plan_is_a_dag() -> None:
    assert check_dag([]) == []


def test_a_repeated_dependency_counts_once_so_the_dependent_is_not_stuck() -> None:
    a = task()
    b = AgentTask(topic="t", depends_on=(a.id, a.id))
    c = task(b)
    assert [t.id for t in check_dag([c, b, a])] == [a.id, b.id, c.id]


def test_a_task_becomes_ready_only_after_its_last_dependency() -> None:
    first = task()
    second = task()
    joined = task(first, second)
    # joined is listed before second: it must still wait for it
    assert [t.id for t in check_dag([first, joined, second])] == [first.id, second.id, joined.id]


def test_among_newly_ready_tasks_the_one_listed_first_comes_first() -> None:
    root = task()
    late = task(root)
    early = task(root)
    independent = task()
    order = check_dag([independent, early, root, late])
    # ready at the start: independent (0) and root (2); then early (1) before late (3)
    assert [t.id for t in order] == [independent.id, root.id, early.id, late.id]


def test_dependents_are_listed_in_plan_order_and_every_task_has_an_entry() -> None:
    root = task()
    one = task(root)
    two = task(root)
    assert dependents_of([two, root, one]) == {root.id: [two.id, one.id], one.id: [], two.id: []}


def test_dependents_of_a_task_outside_the_list_are_listed_too() -> None:
    outside = uuid4()
    t = AgentTask(topic="t", depends_on=(outside,))
    assert dependents_of([t]) == {t.id: [], outside: [t.id]}
