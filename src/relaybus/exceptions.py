"""The one exception hierarchy of relaybus.

Every error relaybus raises on purpose derives from :class:`RelaybusError`. Messages name what was wrong and
how to fix it; URLs in them have their passwords masked (see :func:`relaybus.secrets.mask_url`).
"""

from __future__ import annotations

__all__ = [
    "BrokerRefused",
    "BusError",
    "ConfigError",
    "ConnectionFailed",
    "DelegationError",
    "ExecutorError",
    "InvalidMessage",
    "MCPConnectionError",
    "NoRouteError",
    "PlanError",
    "ProviderResponseError",
    "RelaybusError",
    "SchemaTooNew",
    "StateError",
    "StoreUnavailable",
    "UsageError",
]


class RelaybusError(Exception):
    """Base class of every error relaybus raises on purpose."""


class ConfigError(RelaybusError, ValueError):
    """Configuration is missing or wrong (a flag, an environment variable, a constructor argument).

    Also a ``ValueError``, so callers' ``except ValueError`` around a constructor keeps working.
    """


class UsageError(RelaybusError, RuntimeError):
    """An object was used out of order: started twice, used outside its ``async with``, or after close.

    Also a ``RuntimeError``, what Python raises for the same mistake elsewhere.
    """


class BusError(RelaybusError):
    """The message bus failed to do what was asked."""


class ConnectionFailed(BusError):
    """The broker could not be reached, or the connection was lost for longer than allowed."""


class BrokerRefused(ConnectionFailed):
    """The broker answered and refused the connection (credentials, vhost, permissions, TLS): waiting for it
    will not help, unlike a broker that does not answer."""


class NoRouteError(BusError):
    """A mandatory message matched no queue: no agent subscribes to its routing key."""

    def __init__(self, routing_key: str, exchange: str = "relaybus") -> None:
        self.routing_key = routing_key
        self.exchange = exchange
        super().__init__(
            f"no queue is bound for routing key {routing_key!r} on exchange {exchange!r}: "
            "start a worker whose agent subscribes to this topic (relaybus worker module:Class), "
            "or check the topic / agent name for typos"
        )


class InvalidMessage(BusError):
    """A received body was refused before any handler saw it; ``reason`` says why.

    Consumers dead-letter such messages with the reason in the ``relaybus-error`` header.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ExecutorError(RelaybusError):
    """The executor was configured or used wrongly (a programming error, not a failed task).

    A task that fails never raises: it comes back as an ``ExecutionResult`` with a status and
    an ``ErrorInfo``.
    """


class DelegationError(RelaybusError):
    """Agent-to-agent delegation was refused: a loop, or a chain deeper than the limit."""


class MCPConnectionError(RelaybusError):
    """An MCP server could not be started or reached, or its client session could not be opened."""


class StateError(RelaybusError):
    """A state store could not do what was asked."""


class StoreUnavailable(StateError):
    """The store could not be reached (at start, or mid-run); the message names its URL, password masked.

    Mid-run it is transient: callers retry with backoff rather than run a task unclaimed.
    """


class SchemaTooNew(StateError):
    """The store's schema was written by a newer relaybus than this one; this one refuses to touch it."""


class PlanError(RelaybusError):
    """A plan is not a valid DAG (a cycle, a missing dependency, a duplicate id) or its file is malformed."""


class ProviderResponseError(RelaybusError):
    """An LLM provider answered 2xx with a body of the wrong shape (not JSON, no text) or over the size cap.

    The executor turns it into a FAILURE result (``InvalidProviderResponse``); ``execute`` never raises
    it. Custom :class:`~relaybus.executor.LLMProvider` implementations may raise it too.
    """
