"""An agent with tools: the README's "Agents with tools", ready to copy, test and deploy.

The solver's model decides what to do: add or multiply with Python functions, or ask the word counter of
``examples/agents.py`` over the bus; the calls of one answer run at once. Its final answer is validated
against ``Answer`` (one repair turn if it is not), and the result's output is that object as JSON.

Deploy (each line is its own process; the solver needs a model that calls tools, e.g.
``RELAYBUS_LLM_PROVIDER=openai`` with ``OPENAI_API_KEY``, or a local OpenAI-compatible server)::

    relaybus worker examples.tool_agents:Solver --amqp-url amqp://guest:guest@localhost:5672/
    relaybus worker examples.agents:WordCounter

Use::

    relaybus submit --topic math.solve --prompt "(2 + 3) times the words of 'to be or not to be'" --wait

Test in memory, with a scripted model: ``tests/agents/test_examples.py``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from relaybus import Agent, AgentTool, tool

__all__ = ["Answer", "Solver", "add", "multiply"]


@tool
async def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@tool
def multiply(a: float, b: float) -> float:
    """Multiply two numbers."""
    return a * b


class Answer(BaseModel):
    """The solver's final answer."""

    value: float
    explanation: str = Field(description="One line: how the value was found")


class Solver(Agent):
    """Solves arithmetic word problems with its tools; no ``handle``: the agent loop runs the task."""

    name = "solver"
    topics = ("math.solve",)
    system_prompt = "Solve the problem with your tools. Call the tools you need at once when you can."
    tools = (
        add,
        multiply,
        AgentTool("text.count", name="count_words", description="Count the words of a text"),
    )
    output_schema = Answer
    max_turns = 6
