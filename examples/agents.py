"""Example agents: the README's "Write your own agent", ready to copy, test and deploy.

Deploy (each line is its own process; start as many as you like, on any host that reaches the broker)::

    relaybus worker examples.agents:Writer --amqp-url amqp://guest:guest@localhost:5672/
    relaybus worker examples.agents:Reviewer examples.agents:WordCounter

Use::

    relaybus submit --topic code.review --prompt "a function that adds two numbers" --wait
    relaybus submit --topic text.count --prompt "to be or not to be" --wait
    relaybus agents

Test in memory, with the same classes: ``tests/agents/test_examples.py``.
"""

from __future__ import annotations

from typing import Any

from relaybus import AgentTask, ExecutionResult
from relaybus.agents import Agent, AgentContext

__all__ = ["Reviewer", "WordCounter", "Writer"]


class Writer(Agent):
    """An LLM agent with no code at all: the default ``handle`` sends each task to the worker's executor
    (``RELAYBUS_LLM_PROVIDER``: echo, openai or anthropic) with this system prompt."""

    name = "writer"
    topics = ("code.write",)
    system_prompt = "You write small, correct Python functions. Answer with the code only."


class Reviewer(Agent):
    """Reviews code. A task without ``input["code"]`` first asks the writer for a draft, over the bus."""

    name = "reviewer"
    topics = ("code.review",)
    system_prompt = "You review Python code: list the bugs first, then style issues."

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        code = task.input.get("code")
        if not isinstance(code, str):
            draft = await ctx.delegate(AgentTask(topic="code.write", prompt=task.prompt), timeout=120)
            if not draft.ok:
                return draft  # the writer's failure (or TIMEOUT) becomes this task's result
            code = str(draft.output)
        ctx.log.info("reviewing", lines=code.count("\n") + 1)
        review: ExecutionResult = await ctx.executor.execute(
            task.model_copy(update={"input": {"code": code}}),
            agent=self.name,
            system_prompt=self.system_prompt,
        )
        if not review.ok:
            return review
        return {"code": code, "review": review.output}


class WordCounter(Agent):
    """A plain Python agent (no LLM): returns JSON and announces each count as an event."""

    name = "word-counter"
    topics = ("text.count", "text.count.*")

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        words = task.prompt.split()
        if not words:
            raise ValueError("nothing to count: the prompt is empty")  # becomes a FAILURE result
        counts = {"words": len(words), "distinct": len({w.lower() for w in words})}
        await ctx.publish_event("text.counted", {"task_id": str(task.id), **counts})
        return counts
