"""``/healthz``: whether a worker is fit to take tasks (connected, not blocked by a broker alarm, consuming
every queue), and why not."""

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
    blocked = getattr(bus, "blocked", None)  # AmqpBus: RabbitMQ's connection.blocked reason
    if isinstance(blocked, str):
        return Health(
            False,
            f"RabbitMQ blocks publishing on this connection ({blocked}): a memory or disk alarm on the "
            "broker; results cannot be sent until it clears",
        )
    return Health(True)


def worker_health(bus: Bus, worker: AgentWorker) -> Health:
    """Healthy only while ``worker`` runs, ``bus`` is connected, and every agent's queue has its consumer."""
    if not worker.is_running:
        return Health(False, "the worker is not running (starting, draining or stopped)")
    health = bus_health(bus)
    if not health.ok:
        return health
    missing = [queue for queue in worker.queues if queue not in worker.consuming]
    if missing:
        return Health(False, f"no consumer on {', '.join(missing)}")
    return Health(True)
