"""PlanResult aggregates statuses, times, token usage and cost; here with hand-made results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from relaybus import AgentTask, ExecutionResult, ExecutionStatus, Usage
from relaybus.orchestrator import ModelPrice, PlanResult, TaskTiming

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ran(task: AgentTask, seconds: float, **fields: object) -> ExecutionResult:
    return ExecutionResult.success(
        task.id,
        fields.pop("output", None),
        started_at=T0,
        finished_at=T0 + timedelta(seconds=seconds),
        **fields,
    )


def make(
    results: list[tuple[AgentTask, ExecutionResult, TaskTiming]], wall: float, **kw: object
) -> PlanResult:
    return PlanResult(
        name="p",
        tasks={task.id: task for task, _, _ in results},
        results={task.id: result for task, result, _ in results},
        timings={task.id: timing for task, _, timing in results},
        wall_s=wall,
        **kw,  # type: ignore[arg-type]
    )


def test_speedup_is_the_sum_of_durations_over_the_wall_time() -> None:
    a, b, c = (AgentTask(topic="x") for _ in range(3))
    result = make(
        [
            (a, ran(a, 2.0), TaskTiming(0.0, 2.1)),
            (b, ran(b, 2.0), TaskTiming(0.0, 2.2)),
            # no worker times (a timeout decided by the orchestrator): its publish-to-result time counts
            (
                c,
                ExecutionResult.failed(c.id, ExecutionStatus.TIMEOUT, "ReplyTimeout", "slow"),
                TaskTiming(0.5, 2.0),
            ),
        ],
        wall=2.5,
    )
    assert result.duration_s(c.id) == pytest.approx(1.5)
    assert result.sequential_s == pytest.approx(5.5)
    assert result.speedup == pytest.approx(5.5 / 2.5)
    assert result.statuses[ExecutionStatus.SUCCESS] == 2
    assert result.statuses[ExecutionStatus.TIMEOUT] == 1
    assert result.statuses[ExecutionStatus.REJECTED] == 0
    assert not result.ok


def test_a_task_that_never_ran_takes_no_time() -> None:
    a = AgentTask(topic="x")
    cancelled = ExecutionResult.failed(a.id, ExecutionStatus.CANCELLED, "DependencyFailed", "dep failed")
    result = make([(a, cancelled, TaskTiming(None, 1.0))], wall=0.0)
    assert result.duration_s(a.id) == 0.0
    assert result.speedup == 1.0


def test_cost_uses_the_output_model_then_task_metadata_then_the_default_then_the_wildcard() -> None:
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000, requests=1)
    by_output = AgentTask(topic="x")
    by_metadata = AgentTask(topic="x", metadata={"model": "big"})
    by_default = AgentTask(topic="x", agent="helper")
    unpriced = AgentTask(topic="x", metadata={"model": "mystery"})
    rows = [
        (by_output, ran(by_output, 1, output={"model": "small"}, usage=usage, agent="w"), TaskTiming(0, 1)),
        (by_metadata, ran(by_metadata, 1, usage=usage, agent="w"), TaskTiming(0, 1)),
        (by_default, ran(by_default, 1, usage=usage), TaskTiming(0, 1)),
        (unpriced, ran(unpriced, 1, usage=usage, agent="z"), TaskTiming(0, 1)),
    ]
    prices = {
        "small": ModelPrice(prompt_per_million=1, completion_per_million=2),
        "big": ModelPrice(prompt_per_million=10, completion_per_million=20),
        "dflt": ModelPrice(prompt_per_million=100, completion_per_million=0),
    }
    result = make(rows, wall=1.0, prices=prices, default_model="dflt")
    assert [result.model_of(t.id) for t, _, _ in rows] == ["small", "big", "dflt", "mystery"]
    assert result.cost(by_output.id) == pytest.approx(3.0)
    assert result.cost(by_metadata.id) == pytest.approx(30.0)
    assert result.cost(by_default.id) == pytest.approx(100.0)
    assert result.cost(unpriced.id) is None
    assert result.cost_by_agent == {"w": pytest.approx(33.0), "helper": pytest.approx(100.0)}
    assert result.total_cost == pytest.approx(133.0)
    with_wildcard = make(rows, wall=1.0, prices={**prices, "*": ModelPrice(prompt_per_million=0.5)})
    assert with_wildcard.cost(unpriced.id) == pytest.approx(0.5)


def test_no_prices_means_unknown_cost_not_zero() -> None:
    a = AgentTask(topic="x")
    result = make([(a, ran(a, 1, usage=Usage(prompt_tokens=5)), TaskTiming(0, 1))], wall=1)
    assert result.total_cost is None
    assert result.cost_by_agent == {}
    assert result.usage.total_tokens == 5


def test_results_are_found_by_key_or_id_and_agents_fall_back_to_the_task() -> None:
    a = AgentTask(topic="docs.write", agent="writer")
    b = AgentTask(topic="docs.review")
    result = make(
        [(a, ran(a, 1, output="A"), TaskTiming(0, 1)), (b, ran(b, 1, output="B"), TaskTiming(0, 1))],
        wall=1,
        keys={a.id: "draft"},
    )
    assert result.result("draft").output == "A"
    assert result.result(b.id).output == "B"
    assert result.result(str(b.id)).output == "B"
    assert result.key_of(a.id) == "draft"
    assert result.key_of(b.id) == str(b.id)
    assert result.agent_of(a.id) == "writer"
    assert result.agent_of(b.id) == "docs.review"
    assert result.outputs == {a.id: "A", b.id: "B"}
    assert result.ok
