"""Agents declare the scripts and custom modes they need, so a deployed worker has them: registered on the
worker's executor at start (checked there, with the agent named), and ``on_start`` gets that executor."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from relaybus import ConfigError, Script
from relaybus.agents import Agent, AgentWorker, StartContext
from relaybus.bus.memory import MemoryBus
from relaybus.bus.rpc import ReplyRouter
from relaybus.executor import TaskExecutor
from relaybus.messages import AgentTask, ExecutionResult, ExecutionStatus
from relaybus.testing.agents import AgentTestHarness, FakeExecutor

from . import sample_agents as sa


async def on_default_executor(agent: Agent, task: AgentTask) -> ExecutionResult:
    """``task``'s result from a worker hosting ``agent`` on the default executor, as ``relaybus worker``."""
    async with MemoryBus() as bus, AgentWorker(bus, [agent]), ReplyRouter(bus) as router:
        return await router.request(task, timeout=20)


async def test_a_declared_script_runs_in_script_mode_on_the_default_executor() -> None:
    task = AgentTask(topic=sa.topic("scripted"), mode="script", input={"script": "say", "args": ["hi $(x)"]})
    result = await on_default_executor(sa.Scripted(), task)
    assert result.ok, result.error
    assert result.output == {"exit_code": 0, "stdout": "said: hi $(x)\n", "stderr": "", "truncated": False}


async def test_a_declared_mode_answers_tasks_of_that_mode() -> None:
    task = AgentTask(topic=sa.topic("scripted"), prompt="quiet", mode="shout")
    result = await on_default_executor(sa.Scripted(), task)
    assert (result.status, result.output) == (ExecutionStatus.SUCCESS, "QUIET")


async def test_a_script_whose_program_is_missing_fails_the_start_naming_the_agent() -> None:
    class Broken(Agent):
        name = "broken"
        scripts = (Script("gone", ("no-such-program-relaybus",)),)

    async with MemoryBus() as bus:
        with pytest.raises(ConfigError, match=r"Broken\.scripts: script 'gone'.*not an executable"):
            await AgentWorker(bus, [Broken()]).start()


async def test_two_agents_declaring_one_script_differently_are_refused() -> None:
    class One(Agent):
        name = "one"
        scripts = (Script("say", ("echo", "one")),)

    class Two(Agent):
        name = "two"
        scripts = (Script("say", ("echo", "two")),)

    async with MemoryBus() as bus:
        with pytest.raises(ConfigError, match="'say' is declared by One and Two"):
            await AgentWorker(bus, [One(), Two()]).start()


async def test_a_custom_mode_named_like_a_built_in_one_is_refused() -> None:
    class Shadow(Agent):
        name = "shadow"
        modes: ClassVar[dict[str, Any]] = {"llm": sa.Shout()}

    async with MemoryBus() as bus:
        with pytest.raises(ConfigError, match="'llm', a built-in mode"):
            await AgentWorker(bus, [Shadow()]).start()


async def test_an_executor_that_cannot_register_scripts_is_refused_at_start() -> None:
    async with MemoryBus() as bus:
        with pytest.raises(ConfigError, match=r"Scripted declare scripts or modes.*FakeExecutor"):
            await AgentWorker(bus, [sa.Scripted()], executor=FakeExecutor()).start()


def test_declarations_are_checked_when_the_class_is_defined() -> None:
    with pytest.raises(ConfigError, match="declare each command as Script"):

        class Strings(Agent):
            name = "strings"
            scripts = ("ruff check",)  # type: ignore[assignment]

    with pytest.raises(ConfigError, match="is not an execution backend"):

        class NotBackend(Agent):
            name = "not-backend"
            modes: ClassVar[dict[str, Any]] = {"odd": object()}


async def test_on_start_gets_the_workers_executor_and_may_register_a_script_itself() -> None:
    got: list[StartContext] = []

    class Late(Agent):
        name = "late"
        topics = ("late",)
        mode = "script"

        async def on_start(self, start: StartContext) -> None:
            got.append(start)
            assert isinstance(start.executor, TaskExecutor)
            start.executor.register_script("late", ["echo", "registered at start"])

    async with MemoryBus() as bus:
        executor = TaskExecutor()
        async with executor, AgentTestHarness([Late()], bus=bus, executor=executor) as h:
            result = await h.run(AgentTask(topic="late", input={"script": "late"}))
    assert result.ok, result.error
    assert result.output["stdout"] == "registered at start\n"  # type: ignore[index,call-overload]
    assert [(s.executor, s.bus) for s in got] == [(executor, bus)]
