"""The HTTP gateway in front of the bus: A2A (JSON-RPC, 1.0 and 0.3) and plain REST (``relaybus gateway``)."""

from .a2a import VERSION_HEADER, A2AEndpoint
from .a2a_types import A2A_VERSION, A2A_VERSION_V03
from .app import Gateway, GatewayConfig
from .auth import TOKENS_ENV, BearerAuth, load_tokens
from .directory import AgentDirectory
from .rest import TaskView
from .tasks import TaskPhase, TaskRecord, TaskRegistry, TooManyTasks

__all__ = [
    "A2A_VERSION",
    "A2A_VERSION_V03",
    "TOKENS_ENV",
    "VERSION_HEADER",
    "A2AEndpoint",
    "AgentDirectory",
    "BearerAuth",
    "Gateway",
    "GatewayConfig",
    "TaskPhase",
    "TaskRecord",
    "TaskRegistry",
    "TaskView",
    "TooManyTasks",
    "load_tokens",
]
