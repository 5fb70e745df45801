"""An agent for plan tests that run as ``relaybus worker`` processes: it adds numbers along the DAG.

``Summer`` answers ``{"key": prompt, "sum": input["value"] + the "sum" of every dependency's output}``, so the
final numbers prove each task got its dependencies' outputs. It sleeps ``input["sleep_s"]``, fails when
``input["fail"]`` is set, and announces every run on ``event.<topic prefix>.ran`` so a test can count runs.
Names carry ``RELAYBUS_TEST_AGENT_SUFFIX`` (queues of their own on a shared broker).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from relaybus import AgentTask
from relaybus.agents import Agent, AgentContext

SUFFIX = os.environ.get("RELAYBUS_TEST_AGENT_SUFFIX", "")


def prefix(suffix: str = SUFFIX) -> str:
    return f"plantest{suffix}"


class Summer(Agent):
    name = f"summer{SUFFIX}"
    topics = (f"{prefix()}.sum",)

    async def handle(self, task: AgentTask, ctx: AgentContext) -> Any:
        await ctx.publish_event(f"{prefix()}.ran", {"task_id": str(task.id), "worker": ctx.worker})
        delay = task.input.get("sleep_s", 0)
        if isinstance(delay, int | float) and delay > 0:
            await asyncio.sleep(delay)
        if task.input.get("fail"):
            raise ValueError(f"task {task.prompt} was told to fail")
        deps = task.input.get("dependencies", {})
        assert isinstance(deps, dict)
        total = task.input.get("value", 0)
        assert isinstance(total, int)
        for output in deps.values():
            assert isinstance(output, dict)
            value = output["sum"]
            assert isinstance(value, int)
            total += value
        return {"key": task.prompt, "sum": total}
