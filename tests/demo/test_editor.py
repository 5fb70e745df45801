"""The demo's editor: an autonomous agent whose scripted model calls two agents and a Python tool at once."""

from __future__ import annotations

from relaybus import AgentTask
from relaybus.demo.agents import Editor, Planner, Researcher, reading_time
from relaybus.demo.editor_model import GUIDE_WORDS, editor_model
from relaybus.executor.llm.chat import ToolResultMessage
from relaybus.testing import AgentTestHarness, FakeExecutor


async def test_the_editors_model_calls_the_researcher_the_planner_and_a_python_tool_in_one_turn() -> None:
    llm = FakeExecutor(script=editor_model, respond=lambda task, agent: f"{agent} on {task.prompt[:20]}")
    async with AgentTestHarness([Editor(), Researcher(), Planner()], executor=llm) as h:
        result = await h.run(AgentTask(topic="project.summarize", prompt="Summarize the guide."))
    assert result.ok, result.error
    assert result.output is not None
    assert isinstance(result.output, dict)
    assert result.output["tool_calls"] == [
        {"turn": 1, "tool": "research", "via": "project.research", "ok": True},
        {"turn": 1, "tool": "outline", "via": "project.plan", "ok": True},
        {"turn": 1, "tool": "reading_time", "via": "python", "ok": True},
    ]
    research, outline, minutes = (m for m in llm.requests[1].messages if isinstance(m, ToolResultMessage))
    assert research.content == "doc-researcher on Three facts about re"
    assert '"outline":"doc-planner on Outline the relaybus' in outline.content
    assert minutes.content == reading_time(GUIDE_WORDS) == "4 minutes"
    summary = str(result.output["summary"])
    assert summary.startswith("The relaybus user guide (4 minutes to read) follows this outline: doc-planner")
    assert sorted(t.topic for t in llm.calls) == ["project.plan", "project.research"]  # their own calls
    assert result.usage.requests == 4  # two turns of the editor, one call each of the researcher and planner
