"""Agents and the workers that host them: ``Agent``, ``AgentContext``, ``AgentWorker``."""

from .agent import Agent, validate_agent
from .context import DEFAULT_DELEGATE_TIMEOUT_S, AgentContext
from .delegation import DEFAULT_MAX_DEPTH
from .heartbeat import (
    HEARTBEAT_ROUTING_KEY,
    PING_ROUTING_KEY,
    STOPPED_ROUTING_KEY,
    WORKER_EVENTS_PATTERN,
    WorkerHeartbeat,
)
from .worker import AgentWorker, default_worker_id

__all__ = [
    "DEFAULT_DELEGATE_TIMEOUT_S",
    "DEFAULT_MAX_DEPTH",
    "HEARTBEAT_ROUTING_KEY",
    "PING_ROUTING_KEY",
    "STOPPED_ROUTING_KEY",
    "WORKER_EVENTS_PATTERN",
    "Agent",
    "AgentContext",
    "AgentWorker",
    "WorkerHeartbeat",
    "default_worker_id",
    "validate_agent",
]
