"""A streamed task's executor gets ``on_delta`` only when its ``execute`` takes it (asked once per class)."""

from __future__ import annotations

from typing import Any

from relaybus import AgentTask, ExecutionResult
from relaybus.agents.context import _MeteredExecutor, _takes_on_delta
from relaybus.executor.llm.stream import TextDelta
from relaybus.messages import Usage


class Streaming:
    def __init__(self) -> None:
        self.got: list[Any] = []

    async def execute(
        self,
        task: AgentTask,
        agent: str | None = None,
        mode: str | None = None,
        *,
        system_prompt: Any = None,
        on_delta: Any = None,
    ) -> ExecutionResult:
        self.got.append(on_delta)
        if on_delta is not None:
            on_delta(TextDelta("hi"))
        return ExecutionResult.success(task.id, "ok")


class Plain:
    async def execute(
        self, task: AgentTask, agent: str | None = None, mode: str | None = None, *, system_prompt: Any = None
    ) -> ExecutionResult:
        return ExecutionResult.success(task.id, "plain")


class Anything:
    def __init__(self) -> None:
        self.keywords: list[str] = []

    async def execute(self, task: AgentTask, *args: Any, **keywords: Any) -> ExecutionResult:
        self.keywords.extend(keywords)
        return ExecutionResult.success(task.id, "any")


def metered(inner: Any, text: list[str]) -> _MeteredExecutor:
    usage: list[Usage] = []
    return _MeteredExecutor(inner, usage.append, text.append)


async def test_an_executor_that_takes_on_delta_streams_one_that_does_not_is_called_without_it() -> None:
    task = AgentTask(topic="t", prompt="p")
    text: list[str] = []
    streaming, plain, anything = Streaming(), Plain(), Anything()
    for _ in range(2):  # the answer is remembered per class: asking again gives the same
        assert (await metered(streaming, text).execute(task)).output == "ok"
        assert (await metered(plain, text).execute(task)).output == "plain"
        assert (await metered(anything, text).execute(task)).output == "any"
    assert text == ["hi", "hi"]
    assert all(callback is not None for callback in streaming.got)
    assert anything.keywords.count("on_delta") == 2


def test_the_answer_is_per_function_and_an_unhashable_callable_is_still_asked() -> None:
    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self, task: object, *, on_delta: object = None) -> None: ...

    assert _takes_on_delta(Streaming().execute) is True
    assert _takes_on_delta(Plain().execute) is False
    assert _takes_on_delta(Unhashable()) is True
