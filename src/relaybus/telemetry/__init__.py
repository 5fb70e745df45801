"""Telemetry: Prometheus metrics, the ``/metrics`` + ``/healthz`` server, the health check, and tracing
(``start_trace``, ``current_trace_id``; the spans are made by :mod:`relaybus.telemetry.tracing`)."""

from typing import TYPE_CHECKING

from relaybus._lazy import lazy_exports

if TYPE_CHECKING:
    from .health import Health, bus_health, worker_health
    from .metrics import DEAD_LETTER_REASONS, DURATION_BUCKETS_S, WorkerMetrics
    from .plan_metrics import PlanMetrics
    from .server import MetricsServer
    from .trace_context import current_trace_id
    from .tracing import start_trace

__all__ = [
    "DEAD_LETTER_REASONS",
    "DURATION_BUCKETS_S",
    "Health",
    "MetricsServer",
    "PlanMetrics",
    "WorkerMetrics",
    "bus_health",
    "current_trace_id",
    "start_trace",
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
        "bus_health": ".health",
        "PlanMetrics": ".plan_metrics",
        "WorkerMetrics": ".metrics",
        "MetricsServer": ".server",
        "current_trace_id": ".trace_context",
        "start_trace": ".tracing",
    },
)
