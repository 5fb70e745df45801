"""TaskExecutor: mode selection, results, timeouts, cancellation and the concurrency limit."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from pydantic import JsonValue

from relaybus.exceptions import ExecutorError
from relaybus.executor import Executor, ExecutorConfig, ProviderConfig, RunContext, TaskExecutor
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus
from tests.eventually import eventually


def _task(**fields: Any) -> AgentTask:
    return AgentTask(topic="test.executor", **fields)


class Recorder:
    """A custom backend that sleeps, records concurrency and remembers how each run ended."""

    def __init__(self, delay: float = 0.0, result: Any = "done") -> None:
        self.delay = delay
        self.result = result
        self.in_flight = 0
        self.max_in_flight = 0
        self.cancelled = 0
        self.seen: list[tuple[AgentTask, RunContext]] = []

    async def run(self, task: AgentTask, ctx: RunContext) -> ExecutionResult | JsonValue:
        self.seen.append((task, ctx))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1
        if isinstance(self.result, Exception):
            raise self.result
        return self.result  # type: ignore[no-any-return]


@pytest.fixture
async def executor() -> Any:
    async with TaskExecutor(ExecutorConfig(max_concurrency=10)) as ex:
        yield ex


async def test_echo_llm_task_succeeds_with_output_usage_and_timestamps(executor: TaskExecutor) -> None:
    result = await executor.execute(_task(prompt="hello world"), agent="writer", system_prompt="Be brief.")
    assert result.status is ExecutionStatus.SUCCESS
    assert result.output == "echo: hello world"
    assert result.agent == "writer"
    assert result.usage.prompt_tokens == 4  # "Be brief." + "hello world"
    assert result.usage.completion_tokens == 3
    assert result.usage.requests == 1
    assert result.attempts == 1
    assert result.started_at is not None
    assert result.finished_at is not None
    assert result.finished_at >= result.started_at


async def test_unknown_mode_in_a_task_is_rejected_naming_the_fix(executor: TaskExecutor) -> None:
    result = await executor.execute(_task(mode="telepathy"))
    assert result.status is ExecutionStatus.REJECTED
    assert result.error is not None
    assert "telepathy" in result.error.message
    assert "register_mode" in result.error.message
    assert "llm" in result.error.message


def test_unknown_default_mode_raises_at_construction() -> None:
    with pytest.raises(ExecutorError, match="default mode 'nope' is not registered"):
        TaskExecutor(ExecutorConfig(default_mode="nope"))


def test_custom_default_mode_registered_through_the_constructor() -> None:
    ex = TaskExecutor(ExecutorConfig(default_mode="custom"), modes={"custom": Recorder()})
    assert "custom" in ex.modes


@pytest.mark.parametrize("name", ["", "has space", "a/b", "x" * 101])
def test_register_mode_refuses_bad_names(executor: TaskExecutor, name: str) -> None:
    with pytest.raises(ExecutorError, match="mode name"):
        executor.register_mode(name, Recorder())


def test_register_mode_refuses_non_backends_and_duplicates(executor: TaskExecutor) -> None:
    with pytest.raises(ExecutorError, match="not an execution backend"):
        executor.register_mode("bad", object())  # type: ignore[arg-type]
    executor.register_mode("mine", Recorder())
    with pytest.raises(ExecutorError, match="already registered"):
        executor.register_mode("mine", Recorder())
    executor.register_mode("mine", Recorder(result="other"), replace=True)


async def test_mode_argument_beats_task_mode_which_beats_the_default(executor: TaskExecutor) -> None:
    executor.register_mode("a", Recorder(result="from a"))
    executor.register_mode("b", Recorder(result="from b"))
    assert (await executor.execute(_task(mode="a"), mode="b")).output == "from b"
    assert (await executor.execute(_task(mode="a"))).output == "from a"
    assert (await executor.execute(_task(prompt="x"))).output == "echo: x"


async def test_backend_gets_agent_and_system_prompt(executor: TaskExecutor) -> None:
    rec = Recorder()
    executor.register_mode("rec", rec)
    await executor.execute(_task(mode="rec"), agent="a1", system_prompt="sys")
    ctx = rec.seen[0][1]
    assert (ctx.agent, ctx.system_prompt) == ("a1", "sys")


async def test_backend_exception_becomes_a_failure_result(executor: TaskExecutor) -> None:
    executor.register_mode("boom", Recorder(result=RuntimeError("disk on fire")))
    result = await executor.execute(_task(mode="boom"))
    assert result.status is ExecutionStatus.FAILURE
    assert result.error is not None
    assert result.error.type == "RuntimeError"
    assert "disk on fire" in result.error.message
    assert result.error.retryable is False


async def test_backend_result_keeps_its_status_and_gets_the_task_id(executor: TaskExecutor) -> None:
    task = _task(mode="custom")
    other = ExecutionResult.failed(task.id, ExecutionStatus.REJECTED, "Nope", "refused")
    executor.register_mode("custom", Recorder(result=other))
    result = await executor.execute(task)
    assert result.status is ExecutionStatus.REJECTED
    assert result.task_id == task.id


async def test_task_timeout_gives_a_timeout_result_and_cancels_the_work(executor: TaskExecutor) -> None:
    rec = Recorder(delay=5)
    executor.register_mode("slow", rec)
    result = await executor.execute(_task(mode="slow", timeout_s=0.1))
    assert result.status is ExecutionStatus.TIMEOUT
    assert result.error is not None
    assert result.error.retryable
    assert "0.1 s" in result.error.message
    assert rec.cancelled == 1


async def test_default_timeout_applies_to_tasks_without_one() -> None:
    async with TaskExecutor(ExecutorConfig(default_timeout_s=0.1), modes={"slow": Recorder(delay=5)}) as ex:
        result = await ex.execute(_task(mode="slow"))
    assert result.status is ExecutionStatus.TIMEOUT


async def test_timeout_error_raised_by_a_backend_is_a_failure_not_a_timeout(executor: TaskExecutor) -> None:
    executor.register_mode("te", Recorder(result=TimeoutError("upstream said so")))
    result = await executor.execute(_task(mode="te", timeout_s=10))
    assert result.status is ExecutionStatus.FAILURE


async def test_timeout_counts_from_getting_a_slot() -> None:
    rec = Recorder(delay=0.2)
    async with TaskExecutor(ExecutorConfig(max_concurrency=1), modes={"r": rec}) as ex:
        results = await asyncio.gather(*(ex.execute(_task(mode="r", timeout_s=0.6)) for _ in range(4)))
    assert [r.status for r in results] == [ExecutionStatus.SUCCESS] * 4


class Queueing:
    """Waits outside the timeout (like a rate limiter), then works briefly."""

    async def run(self, task: AgentTask, ctx: RunContext) -> JsonValue:
        async with ctx.outside_timeout():
            await asyncio.sleep(0.4)
        await asyncio.sleep(0.05)
        return "ok"


async def test_waiting_outside_the_timeout_does_not_count(executor: TaskExecutor) -> None:
    executor.register_mode("q", Queueing())
    result = await executor.execute(_task(mode="q", timeout_s=0.2))
    assert result.status is ExecutionStatus.SUCCESS


async def test_cancel_ends_a_running_task_with_cancelled(executor: TaskExecutor) -> None:
    rec = Recorder(delay=5)
    executor.register_mode("slow", rec)
    task = _task(mode="slow")
    running = asyncio.create_task(executor.execute(task, agent="a"))
    await eventually(lambda: rec.in_flight)
    assert executor.cancel(task.id) is True
    result = await running
    assert result.status is ExecutionStatus.CANCELLED
    assert result.agent == "a"
    assert rec.cancelled == 1
    assert executor.in_flight == 0
    assert executor.cancel(task.id) is False


async def test_cancel_of_an_unknown_task_returns_false(executor: TaskExecutor) -> None:
    assert executor.cancel(_task().id) is False


async def test_cancel_reaches_a_task_waiting_for_a_slot() -> None:
    rec = Recorder(delay=5)
    async with TaskExecutor(ExecutorConfig(max_concurrency=1), modes={"slow": rec}) as ex:
        first, second = _task(mode="slow"), _task(mode="slow")
        t1 = asyncio.create_task(ex.execute(first))
        t2 = asyncio.create_task(ex.execute(second))
        await eventually(lambda: rec.in_flight)
        assert ex.in_flight == 2  # one running, one waiting for the slot: both are inside execute()
        assert ex.cancel(second.id)
        assert (await t2).status is ExecutionStatus.CANCELLED
        assert rec.in_flight == 1
        ex.cancel(first.id)
        assert (await t1).status is ExecutionStatus.CANCELLED


async def test_outer_cancellation_propagates_and_stops_the_work(executor: TaskExecutor) -> None:
    rec = Recorder(delay=5)
    executor.register_mode("slow", rec)
    running = asyncio.create_task(executor.execute(_task(mode="slow")))
    await eventually(lambda: rec.in_flight)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert rec.cancelled == 1
    assert executor.in_flight == 0


async def test_outer_timeout_around_execute_raises_timeout_error(executor: TaskExecutor) -> None:
    rec = Recorder(delay=5)
    executor.register_mode("slow", rec)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await executor.execute(_task(mode="slow"))
    assert rec.cancelled == 1


async def test_concurrency_limit_caps_tasks_in_flight() -> None:
    rec = Recorder(delay=0.05)
    async with TaskExecutor(ExecutorConfig(max_concurrency=3), modes={"r": rec}) as ex:
        results = await asyncio.gather(*(ex.execute(_task(mode="r")) for _ in range(12)))
    assert all(r.ok for r in results)
    assert rec.max_in_flight == 3


@pytest.mark.slow  # a wall-clock ratio (the echo provider records no concurrency of its own)
async def test_echo_tasks_overlap() -> None:
    config = ExecutorConfig(provider=ProviderConfig(kind="echo", echo_latency_s=0.3))
    async with TaskExecutor(config) as ex:
        start = time.perf_counter()
        await ex.execute(_task(prompt="one"))
        one = time.perf_counter() - start
        start = time.perf_counter()
        results = await asyncio.gather(*(ex.execute(_task(prompt=str(i))) for i in range(3)))
        three = time.perf_counter() - start
    assert all(r.ok for r in results)
    assert three < 2 * one


async def test_closed_executor_refuses_new_tasks() -> None:
    ex = TaskExecutor(ExecutorConfig())
    await ex.close()
    await ex.close()  # idempotent
    with pytest.raises(ExecutorError, match="closed"):
        await ex.execute(_task())


def test_task_executor_satisfies_the_executor_protocol() -> None:
    assert isinstance(TaskExecutor(ExecutorConfig()), Executor)
    assert TaskExecutor(ExecutorConfig()).modes == ("api", "llm", "script")


def test_no_argument_executor_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYBUS_LLM_PROVIDER", "echo")
    monkeypatch.setenv("RELAYBUS_MAX_CONCURRENCY", "7")
    monkeypatch.setenv("RELAYBUS_ECHO_LATENCY_S", "0.25")
    ex = TaskExecutor()
    assert ex.config.max_concurrency == 7
    assert ex.config.provider.echo_latency_s == 0.25
    assert "echo" in repr(ex)
