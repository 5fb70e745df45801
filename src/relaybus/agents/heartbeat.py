"""Worker liveness: the names of the heartbeat events a worker publishes on ``event.relaybus.worker.<kind>``.

A running worker publishes a :class:`WorkerHeartbeat` on ``event.relaybus.worker.heartbeat`` when it starts,
every ``interval_s`` seconds, and whenever someone publishes on ``event.relaybus.worker.ping`` (that is how
``relaybus agents`` gets an answer at once); at exit it publishes one last time on
``event.relaybus.worker.stopped``. A worker not heard from for about three intervals is presumed dead. The
model lives with the other wire messages in :mod:`relaybus.messages`, its encoding in
:mod:`relaybus.bus.codec`; this module keeps the names agents and tools import.
"""

from __future__ import annotations

from relaybus.bus.codec import (
    HEARTBEAT_ROUTING_KEY,
    PING_ROUTING_KEY,
    STOPPED_ROUTING_KEY,
    WORKER_EVENTS_PATTERN,
)
from relaybus.messages import WorkerHeartbeat

__all__ = [
    "HEARTBEAT_ROUTING_KEY",
    "PING_ROUTING_KEY",
    "STOPPED_ROUTING_KEY",
    "WORKER_EVENTS_PATTERN",
    "WorkerHeartbeat",
]
