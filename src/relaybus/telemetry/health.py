"""``/healthz``: whether a worker is fit to take tasks (connected, consuming every queue), and why not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relaybus.agents.worker import AgentWorker
    from relaybus.bus.base import Bus

__all__ = ["Health", "bus_health", "worker_health"]


@dataclass(frozen=True)
class Health:
    """``ok`` and, when not, ``reason``: one line an operator reads in a probe's failure."""

    ok: bool
    reason: str = "ok"


def bus_health(bus: Bus) -> Health:
    """Healthy while ``bus`` is connected (what ``relaybus run --metrics-port`` answers on ``/healthz``)."""
    if not bus.is_connected:
        return Health(False, f"the broker connection ({bus.url}) is down; the bus is reconnecting")
    return Health(True)


def worker_health(bus: Bus, worker: AgentWorker) -> Health:
    """Healthy only while ``worker`` runs, ``bus`` is connected, and every agent's queue has its consumer."""
    if not worker.is_running:
        return Health(False, "the worker is not running (starting, draining or stopped)")
    if not bus.is_connected:
        return bus_health(bus)
    missing = [queue for queue in worker.queues if queue not in worker.consuming]
    if missing:
        return Health(False, f"no consumer on {', '.join(missing)}")
    return Health(True)
