"""The agents the benchmarks deploy with ``relaybus worker bench.agents:Class``.

Each run gives its agent a unique name through ``RELAYBUS_BENCH_AGENT_NAME`` (so its queue
``relaybus.agent.<name>`` is its own on a shared broker); the benchmark addresses tasks to that name.
"""

from __future__ import annotations

import os
from typing import Any

from relaybus.agents.agent import Agent
from relaybus.agents.context import AgentContext
from relaybus.messages import AgentTask

NAME_ENV = "RELAYBUS_BENCH_AGENT_NAME"


class NoopAgent(Agent):
    """Answers every task at once with ``None``: the cost measured is the framework's round trip alone."""

    name = os.environ.get(NAME_ENV, "bench-noop")

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        return None


class LlmAgent(Agent):
    """The default ``handle``: one LLM call through the worker's shared ``TaskExecutor``."""

    name = os.environ.get(NAME_ENV, "bench-llm")
    mode = "llm"


NOOP_PREFIX = "noop_"


def __getattr__(attribute: str) -> NoopAgent:
    """``bench.agents:noop_<i>``: a NoopAgent named ``<RELAYBUS_BENCH_AGENT_NAME>-<i>``, so that one
    ``relaybus worker`` process can host any number of distinct agents (the agents sweep, bench/sweep.py)."""
    index = attribute.removeprefix(NOOP_PREFIX)
    if attribute == index or not index.isdigit():
        raise AttributeError(attribute)
    agent = NoopAgent()
    agent.name = f"{NoopAgent.name}-{index}"
    return agent
