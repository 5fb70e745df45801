"""relaybus: run LLM agents as real distributed processes over RabbitMQ."""

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
from .messages import SCHEMA_VERSION, AgentTask, ErrorInfo, ExecutionResult, ExecutionStatus, Usage

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
    "AgentTask",
    "BusError",
    "ConfigError",
    "ConnectionFailed",
    "DelegationError",
    "ErrorInfo",
    "ExecutionResult",
    "ExecutionStatus",
    "ExecutorError",
    "InvalidMessage",
    "NoRouteError",
    "PlanError",
    "RelaybusError",
    "Usage",
    "__version__",
]
