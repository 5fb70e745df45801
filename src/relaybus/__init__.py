"""relaybus: run LLM agents as real distributed processes over RabbitMQ.

The names below are imported on first use (PEP 562), so that ``relaybus worker`` loads only what it runs:
the orchestrator, plan parsing and the executor's HTTP stack stay unloaded until asked for (an idle worker
is ~17 MiB smaller, bench/PROFILE.md), and aio-pika until ``AmqpBus`` is. ``from relaybus import X`` works
for every name in ``__all__``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from .exceptions import (
    BrokerRefused,
    BusError,
    ConfigError,
    ConnectionFailed,
    DelegationError,
    ExecutorError,
    InvalidMessage,
    MCPConnectionError,
    NoRouteError,
    PlanError,
    ProviderResponseError,
    RelaybusError,
    SchemaTooNew,
    StateError,
    StoreUnavailable,
    UsageError,
)
from .messages import SCHEMA_VERSION, AgentTask, ErrorInfo, ExecutionResult, ExecutionStatus, TaskEvent, Usage

if TYPE_CHECKING:
    from .agents import Agent, AgentContext, AgentWorker, StartContext, WorkerHeartbeat
    from .bus import AmqpBus, Bus, MemoryBus, ReplyRouter, SignedBus, SigningKey, connect
    from .executor import Executor, ExecutorConfig, ProviderConfig, RetryPolicy, Script, TaskExecutor
    from .orchestrator import Plan, PlanResult, ProjectOrchestrator, load_plan
    from .state import PostgresStore, SqliteStore, StateStore, store_from_url
    from .tools import AgentTool, MCPServer, Tool, tool

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
    "Agent",
    "AgentContext",
    "AgentTask",
    "AgentTool",
    "AgentWorker",
    "AmqpBus",
    "BrokerRefused",
    "Bus",
    "BusError",
    "ConfigError",
    "ConnectionFailed",
    "DelegationError",
    "ErrorInfo",
    "ExecutionResult",
    "ExecutionStatus",
    "Executor",
    "ExecutorConfig",
    "ExecutorError",
    "InvalidMessage",
    "MCPConnectionError",
    "MCPServer",
    "MemoryBus",
    "NoRouteError",
    "Plan",
    "PlanError",
    "PlanResult",
    "PostgresStore",
    "ProjectOrchestrator",
    "ProviderConfig",
    "ProviderResponseError",
    "RelaybusError",
    "ReplyRouter",
    "RetryPolicy",
    "SchemaTooNew",
    "Script",
    "SignedBus",
    "SigningKey",
    "SqliteStore",
    "StartContext",
    "StateError",
    "StateStore",
    "StoreUnavailable",
    "TaskEvent",
    "TaskExecutor",
    "Tool",
    "Usage",
    "UsageError",
    "WorkerHeartbeat",
    "__version__",
    "connect",
    "load_plan",
    "store_from_url",
    "tool",
]

_MODULE_OF = {
    **dict.fromkeys(("Agent", "AgentContext", "AgentWorker", "StartContext", "WorkerHeartbeat"), ".agents"),
    **dict.fromkeys(
        ("AmqpBus", "Bus", "MemoryBus", "ReplyRouter", "SignedBus", "SigningKey", "connect"), ".bus"
    ),
    **dict.fromkeys(
        ("Executor", "ExecutorConfig", "ProviderConfig", "RetryPolicy", "Script", "TaskExecutor"), ".executor"
    ),
    **dict.fromkeys(("Plan", "PlanResult", "ProjectOrchestrator", "load_plan"), ".orchestrator"),
    **dict.fromkeys(("PostgresStore", "SqliteStore", "StateStore", "store_from_url"), ".state"),
    **dict.fromkeys(("AgentTool", "MCPServer", "Tool", "tool"), ".tools"),
}

__getattr__, __dir__ = lazy_exports(globals(), _MODULE_OF)
