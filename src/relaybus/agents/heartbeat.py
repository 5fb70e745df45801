"""Worker liveness: the heartbeat a worker publishes on ``event.relaybus.worker.<kind>``.

A running worker publishes a :class:`WorkerHeartbeat` on ``event.relaybus.worker.heartbeat`` when it starts,
every ``interval_s`` seconds, and whenever someone publishes on ``event.relaybus.worker.ping`` (that is how
``relaybus agents`` gets an answer at once); at exit it publishes one last time on
``event.relaybus.worker.stopped``. A worker not heard from for about three intervals is presumed dead.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from relaybus.bus.base import SCHEMA_HEADER, WORKER_EVENT_PREFIX, OutgoingMessage
from relaybus.messages import SCHEMA_VERSION

__all__ = [
    "HEARTBEAT_ROUTING_KEY",
    "PING_ROUTING_KEY",
    "STOPPED_ROUTING_KEY",
    "WORKER_EVENTS_PATTERN",
    "WorkerHeartbeat",
    "heartbeat_message",
]

HEARTBEAT_ROUTING_KEY = f"{WORKER_EVENT_PREFIX}.heartbeat"
STOPPED_ROUTING_KEY = f"{WORKER_EVENT_PREFIX}.stopped"
PING_ROUTING_KEY = f"{WORKER_EVENT_PREFIX}.ping"
"""Publishing anything here asks every live worker to send a heartbeat now."""
WORKER_EVENTS_PATTERN = f"{WORKER_EVENT_PREFIX}.*"


class WorkerHeartbeat(BaseModel):
    """What a worker says about itself. ``status`` is ``running``, ``draining`` or ``stopped``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    worker: Annotated[str, Field(max_length=300)]
    host: Annotated[str, Field(max_length=255)]
    pid: Annotated[int, Field(ge=0)]
    agents: tuple[Annotated[str, Field(max_length=100)], ...]
    in_flight: Annotated[int, Field(ge=0)]
    capacity: Annotated[int, Field(ge=1)]
    processed: Annotated[int, Field(ge=0)] = 0
    status: Literal["running", "draining", "stopped"] = "running"
    interval_s: Annotated[float, Field(gt=0)]
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))


def heartbeat_message(beat: WorkerHeartbeat) -> OutgoingMessage:
    """The event carrying ``beat``: not mandatory (nobody may be listening) and not persistent."""
    key = STOPPED_ROUTING_KEY if beat.status == "stopped" else HEARTBEAT_ROUTING_KEY
    return OutgoingMessage(
        body=beat.model_dump_json().encode(),
        routing_key=key,
        message_id=f"heartbeat-{beat.worker}-{beat.timestamp.timestamp():.3f}",
        headers={SCHEMA_HEADER: SCHEMA_VERSION},
        mandatory=False,
        persistent=False,
    )
