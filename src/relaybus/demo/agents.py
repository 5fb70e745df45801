"""The demo's agents: a planner, writers that ask a researcher over the bus, a reviewer, and an editor whose
model calls the researcher and the planner as tools.

They run on whatever LLM the worker's executor is configured with (``RELAYBUS_LLM_PROVIDER``;
``relaybus demo`` uses the offline ``echo`` provider with a simulated latency unless an LLM is configured,
and gives the editor a scripted model, :mod:`relaybus.demo.editor_model`, since echo never calls a tool).
Their names start with ``doc-`` so that their queues (``relaybus.agent.doc-writer``, ...) never mix with
other agents called ``writer`` or ``reviewer`` on the same broker. Deploy them like any agent::

    relaybus worker relaybus.demo.agents:Planner relaybus.demo.agents:Writer \\
        relaybus.demo.agents:Researcher relaybus.demo.agents:Reviewer relaybus.demo.agents:Editor
"""

from __future__ import annotations

from typing import Any

from pydantic import JsonValue

from relaybus.agents import Agent, AgentContext
from relaybus.messages import AgentTask, ExecutionResult
from relaybus.tools import AgentTool, tool

__all__ = ["DEMO_AGENTS", "Editor", "Planner", "Researcher", "Reviewer", "Writer", "reading_time"]


def _dependency_outputs(task: AgentTask) -> list[JsonValue]:
    deps = task.input.get("dependencies")
    return list(deps.values()) if isinstance(deps, dict) else []


def _text(value: JsonValue, limit: int = 400) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Planner(Agent):
    """Outlines the document: one LLM call."""

    name = "doc-planner"
    topics = ("project.plan",)
    system_prompt = "You plan short technical documents. Answer with an outline: one line per section."

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        result: ExecutionResult = await ctx.executor.execute(
            task, agent=self.name, system_prompt=self.system_prompt
        )
        if not result.ok:
            return result
        return {"outline": result.output, "sections": task.input.get("sections", [])}


class Researcher(Agent):
    """Gathers notes for one section: the default ``handle`` (one LLM call with this system prompt)."""

    name = "doc-researcher"
    topics = ("project.research",)
    system_prompt = "You collect three short, checkable facts a writer needs for one section."


class Writer(Agent):
    """Writes one section. It first delegates to the researcher over the bus, then writes with the notes."""

    name = "doc-writer"
    topics = ("project.write",)
    system_prompt = "You write one section of a technical document, in plain words, under 150 words."

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        section = str(task.input.get("section") or task.prompt)
        outline = next(
            (d.get("outline") for d in _dependency_outputs(task) if isinstance(d, dict) and "outline" in d),
            "",
        )
        notes = await ctx.delegate(
            AgentTask(topic="project.research", prompt=f"Facts for the section {section!r}: {task.prompt}")
        )
        if not notes.ok:
            return notes  # the researcher's failure or timeout answers this task
        prompt = (
            f"Write the section {section!r}. Outline: {_text(outline or '')} Notes: {_text(notes.output)}"
        )
        draft: ExecutionResult = await ctx.executor.execute(
            task.model_copy(update={"prompt": prompt}), agent=self.name, system_prompt=self.system_prompt
        )
        if not draft.ok:
            return draft
        return {"text": draft.output, "section": section, "notes": notes.output}


class Reviewer(Agent):
    """Reviews every section it depends on in one LLM call and says which ones it read."""

    name = "doc-reviewer"
    topics = ("project.review",)
    system_prompt = "You review a technical document: list the three most important fixes."

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        sections = [d for d in _dependency_outputs(task) if isinstance(d, dict) and "section" in d]
        body = " ".join(f"[{d['section']}] {_text(d.get('text'), 200)}" for d in sections)
        review: ExecutionResult = await ctx.executor.execute(
            task.model_copy(update={"prompt": f"{task.prompt} Document: {body}"}),
            agent=self.name,
            system_prompt=self.system_prompt,
        )
        if not review.ok:
            return review
        return {"review": review.output, "sections_read": [d["section"] for d in sections]}


@tool
def reading_time(words: int) -> str:
    """How long a reader needs for a text of ``words`` words, at 200 words a minute."""
    minutes = max(1, round(words / 200))
    return f"{minutes} minute{'s' if minutes > 1 else ''}"


class Editor(Agent):
    """An autonomous agent: its model decides to ask the researcher and the planner (agents on the bus, called
    as tools in one turn, in parallel) and a Python tool, then writes the summary from what they said.

    Its ``handle`` runs the agent loop (:meth:`AgentContext.run_loop`) and adds the tool calls the loop made
    to the output, for the demo's table.
    """

    name = "doc-editor"
    topics = ("project.summarize",)
    system_prompt = (
        "You write the two-sentence summary of a user guide. Ask the researcher for facts and the planner "
        "for the outline, both at once, and give the reading time."
    )
    tools = (
        AgentTool("project.research", name="research", description="Ask the researcher agent for facts"),
        AgentTool("project.plan", name="outline", description="Ask the planner agent for an outline"),
        reading_time,
    )

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        result = await ctx.run_loop()
        if not result.ok:
            return result
        via = {t.name: t.topic if isinstance(t, AgentTool) else "python" for t in self.tools}
        calls = [
            {"turn": c.turn, "tool": c.name, "via": via.get(c.name), "ok": not c.is_error}
            for c in ctx.tool_calls
        ]
        return {"summary": result.output, "tool_calls": calls}


DEMO_AGENTS: tuple[type[Agent], ...] = (Planner, Researcher, Writer, Reviewer, Editor)
"""Every agent the demo plan needs, in the order the CLI starts them."""
