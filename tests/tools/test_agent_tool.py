"""``AgentTool``: a model's call becomes an AgentTask for another agent, and its result the tool's outcome."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from uuid import uuid4

import pytest
from pydantic import BaseModel

from relaybus import AgentTask, AgentTool, ConfigError, ExecutionResult, ExecutionStatus, NoRouteError, Usage
from relaybus.agents import Agent, AgentContext
from relaybus.testing import AgentTestHarness
from relaybus.tools import ToolOutcome


class FakeDelegate:
    """Records the tasks it is given and answers each with ``answer(task)``."""

    def __init__(self, answer: Any = None) -> None:
        self.calls: list[tuple[AgentTask, float | None]] = []
        self._answer = answer or (lambda task: ExecutionResult.success(task.id, {"ok": True}))

    async def __call__(self, task: AgentTask, /, *, timeout: float | None = None) -> ExecutionResult:
        self.calls.append((task, timeout))
        answer = self._answer(task)
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[no-any-return]


COUNT = AgentTool("text.count", name="count_words", description="Count the words of a text")


def test_the_spec_asks_for_a_prompt_and_an_optional_input_object() -> None:
    assert COUNT.spec.name == "count_words"
    assert COUNT.spec.description == "Count the words of a text"
    assert COUNT.spec.parameters == {
        "type": "object",
        "properties": {
            "prompt": {"type": "string", "description": "What to ask the agent, in plain words."},
            "input": {"type": "object", "description": "Structured input for the agent (optional)."},
        },
        "required": ["prompt"],
        "additionalProperties": False,
    }


class Review(BaseModel):
    code: str
    strict: bool = False


class Finding(BaseModel):
    line: int


class Report(BaseModel):
    findings: list[Finding]


def test_an_input_schema_describes_the_input_and_its_defs_move_to_the_root() -> None:
    by_model = AgentTool(agent="reporter", name="report", description="Report", input_schema=Report)
    params = by_model.spec.parameters
    assert params["properties"]["input"]["properties"]["findings"] == {
        "type": "array",
        "items": {"$ref": "#/$defs/Finding"},
    }
    assert params["$defs"]["Finding"]["properties"] == {"line": {"type": "integer"}}
    by_schema = AgentTool(
        "code.review",
        name="review",
        description="Review code",
        input_schema={"type": "object", "properties": {"code": {"type": "string"}}},
    )
    assert by_schema.spec.parameters["properties"]["input"] == {
        "type": "object",
        "properties": {"code": {"type": "string"}},
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of topic"),
        ({"topic": "a.b", "agent": "x"}, "exactly one of topic"),
        ({"topic": "code.*"}, "no wildcards"),
        ({"topic": "a..b"}, "dot-separated words"),
        ({"topic": "a" * 201}, "at most 200"),
        ({"agent": "bad name"}, "agent name of 1-100"),
        ({"topic": "a.b", "timeout_s": -1}, "timeout_s"),
        ({"topic": "a.b", "input_schema": {"type": "string"}}, "input_schema"),
    ],
)
def test_a_wrong_target_or_option_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AgentTool(name="t", description="d", **kwargs)


def test_a_name_models_refuse_is_refused() -> None:
    with pytest.raises(ConfigError, match="1-64 letters"):
        AgentTool("a.b", name="count words", description="d")


async def test_a_call_delegates_a_task_with_the_prompt_and_input_and_returns_the_output_as_json() -> None:
    usage = Usage(prompt_tokens=7, completion_tokens=3, requests=1)
    delegate = FakeDelegate(lambda task: ExecutionResult.success(task.id, {"words": 4}, usage=usage))
    tool = AgentTool("text.count", name="count", description="d", timeout_s=12)
    outcome = await tool.call('{"prompt": "to be or not", "input": {"lang": "en"}}', delegate)
    assert outcome == ToolOutcome('{"words":4}', usage=usage)
    [(task, timeout)] = delegate.calls
    assert (task.topic, task.agent, task.prompt, task.input) == (
        "text.count",
        None,
        "to be or not",
        {"lang": "en"},
    )
    assert task.timeout_s == 12
    assert timeout == 12


async def test_an_agent_addressed_tool_sends_to_the_agent_by_name() -> None:
    delegate = FakeDelegate(lambda task: ExecutionResult.success(task.id, "plain text"))
    tool = AgentTool(agent="writer", name="write", description="d")
    outcome = await tool.call({"prompt": "a poem"}, delegate)
    assert outcome == ToolOutcome("plain text")  # a string goes as it is
    [(task, timeout)] = delegate.calls
    assert (task.agent, task.routing_key, task.input, timeout) == ("writer", "agent.writer", {}, None)


async def test_a_pydantic_input_schema_validates_and_fills_in_the_input() -> None:
    delegate = FakeDelegate()
    tool = AgentTool("code.review", name="review", description="d", input_schema=Review)
    assert (await tool.call({"prompt": "review", "input": {"code": "x = 1"}}, delegate)).is_error is False
    assert delegate.calls[0][0].input == {"code": "x = 1", "strict": False}
    refused = await tool.call({"prompt": "review", "input": {"strict": "very"}}, delegate)
    assert refused.is_error
    assert "input: code: Field required; strict: Input should be a valid boolean" in refused.content
    assert len(delegate.calls) == 1  # nothing was sent for the refused call


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ("not json", "not valid JSON"),
        ("{}", "prompt: a string is required"),
        ({"prompt": 3}, "prompt: a string is required"),
        ({"prompt": "p", "input": [1]}, "input must be a JSON object, not list"),
        ({"prompt": "p", "extra": 1}, "unknown argument(s) extra"),
    ],
)
async def test_bad_arguments_are_an_error_outcome_and_nothing_is_sent(arguments: Any, reason: str) -> None:
    delegate = FakeDelegate()
    outcome = await COUNT.call(arguments, delegate)
    assert outcome.is_error
    assert outcome.content.startswith("invalid arguments for count_words: ")
    assert reason in outcome.content
    assert delegate.calls == []


@pytest.mark.parametrize(
    ("status", "error_type", "message"),
    [
        (ExecutionStatus.FAILURE, "ValueError", "bad text"),
        (ExecutionStatus.TIMEOUT, "Timeout", "no result within 30 s"),
        (ExecutionStatus.REJECTED, "InvalidMessage", "unknown field"),
    ],
)
async def test_a_result_that_is_not_success_is_an_error_outcome_naming_status_and_error(
    status: ExecutionStatus, error_type: str, message: str
) -> None:
    usage = Usage(prompt_tokens=5, requests=1)
    delegate = FakeDelegate(
        lambda task: ExecutionResult.failed(task.id, status, error_type, message, usage=usage)
    )
    outcome = await COUNT.call({"prompt": "x"}, delegate)
    assert outcome == ToolOutcome(
        f"count_words: topic 'text.count' answered {status.value.upper()} ({error_type}: {message})",
        is_error=True,
        usage=usage,
    )


async def test_a_task_that_cannot_be_sent_is_an_error_outcome() -> None:
    delegate = FakeDelegate(lambda task: NoRouteError("task.text.count", "relaybus"))
    outcome = await COUNT.call({"prompt": "x"}, delegate)
    assert outcome.is_error
    assert outcome.content.startswith(
        "count_words: could not send the task to topic 'text.count': NoRouteError"
    )


async def test_a_long_output_is_capped() -> None:
    delegate = FakeDelegate(lambda task: ExecutionResult.success(task.id, "word " * 1000))
    tool = AgentTool("text.count", name="count", description="d", max_output_bytes=300)
    outcome = await tool.call({"prompt": "x"}, delegate)
    assert outcome.truncated
    assert len(outcome.content.encode()) <= 300
    assert "capped at 300 bytes" in outcome.content


# --- over a real bus: ctx.delegate of a worker's task -----------------------------------------------------

SUFFIX = uuid4().hex[:8]


class WordCounter(Agent):
    name = f"words-{SUFFIX}"
    topics = (f"tools-{SUFFIX}.count",)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        if task.input.get("sleep_s"):
            await asyncio.sleep(float(task.input["sleep_s"]))  # type: ignore[arg-type]
        return {"words": len(task.prompt.split()), "lang": task.input.get("lang")}


class Writer(Agent):
    """The default handle: the harness's FakeExecutor answers, with one request of usage."""

    name = f"writer-{SUFFIX}"


TOOLS = {
    "count": AgentTool(f"tools-{SUFFIX}.count", name="count", description="Count words", timeout_s=0.5),
    "write": AgentTool(agent=f"writer-{SUFFIX}", name="write", description="Write"),
    "nobody": AgentTool(f"tools-{SUFFIX}.nobody", name="nobody", description="No agent listens"),
}


class ToolCaller(Agent):
    """Calls the tool named in ``input["tool"]`` with ``input["arguments"]`` through ``ctx.delegate``."""

    name = f"caller-{SUFFIX}"
    topics = (f"tools-{SUFFIX}.call",)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        tool = TOOLS[str(task.input["tool"])]
        outcome = await tool.call(json.dumps(task.input["arguments"]), ctx.delegate)
        return {"content": outcome.content, "is_error": outcome.is_error, "requests": outcome.usage.requests}


async def _call(harness: AgentTestHarness, tool: str, arguments: dict[str, Any]) -> Any:
    result = await harness.run(
        AgentTask(topic=f"tools-{SUFFIX}.call", input={"tool": tool, "arguments": arguments}), timeout=10
    )
    assert result.ok, result.error
    return result.output


async def test_over_a_memory_bus_the_agent_on_the_topic_answers_the_tool() -> None:
    async with AgentTestHarness([ToolCaller, WordCounter, Writer]) as h:
        counted = await _call(h, "count", {"prompt": "one two three", "input": {"lang": "en"}})
        written = await _call(h, "write", {"prompt": "hello there"})
        late = await _call(h, "count", {"prompt": "x", "input": {"sleep_s": 5}})
        unrouted = await _call(h, "nobody", {"prompt": "x"})
    assert counted == {"content": '{"words":3,"lang":"en"}', "is_error": False, "requests": 0}
    assert written["is_error"] is False
    assert json.loads(written["content"])["prompt"] == "hello there"
    assert written["requests"] == 1  # the writer's LLM call, carried back for the loop's usage
    assert late["is_error"] is True
    assert "answered TIMEOUT" in late["content"]
    assert unrouted["is_error"] is True
    assert "NoRouteError" in unrouted["content"]
