"""What `relaybus run` and `relaybus demo` report about a finished plan, for the tables and for `--json`.

- A task's agent is the one that answered it, else the one it addressed, else one that answered another task
  of the plan with the same topic, else an agent the caller knows whose topics match (the demo knows its
  own); None when nothing says, never the topic.
- The speed-up is given only when it means something: a plan of more than one task, every task succeeded,
  and every result came from this run (a resumed run collects earlier results it did not wait for).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

from pydantic import JsonValue

from relaybus.agents.agent import Agent
from relaybus.bus.topic import topic_matches
from relaybus.orchestrator import PlanResult

__all__ = ["as_json_text", "collected_earlier", "plan_document", "speedup", "task_agents", "tasks_word"]


def task_agents(result: PlanResult, known: Iterable[Agent | type[Agent]] = ()) -> dict[UUID, str | None]:
    """Task id -> the name of the agent it belongs to, by the rule in the module docstring."""
    answered = {task_id: res.agent or result.tasks[task_id].agent for task_id, res in result.results.items()}
    by_topic: dict[str, str] = {}
    for task_id, agent in answered.items():
        if agent is not None:
            by_topic.setdefault(result.tasks[task_id].topic, agent)
    candidates = list(known)
    out: dict[UUID, str | None] = {}
    for task_id, agent in answered.items():
        topic = result.tasks[task_id].topic
        out[task_id] = agent or by_topic.get(topic) or _matching_agent(candidates, topic)
    return out


def _matching_agent(agents: list[Agent | type[Agent]], topic: str) -> str | None:
    for agent in agents:
        if any(topic_matches(pattern, topic) for pattern in agent.topics):
            return agent.name
    return None


def collected_earlier(result: PlanResult) -> int:
    """How many results this run collected without publishing their task (a named run resumed)."""
    # A worker's result for a task this run never published: it was waiting in the named reply queue. (A task
    # that never ran, cancelled or refused by the broker, has no publish time either, but no worker.)
    return sum(
        1
        for task_id, timing in result.timings.items()
        if timing.published_s is None and result.results[task_id].worker is not None
    )


def speedup(result: PlanResult) -> float | None:
    """``result.speedup`` when it means something (see the module docstring), else None."""
    if len(result.results) < 2 or not result.ok or collected_earlier(result):
        return None
    return result.speedup


def tasks_word(count: int) -> str:
    return f"{count} task" if count == 1 else f"{count} tasks"


def as_json_text(value: JsonValue) -> str:
    """An output as a person reads it: text as it is, anything else as compact JSON (never a Python repr)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def plan_document(result: PlanResult, agents: Mapping[UUID, str | None]) -> dict[str, Any]:
    """Everything about the plan as JSON-ready data: totals, then each task with its whole result."""
    usage = result.usage
    return {
        "plan": result.name,
        "ok": result.ok,
        "statuses": {status.value: n for status, n in result.statuses.items() if n},
        "wall_s": round(result.wall_s, 6),
        "sequential_s": round(result.sequential_s, 6),
        "speedup": None if (value := speedup(result)) is None else round(value, 3),
        "collected_earlier": collected_earlier(result),
        "usage": usage.model_dump(mode="json"),
        "cost": result.total_cost,
        "tasks": [
            {
                "key": result.key_of(task_id),
                "task_id": str(task_id),
                "topic": result.tasks[task_id].topic,
                "agent": agents.get(task_id),
                "status": res.status.value,
                "worker": res.worker,
                "duration_s": round(result.duration_s(task_id), 6),
                "model": result.model_of(task_id),
                "cost": result.cost(task_id),
                "result": res.model_dump(mode="json"),
            }
            for task_id, res in result.results.items()
        ],
    }
