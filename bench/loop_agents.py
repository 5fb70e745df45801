"""The agents and the fake model of ``bench.agent_loop``.

Deployed with ``relaybus worker bench.loop_agents:Class``; ``RELAYBUS_BENCH_SUFFIX`` makes every name and
topic of one run its own on the shared broker (``bench-loop-<suffix>``, ``bench<suffix>.helper.a``).

- :class:`LoopAgent`: the agent loop. Its model (:func:`model`) calls both helpers in one turn, then answers.
- :class:`HandWritten`: the same two model turns and two delegations, written by hand with one
  ``ctx.delegate`` after the other (what the loop replaces).
- :class:`HelperA`, :class:`HelperB`: the agents called as tools: one LLM call each (the default ``handle``).

``python -m bench.loop_agents --latency 0.2`` serves :func:`model` as a FakeLLMServer in its own process and
prints ``READY {"url": ...}`` (its OpenAI base URL).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from bench.common import emit, wait_for_stop_signal
from relaybus import Agent, AgentContext, AgentTask, AgentTool
from relaybus.executor.llm.chat import ToolResultMessage
from relaybus.executor.llm.prompt import task_messages
from relaybus.testing import FakeLLMServer, ScriptedAnswer, ScriptedToolCall, SeenRequest

SUFFIX_ENV = "RELAYBUS_BENCH_SUFFIX"
SUFFIX = os.environ.get(SUFFIX_ENV, "")
HELPER_TOPICS = (f"bench{SUFFIX}.helper.a", f"bench{SUFFIX}.helper.b")
TOOLS = (
    AgentTool(HELPER_TOPICS[0], name="ask_a", description="Ask helper A"),
    AgentTool(HELPER_TOPICS[1], name="ask_b", description="Ask helper B"),
)


def model(seen: SeenRequest) -> ScriptedAnswer | str:
    """Turn 1 of a tool agent: both tools at once; turn 2: the answer. A helper's call: a sentence."""
    if not seen.tools:
        return "a helper's answer"
    if not seen.tool_results:
        return ScriptedAnswer(
            tool_calls=[
                ScriptedToolCall("ask_a", {"prompt": "a?"}),
                ScriptedToolCall("ask_b", {"prompt": "b?"}),
            ]
        )
    return "done: " + " + ".join(m.content for m in seen.tool_results)


class LoopAgent(Agent):
    name = f"bench-loop{SUFFIX}"
    topics = (f"bench{SUFFIX}.loop",)
    system_prompt = "Ask both helpers."
    tools = TOOLS


class HandWritten(Agent):
    """Two model turns around two delegations, one after the other."""

    name = f"bench-hand{SUFFIX}"
    topics = (f"bench{SUFFIX}.hand",)
    system_prompt = "Ask both helpers."

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        specs = [t.spec for t in TOOLS]
        messages = list(task_messages(task, self.system_prompt))
        first = await ctx.executor.chat(messages, tools=specs, agent=self.name)
        assert first.completion is not None, first.failure
        messages.append(first.completion.message)
        for call, tool in zip(first.completion.tool_calls, TOOLS, strict=True):
            prompt = str((call.arguments_object() or {}).get("prompt", ""))
            result = await ctx.delegate(AgentTask(topic=tool.topic or "", prompt=prompt))
            messages.append(ToolResultMessage(call.id, str(result.output), not result.ok))
        second = await ctx.executor.chat(messages, tools=specs, agent=self.name)
        assert second.completion is not None, second.failure
        return second.completion.text


class HelperA(Agent):
    name = f"bench-helper-a{SUFFIX}"
    topics = (HELPER_TOPICS[0],)


class HelperB(Agent):
    name = f"bench-helper-b{SUFFIX}"
    topics = (HELPER_TOPICS[1],)


AGENTS = (LoopAgent, HandWritten, HelperA, HelperB)


async def serve(latency_s: float) -> None:
    async with FakeLLMServer(answers=model, latency_s=latency_s, record_calls=False) as server:
        emit("READY", {"url": server.openai_base_url})
        await wait_for_stop_signal()


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.loop_agents")
    parser.add_argument("--latency", type=float, default=0.2)
    asyncio.run(serve(parser.parse_args().latency))


if __name__ == "__main__":
    main()
