"""The demo's agents: a planner, writers that ask a researcher over the bus, and a reviewer.

They run on whatever LLM the worker's executor is configured with (``RELAYBUS_LLM_PROVIDER``;
``relaybus demo`` uses the offline ``echo`` provider with a simulated latency unless an LLM is configured).
Their names start with ``doc-`` so that their queues (``relaybus.agent.doc-writer``, ...) never mix with
other agents called ``writer`` or ``reviewer`` on the same broker. Deploy them like any agent::

    relaybus worker relaybus.demo.agents:Planner relaybus.demo.agents:Writer \\
        relaybus.demo.agents:Researcher relaybus.demo.agents:Reviewer
"""

from __future__ import annotations

from typing import Any

from pydantic import JsonValue

from relaybus.agents import Agent, AgentContext
from relaybus.messages import AgentTask, ExecutionResult

__all__ = ["DEMO_AGENTS", "Planner", "Researcher", "Reviewer", "Writer"]


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


DEMO_AGENTS: tuple[type[Agent], ...] = (Planner, Researcher, Writer, Reviewer)
"""Every agent the demo plan needs, in the order the CLI starts them."""
