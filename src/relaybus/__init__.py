"""relaybus: run LLM agents as real distributed processes over RabbitMQ."""

from .agents import Agent, AgentContext, AgentWorker
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
    RelaybusError,
)
from .executor import Executor, TaskExecutor
from .messages import SCHEMA_VERSION, AgentTask, ErrorInfo, ExecutionResult, ExecutionStatus, Usage

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
    "ExecutorError",
    "InvalidMessage",
    "MemoryBus",
    "NoRouteError",
    "PlanError",
    "RelaybusError",
    "ReplyRouter",
    "TaskExecutor",
    "Usage",
    "__version__",
    "connect",
]
