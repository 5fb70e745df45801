"""``PlanMetrics``: a plan run on real workers (in memory) is counted as the orchestrator saw it."""

from __future__ import annotations

from relaybus.orchestrator import ProjectOrchestrator, parse_plan
from relaybus.telemetry import PlanMetrics, bus_health
from relaybus.testing import AgentTestHarness
from tests.agents import sample_agents as sa

from .scrape import sample

PLAN = f"""
name: counted
tasks:
  - {{key: a, topic: {sa.topic("echo")}, prompt: one}}
  - {{key: b, topic: {sa.topic("echo")}, prompt: two, depends_on: [a]}}
  - {{key: c, topic: {sa.topic("fail")}, prompt: three}}
  - {{key: d, topic: {sa.topic("write.note")}, prompt: four short words}}
"""


async def test_a_plans_tasks_are_counted_by_agent_and_status_with_durations_and_tokens() -> None:
    metrics = PlanMetrics()
    async with AgentTestHarness([sa.Echo(), sa.Failing(), sa.Writer()]) as h:
        assert bus_health(h.bus).ok
        async with ProjectOrchestrator(h.bus) as orchestrator:
            result = await orchestrator.run_plan(parse_plan(PLAN), on_progress=metrics)
    assert not bus_health(h.bus).ok  # closed
    assert "down" in bus_health(h.bus).reason
    text = metrics.render()
    assert sample(text, "relaybus_plan_tasks_total", agent=sa.name("echo"), status="success") == 2
    assert sample(text, "relaybus_plan_tasks_total", agent=sa.name("failing"), status="failure") == 1
    assert sample(text, "relaybus_plan_task_duration_seconds_count") == 4
    assert sample(text, "relaybus_plan_tasks_in_flight") == 0
    assert sample(text, "relaybus_plan_tasks_pending") == 0
    prompt_tokens = sum(r.usage.prompt_tokens for r in result.results.values())
    assert prompt_tokens == 3  # the writer's call: FakeExecutor counts a token per word
    assert sample(text, "relaybus_plan_llm_tokens_total", kind="prompt") == prompt_tokens
