"""The README's "Write your own agent" example, tested the way the README tells users to test theirs."""

from __future__ import annotations

from examples.agents import Reviewer, WordCounter, Writer

from relaybus import AgentTask, ExecutionStatus, Usage
from relaybus.testing.agents import AgentTestHarness, FakeExecutor


async def test_reviewer_asks_the_writer_for_a_draft_then_reviews_it() -> None:
    executor = FakeExecutor(respond=lambda task, agent: f"{agent} answered {task.prompt!r}")
    async with AgentTestHarness([Reviewer(), Writer()], executor=executor) as h:
        result = await h.run(AgentTask(topic="code.review", prompt="add two numbers"))
    assert result.ok, result.error
    assert result.output == {
        "code": "writer answered 'add two numbers'",
        "review": "reviewer answered 'add two numbers'",
    }
    assert [t.topic for t in executor.calls] == ["code.write", "code.review"]
    # The writer's LLM call (through delegation) and the reviewer's own both count for this task.
    assert result.usage == Usage(prompt_tokens=6, completion_tokens=2, requests=2)
    assert executor.calls[1].input == {"code": "writer answered 'add two numbers'"}


async def test_reviewer_reviews_given_code_without_asking_the_writer() -> None:
    executor = FakeExecutor(respond=lambda task, agent: "looks fine")
    async with AgentTestHarness([Reviewer()], executor=executor) as h:
        result = await h.run(AgentTask(topic="code.review", input={"code": "def f(): pass"}))
    assert result.output == {"code": "def f(): pass", "review": "looks fine"}
    assert len(executor.calls) == 1


async def test_reviewer_passes_on_the_writers_failure() -> None:
    async with AgentTestHarness([Reviewer()]) as h:  # no writer deployed: nobody serves code.write
        result = await h.run(AgentTask(topic="code.review", prompt="anything"))
    assert result.status is ExecutionStatus.FAILURE
    assert result.error is not None
    assert result.error.type == "NoRouteError"


async def test_word_counter_counts_and_announces() -> None:
    async with AgentTestHarness([WordCounter()]) as h:
        result = await h.run(AgentTask(topic="text.count", prompt="To be or not to be"))
        empty = await h.run(AgentTask(topic="text.count.fast", prompt=""))
    assert result.output == {"words": 6, "distinct": 4}
    assert [e.payload for e in h.events("text.counted")] == [
        {"task_id": str(result.task_id), "words": 6, "distinct": 4}
    ]
    assert empty.status is ExecutionStatus.FAILURE
    assert empty.error is not None
    assert empty.error.message == "nothing to count: the prompt is empty"
