"""``PlanMetrics``: the Prometheus metrics of ``relaybus run`` (the orchestrator's view of a plan).

Fed by the plan's progress events (it is a :data:`~relaybus.orchestrator.ProgressCallback`); served by the
same :class:`~relaybus.telemetry.MetricsServer` as a worker's (``relaybus run --metrics-port``), with
``/healthz`` following the broker connection. The names start with ``relaybus_plan_`` so that a dashboard
summing the workers' ``relaybus_tasks_total`` does not count a task twice.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from uuid import UUID

from .metrics import DURATION_BUCKETS_S

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from relaybus.orchestrator.scheduler import PlanProgress

__all__ = ["PlanMetrics"]


class PlanMetrics:
    """The metrics of the plans one orchestrator runs; call it with each :class:`PlanProgress`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry() if registry is None else registry
        r = self.registry
        self.tasks = Counter(
            "relaybus_plan_tasks",
            "Plan tasks finished, by agent and result status",
            ["agent", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "relaybus_plan_task_duration_seconds",
            "Seconds from a plan task's publish to its result",
            buckets=DURATION_BUCKETS_S,
            registry=r,
        )
        self.in_flight = Gauge(
            "relaybus_plan_tasks_in_flight", "Plan tasks published and unanswered", registry=r
        )
        self.pending = Gauge("relaybus_plan_tasks_pending", "Plan tasks without a result yet", registry=r)
        self.tokens = Counter(
            "relaybus_plan_llm_tokens",
            "Tokens the plan's results report; kind: prompt, completion",
            ["kind"],
            registry=r,
        )
        self._published: dict[UUID, float] = {}

    def __call__(self, event: PlanProgress) -> None:
        if event.kind == "published":
            self._published[event.task.id] = time.perf_counter()
            self.in_flight.inc()
        elif event.kind == "finished" and event.result is not None:
            started = self._published.pop(event.task.id, None)
            if started is not None:
                self.in_flight.dec()
                self.duration.observe(time.perf_counter() - started)
            result = event.result
            self.tasks.labels(result.agent or "", result.status.value).inc()
            self.tokens.labels("prompt").inc(result.usage.prompt_tokens)
            self.tokens.labels("completion").inc(result.usage.completion_tokens)
        self.pending.set(event.total - event.done)

    def render(self) -> bytes:
        """The registry in the Prometheus text format (what a scrape of ``/metrics`` gets)."""
        from prometheus_client.exposition import generate_latest

        return generate_latest(self.registry)
