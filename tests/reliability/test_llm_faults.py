"""The LLM provider misbehaves on 30% of calls: 429 with Retry-After, 500, slow answers, dropped connections.

Worker processes host an agent that sends every task to the provider (the default ``handle``: the worker's
``TaskExecutor``, configured from the environment like in production) and the provider is the fake OpenAI
server of ``relaybus.testing`` on 127.0.0.1, with seeded faults. Promise shown: every task ends, each either
SUCCESS (after retries) or FAILURE with a retryable error naming the provider's fault; none hangs.
"""

from __future__ import annotations

import time

import pytest

from relaybus.messages import AgentTask, ExecutionStatus
from relaybus.orchestrator import ProjectOrchestrator
from relaybus.testing import FakeLLMServer
from tests.agents.processes import Fleet

from .support import figures, status_counts

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TASKS = 300
EACH = 0.075  # four faults of 7.5% of the calls each: 30% of all calls fail or crawl


async def test_provider_faults_on_30_percent_of_calls_end_every_task(fleet: Fleet) -> None:
    async with FakeLLMServer(seed=7) as server:
        left = 1.0
        for kind, extra in (
            ("rate_limit", {"retry_after": 0.2}),
            ("server_error", {"status": 500}),
            ("slow", {"delay_s": 1.0}),
            ("drop", {}),
        ):
            server.inject(kind, fraction=EACH / left, **extra)  # type: ignore[arg-type]
            left -= EACH
        env = {
            "RELAYBUS_LLM_PROVIDER": "openai",
            "RELAYBUS_LLM_MODEL": "fake-model",
            "OPENAI_BASE_URL": server.openai_base_url,
            "OPENAI_API_KEY": "sk-test-not-a-real-key",
        }
        for _ in range(2):
            await fleet.start("Writer", args=("--concurrency", "32"), log_level="WARNING", env=env)
        topic = fleet.topic("write.text")
        tasks = [AgentTask(topic=topic, prompt=f"write {i}", timeout_s=30) for i in range(TASKS)]
        began = time.monotonic()
        async with ProjectOrchestrator(fleet.bus, default_timeout_s=60) as orchestrator:
            results = await orchestrator.execute_tasks(tasks)
            elapsed = time.monotonic() - began
            faults = dict(server.faults)
            requests = server.requests
            # A provider that stays down: the retries run out and the task fails, retryable, saying why.
            server.clear_faults()
            server.inject("server_error", status=503)
            down = await orchestrator.execute_tasks(
                [AgentTask(topic=topic, prompt=f"down {i}", timeout_s=30) for i in range(3)]
            )

    statuses = status_counts(results)
    failures = [r for r in results if r.status is not ExecutionStatus.SUCCESS]
    line = figures(
        "300 tasks, provider faults on 30% of calls",
        statuses=statuses,
        provider_requests=requests,
        faults_served=faults,
        fault_rate=round(sum(faults.values()) / max(requests, 1), 3),
        retryable_failures=sum(1 for r in failures if r.error is not None and r.error.retryable),
        provider_down_results=status_counts(down),
        wall_s=round(elapsed, 1),
    )
    assert len(results) == TASKS
    assert set(statuses) <= {"success", "failure"}, line  # no TIMEOUT: nothing hung
    for result in failures:
        assert result.error is not None, line
        assert result.error.retryable, (result.error, line)
    for ok, task in zip(results, tasks, strict=True):
        if ok.status is ExecutionStatus.SUCCESS:
            assert ok.output == f"fake reply: {task.prompt}"
    assert set(faults) == {"rate_limit", "server_error", "slow", "drop"}, line
    assert 0.2 < sum(faults.values()) / requests < 0.4, line
    for result in down:
        assert result.status is ExecutionStatus.FAILURE, result
        assert result.error is not None
        assert result.error.retryable
        assert "503" in result.error.message, result.error
    assert statuses.get("success", 0) >= TASKS * 0.9, line  # retries turned most faults into successes
