"""Telemetry of a worker: Prometheus metrics, the ``/metrics`` + ``/healthz`` server, the health check."""

from typing import TYPE_CHECKING

from relaybus._lazy import lazy_exports

if TYPE_CHECKING:
    from .health import Health, worker_health
    from .metrics import DEAD_LETTER_REASONS, DURATION_BUCKETS_S, WorkerMetrics
    from .server import MetricsServer

__all__ = [
    "DEAD_LETTER_REASONS",
    "DURATION_BUCKETS_S",
    "Health",
    "MetricsServer",
    "WorkerMetrics",
    "worker_health",
]

# Lazy: the LLM backend imports relaybus.telemetry.metrics's no-op hooks; nothing else loads aiohttp's web
# server until a metrics server is asked for.
__getattr__, __dir__ = lazy_exports(
    globals(),
    {
        "DEAD_LETTER_REASONS": ".metrics",
        "DURATION_BUCKETS_S": ".metrics",
        "Health": ".health",
        "worker_health": ".health",
        "WorkerMetrics": ".metrics",
        "MetricsServer": ".server",
    },
)
