"""relaybus: run LLM agents as real distributed processes over RabbitMQ."""

from .agents import Agent, AgentContext, AgentWorker, WorkerHeartbeat
from .bus import Bus, MemoryBus, ReplyRouter, connect
from .exceptions import (
    BusError,
    ConfigError,
    ConnectionFailed,
    DelegationError,
    ExecutorError,
    InvalidMessage,
    NoRouteError,
    PlanError,
    ProviderResponseError,
    RelaybusError,
)
from .executor import Executor, ExecutorConfig, ProviderConfig, RetryPolicy, TaskExecutor
from .messages import SCHEMA_VERSION, AgentTask, ErrorInfo, ExecutionResult, ExecutionStatus, Usage
from .orchestrator import Plan, PlanResult, ProjectOrchestrator, load_plan

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
    "Agent",
    "AgentContext",
    "AgentTask",
    "AgentWorker",
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
    "MemoryBus",
    "NoRouteError",
    "Plan",
    "PlanError",
    "PlanResult",
    "ProjectOrchestrator",
    "ProviderConfig",
    "ProviderResponseError",
    "RelaybusError",
    "ReplyRouter",
    "RetryPolicy",
    "TaskExecutor",
    "Usage",
    "WorkerHeartbeat",
    "__version__",
    "connect",
    "load_plan",
]
