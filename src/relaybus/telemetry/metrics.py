"""``WorkerMetrics``: the Prometheus metrics of one worker, in a registry of its own, and what feeds them.

The names and labels are the ones ``DESIGN.md`` fixes; every label takes a bounded set of values (agent and
provider names, ``ExecutionStatus`` values, the :data:`DEAD_LETTER_REASONS` kinds, error type names), never
free text. Each ``WorkerMetrics`` owns a ``CollectorRegistry`` (or uses the one passed in), so two workers
in one process do not share a counter. ``prometheus_client`` is imported by the first ``WorkerMetrics``, not
by this module (whose no-op hooks the LLM backend imports): importing it costs tens of milliseconds.

The LLM backend runs deep inside the executor, which knows nothing of workers: the worker binds its metrics
to the task's context (:func:`bind`, a ``ContextVar``, so each task of each worker sees its own) and the
backend reports through :func:`llm_succeeded`, :func:`llm_retried` and :func:`llm_failed`, which do nothing
(one ``ContextVar.get``) when no metrics are bound.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    from relaybus.messages import ExecutionResult, Usage

__all__ = [
    "DEAD_LETTER_REASONS",
    "DURATION_BUCKETS_S",
    "DeadLetterReason",
    "WorkerMetrics",
    "bind",
    "llm_failed",
    "llm_retried",
    "llm_succeeded",
]

DeadLetterReason = Literal["invalid_task", "reply_queue_gone"]
DEAD_LETTER_REASONS: tuple[DeadLetterReason, ...] = ("invalid_task", "reply_queue_gone")
"""What a worker dead-letters: a delivery refused on receipt, or a result whose reply queue is gone."""

DURATION_BUCKETS_S = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
"""Seconds, 5 ms (an echo or a cache answer) to 10 min (a long agent loop); past that lands in ``+Inf``."""

_current: ContextVar[WorkerMetrics | None] = ContextVar("relaybus_worker_metrics", default=None)


class WorkerMetrics:
    """The metrics of one worker; :meth:`render` is the Prometheus text ``/metrics`` serves."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry() if registry is None else registry
        r = self.registry
        self.tasks = Counter(
            "relaybus_tasks", "Tasks answered, by agent and result status", ["agent", "status"], registry=r
        )
        self.duration = Histogram(
            "relaybus_task_duration_seconds",
            "Seconds from a task's admission to its result, slot waits included (refusals not observed)",
            ["agent"],
            buckets=DURATION_BUCKETS_S,
            registry=r,
        )
        self.in_flight = Gauge(
            "relaybus_tasks_in_flight",
            "Tasks received and not yet finished (running, waiting for a slot or a delegate)",
            ["agent"],
            registry=r,
        )
        self.llm_tokens = Counter(
            "relaybus_llm_tokens",
            "Tokens the LLM provider reported; kind is prompt or completion",
            ["provider", "model", "kind"],
            registry=r,
        )
        self.llm_requests = Counter(
            "relaybus_llm_requests",
            "HTTP requests to LLM providers; outcome: ok, retried (failed, tried again), failed (gave up)",
            ["provider", "outcome"],
            registry=r,
        )
        self.llm_retries = Counter(
            "relaybus_llm_retries",
            "LLM requests tried again, by the error that caused it",
            ["provider", "error_type"],
            registry=r,
        )
        self.dead_letters = Counter(
            "relaybus_dead_letters",
            "Messages this worker dead-lettered, by kind: " + ", ".join(DEAD_LETTER_REASONS),
            ["reason"],
            registry=r,
        )
        self.expired = Counter(
            "relaybus_tasks_expired",
            "Tasks dropped unrun: their deadline passed before they started (the caller stopped waiting)",
            ["agent"],
            registry=r,
        )
        self.orphaned = Counter(
            "relaybus_results_orphaned",
            "Results dropped: their caller is gone for good (an anonymous reply queue that expired)",
            ["agent"],
            registry=r,
        )
        self.delegations = Counter(
            "relaybus_delegations",
            "Delegated tasks received, by the agent that delegated and the agent that got them",
            ["from_agent", "agent"],
            registry=r,
        )
        for reason in DEAD_LETTER_REASONS:  # shown at 0 from the start, so rate() and alerts see them
            self.dead_letters.labels(reason)
        # The labelled children of the per-task metrics, looked up once: ``labels()`` takes a lock and
        # builds a key on every call, which was most of the cost per task.
        self._per_agent: dict[str, tuple[Gauge, Histogram]] = {}
        self._answered: dict[tuple[str, str], Counter] = {}

    def render(self) -> bytes:
        """The registry in the Prometheus text format (what a scrape of ``/metrics`` gets)."""
        from prometheus_client.exposition import generate_latest

        return generate_latest(self.registry)

    # -- what the worker calls ------------------------------------------------------------------------

    def task_started(self, agent: str, chain: tuple[str, ...]) -> float:
        """A task was admitted to run for ``agent``; ``chain`` is its delegation chain (empty: not delegated).
        Binds these metrics to the current context (the LLM calls the task makes are reported here); returns
        the start time to give :meth:`task_ended`."""
        _current.set(self)
        self._of(agent)[0].inc()
        if chain:
            self.delegations.labels(chain[-1], agent).inc()
        return time.perf_counter()

    def task_ended(self, agent: str, result: ExecutionResult | None, started: float) -> None:
        """The run of a task for ``agent`` begun at ``started`` ended with ``result`` (None: returned to its
        queue, so not observed)."""
        in_flight, duration = self._of(agent)
        in_flight.dec()
        if result is not None:
            duration.observe(time.perf_counter() - started)

    def task_answered(self, result: ExecutionResult) -> None:
        """A result is being sent for a task (a run's, or a refusal's without a run)."""
        key = (result.agent or "", result.status.value)
        counter = self._answered.get(key)
        if counter is None:
            counter = self._answered[key] = self.tasks.labels(*key)
        counter.inc()

    def _of(self, agent: str) -> tuple[Gauge, Histogram]:
        children = self._per_agent.get(agent)
        if children is None:
            children = self._per_agent[agent] = (self.in_flight.labels(agent), self.duration.labels(agent))
        return children

    def dead_lettered(self, reason: DeadLetterReason) -> None:
        self.dead_letters.labels(reason).inc()

    def task_expired(self, agent: str) -> None:
        """A task for ``agent`` was dropped unrun: its deadline passed before it started."""
        self.expired.labels(agent).inc()

    def result_orphaned(self, agent: str) -> None:
        """A result of ``agent`` was dropped: its caller's anonymous reply queue is gone for good."""
        self.orphaned.labels(agent).inc()


def bind(metrics: WorkerMetrics | None) -> None:
    """Bind ``metrics`` to the current context (the task running), or unbind with None."""
    _current.set(metrics)


# -- what the LLM backend calls (no-ops when no metrics are bound) -----------------------------------------


def _kind(provider: str) -> str:
    """The provider label: ``openai`` of the provider name ``openai/gpt-4o-mini`` (the model has its own)."""
    return provider.partition("/")[0]


def llm_succeeded(provider: str, model: str, usage: Usage) -> None:
    """A provider answered one request with ``usage`` tokens from ``model``."""
    metrics = _current.get()
    if metrics is None:
        return
    provider = _kind(provider)
    metrics.llm_requests.labels(provider, "ok").inc()
    if usage.prompt_tokens:
        metrics.llm_tokens.labels(provider, model, "prompt").inc(usage.prompt_tokens)
    if usage.completion_tokens:
        metrics.llm_tokens.labels(provider, model, "completion").inc(usage.completion_tokens)


def llm_retried(provider: str, error_type: str) -> None:
    """A request to ``provider`` failed with ``error_type`` and will be tried again."""
    metrics = _current.get()
    if metrics is None:
        return
    metrics.llm_requests.labels(_kind(provider), "retried").inc()
    metrics.llm_retries.labels(_kind(provider), error_type).inc()


def llm_failed(provider: str) -> None:
    """The last request to ``provider`` for this turn failed: no more attempts on it."""
    metrics = _current.get()
    if metrics is not None:
        metrics.llm_requests.labels(_kind(provider), "failed").inc()
