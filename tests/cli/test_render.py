"""What ``run`` and ``demo`` draw, in process: the progress bar's last state and a table's layout on a long
worker name (the command-line tests in test_run.py and test_demo.py check the same on real output)."""

from __future__ import annotations

import contextlib
import io

import pytest
from rich.console import Console

from relaybus.cli._render import PlanProgressBar, results_table
from relaybus.cli._report import task_agents
from relaybus.messages import AgentTask, ExecutionResult, Usage
from relaybus.orchestrator import PlanProgress, PlanResult
from relaybus.orchestrator.result import TaskTiming

from .support import assert_fits, table_rows


def test_the_progress_bar_shows_the_plan_complete_when_the_plan_returned() -> None:
    out = io.StringIO()
    task = AgentTask(topic="a.b")
    bar = PlanProgressBar(1, console=Console(file=out, width=100), title="p")
    with bar:
        # The plan saw the publish, and returned without a last event reaching the bar.
        bar(PlanProgress("published", task, "only", 0, 1))
    last = out.getvalue().strip().splitlines()[-1]
    assert "1/1" in last
    assert "running 0" in last


def test_the_progress_bar_keeps_its_state_when_the_plan_was_interrupted() -> None:
    out = io.StringIO()
    task = AgentTask(topic="a.b")
    bar = PlanProgressBar(2, console=Console(file=out, width=100), title="p")
    with contextlib.suppress(KeyboardInterrupt), bar:
        bar(PlanProgress("published", task, "only", 0, 2))
        raise KeyboardInterrupt
    last = out.getvalue().strip().splitlines()[-1]
    assert "0/2" in last
    assert "running 1" in last


def _plan(worker: str, output: str) -> PlanResult:
    tasks = [AgentTask(topic="code.review", agent="reviewer"), AgentTask(topic="code.review")]
    results = {
        t.id: ExecutionResult.success(t.id, output, agent="reviewer", worker=worker, usage=Usage(requests=1))
        for t in tasks
    }
    return PlanResult(
        name="wide",
        tasks={t.id: t for t in tasks},
        results=results,
        timings={t.id: TaskTiming(0.0, 1.0) for t in tasks},
        wall_s=1.0,
        keys={tasks[0].id: "first", tasks[1].id: "second"},
    )


@pytest.mark.parametrize("width", [80, 120])
def test_a_long_worker_name_makes_way_for_the_output_before_anything_essential(width: int) -> None:
    plan = _plan("ip-10-20-30-40.eu-west-1.compute.internal:123456", "a long output " * 20)
    out = io.StringIO()
    Console(file=out, width=width).print(results_table(plan, width=width, agents=task_agents(plan)))
    text = out.getvalue()
    assert_fits(text, width)
    rows = table_rows(text, "plan wide")
    assert [row["status"] for row in rows.values()] == ["success", "success"]
    assert [row["agent"] for row in rows.values()] == ["reviewer", "reviewer"]
    assert all(row["time"] == "1.00s" for row in rows.values())
    assert "worker" not in rows["first"]
    assert "worker" in text.splitlines()[-1]  # the caption names what was left out
    assert rows["first"]["output / error"].endswith("…")  # one line of output, cut
    assert len(rows["first"]["output / error"]) > 20
