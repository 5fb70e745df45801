"""A plan must be a DAG: duplicates, missing dependencies and cycles are refused with the tasks named."""

from __future__ import annotations

from uuid import uuid4

import pytest

from relaybus import AgentTask, PlanError
from relaybus.orchestrator.dag import check_dag, dependents_of


def task(*deps: AgentTask) -> AgentTask:
    return AgentTask(topic="t", depends_on=tuple(d.id for d in deps))


def test_dependencies_come_before_dependents_and_order_is_otherwise_stable() -> None:
    a = task()
    b = task()
    c = task(a, b)
    d = task(c)
    e = task()
    # listed out of order on purpose: d first
    order = check_dag([d, c, a, e, b])
    ids = [t.id for t in order]
    assert ids.index(a.id) < ids.index(c.id)
    assert ids.index(b.id) < ids.index(c.id)
    assert ids.index(c.id) < ids.index(d.id)
    # ready tasks keep the listed order: a, e, b are all ready at the start
    assert ids[:3] == [a.id, e.id, b.id]


def test_duplicate_ids_are_refused() -> None:
    a = task()
    with pytest.raises(PlanError, match="appears twice"):
        check_dag([a, a])


def test_a_missing_dependency_is_refused_naming_the_task_by_key() -> None:
    ghost = uuid4()
    t = AgentTask(topic="t", depends_on=(ghost,))
    with pytest.raises(PlanError, match=rf"'writer' depends on {ghost}, which is not in the plan"):
        check_dag([t], {t.id: "writer"})


def test_a_cycle_is_refused_and_named() -> None:
    a = AgentTask(topic="t")
    b = AgentTask(topic="t", depends_on=(a.id,))
    c = AgentTask(topic="t", depends_on=(b.id,))
    a = a.model_copy(update={"depends_on": (c.id,)})
    ok = AgentTask(topic="t")
    keys = {a.id: "a", b.id: "b", c.id: "c", ok.id: "ok"}
    with pytest.raises(PlanError, match="dependency cycle") as info:
        check_dag([ok, a, b, c], keys)
    message = str(info.value)
    for name in ("'a'", "'b'", "'c'"):
        assert name in message
    assert "'ok'" not in message


def test_a_task_that_depends_on_itself_is_a_cycle() -> None:
    a = AgentTask(topic="t")
    a = a.model_copy(update={"depends_on": (a.id,)})
    with pytest.raises(PlanError, match="cycle"):
        check_dag([a])


def test_a_long_chain_is_checked_without_recursion_limits() -> None:
    tasks = [AgentTask(topic="t")]
    for _ in range(5000):
        tasks.append(task(tasks[-1]))
    assert [t.id for t in check_dag(list(reversed(tasks)))] == [t.id for t in tasks]
    looped = tasks[0].model_copy(update={"depends_on": (tasks[-1].id,)})
    with pytest.raises(PlanError, match="cycle"):
        check_dag([looped, *tasks[1:]])


def test_dependents_are_listed_once_even_for_a_repeated_dependency() -> None:
    a = task()
    b = AgentTask(topic="t", depends_on=(a.id, a.id))
    assert dependents_of([a, b]) == {a.id: [b.id], b.id: []}
    assert [t.id for t in check_dag([b, a])] == [a.id, b.id]
