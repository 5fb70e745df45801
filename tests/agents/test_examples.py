"""The examples (the README's "Write your own agent" and "Agents with tools"), tested the way the README
tells users to test theirs."""

from __future__ import annotations

import json

from examples.agents import Reviewer, WordCounter, Writer

from relaybus import AgentTask, ExecutionStatus, Usage
from relaybus.executor.llm.chat import ToolResultMessage
from relaybus.testing import ScriptedAnswer, ScriptedToolCall, SeenRequest
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


# --- examples/tool_agents.py and examples/mcp_agent.py: agents with tools, the model scripted -------------


async def test_the_solver_calls_python_tools_and_the_word_counter_at_once_then_answers_an_answer() -> None:
    from examples.tool_agents import Solver

    model = [
        ScriptedAnswer(
            tool_calls=[
                ScriptedToolCall("add", {"a": 2, "b": 3}),
                ScriptedToolCall("count_words", {"prompt": "to be or not to be"}),
            ]
        ),
        ScriptedAnswer(tool_calls=[ScriptedToolCall("multiply", {"a": 5, "b": 6})]),
        "30",  # not an Answer: the loop asks once more
        ScriptedAnswer(output={"value": 30, "explanation": "(2 + 3) x 6 words"}),
    ]
    async with AgentTestHarness([Solver(), WordCounter()], script=model) as h:
        result = await h.run(
            AgentTask(topic="math.solve", prompt="(2 + 3) times the words of 'to be or not'")
        )
        requests = h.executor.requests  # type: ignore[attr-defined]
    assert result.ok, result.error
    assert result.output == {"value": 30.0, "explanation": "(2 + 3) x 6 words"}
    second_turn = [m for m in requests[1].messages if isinstance(m, ToolResultMessage)]
    assert [m.content for m in second_turn] == ["5.0", '{"words":6,"distinct":4}']
    assert requests[0].response_schema is not None
    assert requests[0].response_schema.name == "Answer"
    assert len(requests) == 4


async def test_the_mcp_calculator_answers_with_the_example_mcp_servers_tools() -> None:
    from examples.mcp_agent import Calculator

    def model(seen: SeenRequest) -> ScriptedAnswer | str:
        if seen.tool_results:
            total, words = (m.content for m in seen.tool_results)
            return f"19 + 23 = {total}; {json.loads(words)['words']} words"
        return ScriptedAnswer(
            tool_calls=[
                ScriptedToolCall("add", {"a": 19, "b": 23}),
                ScriptedToolCall("word_count", {"text": "to be or not"}),
            ]
        )

    async with AgentTestHarness([Calculator()], script=model) as h:
        result = await h.run(AgentTask(topic="math.mcp", prompt="19 + 23, and the words of 'to be or not'"))
    assert result.ok, result.error
    assert result.output == "19 + 23 = 42; 4 words"
