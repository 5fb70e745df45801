"""``LazyTaskExecutor``: the worker's default executor exists only once a task needs it."""

from __future__ import annotations

import pytest

from relaybus.agents import Agent, AgentWorker
from relaybus.bus.memory import MemoryBus
from relaybus.bus.rpc import ReplyRouter
from relaybus.exceptions import ExecutorError
from relaybus.executor.core import TaskExecutor
from relaybus.executor.lazy import LazyTaskExecutor
from relaybus.messages import AgentTask, ExecutionStatus


async def test_nothing_is_created_until_a_task_needs_it_and_close_closes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELAYBUS_LLM_PROVIDER", "echo")
    created: list[TaskExecutor] = []
    from_env = TaskExecutor.from_env

    def counting(env: object = None) -> TaskExecutor:
        executor = from_env()
        created.append(executor)
        return executor

    monkeypatch.setattr(TaskExecutor, "from_env", staticmethod(counting))
    lazy = LazyTaskExecutor()
    task = AgentTask(topic="t", prompt="hello")
    assert lazy.cancel(task.id) is False  # nothing to cancel, and still nothing created
    assert created == []
    first = await lazy.execute(task, "a")
    second = await lazy.execute(task, "a")
    assert (first.ok, second.ok) == (True, True)
    assert len(created) == 1  # one executor for every task
    await lazy.close()
    await lazy.close()  # idempotent
    with pytest.raises(ExecutorError, match="closed"):  # the one it made is closed
        await created[0].execute(task)


async def test_a_worker_without_an_executor_needs_no_llm_settings_until_a_task_uses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Uses(Agent):
        name = "uses"
        topics = ("uses.llm",)

    monkeypatch.setenv("RELAYBUS_LLM_PROVIDER", "no-such-provider")
    async with MemoryBus() as bus, AgentWorker(bus, [Uses()]) as worker:
        assert worker.is_running  # started although the setting is bad
        router = ReplyRouter(bus)
        await router.start()
        result = await router.request(AgentTask(topic="uses.llm"), timeout=10)
        await router.close()
    assert result.status is ExecutionStatus.FAILURE
    assert result.error is not None
    assert "no-such-provider" in result.error.message
