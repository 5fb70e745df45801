"""Agents and the workers that host them: ``Agent``, ``AgentContext``, ``AgentWorker``, and the agent loop.

The agent loop's names (``ToolCallRecord``, ``run_agent_loop``) are imported on first use (PEP 562): they
load the tools package, which a worker whose agents have no tools does not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relaybus._lazy import lazy_exports

from .agent import DEFAULT_MAX_TURNS, Agent, validate_agent
from .context import DEFAULT_DELEGATE_TIMEOUT_S, AgentContext
from .delegation import DEFAULT_MAX_DEPTH
from .heartbeat import (
    HEARTBEAT_ROUTING_KEY,
    PING_ROUTING_KEY,
    STOPPED_ROUTING_KEY,
    WORKER_EVENTS_PATTERN,
    WorkerHeartbeat,
)
from .startup import StartContext
from .worker import AgentWorker, default_worker_id

if TYPE_CHECKING:
    from .loop import ToolCallRecord, run_agent_loop

__all__ = [
    "DEFAULT_DELEGATE_TIMEOUT_S",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_TURNS",
    "HEARTBEAT_ROUTING_KEY",
    "PING_ROUTING_KEY",
    "STOPPED_ROUTING_KEY",
    "WORKER_EVENTS_PATTERN",
    "Agent",
    "AgentContext",
    "AgentWorker",
    "StartContext",
    "ToolCallRecord",
    "WorkerHeartbeat",
    "default_worker_id",
    "run_agent_loop",
    "validate_agent",
]

__getattr__, __dir__ = lazy_exports(globals(), {"ToolCallRecord": ".loop", "run_agent_loop": ".loop"})
