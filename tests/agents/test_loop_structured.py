"""Structured output (``Agent.output_schema``): the schema sent, the validation, one repair turn, the JSON."""

from __future__ import annotations

import json

from pydantic import BaseModel, Field

from relaybus import Agent, AgentTask, ExecutionStatus, tool
from relaybus.agents.loop import structured_output
from relaybus.executor.llm.chat import AssistantMessage, UserMessage
from relaybus.testing import AgentTestHarness, ScriptedAnswer, ScriptedToolCall


class Verdict(BaseModel):
    """A reviewer's verdict on a change."""

    approve: bool
    reasons: list[str]
    score: int = Field(default=0, ge=0, le=10)


class Judge(Agent):
    name = "loop-judge"
    topics = ("loop.judge",)
    output_schema = Verdict


@tool
def lines_of(text: str) -> int:
    """Count the lines of a text."""
    return len(text.splitlines())


class CountingJudge(Agent):
    name = "loop-counting-judge"
    topics = ("loop.judge.count",)
    tools = (lines_of,)
    output_schema = Verdict


GOOD = {"approve": True, "reasons": ["small"], "score": 7}


async def test_the_schema_is_sent_strict_and_a_valid_answer_is_the_output_as_json() -> None:
    async with AgentTestHarness([Judge()], script=[ScriptedAnswer(output=GOOD)]) as h:
        result = await h.run(AgentTask(topic="loop.judge", prompt="judge"))
        (request,) = h.executor.requests  # type: ignore[attr-defined]
    assert result.ok, result.error
    assert result.output == GOOD
    schema = request.response_schema
    assert schema is not None
    assert schema.name == "Verdict"
    assert schema.description == "A reviewer's verdict on a change."
    assert schema.strict is True
    assert schema.schema["additionalProperties"] is False
    assert schema.schema["required"] == ["approve", "reasons", "score"]  # strict mode wants every field
    assert "default" not in schema.schema["properties"]["score"]
    assert request.tools == ()


async def test_an_invalid_answer_gets_one_repair_turn_with_the_reasons_then_succeeds() -> None:
    script = ['{"approve": "maybe", "reasons": []}', ScriptedAnswer(output={"approve": False, "reasons": []})]
    async with AgentTestHarness([Judge()], script=script) as h:
        result = await h.run(AgentTask(topic="loop.judge", prompt="judge"))
        requests = h.executor.requests  # type: ignore[attr-defined]
    assert result.ok, result.error
    assert result.output == {"approve": False, "reasons": [], "score": 0}  # validation filled the default
    assert len(requests) == 2
    *_, bad, repair = requests[1].messages
    assert bad == AssistantMessage('{"approve": "maybe", "reasons": []}')
    assert isinstance(repair, UserMessage)
    assert repair.text.startswith("Your answer is not a valid Verdict object: approve: Input should be a")
    assert result.usage.requests == 2


async def test_two_invalid_answers_fail_with_invalid_structured_output() -> None:
    script = ["not json at all", '{"approve": true}']
    async with AgentTestHarness([Judge()], script=script) as h:
        result = await h.run(AgentTask(topic="loop.judge", prompt="judge"))
        requests = h.executor.requests  # type: ignore[attr-defined]
    assert result.status is ExecutionStatus.FAILURE
    assert result.error is not None
    assert result.error.type == "InvalidStructuredOutput"
    assert "reasons: Field required" in result.error.message
    assert result.output == '{"approve": true}'  # what the model said last, for the caller to see
    assert len(requests) == 2


async def test_tools_and_a_schema_together_and_a_fenced_answer_is_accepted() -> None:
    script = [
        ScriptedAnswer(tool_calls=[ScriptedToolCall("lines_of", {"text": "a\nb"})]),
        "```json\n" + json.dumps(GOOD) + "\n```",
    ]
    async with AgentTestHarness([CountingJudge()], script=script) as h:
        result = await h.run(AgentTask(topic="loop.judge.count", prompt="judge"))
        requests = h.executor.requests  # type: ignore[attr-defined]
    assert result.ok, result.error
    assert result.output == GOOD
    assert [s.name for s in requests[0].tools] == ["lines_of"]
    assert requests[1].response_schema == requests[0].response_schema


async def test_the_repair_turn_is_allowed_after_the_last_turn() -> None:
    class Brief(Agent):
        name = "loop-brief"
        topics = ("loop.brief",)
        output_schema = Verdict
        max_turns = 1

    async with AgentTestHarness([Brief()], script=["{}", ScriptedAnswer(output=GOOD)]) as h:
        result = await h.run(AgentTask(topic="loop.brief", prompt="judge"))
    assert result.ok, result.error
    assert result.output == GOOD


class Mapping(BaseModel):
    counts: dict[str, int]


def test_a_schema_strict_mode_cannot_express_is_sent_not_strict() -> None:
    assert structured_output(Mapping).response_schema.strict is False
    assert structured_output(Verdict).response_schema.strict is True
    assert structured_output(Verdict) is structured_output(Verdict)  # built once per class
