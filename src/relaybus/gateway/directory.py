"""``AgentDirectory``: which agents are live on the bus, from the heartbeats their workers publish.

It listens on ``event.relaybus.worker.*`` with a private queue of its own, pings every worker when it starts
and every ``refresh_s`` seconds after (so a new gateway knows the fleet at once), and keeps the latest
heartbeat of each worker. A worker counts as live until it says ``stopped`` or has not been heard from for
three of its heartbeat intervals, measured on this host's clock (so clocks of other hosts do not matter).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Self

from relaybus._cancel import cancel_and_wait
from relaybus.bus.base import Bus, Delivery, Subscription
from relaybus.bus.codec import PING_ROUTING_KEY, WORKER_EVENTS_PATTERN, decode_heartbeat, encode_ping
from relaybus.exceptions import BusError, ConfigError, InvalidMessage
from relaybus.log import get_logger
from relaybus.messages import WorkerHeartbeat

__all__ = ["DEFAULT_REFRESH_S", "LIVENESS_INTERVALS", "AgentDirectory"]

DEFAULT_REFRESH_S = 30.0
LIVENESS_INTERVALS = 3
"""A worker not heard from for this many of its heartbeat intervals is presumed dead."""


class AgentDirectory:
    """Live workers and the agents they host; see the module docstring. ``bus`` must be connected."""

    def __init__(
        self,
        bus: Bus,
        *,
        refresh_s: float = DEFAULT_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not refresh_s > 0:
            raise ConfigError(f"refresh_s must be > 0 seconds, got {refresh_s!r}")
        self._bus = bus
        self._refresh_s = refresh_s
        self._clock = clock
        self._queue = f"relaybus.gateway.workers.{uuid.uuid4().hex}"
        self._beats: dict[str, tuple[WorkerHeartbeat, float]] = {}  # worker -> (latest beat, heard at)
        self._subscription: Subscription | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._heard = asyncio.Event()
        self._log = get_logger("relaybus.gateway.directory")

    async def start(self) -> None:
        """Start listening and ask every worker to announce itself (idempotent)."""
        if self._subscription is not None:
            return
        await self._bus.declare_queue(self._queue, bindings=(WORKER_EVENTS_PATTERN,), durable=False)
        self._subscription = await self._bus.consume(self._queue, self._on_event, prefetch=256)
        await self.ping()
        self._refresher = asyncio.create_task(self._refresh(), name="relaybus-gateway-directory")

    async def close(self) -> None:
        if self._refresher is not None:
            await cancel_and_wait(self._refresher)
            self._refresher = None
        if self._subscription is not None:
            with contextlib.suppress(BusError):
                await self._subscription.cancel()
                await self._bus.delete_queue(self._queue)
            self._subscription = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def ping(self) -> None:
        """Ask every live worker for a heartbeat now."""
        try:
            await self._bus.publish(encode_ping())
        except BusError as exc:  # nobody bound yet, or the broker is away: the periodic beats still come
            self._log.debug("ping_failed", error=str(exc))

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            await self.ping()

    async def _on_event(self, delivery: Delivery) -> None:
        if delivery.routing_key != PING_ROUTING_KEY:
            try:
                beat = decode_heartbeat(delivery.body, delivery.headers, content_type=delivery.content_type)
            except InvalidMessage as exc:
                self._log.debug("heartbeat_refused", reason=str(exc))
            else:
                self._remember(beat)
        await delivery.ack()

    def _remember(self, beat: WorkerHeartbeat) -> None:
        known = self._beats.get(beat.worker)
        if known is None or known[0].timestamp <= beat.timestamp or beat.status == "stopped":
            self._beats[beat.worker] = (beat, self._clock())
            self._heard.set()
            self._heard = asyncio.Event()

    def workers(self) -> list[WorkerHeartbeat]:
        """The latest heartbeat of each live worker, by worker id."""
        now = self._clock()
        live = []
        for worker, (beat, heard_at) in list(self._beats.items()):
            if beat.status == "stopped" or now - heard_at > LIVENESS_INTERVALS * beat.interval_s:
                del self._beats[worker]
                continue
            live.append(beat)
        return sorted(live, key=lambda b: b.worker)

    def agents(self) -> dict[str, list[WorkerHeartbeat]]:
        """Each agent hosted by a live worker (sorted by name) -> the workers that host it."""
        hosts: dict[str, list[WorkerHeartbeat]] = {}
        for beat in self.workers():
            for agent in beat.agents:
                hosts.setdefault(agent, []).append(beat)
        return dict(sorted(hosts.items()))

    async def wait_for_agent(self, name: str, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for a live worker hosting ``name``; True when one is known."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while name not in self.agents():
            heard = self._heard
            try:
                async with asyncio.timeout_at(deadline):
                    await heard.wait()
            except TimeoutError:
                return name in self.agents()
        return True
